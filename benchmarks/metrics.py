"""Benchmark: Dice + NSD on a 256×256×128 pair with anisotropic spacing (0.8, 0.8, 2.5) mm.

Compares, in the same run and on the same masks:
  * evaluation.metrics (surfel NSD: marching-cubes surfel areas, k-d tree distances, bounding-box crop);
  * a straightforward reference written from the definition: boundary voxels (mask minus its
    erosion), Euclidean distance transforms of the other boundary on the whole volume, every
    boundary voxel weighted 1 - the common voxel-based approximation of the NSD;
  * DeepMind's ``surface-distance`` package (the Decathlon's published code), if installed.

Two scenes: a smooth organ-like pair, and the same with scattered false-positive specks, whose
bounding box is the whole volume (the worst case for cropping).

Run: /work/venv/bin/python benchmarks/metrics.py [--repeats N] [--tolerance MM]
"""
import argparse
import os
import sys
import time
import warnings

import numpy as np
from scipy import ndimage

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from evaluation import metrics  # noqa: E402

SHAPE = (256, 256, 128)
SPACING = (0.8, 0.8, 2.5)


# --------------------------------------------------------------------------- reference

def voxel_dice(reference, prediction):
    return 2.0 * np.logical_and(reference, prediction).sum() / (reference.sum() + prediction.sum())


def voxel_nsd(reference, prediction, spacing, tolerance_mm):
    """NSD with boundary voxels as surface elements of weight 1 (the usual approximation)."""
    structure = ndimage.generate_binary_structure(3, 1)
    border_ref = reference & ~ndimage.binary_erosion(reference, structure, border_value=0)
    border_pred = prediction & ~ndimage.binary_erosion(prediction, structure, border_value=0)
    distance_to_pred = ndimage.distance_transform_edt(~border_pred, sampling=spacing)
    distance_to_ref = ndimage.distance_transform_edt(~border_ref, sampling=spacing)
    within = (distance_to_pred[border_ref] <= tolerance_mm).sum() + (distance_to_ref[border_pred] <= tolerance_mm).sum()
    return within / (border_ref.sum() + border_pred.sum())


def voxel_reference(reference, prediction, spacing, tolerance_mm):
    return voxel_dice(reference, prediction), voxel_nsd(reference, prediction, spacing, tolerance_mm)


def ours(reference, prediction, spacing, tolerance_mm):
    return metrics.dice(reference, prediction), metrics.normalised_surface_dice(reference, prediction, spacing, tolerance_mm)


def deepmind(reference, prediction, spacing, tolerance_mm):
    import surface_distance
    # the package still calls scipy.ndimage.filters / .morphology, deprecated in SciPy 1.x
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    distances = surface_distance.compute_surface_distances(reference, prediction, spacing)
    return (surface_distance.compute_dice_coefficient(reference, prediction),
            surface_distance.compute_surface_dice_at_tolerance(distances, tolerance_mm))


# --------------------------------------------------------------------------- scenes

def organ_pair(seed=0):
    """An ellipsoid 'organ' and a prediction with a smoothly perturbed, slightly shifted boundary."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in SHAPE], indexing="ij")
    reference = ((z - 128) / 70) ** 2 + ((y - 120) / 60) ** 2 + ((x - 64) / 30) ** 2 <= 1
    wobble = ndimage.gaussian_filter(rng.standard_normal(SHAPE).astype(np.float32), 4) * 6
    prediction = ((z - 126) / 70) ** 2 + ((y - 122) / 59) ** 2 + ((x - 65) / 30.5) ** 2 <= 1 + 0.08 * wobble
    return reference, prediction


def with_specks(prediction, seed=1, count=200):
    """Add isolated 2×2×1 false positives all over the volume."""
    rng = np.random.default_rng(seed)
    prediction = prediction.copy()
    for z, y, x in zip(*(rng.integers(0, n - 2, count) for n in SHAPE)):
        prediction[z:z + 2, y:y + 2, x] = True
    return prediction


# --------------------------------------------------------------------------- timing

def best_time_ms(function, repeats, *args):
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = function(*args)
        times.append((time.perf_counter() - start) * 1000)
    return min(times), value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tolerance", type=float, default=2.0)
    args = parser.parse_args(argv)

    try:
        import surface_distance  # noqa: F401
        have_deepmind = True
    except ImportError:
        have_deepmind = False

    metrics.surfel_area_table(SPACING)  # build the marching-cubes table once, outside the timing
    reference, organ = organ_pair()
    scenes = [("organ", reference, organ), ("organ + 200 specks", reference, with_specks(organ))]
    print("Dice + NSD@%g mm, %s voxels, spacing %s mm, best of %d runs, %d CPU(s)"
          % (args.tolerance, "x".join(map(str, SHAPE)), SPACING, args.repeats, os.cpu_count() or 1))
    print("%-20s %-34s %10s %9s %8s %10s" % ("scene", "implementation", "time ms", "vs voxel", "Dice", "NSD"))
    for scene, ref, pred in scenes:
        runs = [("voxel reference (baseline)", voxel_reference)] + [("evaluation.metrics (surfels)", ours)]
        if have_deepmind:
            runs.append(("surface-distance pkg (surfels)", deepmind))
        baseline = None
        values = {}
        for name, function in runs:
            ms, (d, nsd) = best_time_ms(function, args.repeats, ref, pred, SPACING, args.tolerance)
            baseline = baseline or ms
            values[name] = (d, nsd)
            print("%-20s %-34s %10.1f %8.2fx %8.5f %10.6f" % (scene, name, ms, baseline / ms, d, nsd))
        if have_deepmind:
            delta = abs(values["evaluation.metrics (surfels)"][1] - values["surface-distance pkg (surfels)"][1])
            print("%-20s |NSD ours - surface-distance| = %.2e" % ("", delta))
    if not have_deepmind:
        print("(surface-distance not installed: pip install surface-distance to compare with the published code)")
    print("'vs voxel' = baseline time / this time (above 1: faster than the voxel reference).")


if __name__ == "__main__":
    main()
