"""Each Models Genesis distortion as a batchgenerators transform (thin classes over ``functions``).
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np

from nnunet_genesis.distortions.functions import (Box, apply_lookup_table, bezier_lookup_table,
                                                  draw_flip_axes, fill_uniform, intensity_range, paint_outside,
                                                  sample_bezier_control_points, sample_inpainting_boxes,
                                                  sample_outpainting_windows, sample_shuffle_windows,
                                                  shuffle_windows, windows_touching)
from nnunet_genesis.distortions.random_state import GenesisRandomTransform, SeedLike


class PairedFlipTransform(GenesisRandomTransform):
    """Paired flip: per sample, the same random flips of ``data`` and ``target`` (if present).

    Published: up to ``max_rounds`` = 3 rounds, each happening with probability
    ``p_per_round`` = 0.4 (the first round that does not happen ends them), each flipping a
    random spatial axis (see :func:`draw_flip_axes`). Modifies the arrays in place.
    """

    def __init__(self, p_per_round: float = 0.4, max_rounds: int = 3, data_key: str = "data",
                 target_key: str = "target", seed: SeedLike = None):
        super().__init__(seed, data_key)
        self.p_per_round = p_per_round
        self.max_rounds = max_rounds
        self.target_key = target_key

    def draw_axes(self, rng: np.random.Generator) -> Tuple[int, ...]:
        """Spatial axes (0 = Z) to flip for one sample."""
        return draw_flip_axes(rng, self.p_per_round, self.max_rounds)

    def __call__(self, **data_dict):
        data = self._patch_batch(data_dict)
        target = data_dict.get(self.target_key)
        arrays = [data] if target is None or target is data else [data, target]
        for b in range(data.shape[0]):
            axes = tuple(a + 1 for a in self.draw_axes(self.rng))  # + 1: past the channel axis
            if axes:
                for array in arrays:
                    array[b] = np.flip(array[b], axes)  # numpy copies first, as the two overlap
        return data_dict


class _ChannelTransform(GenesisRandomTransform):
    """Distorts each channel of each sample independently, with probability ``p_per_channel``,
    in place."""

    def __init__(self, p_per_channel: float, data_key: str = "data", seed: SeedLike = None):
        super().__init__(seed, data_key)
        self.p_per_channel = p_per_channel

    def distort_channel(self, channel: np.ndarray, rng: np.random.Generator):
        """Distort one C-contiguous (Z, Y, X) channel in place."""
        raise NotImplementedError

    def __call__(self, **data_dict):
        data = self._patch_batch(data_dict)
        if not data.flags.c_contiguous:
            data = data_dict[self.data_key] = np.ascontiguousarray(data)
        rng = self.rng
        for b in range(data.shape[0]):
            for c in range(data.shape[1]):
                if rng.random() < self.p_per_channel:
                    self.distort_channel(data[b, c], rng)
        return data_dict


class LocalPixelShuffleTransform(_ChannelTransform):
    """Local pixel shuffling: in each channel, ``n_windows`` windows with each side uniform in
    1 ... dim * ``max_side_fraction``, voxels permuted inside each window (see
    :func:`shuffle_windows`). Published: probability 0.5, 10,000 windows, sides 1 ... dim/10. The
    published code copies channel 0's shuffled window into every channel; here each channel
    shuffles its own voxels in its own windows."""

    def __init__(self, p_per_channel: float = 0.5, n_windows: int = 10_000, max_side_fraction: float = 0.1,
                 data_key: str = "data", seed: SeedLike = None):
        super().__init__(p_per_channel, data_key, seed)
        self.n_windows = n_windows
        self.max_side_fraction = max_side_fraction

    def distort_channel(self, channel: np.ndarray, rng: np.random.Generator, source: Optional[np.ndarray] = None,
                        only_touching: Optional[Sequence[Box]] = None) -> Tuple[np.ndarray, np.ndarray]:
        """Shuffle ``channel`` in place, reading the windows from ``source`` (default: a copy of
        ``channel``). With ``only_touching`` (boxes), windows that touch none of the boxes are
        left out: they would change nothing inside them. Returns the windows shuffled
        (origins, sizes)."""
        origins, sizes = sample_shuffle_windows(channel.shape, rng, self.n_windows, self.max_side_fraction)
        if only_touching is not None:
            keep = windows_touching(origins, sizes, only_touching)
            origins, sizes = origins[keep], sizes[keep]
        shuffle_windows(channel.copy() if source is None else source, channel, origins, sizes, rng)
        return origins, sizes


class NonLinearIntensityTransform(_ChannelTransform):
    """Non-linear intensity map: each channel's range [min, max] is mapped onto itself by a
    monotone cubic Bézier curve with two random inner control points (see
    :func:`bezier_lookup_table`), decreasing with probability ``p_decreasing``. Published:
    probability 0.9, decreasing half of the time, intensities assumed in [0, 1]; here each
    channel's own range (see :func:`intensity_range`)."""

    def __init__(self, p_per_channel: float = 0.9, p_decreasing: float = 0.5, data_key: str = "data",
                 seed: SeedLike = None):
        super().__init__(p_per_channel, data_key, seed)
        self.p_decreasing = p_decreasing

    def sample_table(self, rng: np.random.Generator) -> np.ndarray:
        """A random map of [0, 1] onto itself, as a lookup table (see :func:`apply_lookup_table`)."""
        inner_points = sample_bezier_control_points(rng)
        return bezier_lookup_table(inner_points, decreasing=bool(rng.random() < self.p_decreasing))

    def distort_channel(self, channel: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Map ``channel`` in place. Returns the lookup table used."""
        table = self.sample_table(rng)
        apply_lookup_table(channel, table, *intensity_range(channel))
        return table


class _PaintingTransform(_ChannelTransform):
    """What the two painters share: boxes drawn one after another while a coin of probability
    ``p_continue`` says so, at least ``margin`` voxels from the border."""

    def __init__(self, p_per_channel: float, p_continue: float, margin: int, data_key: str, seed: SeedLike):
        super().__init__(p_per_channel, data_key, seed)
        self.p_continue = p_continue
        self.margin = margin


class InPaintingTransform(_PaintingTransform):
    """In-painting: up to ``max_boxes`` = 5 boxes (each after a coin with probability
    ``p_continue`` = 0.95), each side in dim/6 ... dim/3, at least ``margin`` = 3 voxels from the
    border, filled with noise uniform on the channel's range (see
    :func:`sample_inpainting_boxes`). Published: reached with probability 0.9 * 0.2 in the
    pipeline (see :class:`GenesisTransform`), noise in [0, 1). Standing alone it applies with
    probability ``p_per_channel`` (default 1)."""

    def __init__(self, p_per_channel: float = 1.0, max_boxes: int = 5, p_continue: float = 0.95,
                 side_fraction: Tuple[float, float] = (1 / 6, 1 / 3), margin: int = 3,
                 data_key: str = "data", seed: SeedLike = None):
        super().__init__(p_per_channel, p_continue, margin, data_key, seed)
        self.max_boxes = max_boxes
        self.side_fraction = side_fraction

    def sample_boxes(self, shape: Sequence[int], rng: np.random.Generator) -> List[Box]:
        """The boxes to fill, for a channel of ``shape``."""
        return sample_inpainting_boxes(shape, rng, self.max_boxes, self.p_continue, self.side_fraction, self.margin)

    def distort_channel(self, channel: np.ndarray, rng: np.random.Generator,
                        value_range: Optional[Tuple[float, float]] = None) -> List[Box]:
        """Paint ``channel`` in place, with noise on ``value_range`` (default: the channel's
        range). Returns the boxes filled with noise."""
        lo, hi = value_range or intensity_range(channel)
        boxes = self.sample_boxes(channel.shape, rng)
        for box in boxes:
            fill_uniform(channel[box], lo, hi, rng)
        return boxes


class OutPaintingTransform(_PaintingTransform):
    """Out-painting: the channel is filled with noise uniform on its range, except inside 1 to
    ``max_windows`` = 5 windows (each after the first with probability ``p_continue`` = 0.95)
    that keep the original, each side dim - (3/7 ... 4/7) dim, at least ``margin`` = 3 voxels
    from the border (see :func:`sample_outpainting_windows`). Published: reached with
    probability 0.9 * 0.8 in the pipeline (see :class:`GenesisTransform`), noise in [0, 1).
    Standing alone it applies with probability ``p_per_channel`` (default 1)."""

    def __init__(self, p_per_channel: float = 1.0, max_windows: int = 5, p_continue: float = 0.95,
                 shrink_fraction: Tuple[float, float] = (3 / 7, 4 / 7), margin: int = 3,
                 data_key: str = "data", seed: SeedLike = None):
        super().__init__(p_per_channel, p_continue, margin, data_key, seed)
        self.max_windows = max_windows
        self.shrink_fraction = shrink_fraction

    def sample_windows(self, shape: Sequence[int], rng: np.random.Generator) -> List[Box]:
        """The windows to keep, for a channel of ``shape``."""
        return sample_outpainting_windows(shape, rng, self.max_windows, self.p_continue,
                                          self.shrink_fraction, self.margin)

    def distort_channel(self, channel: np.ndarray, rng: np.random.Generator,
                        value_range: Optional[Tuple[float, float]] = None,
                        windows: Optional[Sequence[Box]] = None, kept_table: Optional[np.ndarray] = None) -> List[Box]:
        """Paint ``channel`` in place, with noise on ``value_range`` (default: the channel's
        range), keeping ``windows`` (default: drawn here). With ``kept_table``, the kept windows
        also go through that intensity map (see :func:`apply_lookup_table`; used by
        :class:`GenesisTransform` to map only the voxels that survive). Returns the windows kept."""
        lo, hi = value_range or intensity_range(channel)
        if windows is None:
            windows = self.sample_windows(channel.shape, rng)
        paint_outside(channel, windows, lo, hi, rng, table=kept_table)
        return list(windows)
