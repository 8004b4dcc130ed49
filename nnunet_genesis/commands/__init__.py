"""The ``nnUNet_genesis_*`` commands of the core package (argument parsing in ``cli``) and the restoration scorer
that serves both nnU-Net versions.
"""
