"""Models Genesis pretraining inside nnU-Net, as plain functions and hook bodies the pretraining trainers
(v1 and v2) call; nothing here imports nnU-Net.

What a training batch goes through (v1: ``nnunet_v1/augmentation.py``; v2: ``nnunet_v2/trainers/pretrain.py``):
    nnU-Net's DataLoader3D (the target task's patch size, its preprocessed data)
    -> nnU-Net's SpatialTransform with the trainer's own augmentation parameters (rotation,
       scaling, elastic deformation, dummy-2D handling for anisotropic patches)
    -> GenesisTransform: ``data`` = distorted patch, ``target`` = original patch
    -> tensors.
nnU-Net's intensity augmentations (noise, blur, gamma, brightness, contrast, low resolution) are
left out on purpose: the network learns to undo the Genesis distortions, and extra intensity
changes applied to both input and target would only change what "original" means.

Loss and output (``loss.RestorationLoss``): mean squared error between the full-resolution output and
the original patch. Two deliberate departures from the published Models Genesis code:
  * no sigmoid: nnU-Net feeds z-scored intensities (negative, unbounded), which a sigmoid cannot
    produce; the output is linear, as nnU-Net's own network output is before its softmax;
  * no deep supervision: the network is nnU-Net's Generic_UNet with its deep-supervision heads, but
    only the full-resolution head is scored (the published model has a single output, and the
    low-resolution heads are never transferred to the segmentation network anyway).

Modules: recipes, loss and output form, validation patches and their
per-distortion scores, the diagnostics schedule, previews, and the hook bodies both trainer families call.
"""
