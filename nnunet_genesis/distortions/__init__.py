"""The Models Genesis distortions (no nnU-Net), the public names of its four modules:

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
from nnunet_genesis.distortions.functions import (Box, SeedLike, apply_lookup_table, bezier_curve, bezier_lookup_table,
                                                  boxes_mask, draw_flip_axes, fill_uniform, intensity_range,
                                                  paint_outside, sample_bezier_control_points, sample_inpainting_boxes,
                                                  sample_outpainting_windows, sample_shuffle_windows, shuffle_windows,
                                                  windows_touching)
from nnunet_genesis.distortions.random_state import GenesisRandomTransform
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
