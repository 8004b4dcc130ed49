"""Compiled inner loops of the Models Genesis transforms (numba).

:mod:`nnunet_genesis.distortions` draws every decision and every parameter with numpy's
Generator; the per-voxel work runs here, because in numpy each step costs several full passes
over memory:

* :func:`shuffle_windows_kernel` -- local pixel shuffling, one window at a time, as published;
* :func:`lookup_kernel` -- the non-linear intensity map as a table lookup;
* :func:`fill_uniform_kernel` -- the painting noise;
* :func:`outpaint_kernel` -- out-painting (noise outside the kept windows, optionally the
  intensity map inside them) in one pass.

Random numbers inside the kernels come from splitmix64 (Steele, Lea & Flood, OOPSLA 2014), whose
state is one 64-bit integer, seeded from the caller's numpy Generator: the same Generator state
gives the same output, and worker processes, whose Generators differ (see
:class:`nnunet_genesis.distortions.random_state.GenesisRandomTransform`), draw different streams. Shuffling
draws the stream in sequence; noise reads it at each voxel's index, which splitmix64 allows
(state i is seed + i * gamma), so that noise loops vectorise.

Functions are compiled on first use and cached on disk (``cache=True``: next to this file, or in
numba's per-user cache when site-packages is read-only), so a new process loads them in well under
a second instead of compiling them again.
"""
import numba
import numpy as np

_GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_U1, _U27, _U30, _U31, _U32, _U48 = (np.uint64(s) for s in (1, 27, 30, 31, 32, 48))
_LOW_32 = np.uint64(0xFFFFFFFF)


@numba.njit(inline="always")
def _mix64(z):
    """splitmix64's output function: a bijective scrambling of 64 bits."""
    z = (z ^ (z >> _U30)) * _MIX_1
    z = (z ^ (z >> _U27)) * _MIX_2
    return z ^ (z >> _U31)


@numba.njit(inline="always")
def _splitmix64(state):
    """(next state, 64 random bits): the sequential generator."""
    state = state + _GOLDEN_GAMMA
    return state, _mix64(state)


@numba.njit(inline="always")
def _noise(seed, index, lo, step):
    """Noise value number ``index`` of stream ``seed``: lo + step * L, L the top 16 bits of
    splitmix64's output for state seed + index * gamma (uniform on 0 ... 65535). Random access
    into the stream, so a loop of these has no dependency between iterations and vectorises:
    3x faster than drawing sequentially."""
    bits = _mix64(seed + np.uint64(index) * _GOLDEN_GAMMA) >> _U48
    return lo + step * float(np.int64(bits))


@numba.njit(inline="always")
def _lookup(value, levels, scale, shift):
    """levels[k], k = floor(value * scale + shift) clipped to 0 ... len(levels) - 1 (NaN -> 0)."""
    position = value * scale + shift
    top = float(levels.shape[0] - 1)
    if position > top:
        position = top
    return levels[int(position) if position >= 0.0 else 0]  # NaN fails both tests: knot 0


@numba.njit(cache=True, nogil=True)
def shuffle_windows_kernel(source, out, origins, sizes, order, owner, seed):
    """Local pixel shuffling of the 3-D arrays ``source`` -> ``out`` (C-contiguous, same shape).

    Window ``w`` covers ``origins[w] + [0, sizes[w])`` along (Z, Y, X) and has at most 2^32
    voxels. Its voxels are read from ``source``, put in uniformly random order by an inside-out
    Fisher-Yates shuffle, and written to its voxels in ``out`` -- except where a window drawn
    later (larger ``w``) also covers the voxel: as in the published loop, the last window drawn
    wins. That is what ``owner`` is for: an unsigned integer array of the patch's shape, all 0 on
    entry, able to hold ``len(sizes)``; it keeps the winning ``w + 1``.

    Windows are visited in ``order`` (any permutation of the windows): the result does not
    depend on it, but visiting them sorted by position keeps the memory they touch in cache.

    Random positions: each 32-bit half r of a splitmix64 output gives j = (r * (i + 1)) >> 32,
    uniform on 0 ... i up to a bias below (i + 1) / 2^32 (< 1e-6 for windows under 4,096
    voxels). Indices are unsigned, which spares numba's negative-index checks.
    """
    _, n_y, n_x = source.shape
    source_flat = source.reshape(-1)
    out_flat = out.reshape(-1)
    owner_flat = owner.reshape(-1)
    largest = 1
    for w in range(sizes.shape[0]):
        largest = max(largest, sizes[w, 0] * sizes[w, 1] * sizes[w, 2])
    values = np.empty(largest, dtype=source.dtype)
    state = np.uint64(seed)
    bits = np.uint64(0)
    spare_half = False  # whether the low half of ``bits`` is still unused
    for k in range(order.shape[0]):
        w = order[k]
        z0, y0, x0 = origins[w, 0], origins[w, 1], origins[w, 2]
        size_z, size_y, size_x = sizes[w, 0], sizes[w, 1], sizes[w, 2]
        i = np.uint64(0)  # inside-out Fisher-Yates: values[:i] is a uniform permutation of the first i voxels
        for z in range(z0, z0 + size_z):
            for y in range(y0, y0 + size_y):
                voxel = np.uint64((z * n_y + y) * n_x + x0)
                for _ in range(size_x):
                    if spare_half:
                        half = bits & _LOW_32
                    else:
                        state, bits = _splitmix64(state)
                        half = bits >> _U32
                    spare_half = not spare_half
                    j = (half * (i + _U1)) >> _U32
                    values[i] = values[j]
                    values[j] = source_flat[voxel]
                    i += _U1
                    voxel += _U1
        i = np.uint64(0)
        rank = w + 1
        for z in range(z0, z0 + size_z):
            for y in range(y0, y0 + size_y):
                voxel = np.uint64((z * n_y + y) * n_x + x0)
                for _ in range(size_x):
                    if owner_flat[voxel] < rank:
                        owner_flat[voxel] = rank
                        out_flat[voxel] = values[i]
                    i += _U1
                    voxel += _U1


@numba.njit(cache=True, nogil=True)
def lookup_kernel(volume, levels, scale, shift):
    """In place, for every voxel v of the 3-D array ``volume`` (any strides):
    v <- levels[k] with k = floor(v * scale + shift) clipped to 0 ... len(levels) - 1 (NaN -> 0)."""
    n_z, n_y, n_x = volume.shape
    for z in range(n_z):
        for y in range(n_y):
            for x in range(n_x):
                volume[z, y, x] = _lookup(volume[z, y, x], levels, scale, shift)


@numba.njit(cache=True, nogil=True)
def fill_uniform_kernel(volume, lo, step, seed):
    """In place: voxel number i (C order) of the 3-D array ``volume`` (any strides) <- noise
    value i of stream ``seed`` (see :func:`_noise`): lo + step * L, L uniform on 0 ... 65535,
    computed in float64 and rounded to ``volume``'s dtype."""
    seed = np.uint64(seed)
    n_z, n_y, n_x = volume.shape
    for z in range(n_z):
        for y in range(n_y):
            first = (z * n_y + y) * n_x
            for x in range(n_x):
                volume[z, y, x] = _noise(seed, first + x, lo, step)


@numba.njit(cache=True, nogil=True)
def outpaint_kernel(volume, windows, levels, scale, shift, lo, step, seed):
    """Out-painting in one pass, in place on the C-contiguous 3-D array ``volume``: voxels in
    none of ``windows`` get noise as in :func:`fill_uniform_kernel`; voxels in at least one keep
    their value, or, if ``levels`` is not empty, get its lookup as in :func:`lookup_kernel`
    (once, however many windows cover them).

    ``windows``: int64 (n, 6), each row the half-open box z0, z1, y0, y1, x0, x1. Each row of
    the volume is cut into runs (noise, kept, noise, ...) from the windows crossing it, so the
    inner loops stay branch-free.
    """
    n_z, n_y, n_x = volume.shape
    flat = volume.reshape(-1)
    n_windows = windows.shape[0]
    run_start = np.empty(n_windows, dtype=np.int64)  # x-ranges of the windows crossing a row, sorted
    run_stop = np.empty(n_windows, dtype=np.int64)
    apply_map = levels.shape[0] > 0
    seed = np.uint64(seed)
    for z in range(n_z):
        for y in range(n_y):
            first = (z * n_y + y) * n_x
            n_runs = 0
            for b in range(n_windows):
                if windows[b, 0] <= z < windows[b, 1] and windows[b, 2] <= y < windows[b, 3]:
                    k = n_runs  # insertion sort by start: at most a handful of windows
                    while k > 0 and run_start[k - 1] > windows[b, 4]:
                        run_start[k], run_stop[k] = run_start[k - 1], run_stop[k - 1]
                        k -= 1
                    run_start[k], run_stop[k] = windows[b, 4], windows[b, 5]
                    n_runs += 1
            x = 0  # everything before x is done
            for k in range(n_runs + 1):
                noise_stop = run_start[k] if k < n_runs else n_x
                for i in range(first + x, first + noise_stop):
                    flat[i] = _noise(seed, i, lo, step)
                x = max(x, noise_stop)
                if k < n_runs and run_stop[k] > x:
                    if apply_map:
                        for i in range(first + x, first + run_stop[k]):
                            flat[i] = _lookup(flat[i], levels, scale, shift)
                    x = run_stop[k]
