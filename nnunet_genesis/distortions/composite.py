"""The composite Models Genesis distortion (``GenesisTransform``): paired flip, then per channel shuffling, the intensity map and painting, with its mix.
"""
from typing import Mapping, Optional

import numpy as np

from nnunet_genesis.distortions.functions import apply_lookup_table, intensity_range
from nnunet_genesis.distortions.random_state import GenesisRandomTransform, SeedLike
from nnunet_genesis.distortions.transforms import (InPaintingTransform, LocalPixelShuffleTransform,
                                                   NonLinearIntensityTransform, OutPaintingTransform,
                                                   PairedFlipTransform)


def inside_image(seg: np.ndarray) -> np.ndarray:
    """Where nnU-Net's segmentation says a voxel is inside the image: ``seg >= 0``. Its data loaders pad
    ``seg`` with -1 (v1 ``DataLoader3D``, v2 ``nnUNetDataLoader``), its spatial augmentation fills with -1
    (v1 ``border_cval_seg=-1`` here, v2's stock ``padding_value_seg=-1``), and its cropping marks the
    outside of the nonzero region -1 (``nnunet/preprocessing/cropping.py``; the pretraining tasks of
    ``nnunet_genesis.nnunet_v1.prepare`` and ``nnunet_v2.prepare`` keep that channel)."""
    return np.asarray(seg) >= 0


# Models Genesis: of the painted patches, 20 % in-painted and 80 % out-painted
PUBLISHED_P_INPAINT = 0.2


class GenesisTransform(GenesisRandomTransform):
    """The Models Genesis distortion: ``data`` (B, C, Z, Y, X) in; ``data`` = distorted and
    ``target`` = original (after the paired flip) out.

    Per sample, as published: paired flip (up to 3 rounds of p 0.4); then, per channel, local pixel
    shuffling (p 0.5); the non-linear intensity map (p 0.9); painting (p ``p_paint`` = 0.9):
    in-painting with probability ``p_inpaint`` = 0.2, else out-painting. Each channel draws its
    own decisions and parameters; every step works in the range [min, max] of the original
    channel. Configure a step by passing its transform, e.g.
    ``GenesisTransform(shuffle=LocalPixelShuffleTransform(p_per_channel=0.3))``: its
    probability and sizes are used, its keys and seed are not (this transform's Generator drives
    every step), and painting uses ``p_paint`` / ``p_inpaint`` rather than the painters'
    ``p_per_channel``.

    Work that out-painting would overwrite is skipped: only shuffling windows that touch a kept
    window are shuffled, and the intensity map is applied to the kept windows only. The output
    has the same distribution as doing every step on the whole channel.

    The input array is not modified. ``target_key`` (default 'target') is overwritten with the
    original; when no sample of the batch is flipped (and no voxel is outside the image), that is
    the input array itself, not a copy. A ``seg`` key is left alone, so it is not flipped. The
    output has the input's dtype.

    ``inside_key`` (pretraining sets ``"seg"``): the batch's nnU-Net segmentation, whose first
    channel is negative outside the image (see :func:`inside_image`). Where it is, the target is
    NaN (after the same flips), so that the restoration loss and scores leave those voxels out
    (``nnunet_genesis.pretraining.loss.RestorationLoss``): padding of cases smaller than the patch is
    a constant a network can lower the MSE with by painting it, not anatomy to restore.
    """

    def __init__(self, flip: Optional[PairedFlipTransform] = None,
                 shuffle: Optional[LocalPixelShuffleTransform] = None,
                 nonlinear: Optional[NonLinearIntensityTransform] = None,
                 inpaint: Optional[InPaintingTransform] = None,
                 outpaint: Optional[OutPaintingTransform] = None,
                 p_paint: float = 0.9, p_inpaint: float = PUBLISHED_P_INPAINT,
                 data_key: str = "data", target_key: str = "target", seed: SeedLike = None,
                 inside_key: Optional[str] = None):
        super().__init__(seed, data_key)
        self.inside_key = inside_key
        self.flip = flip if flip is not None else PairedFlipTransform()
        self.shuffle = shuffle if shuffle is not None else LocalPixelShuffleTransform()
        self.nonlinear = nonlinear if nonlinear is not None else NonLinearIntensityTransform()
        self.inpaint = inpaint if inpaint is not None else InPaintingTransform()
        self.outpaint = outpaint if outpaint is not None else OutPaintingTransform()
        self.p_paint = p_paint
        self.p_inpaint = p_inpaint
        self.target_key = target_key

    def __call__(self, **data_dict):
        data = self._patch_batch(data_dict)
        rng = self.rng
        flips = [tuple(a + 1 for a in self.flip.draw_axes(rng)) for _ in range(data.shape[0])]
        if any(flips) or not data.flags.c_contiguous:
            target = np.empty_like(data, order="C")
            for b, axes in enumerate(flips):
                target[b] = np.flip(data[b], axes) if axes else data[b]
        else:
            target = data
        distorted = target.copy()
        for b in range(data.shape[0]):
            for c in range(data.shape[1]):
                self._distort_channel(distorted[b, c], target[b, c], rng)
        data_dict[self.data_key] = distorted
        data_dict[self.target_key] = self._outside_as_nan(target, data_dict, flips, data)
        return data_dict

    def _outside_as_nan(self, target: np.ndarray, data_dict: Mapping, flips, data: np.ndarray) -> np.ndarray:
        """``target`` with NaN wherever ``data_dict[inside_key]`` (flipped as ``target`` was) is outside
        the image; ``target`` itself when there is no such voxel (or no ``inside_key``)."""
        seg = data_dict.get(self.inside_key) if self.inside_key else None
        if seg is None:
            return target
        seg = np.asarray(seg)
        if seg.shape[0] != data.shape[0] or seg.shape[2:] != data.shape[2:]:
            raise ValueError("GenesisTransform: data_dict[%r] has shape %s, data %s: they must share batch and "
                             "spatial sizes" % (self.inside_key, seg.shape, data.shape))
        outside = ~inside_image(seg[:, :1])
        if not outside.any():
            return target
        target = target.copy() if target is data else target
        for b, axes in enumerate(flips):
            target[b][np.broadcast_to(np.flip(outside[b], axes) if axes else outside[b], target[b].shape)] = np.nan
        return target

    def _distort_channel(self, channel: np.ndarray, original: np.ndarray, rng: np.random.Generator) -> None:
        """Distort ``channel`` (a copy of ``original``) in place."""
        value_range = intensity_range(original)
        shuffle = rng.random() < self.shuffle.p_per_channel
        table = self.nonlinear.sample_table(rng) if rng.random() < self.nonlinear.p_per_channel else None
        painter = None
        if rng.random() < self.p_paint:
            painter = self.inpaint if rng.random() < self.p_inpaint else self.outpaint
        kept = self.outpaint.sample_windows(channel.shape, rng) if painter is self.outpaint else None
        if shuffle:
            self.shuffle.distort_channel(channel, rng, source=original, only_touching=kept)
        if painter is self.outpaint:
            self.outpaint.distort_channel(channel, rng, value_range, windows=kept, kept_table=table)
            return
        if table is not None:
            apply_lookup_table(channel, table, *value_range)
        if painter is self.inpaint:
            self.inpaint.distort_channel(channel, rng, value_range)
