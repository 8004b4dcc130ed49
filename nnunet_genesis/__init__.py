"""Models Genesis self-supervised pretraining for nnU-Net v1.

This package is imported at interpreter start-up by ``nnunet_genesis.pth`` (see
``nnunet_genesis/integration.py``), so it must stay import-light: no torch, no numpy here.
"""
__version__ = "0.1.0"
