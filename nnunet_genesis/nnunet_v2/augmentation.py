"""The Models Genesis distortions as a batchgeneratorsv2 transform, for nnU-Net v2's data loader.

nnU-Net v2 (``nnunetv2/training/dataloading/data_loader.py``, ``nnUNetDataLoader.generate_train_batch``)
runs its transforms on one sample at a time: ``data_dict['image']`` is a float torch tensor (C, X, Y, Z)
and ``data_dict['segmentation']`` the label patch; the loader then stacks ``image`` into
``batch['data']`` and ``segmentation`` into ``batch['target']``.
:class:`GenesisRestorationTransform` hands the sample to :class:`nnunet_genesis.distortions.composite.GenesisTransform`
(all the logic: flip, shuffling, intensity map, painting) as a batch of one and writes back
``image`` = the distorted patch, ``segmentation`` = the original (undistorted, after the same paired
flip) patch, float32, so the restoration target reaches the trainer as ``batch['target']``. When the
GenesisTransform has an ``inside_key``, the incoming ``segmentation`` (-1 outside the image) marks the
target NaN there (left out of the loss).
"""
import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform


class GenesisRestorationTransform(BasicTransform):
    """``image`` -> distorted copy, ``segmentation`` -> original image (the label patch is dropped).

    ``genesis``: a :class:`nnunet_genesis.distortions.composite.GenesisTransform` (its seed handling keeps the
    data-augmentation worker processes from repeating each other). 3D patches only: the painting
    boxes and shuffling windows of Models Genesis are defined on volumes.
    """

    def __init__(self, genesis):
        super().__init__()
        self.genesis = genesis

    def __call__(self, **data_dict) -> dict:
        image = data_dict["image"]
        array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
        if array.ndim != 4:
            raise ValueError("GenesisRestorationTransform: Models Genesis pretraining needs 3D patches "
                             "(C, X, Y, Z); got an image of shape %s (a 2d configuration?)" % (tuple(array.shape),))
        batch = {"data": np.ascontiguousarray(array, dtype=np.float32)[None]}
        if getattr(self.genesis, "inside_key", None) and data_dict.get("segmentation") is not None:
            segmentation = data_dict["segmentation"]  # -1 outside the image (nnUNetDataLoader, SpatialTransform)
            batch[self.genesis.inside_key] = np.asarray(
                segmentation.detach().cpu().numpy() if isinstance(segmentation, torch.Tensor) else segmentation)[None]
        out = self.genesis(**batch)
        data_dict["image"] = torch.from_numpy(np.ascontiguousarray(out["data"][0]))
        data_dict["segmentation"] = torch.from_numpy(np.array(out["target"][0], dtype=np.float32, copy=True))
        return data_dict

    def __repr__(self):
        return "%s(%r)" % (type(self).__name__, self.genesis)
