"""What this package knows about nnU-Net v1 itself: its folders and names (``layout``) and the network it
builds from a plans file (``network``). Every other module asks these two instead of rebuilding the names.

Imported at start-up through ``nnunet_genesis`` only as a package: keep this file empty of imports.
"""
