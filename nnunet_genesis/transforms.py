"""The Models Genesis restoration transforms, as batchgenerators transforms for nnU-Net.

Models Genesis (Zhou et al., MICCAI 2019 / MedIA 2021) pretrains a network to restore an
original patch from a distorted copy of it. Per sample, the published pipeline applies

1. a paired flip of input and target (up to 3 rounds, each with probability 0.4, random axis);
2. local pixel shuffling (probability 0.5): 10,000 windows of side 1 ... dim/10, voxels
   permuted inside each window;
3. a non-linear intensity map (probability 0.9): a monotone cubic Bézier curve, increasing
   or (half of the time) decreasing;
4. painting (probability 0.9): in-painting (20 %) or out-painting (80 %) with noise.

Each idea is a small pure function here (tests call them), wrapped in a transform usable on
its own; :class:`GenesisTransform` composes them and turns ``data`` into ``data`` = distorted,
``target`` = original.

Deliberate differences from the published code:

* **Intensities.** The published code assumes intensities in [0, 1]. nnU-Net feeds z-scored
  data (CT clipped to foreground percentiles, MRI z-scored per image), so every step works in
  each channel's own range [min, max] (see :func:`intensity_range`): the Bézier map sends it
  onto itself and the painting noise is uniform on it.
* **Channels.** The published shuffling copies channel 0's shuffled window into every channel
  and one Bézier curve serves all channels. Here each channel draws its own windows, curve and
  paint, so multi-modal patches (e.g. 4 MRI channels) are distorted independently.
* **Speed.** The per-voxel loops are compiled with numba (:mod:`nnunet_genesis.transform_kernels`):
  shuffling visits windows in cache-friendly order while keeping the published rule that the
  last window drawn wins (:func:`shuffle_windows`), the Bézier map is a table lookup
  (:func:`apply_lookup_table`), noise uses 16 random bits per voxel (:func:`fill_uniform`), and
  :class:`GenesisTransform` skips work that out-painting would overwrite.
* **Randomness.** Each transform owns a ``numpy.random.Generator`` (from a seed, a Generator,
  or OS entropy), re-derived in every process so that batchgenerators' worker processes never
  repeat each other (see :class:`GenesisRandomTransform`).
"""
import os
from typing import List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from batchgenerators.transforms.abstract_transforms import AbstractTransform

from nnunet_genesis.transform_kernels import (fill_uniform_kernel, lookup_kernel, outpaint_kernel,
                                              shuffle_windows_kernel)

Box = Tuple[slice, slice, slice]
SeedLike = Union[None, int, np.random.SeedSequence, np.random.Generator]

__all__ = [
    "Box", "intensity_range", "draw_flip_axes", "sample_shuffle_windows", "shuffle_windows", "windows_touching",
    "sample_bezier_control_points", "bezier_curve", "bezier_lookup_table", "apply_lookup_table",
    "sample_inpainting_boxes", "sample_outpainting_windows", "boxes_mask", "fill_uniform", "paint_outside",
    "GenesisRandomTransform",
    "PairedFlipTransform", "LocalPixelShuffleTransform", "NonLinearIntensityTransform",
    "InPaintingTransform", "OutPaintingTransform", "GenesisTransform", "inside_image",
]


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

def _floor_fraction(dim: int, fraction: float) -> int:
    """floor(dim * fraction), immune to float error: in floats 7 * (3/7) is 2.9999999999999996,
    where the published code's integer division 3 * 7 // 7 gives 3."""
    return int(np.floor(dim * fraction + 1e-9))


def _kernel_seed(rng: np.random.Generator) -> np.uint64:
    """64 random bits from ``rng`` to seed a compiled kernel's own generator (see
    :mod:`nnunet_genesis.transform_kernels`)."""
    return np.uint64(rng.bit_generator.random_raw())


# --------------------------------------------------------------------------------------------
# Pure functions, one idea each
# --------------------------------------------------------------------------------------------

def intensity_range(channel: np.ndarray) -> Tuple[float, float]:
    """The range [lo, hi] the intensity map and the painting noise work in: the channel's own
    minimum and maximum.

    Why min/max rather than robust percentiles (e.g. 0.5 / 99.5): nnU-Net has already made the
    range robust for CT (clipped to the 0.5 / 99.5 foreground percentiles before z-scoring); a
    map of [min, max] onto itself clips nothing, so the distorted patch is a bijection of the
    original, up to table resolution, and no voxel is flattened to an end value (the published
    z-score variant clamps the 0.1 % tails); and min/max costs one pass where a percentile costs
    a partial sort (~25 ms on 128^3). An MRI channel with a few bright outliers gets a map that
    is gentler on the bulk of its intensities; that is the price.
    """
    return float(channel.min()), float(channel.max())


def draw_flip_axes(rng: np.random.Generator, p_per_round: float = 0.4, max_rounds: int = 3,
                   n_spatial_axes: int = 3) -> Tuple[int, ...]:
    """Spatial axes to flip, drawn as published: while a coin with probability ``p_per_round``
    comes up (at most ``max_rounds`` times), pick a random axis. An axis picked twice is flipped
    back, so only the axes picked an odd number of times are returned (sorted; 0 = Z)."""
    picked = np.zeros(n_spatial_axes, dtype=int)
    for _ in range(max_rounds):
        if rng.random() >= p_per_round:
            break
        picked[rng.integers(n_spatial_axes)] += 1
    return tuple(int(a) for a in np.flatnonzero(picked % 2))


def sample_shuffle_windows(shape: Sequence[int], rng: np.random.Generator, n_windows: int = 10_000,
                           max_side_fraction: float = 0.1) -> Tuple[np.ndarray, np.ndarray]:
    """Windows for local pixel shuffling, as published: each side uniform in
    1 ... max(1, floor(dim * max_side_fraction)) (published: ``randint(1, dim // 10)``), each
    window uniformly placed inside the patch. Returns ``origins`` and ``sizes``, both
    (n_windows, 3) int64 in (Z, Y, X) order.

    Integers uniform on 0 ... m-1 are drawn as floor(m * u), u a uniform double: unbiased up to
    m / 2^53, and twice as fast as ``rng.integers`` with one bound per window."""
    max_side = np.array([max(1, _floor_fraction(dim, max_side_fraction)) for dim in shape], dtype=np.int64)
    sizes = (rng.random((n_windows, 3)) * max_side).astype(np.int64) + 1
    origins = (rng.random((n_windows, 3)) * (np.asarray(shape, dtype=np.int64) - sizes + 1)).astype(np.int64)
    return origins, sizes


def shuffle_windows(source: np.ndarray, out: np.ndarray, origins: np.ndarray, sizes: np.ndarray,
                    rng: np.random.Generator) -> None:
    """Local pixel shuffling, as published: write into ``out`` each window of ``source`` with its
    voxels uniformly permuted. ``source`` and ``out`` are 3-D, C-contiguous, of the same shape,
    and do not share memory; voxels in no window keep what ``out`` holds.

    Every window is read from the unshuffled ``source``; where windows overlap, the one drawn
    last (the larger index in ``origins`` / ``sizes``) wins, exactly as in the published loop.
    The loop itself is compiled (:func:`~nnunet_genesis.transform_kernels.shuffle_windows_kernel`)
    and visits the windows sorted by position, which keeps the memory it touches in cache; a
    half-patch-sized integer array records which window owns each voxel.
    """
    if source.shape != out.shape or source.ndim != 3 or np.shares_memory(source, out):
        raise ValueError("shuffle_windows: source and out must be 3-D arrays of the same shape that do not "
                         "share memory; got %s and %s" % (source.shape, out.shape))
    if not (source.flags.c_contiguous and out.flags.c_contiguous) or source.dtype != out.dtype:
        raise ValueError("shuffle_windows: source and out must be C-contiguous and of one dtype")
    origins = np.ascontiguousarray(origins, dtype=np.int64)
    sizes = np.ascontiguousarray(sizes, dtype=np.int64)
    if len(sizes) == 0:
        return
    if np.any(sizes < 1) or np.any(origins < 0) or np.any(origins + sizes > np.asarray(source.shape)):
        raise ValueError("shuffle_windows: every window must lie inside the %s array" % (source.shape,))
    owner = np.zeros(source.shape, dtype=np.uint16 if len(sizes) < 2 ** 16 else np.uint32)
    # by position, Z in blocks of 4 then Y: 15-25 % faster than by Z alone or in the drawn order;
    # small integer keys, because numpy radix-sorts those (10x faster than int64 keys)
    position = (origins[:, 0] // 4) * source.shape[1] + origins[:, 1]
    order = np.argsort(position.astype(np.min_scalar_type(int(position.max()))), kind="stable")
    shuffle_windows_kernel(source, out, origins, sizes, order, owner, _kernel_seed(rng))


def windows_touching(origins: np.ndarray, sizes: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
    """Boolean mask over windows (``origins``, ``sizes`` as from :func:`sample_shuffle_windows`):
    True where the window shares at least one voxel with one of ``boxes``."""
    touching = np.zeros(len(sizes), dtype=bool)
    ends = origins + sizes
    for box in boxes:  # one axis at a time on whole columns: 6x faster than one (boxes, windows, 3) test
        overlap = (origins[:, 0] < box[0].stop) & (ends[:, 0] > box[0].start)
        for axis in (1, 2):
            overlap &= (origins[:, axis] < box[axis].stop) & (ends[:, axis] > box[axis].start)
        touching |= overlap
    return touching


def sample_bezier_control_points(rng: np.random.Generator) -> np.ndarray:
    """The published curve's two inner control points, uniform in the unit square (the end
    points are fixed at (0, 0) and (1, 1)). Returns [[x1, y1], [x2, y2]]."""
    return rng.random((2, 2))


def bezier_curve(inner_points: np.ndarray, n_samples: int) -> Tuple[np.ndarray, np.ndarray]:
    """The cubic Bézier curve through (0, 0), ``inner_points``, (1, 1) at ``n_samples`` uniform
    parameters t in [0, 1], in Bernstein form B(t) = sum_i C(3, i) (1 - t)^(3-i) t^i P_i.
    Returns (x(t), y(t)).

    With inner points in the unit square, x(t) and y(t) never decrease: for inner coordinates
    a, b the derivative 3[a(1-t)^2 + 2(b-a)(1-t)t + (1-b)t^2] is >= 0, since
    a + (1-b) - 1 <= a(1-b) <= sqrt(a(1-b)). So the curve is the graph of a monotone map.
    """
    t = np.linspace(0.0, 1.0, n_samples)
    s = 1.0 - t
    basis = np.stack([s ** 3, 3 * s ** 2 * t, 3 * s * t ** 2, t ** 3])
    points = np.vstack([[0.0, 0.0], inner_points, [1.0, 1.0]])
    x, y = points.T @ basis
    return x, y


def bezier_lookup_table(inner_points: np.ndarray, decreasing: bool = False, n_knots: int = 16385,
                        n_curve_samples: int = 4097) -> np.ndarray:
    """The published non-linear intensity map of [0, 1] onto itself, tabulated at ``n_knots``
    equally spaced inputs (linear interpolation between ``n_curve_samples`` curve points).

    Increasing map: the curve read as y = f(x). Decreasing map (the published "flip"): the curve
    samples paired in opposite order, f(x(t)) = y(1 - t), so f(0) = 1 and f(1) = 0. The published
    code searches 100,000 curve points for every voxel (np.interp); a table on equally spaced
    inputs needs no search (see :func:`apply_lookup_table`).
    """
    x, y = bezier_curve(inner_points, n_curve_samples)
    return np.interp(np.linspace(0.0, 1.0, n_knots), x, y[::-1] if decreasing else y)


def _as_volume(array: np.ndarray, caller: str) -> np.ndarray:
    """``array`` as a 3-D view for the compiled kernels: a (1, 1, N) view of a C-contiguous array
    (one long innermost loop: 15 % faster), else the array itself if 3-D (any strides).
    Anything else is refused, since reshaping it would silently work on a copy."""
    if array.flags.c_contiguous:
        return array.reshape(1, 1, -1)
    if array.ndim != 3:
        raise ValueError("%s: the array must be 3-D or C-contiguous; got shape %s with strides %s"
                         % (caller, array.shape, array.strides))
    return array


def apply_lookup_table(channel: np.ndarray, table: np.ndarray, lo: float, hi: float) -> None:
    """In place: ``channel <- lo + (hi - lo) * table[k]`` with k the knot nearest to
    ``(channel - lo) / (hi - lo)`` on ``len(table)`` equally spaced points of [0, 1]; values
    outside [lo, hi] get the end values.

    With the default 16,385 knots the error is at most half a knot spacing (1/32768 of the
    range) times the map's slope: over 200 random published curves, 1.5e-5 of the range on
    average and 8e-5 at worst for the median curve (1e-3 to 3e-3 where a curve is nearly
    vertical) -- far below what the restoration loss can see. It costs one compiled pass
    (:func:`~nnunet_genesis.transform_kernels.lookup_kernel`) instead of a binary search in
    100,000 points per voxel. ``channel``: floating point, 3-D (any strides) or C-contiguous.
    """
    volume = _as_volume(channel, "apply_lookup_table")
    if hi <= lo:  # a constant channel: any map of [lo, lo] onto itself is the identity
        return
    lookup_kernel(volume, *_lookup_parameters(table, lo, hi, channel.dtype))


def _lookup_parameters(table: np.ndarray, lo: float, hi: float, dtype) -> Tuple[np.ndarray, float, float]:
    """(levels, scale, shift) for the compiled lookup: the table's values mapped onto [lo, hi] in
    ``dtype``, and the affine map from an intensity to its knot position, + 0.5 so that the
    kernel's floor rounds to the nearest knot."""
    levels = (lo + (hi - lo) * np.asarray(table, dtype=np.float64)).astype(dtype)
    scale = (len(table) - 1) / (hi - lo)
    return levels, scale, 0.5 - lo * scale


def _placement(dim: int, side: int, margin: int, rng: np.random.Generator) -> int:
    """Start of a window of ``side`` voxels along an axis of ``dim`` voxels, at least ``margin``
    voxels from both borders (published: ``randint(3, dim - side - 3)``); the margin shrinks
    where the axis is too short to keep it."""
    margin = min(margin, (dim - side) // 2)
    return int(rng.integers(margin, dim - side - margin + 1))


def _sample_boxes(shape: Sequence[int], rng: np.random.Generator, max_boxes: int, p_continue: float,
                  first_is_certain: bool, side_range, margin: int) -> List[Box]:
    """Boxes drawn one after another while a coin with probability ``p_continue`` comes up (the
    first without a coin if ``first_is_certain``), at most ``max_boxes``; each side uniform in
    ``side_range(dim)`` (inclusive), placed by :func:`_placement`."""
    boxes = []
    for n in range(max_boxes):
        if (n > 0 or not first_is_certain) and rng.random() >= p_continue:
            break
        box = []
        for dim in shape:
            low, high = side_range(dim)
            side = int(rng.integers(low, high + 1))
            start = _placement(dim, side, margin, rng)
            box.append(slice(start, start + side))
        boxes.append(tuple(box))
    return boxes


def sample_inpainting_boxes(shape: Sequence[int], rng: np.random.Generator, max_boxes: int = 5,
                            p_continue: float = 0.95,
                            side_fraction: Tuple[float, float] = (1 / 6, 1 / 3),
                            margin: int = 3) -> List[Box]:
    """Boxes to fill with noise, as published: while a coin with probability ``p_continue``
    comes up (at most ``max_boxes`` times, so possibly never), a box with each side uniform in
    dim/6 ... dim/3 (integer division, at least 1), at least ``margin`` voxels from the border."""
    def side_range(dim):
        return tuple(max(1, _floor_fraction(dim, f)) for f in side_fraction)
    return _sample_boxes(shape, rng, max_boxes, p_continue, False, side_range, margin)


def sample_outpainting_windows(shape: Sequence[int], rng: np.random.Generator, max_windows: int = 5,
                               p_continue: float = 0.95,
                               shrink_fraction: Tuple[float, float] = (3 / 7, 4 / 7),
                               margin: int = 3) -> List[Box]:
    """Windows of the original that out-painting keeps, as published: one window, then up to
    ``max_windows - 1`` more while a coin with probability ``p_continue`` comes up. Each side is
    dim - k with k uniform in 3*dim//7 ... 4*dim//7, at least ``margin`` voxels from the border."""
    def side_range(dim):
        shrink_low, shrink_high = (_floor_fraction(dim, f) for f in shrink_fraction)
        return max(1, dim - shrink_high), max(1, dim - shrink_low)
    return _sample_boxes(shape, rng, max_windows, p_continue, True, side_range, margin)


def boxes_mask(shape: Sequence[int], boxes: Sequence[Box]) -> np.ndarray:
    """Boolean array of ``shape``, True inside any of ``boxes``."""
    mask = np.zeros(shape, dtype=bool)
    for box in boxes:
        mask[box] = True
    return mask


def fill_uniform(view: np.ndarray, lo: float, hi: float, rng: np.random.Generator) -> None:
    """In place: fill ``view`` (3-D with any strides, or C-contiguous) with noise uniform on
    [lo, hi), on 65,536 evenly spaced levels (the published code draws float noise in [0, 1)).
    16 random bits per voxel are plenty for noise and cheap to make, which matters: out-painting
    fills ~70 % of a patch (:func:`~nnunet_genesis.transform_kernels.fill_uniform_kernel`)."""
    fill_uniform_kernel(_as_volume(view, "fill_uniform"), float(lo), (hi - lo) / 65536, _kernel_seed(rng))


def paint_outside(channel: np.ndarray, windows: Sequence[Box], lo: float, hi: float, rng: np.random.Generator,
                  table: Optional[np.ndarray] = None) -> None:
    """Out-painting, in place: every voxel of the 3-D ``channel`` outside all ``windows`` gets
    noise as from :func:`fill_uniform`; voxels inside keep their value or, with ``table``, go
    through that intensity map as in :func:`apply_lookup_table` (each once, however many
    windows cover it). One compiled pass (:func:`~nnunet_genesis.transform_kernels.outpaint_kernel`)
    instead of copying the windows out, filling everything and copying them back."""
    if channel.ndim != 3 or not channel.flags.c_contiguous:
        raise ValueError("paint_outside: channel must be a C-contiguous 3-D array, got shape %s with strides %s"
                         % (channel.shape, channel.strides))
    boxes = np.array([[bound for s, dim in zip(window, channel.shape) for bound in s.indices(dim)[:2]]
                      for window in windows], dtype=np.int64).reshape(-1, 6)  # rows: z0, z1, y0, y1, x0, x1
    if table is None or hi <= lo:
        levels, scale, shift = np.empty(0, dtype=channel.dtype), 0.0, 0.0
    else:
        levels, scale, shift = _lookup_parameters(table, lo, hi, channel.dtype)
    outpaint_kernel(channel, boxes, levels, scale, shift, float(lo), (hi - lo) / 65536, _kernel_seed(rng))


# --------------------------------------------------------------------------------------------
# Transforms
# --------------------------------------------------------------------------------------------

class GenesisRandomTransform(AbstractTransform):
    """Base of the Models Genesis transforms: a random Generator that is safe across processes.

    ``seed`` may be an int, a ``numpy.random.SeedSequence``, a ``numpy.random.Generator`` or None.
    In the process that built the transform, an int / SeedSequence seeds a fresh Generator (the
    same seed gives the same output) and a Generator is used as is. batchgenerators'
    MultiThreadedAugmenter gives each worker process a forked or pickled copy of the transform,
    which would repeat the parent's stream; so whenever ``os.getpid()`` differs from the process
    the Generator was made in, a new one is derived: from the seed, with the process id as spawn
    key (workers differ from each other and from the parent; not reproducible from run to run,
    as process ids are not), or from fresh OS entropy when ``seed`` is None.
    """

    def __init__(self, seed: SeedLike = None, data_key: str = "data"):
        if not (seed is None or isinstance(seed, (int, np.integer, np.random.SeedSequence, np.random.Generator))):
            raise TypeError("%s: seed must be None, an int, a SeedSequence or a Generator, got %r"
                            % (type(self).__name__, seed))
        self.seed = seed
        self.data_key = data_key
        self._home_pid = os.getpid()
        self._rng: Optional[np.random.Generator] = None
        self._rng_pid: Optional[int] = None

    @property
    def rng(self) -> np.random.Generator:
        """This process's Generator (made on first use; remade after a fork or unpickling)."""
        pid = os.getpid()
        if self._rng is None or self._rng_pid != pid:
            self._rng = self._generator_for_process(pid)
            self._rng_pid = pid
        return self._rng

    def _generator_for_process(self, pid: int) -> np.random.Generator:
        seed = self.seed
        if pid == self._home_pid:
            return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        if seed is None:
            return np.random.default_rng()
        if isinstance(seed, np.random.Generator):
            # this copy holds the parent's state at fork / pickle time, the same in every worker;
            # entropy read from it is shared, and the pid sets the workers apart
            seed = [int(v) for v in seed.integers(0, 2 ** 32, size=4)]
        if isinstance(seed, np.random.SeedSequence):
            return np.random.default_rng(np.random.SeedSequence(seed.entropy,
                                                                spawn_key=tuple(seed.spawn_key) + (pid,)))
        return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(pid,)))

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_rng"] = state["_rng_pid"] = None  # re-derived in the receiving process
        return state

    def __repr__(self):
        public = ", ".join("%s=%r" % (k, v) for k, v in self.__dict__.items() if not k.startswith("_"))
        return "%s(%s)" % (type(self).__name__, public)

    def _patch_batch(self, data_dict: Mapping) -> np.ndarray:
        """``data_dict[self.data_key]``, checked to be a floating-point (B, C, Z, Y, X) array."""
        if self.data_key not in data_dict:
            raise KeyError("%s: the data dict has no %r key (keys: %s)"
                           % (type(self).__name__, self.data_key, sorted(data_dict)))
        data = data_dict[self.data_key]
        if not isinstance(data, np.ndarray) or data.ndim != 5 or not np.issubdtype(data.dtype, np.floating):
            raise ValueError("%s: data_dict[%r] must be a floating-point numpy array of shape (B, C, Z, Y, X); got %s"
                             % (type(self).__name__, self.data_key,
                                "shape %s dtype %s" % (data.shape, data.dtype) if isinstance(data, np.ndarray)
                                else type(data).__name__))
        return data


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


class InPaintingTransform(_ChannelTransform):
    """In-painting: up to ``max_boxes`` = 5 boxes (each after a coin with probability
    ``p_continue`` = 0.95), each side in dim/6 ... dim/3, at least ``margin`` = 3 voxels from the
    border, filled with noise uniform on the channel's range (see
    :func:`sample_inpainting_boxes`). Published: reached with probability 0.9 * 0.2 in the
    pipeline (see :class:`GenesisTransform`), noise in [0, 1). Standing alone it applies with
    probability ``p_per_channel`` (default 1)."""

    def __init__(self, p_per_channel: float = 1.0, max_boxes: int = 5, p_continue: float = 0.95,
                 side_fraction: Tuple[float, float] = (1 / 6, 1 / 3), margin: int = 3,
                 data_key: str = "data", seed: SeedLike = None):
        super().__init__(p_per_channel, data_key, seed)
        self.max_boxes = max_boxes
        self.p_continue = p_continue
        self.side_fraction = side_fraction
        self.margin = margin

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


class OutPaintingTransform(_ChannelTransform):
    """Out-painting: the channel is filled with noise uniform on its range, except inside 1 to
    ``max_windows`` = 5 windows (each after the first with probability ``p_continue`` = 0.95)
    that keep the original, each side dim - (3/7 ... 4/7) dim, at least ``margin`` = 3 voxels
    from the border (see :func:`sample_outpainting_windows`). Published: reached with
    probability 0.9 * 0.8 in the pipeline (see :class:`GenesisTransform`), noise in [0, 1).
    Standing alone it applies with probability ``p_per_channel`` (default 1)."""

    def __init__(self, p_per_channel: float = 1.0, max_windows: int = 5, p_continue: float = 0.95,
                 shrink_fraction: Tuple[float, float] = (3 / 7, 4 / 7), margin: int = 3,
                 data_key: str = "data", seed: SeedLike = None):
        super().__init__(p_per_channel, data_key, seed)
        self.max_windows = max_windows
        self.p_continue = p_continue
        self.shrink_fraction = shrink_fraction
        self.margin = margin

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


def inside_image(seg: np.ndarray) -> np.ndarray:
    """Where nnU-Net's segmentation says a voxel is inside the image: ``seg >= 0``. Its data loaders pad
    ``seg`` with -1 (v1 ``DataLoader3D``, v2 ``nnUNetDataLoader``), its spatial augmentation fills with -1
    (v1 ``border_cval_seg=-1`` here, v2's stock ``padding_value_seg=-1``), and its cropping marks the
    outside of the nonzero region -1 (``nnunet/preprocessing/cropping.py``; the pretraining tasks of
    ``nnunet_genesis.unlabeled`` and ``nnunet_v2.prepare`` keep that channel)."""
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
    (``nnunet_genesis.pretraining.RestorationLoss``): padding of cases smaller than the patch is
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
