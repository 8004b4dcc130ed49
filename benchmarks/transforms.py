"""Benchmark: nnunet_genesis.distortions against a loop-based reference of the published transforms.

The reference is written here from the published description (Models Genesis utilities): a python
loop over 10,000 windows with ``np.random.shuffle`` per window; ``np.interp`` through a
100,000-point Bézier curve computed with the Bernstein polynomials; painting with
``np.random.rand`` noise; Python's ``random`` for the decisions; intensities in [0, 1]. It reads
each channel's own windows (the published code copies channel 0's), which costs the same.

Data: a CT-like patch (a body ellipsoid with organ-like blobs of other intensities, smooth texture,
noise), z-scored per channel as nnU-Net does. The reference works in [0, 1] as published, so each
channel goes in as u = (x - lo) / (hi - lo), with lo, hi the channel's min and max -- the same range
our transforms use -- and its changes are measured in that domain and scaled by (hi - lo) into
z-units. (Mapping its output back to z-units first would mark untouched voxels as changed by
rounding.)

Prints, for patches 1x64x64x32, 1x128x128x128 and 4x128x128x128 (C x Z x Y x X): milliseconds per
patch for each transform alone (applied with probability 1) and for the composite (published
probabilities, averaged over a fixed sequence of samples), ours and the reference measured in the
same run, taking turns sample by sample, best of several repeats; and the ratio reference / ours. (A flip alone is
nearly free in the reference, which returns views; ours writes the flipped arrays in place.) Then, over 200
samples of 1x64x64x32, the mean fraction of voxels changed and the mean absolute change (z-units)
of each transform, ours and the reference: OK when within 10 % of each other.

Run: /work/venv/bin/python benchmarks/transforms.py [--quick]
"""
import argparse
import os
import random
import sys
import time

import numpy as np
from scipy import ndimage
from scipy.special import comb

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from nnunet_genesis import distortions as genesis


# --------------------------------------------------------------------------- reference (published)

def ref_bezier_curve(points, n_times=100_000):
    """The published curve: Bernstein polynomials, point i weighted C(n, i) t^(n-i) (1-t)^i."""
    t = np.linspace(0.0, 1.0, n_times)
    n = len(points) - 1
    basis = np.array([comb(n, i) * t ** (n - i) * (1 - t) ** i for i in range(n + 1)])
    points = np.asarray(points, dtype=float)
    return points[:, 0] @ basis, points[:, 1] @ basis


def ref_flip(x, y, prob=0.4):
    for _ in range(3):
        if random.random() >= prob:
            break
        axis = random.choice([-1, -2, -3])
        x, y = np.flip(x, axis), np.flip(y, axis)
    return x, y


def ref_local_shuffle(x, prob=0.5, n_windows=10_000):
    shuffled, original = x.copy(), x.copy()
    _, rows, cols, deps = x.shape
    for c in range(x.shape[0]):
        if random.random() >= prob:
            continue
        for _ in range(n_windows):
            a, b, d = random.randint(1, rows // 10), random.randint(1, cols // 10), random.randint(1, deps // 10)
            i, j, k = random.randint(0, rows - a), random.randint(0, cols - b), random.randint(0, deps - d)
            window = original[c, i:i + a, j:j + b, k:k + d].flatten()
            np.random.shuffle(window)
            shuffled[c, i:i + a, j:j + b, k:k + d] = window.reshape(a, b, d)
    return shuffled


def ref_nonlinear(x, prob=0.9):
    if random.random() >= prob:
        return x
    points = [[0, 0], [random.random(), random.random()], [random.random(), random.random()], [1, 1]]
    xs, ys = ref_bezier_curve(points)
    if random.random() < 0.5:
        xs = np.sort(xs)  # the decreasing map
    else:
        xs, ys = np.sort(xs), np.sort(ys)
    return np.interp(x, xs, ys)


def ref_inpaint(x):
    rows, cols, deps = x.shape
    for _ in range(5):
        if random.random() >= 0.95:
            break
        a = random.randint(rows // 6, rows // 3)
        b = random.randint(cols // 6, cols // 3)
        d = random.randint(deps // 6, deps // 3)
        i, j, k = random.randint(3, rows - a - 3), random.randint(3, cols - b - 3), random.randint(3, deps - d - 3)
        x[i:i + a, j:j + b, k:k + d] = np.random.rand(a, b, d)
    return x


def ref_outpaint(x):
    rows, cols, deps = x.shape
    original = x.copy()
    x = np.random.rand(rows, cols, deps)
    for n in range(5):
        if n > 0 and random.random() >= 0.95:
            break
        a = rows - random.randint(3 * rows // 7, 4 * rows // 7)
        b = cols - random.randint(3 * cols // 7, 4 * cols // 7)
        d = deps - random.randint(3 * deps // 7, 4 * deps // 7)
        i, j, k = random.randint(3, rows - a - 3), random.randint(3, cols - b - 3), random.randint(3, deps - d - 3)
        x[i:i + a, j:j + b, k:k + d] = original[i:i + a, j:j + b, k:k + d]
    return x


def ref_genesis(y):
    """One (C, Z, Y, X) sample in [0, 1] -> (distorted, original), as the published generate_single_pair."""
    x, y = ref_flip(y.copy(), y)
    x = ref_local_shuffle(x)
    x = ref_nonlinear(x)
    for c in range(x.shape[0]):
        if random.random() < 0.9:
            x[c] = ref_inpaint(x[c]) if random.random() < 0.2 else ref_outpaint(x[c])
    return x, y


REFERENCE = {
    "flip": lambda u: ref_flip(u.copy(), u, prob=1.0),
    "local shuffle": lambda u: (ref_local_shuffle(u, prob=1.0), u),
    "non-linear": lambda u: (ref_nonlinear(u, prob=1.0), u),
    "in-painting": lambda u: (np.stack([ref_inpaint(c.copy()) for c in u]), u),
    "out-painting": lambda u: (np.stack([ref_outpaint(c.copy()) for c in u]), u),
    "composite": ref_genesis,
}


# --------------------------------------------------------------------------- ours

OURS = {
    "flip": lambda seed: genesis.PairedFlipTransform(p_per_round=1.0, seed=seed),
    "local shuffle": lambda seed: genesis.LocalPixelShuffleTransform(p_per_channel=1.0, seed=seed),
    "non-linear": lambda seed: genesis.NonLinearIntensityTransform(p_per_channel=1.0, seed=seed),
    "in-painting": lambda seed: genesis.InPaintingTransform(seed=seed),
    "out-painting": lambda seed: genesis.OutPaintingTransform(seed=seed),
    "composite": lambda seed: genesis.GenesisTransform(seed=seed),
}


def run_ours(transform, patch):
    """(distorted, original) of one (C, Z, Y, X) patch. The single transforms work in place, so
    they get copies (the reference copies too); the composite leaves its input alone."""
    if isinstance(transform, genesis.GenesisTransform):
        out = transform(data=patch[None])
    else:
        out = transform(data=patch[None].copy(), target=patch[None].copy())
    return out["data"][0], out["target"][0]


# --------------------------------------------------------------------------- data

def ct_like_patch(shape, n_channels, rng):
    """A z-scored (C, Z, Y, X) float32 patch: body, organ-like blobs, smooth texture, noise."""
    grid = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    channels = []
    for _ in range(n_channels):
        image = 0.6 * (sum((g / r) ** 2 for g, r in zip(grid, (0.95, 0.85, 0.9))) < 1)
        for _ in range(6):
            centre, radii = rng.uniform(-0.6, 0.6, 3), rng.uniform(0.1, 0.35, 3)
            image += rng.uniform(-0.5, 1.0) * (sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) < 1)
        image = ndimage.gaussian_filter(image, 1.0)
        image += 0.15 * ndimage.gaussian_filter(rng.standard_normal(shape), 2.0) + 0.03 * rng.standard_normal(shape)
        channels.append((image - image.mean()) / image.std())
    return np.stack(channels).astype(np.float32)


def to_unit(patch):
    lo = patch.min(axis=(1, 2, 3), keepdims=True)
    hi = patch.max(axis=(1, 2, 3), keepdims=True)
    return (patch - lo) / (hi - lo), hi - lo


# --------------------------------------------------------------------------- measurements

def benchmark_speed(shape, n_channels, n_samples, repeats):
    """(name, ours ms, reference ms) per transform and per patch. Each repeat replays the same
    seeded sequence of samples, ours and the reference taking turns sample by sample, so both see
    the same machine load; the best repeat of each counts. Our single transforms work in place on
    a batch copied before the clock starts (the reference copies inside, as published); the
    composite leaves its input alone."""
    patch = ct_like_patch(shape, n_channels, np.random.default_rng(0))
    unit, _ = to_unit(patch)
    rows = []
    for name in REFERENCE:
        n = n_samples if name == "composite" else max(2, n_samples // 8)
        best_ours = best_ref = np.inf
        for _ in range(repeats):
            transform = OURS[name](seed=0)
            batch = {"data": patch[None].copy(), "target": patch[None].copy()}
            random.seed(0)
            np.random.seed(0)
            ours = reference = 0.0
            for _ in range(n):
                start = time.perf_counter()
                transform(data=patch[None]) if name == "composite" else transform(**batch)
                middle = time.perf_counter()
                REFERENCE[name](unit)
                ours, reference = ours + middle - start, reference + time.perf_counter() - middle
            best_ours, best_ref = min(best_ours, ours / n), min(best_ref, reference / n)
        rows.append((name, best_ours * 1e3, best_ref * 1e3))
    return rows


def change_statistics(name, patches):
    """Mean fraction of voxels changed and mean |change| (z-units) over ``patches``, ours and the reference."""
    ours, reference = [], []
    for i, patch in enumerate(patches):
        distorted, original = run_ours(OURS[name](seed=i), patch)
        ours.append(((distorted != original).mean(), np.abs(distorted - original).mean()))
        unit, width = to_unit(patch)
        random.seed(i)
        np.random.seed(i)
        distorted, original = REFERENCE[name](unit)
        reference.append(((distorted != original).mean(), (np.abs(distorted - original) * width).mean()))
    return np.mean(ours, axis=0), np.mean(reference, axis=0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and samples (a smoke run)")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else 3
    # composite samples: enough for its random choices (shuffle: p 0.5) to average out
    cases = [((64, 64, 32), 1, 80), ((128, 128, 128), 1, 40), ((128, 128, 128), 4, 10)]
    if args.quick:
        cases = [(shape, c, max(2, n // 5)) for shape, c, n in cases]

    print("ms per patch (best of %d repeats, ours and the reference taking turns sample by sample; single"
          " transforms applied with probability 1, the composite averaged over a fixed sequence of samples)" % repeats)
    ratios_128 = None
    for shape, n_channels, n_samples in cases:
        label = "%dx%s" % (n_channels, "x".join(map(str, shape)))
        print("\npatch %s (composite: %d samples)" % (label, n_samples))
        print("  %-14s %10s %12s %8s" % ("transform", "ours", "reference", "ratio"))
        for name, ours_ms, ref_ms in benchmark_speed(shape, n_channels, n_samples, repeats):
            print("  %-14s %10.2f %12.2f %7.1fx" % (name, ours_ms, ref_ms, ref_ms / ours_ms))
            if name == "composite" and label == "1x128x128x128":
                ratios_128 = ref_ms / ours_ms
    print("\ncomposite on 1x128x128x128: %.1fx faster than the reference (target >= 20x): %s"
          % (ratios_128, "OK" if ratios_128 >= 20 else "BELOW TARGET"))

    n_samples = 200
    print("\nchanges over %d samples of 1x64x64x32 (z-units; reference in [0, 1] scaled back by the channel range)"
          % n_samples)
    print("  %-14s %22s %22s %s" % ("transform", "fraction changed", "mean |change|", ""))
    print("  %-14s %10s %11s %10s %11s" % ("", "ours", "reference", "ours", "reference"))
    patches = [ct_like_patch((64, 64, 32), 1, np.random.default_rng(1000 + i)) for i in range(n_samples)]
    all_ok = True
    for name in ["local shuffle", "non-linear", "in-painting", "out-painting", "composite"]:
        (ours_changed, ours_abs), (ref_changed, ref_abs) = change_statistics(name, patches)
        ok = abs(ours_changed - ref_changed) <= 0.1 * ref_changed and abs(ours_abs - ref_abs) <= 0.1 * ref_abs
        all_ok &= ok
        print("  %-14s %10.4f %11.4f %10.4f %11.4f   %s"
              % (name, ours_changed, ref_changed, ours_abs, ref_abs, "OK" if ok else "FAIL"))
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
