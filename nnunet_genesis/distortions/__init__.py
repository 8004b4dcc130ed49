"""The Models Genesis restoration transforms, as batchgenerators transforms for nnU-Net.

Models Genesis (Zhou et al., MICCAI 2019 / MedIA 2021) pretrains a network to restore an
original patch from a distorted copy of it. Per sample, the published pipeline applies

1. a paired flip of input and target (up to 3 rounds, each with probability 0.4, random axis);
2. local pixel shuffling (probability 0.5): 10,000 windows of side 1 ... dim/10, voxels
   permuted inside each window;
3. a non-linear intensity map (probability 0.9): a monotone cubic Bézier curve, increasing
   or (half of the time) decreasing;
4. painting (probability 0.9): in-painting (20 %) or out-painting (80 %) with noise.

Each idea is a small pure function (``functions``; tests call them), wrapped in a transform usable on
its own (``transforms``); :class:`GenesisTransform` (``composite``) composes them and turns ``data`` into
``data`` = distorted, ``target`` = original.

Deliberate differences from the published code:

* **Intensities.** The published code assumes intensities in [0, 1]. nnU-Net feeds z-scored
  data (CT clipped to foreground percentiles, MRI z-scored per image), so every step works in
  each channel's own range [min, max] (see :func:`intensity_range`): the Bézier map sends it
  onto itself and the painting noise is uniform on it.
* **Channels.** The published shuffling copies channel 0's shuffled window into every channel
  and one Bézier curve serves all channels. Here each channel draws its own windows, curve and
  paint, so multi-modal patches (e.g. 4 MRI channels) are distorted independently.
* **Speed.** The per-voxel loops are compiled with numba (:mod:`nnunet_genesis.distortions.kernels`):
  shuffling visits windows in cache-friendly order while keeping the published rule that the
  last window drawn wins (:func:`shuffle_windows`), the Bézier map is a table lookup
  (:func:`apply_lookup_table`), noise uses 16 random bits per voxel (:func:`fill_uniform`), and
  :class:`GenesisTransform` skips work that out-painting would overwrite.
* **Randomness.** Each transform owns a ``numpy.random.Generator`` (from a seed, a Generator,
  or OS entropy), re-derived in every process so that batchgenerators' worker processes never
  repeat each other (see :class:`GenesisRandomTransform`).

The package's modules:

* ``functions``: each distortion as small pure functions (numpy in, numpy out; their per-voxel loops are
  compiled with numba in ``kernels``);
* ``random_state``: the per-process random Generator every transform owns (batchgenerators' workers never
  repeat each other);
* ``transforms``: one batchgenerators transform per distortion (paired flip, local shuffling, non-linear
  intensity map, in-painting, out-painting);
* ``composite``: ``GenesisTransform``, the published composition of them, with its mix (``PUBLISHED_P_INPAINT``)
  and what counts as inside the image (``inside_image``).
"""
from nnunet_genesis.distortions.composite import PUBLISHED_P_INPAINT, GenesisTransform, inside_image
from nnunet_genesis.distortions.functions import (Box, apply_lookup_table, bezier_curve, bezier_lookup_table,
                                                  boxes_mask, draw_flip_axes, fill_uniform, intensity_range,
                                                  paint_outside, sample_bezier_control_points, sample_inpainting_boxes,
                                                  sample_outpainting_windows, sample_shuffle_windows, shuffle_windows,
                                                  windows_touching)
from nnunet_genesis.distortions.random_state import GenesisRandomTransform, SeedLike
from nnunet_genesis.distortions.transforms import (InPaintingTransform, LocalPixelShuffleTransform,
                                                   NonLinearIntensityTransform, OutPaintingTransform,
                                                   PairedFlipTransform)

__all__ = [
    "Box", "SeedLike", "intensity_range", "draw_flip_axes", "sample_shuffle_windows", "shuffle_windows",
    "windows_touching", "sample_bezier_control_points", "bezier_curve", "bezier_lookup_table", "apply_lookup_table",
    "sample_inpainting_boxes", "sample_outpainting_windows", "boxes_mask", "fill_uniform", "paint_outside",
    "GenesisRandomTransform", "PairedFlipTransform", "LocalPixelShuffleTransform", "NonLinearIntensityTransform",
    "InPaintingTransform", "OutPaintingTransform", "GenesisTransform", "inside_image", "PUBLISHED_P_INPAINT",
]
