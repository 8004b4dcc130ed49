"""nnU-Net v2 (``nnunetv2``) side of nnunet-genesis: the v2 trainers (``trainers``), the thin
batchgeneratorsv2 wrapper of the Models Genesis distortions (``transforms``), and v2's folders and
names (``layout``) and the pretraining data it prepares (``prepare``).

The stock ``nnUNetv2_*`` commands find the trainers through :mod:`nnunet_genesis.integration`.
Imported at start-up through ``nnunet_genesis`` only as a package: keep this file empty of imports.
"""
