"""The Models Genesis distortions as small pure functions (numpy in, numpy out), one idea each.
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np

from nnunet_genesis.distortions.kernels import (fill_uniform_kernel, lookup_kernel, outpaint_kernel,
                                              shuffle_windows_kernel)

Box = Tuple[slice, slice, slice]



# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

def _floor_fraction(dim: int, fraction: float) -> int:
    """floor(dim * fraction), immune to float error: in floats 7 * (3/7) is 2.9999999999999996,
    where the published code's integer division 3 * 7 // 7 gives 3."""
    return int(np.floor(dim * fraction + 1e-9))


def _kernel_seed(rng: np.random.Generator) -> np.uint64:
    """64 random bits from ``rng`` to seed a compiled kernel's own generator (see
    :mod:`nnunet_genesis.distortions.kernels`)."""
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
    The loop itself is compiled (:func:`~nnunet_genesis.distortions.kernels.shuffle_windows_kernel`)
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
    (:func:`~nnunet_genesis.distortions.kernels.lookup_kernel`) instead of a binary search in
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
    fills ~70 % of a patch (:func:`~nnunet_genesis.distortions.kernels.fill_uniform_kernel`)."""
    fill_uniform_kernel(_as_volume(view, "fill_uniform"), float(lo), (hi - lo) / 65536, _kernel_seed(rng))


def paint_outside(channel: np.ndarray, windows: Sequence[Box], lo: float, hi: float, rng: np.random.Generator,
                  table: Optional[np.ndarray] = None) -> None:
    """Out-painting, in place: every voxel of the 3-D ``channel`` outside all ``windows`` gets
    noise as from :func:`fill_uniform`; voxels inside keep their value or, with ``table``, go
    through that intensity map as in :func:`apply_lookup_table` (each once, however many
    windows cover it). One compiled pass (:func:`~nnunet_genesis.distortions.kernels.outpaint_kernel`)
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
