"""Invariants of the Models Genesis transforms (nnunet_genesis.distortions) and their previews."""
import copy
import itertools
import multiprocessing
import os
import pickle

import numpy as np
import pytest

from nnunet_genesis import distortions as T
from nnunet_genesis.distortions import random_state
from nnunet_genesis.pretraining.previews import preview_transforms, save_preview_grid

SHAPE = (20, 24, 30)  # Z, Y, X: small, anisotropic, every axis >= 10 so windows have room


def z_scored_patch(shape=SHAPE, n_channels=1, seed=0, dtype=np.float32):
    """A smooth z-scored (C, Z, Y, X) patch with a bright blob, like nnU-Net's input."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    channels = []
    for c in range(n_channels):
        image = rng.standard_normal(shape).cumsum(axis=0).cumsum(axis=2)  # smooth-ish texture
        image += 5.0 * (sum(g ** 2 for g in grid) < 0.3 + 0.1 * c)
        channels.append((image - image.mean()) / image.std())
    return np.stack(channels).astype(dtype)


def single_transforms(seed):
    """Every single transform, forced to act (probability 1)."""
    return {
        "flip": T.PairedFlipTransform(p_per_round=1.0, seed=seed),
        "shuffle": T.LocalPixelShuffleTransform(p_per_channel=1.0, seed=seed),
        "nonlinear": T.NonLinearIntensityTransform(p_per_channel=1.0, seed=seed),
        "inpaint": T.InPaintingTransform(p_per_channel=1.0, seed=seed),
        "outpaint": T.OutPaintingTransform(p_per_channel=1.0, seed=seed),
    }


def all_transforms(seed):
    transforms = single_transforms(seed)
    transforms["genesis"] = T.GenesisTransform(seed=seed)
    return transforms


# --------------------------------------------------------------------------- shapes, dtypes, keys

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["flip", "shuffle", "nonlinear", "inpaint", "outpaint", "genesis"])
def test_shape_and_dtype_are_kept(name, dtype):
    batch = np.stack([z_scored_patch(n_channels=2, seed=s, dtype=dtype) for s in range(2)])
    out = all_transforms(seed=1)[name](data=batch.copy())
    assert out["data"].shape == batch.shape
    assert out["data"].dtype == dtype
    assert not np.array_equal(out["data"], batch) or name == "flip"


def test_genesis_target_is_the_flipped_original_and_input_is_untouched():
    batch = np.stack([z_scored_patch(n_channels=2, seed=s) for s in range(3)])
    seg = np.zeros((3, 1) + SHAPE, dtype=np.int16)
    given = batch.copy()
    transform = T.GenesisTransform(flip=T.PairedFlipTransform(p_per_round=1.0), seed=3)
    out = transform(data=given, seg=seg, target="stale")
    assert np.array_equal(given, batch), "the input array must not be modified"
    assert out["seg"] is seg, "seg is left alone"
    target = out["target"]
    assert target.shape == batch.shape and target.dtype == batch.dtype
    flips = [axes for r in range(4) for axes in itertools.combinations((1, 2, 3), r)]
    for b in range(3):
        matches = [axes for axes in flips if np.array_equal(target[b], np.flip(batch[b], axes) if axes else batch[b])]
        assert matches, "sample %d: target is not a flip of the original" % b
    assert not np.array_equal(out["data"], target)


def test_genesis_without_flips_returns_the_original_as_target():
    batch = z_scored_patch(n_channels=1)[None]
    out = T.GenesisTransform(flip=T.PairedFlipTransform(p_per_round=0.0), seed=0)(data=batch)
    assert np.array_equal(out["target"], batch)
    assert out["data"] is not batch


def test_genesis_configurable_keys():
    batch = z_scored_patch()[None]
    out = T.GenesisTransform(data_key="image", target_key="clean", seed=0)(image=batch)
    assert set(out) == {"image", "clean"}
    assert np.array_equal(np.sort(out["clean"], axis=None), np.sort(batch, axis=None))  # a flip of the original


def test_paired_flip_flips_data_and_target_alike():
    batch = z_scored_patch(n_channels=2)[None]
    out = T.PairedFlipTransform(p_per_round=1.0, seed=5)(data=batch.copy(), target=batch.copy())
    assert np.array_equal(out["data"], out["target"])
    assert not np.array_equal(out["data"], batch), "seed 5 flips an odd number of times along some axis"


@pytest.mark.parametrize("bad", [np.zeros((1, 1, 4, 4, 4), np.int16), np.zeros((1, 4, 4, 4), np.float32), [[1.0]]])
def test_bad_data_gives_a_clear_error(bad):
    with pytest.raises(ValueError, match=r"GenesisTransform: data_dict\['data'\] must be a floating-point"):
        T.GenesisTransform()(data=bad)


def test_missing_key_gives_a_clear_error():
    with pytest.raises(KeyError, match="no 'data' key"):
        T.LocalPixelShuffleTransform()(image=np.zeros((1, 1, 8, 8, 8), np.float32))


# --------------------------------------------------------------------------- in- and out-painting

def test_inpainting_changes_voxels_only_inside_its_boxes_with_noise_in_range():
    original = z_scored_patch(seed=2)[0]
    lo, hi = original.min(), original.max()
    for seed in range(20):
        channel = original.copy()
        boxes = T.InPaintingTransform().distort_channel(channel, np.random.default_rng(seed))
        inside = T.boxes_mask(SHAPE, boxes)
        assert np.array_equal(channel[~inside], original[~inside])
        if boxes:  # no box at all has probability 0.05, as published
            assert (channel[inside] != original[inside]).mean() > 0.99
            assert channel[inside].min() >= lo and channel[inside].max() <= hi
        for box in boxes:  # published sizes: each side dim//6 ... dim//3, 3 voxels from the border
            for s, dim in zip(box, SHAPE):
                assert dim // 6 <= s.stop - s.start <= dim // 3 and s.start >= 3 and s.stop <= dim - 3


def test_outpainting_keeps_original_voxels_only_inside_its_windows():
    original = z_scored_patch(seed=3)[0]
    lo, hi = original.min(), original.max()
    for seed in range(20):
        channel = original.copy()
        windows = T.OutPaintingTransform().distort_channel(channel, np.random.default_rng(seed))
        assert 1 <= len(windows) <= 5
        kept = T.boxes_mask(SHAPE, windows)
        assert np.array_equal(channel[kept], original[kept])
        assert (channel[~kept] != original[~kept]).mean() > 0.99
        assert channel.min() >= lo and channel.max() <= hi
        for window in windows:  # published: side dim - (3*dim//7 ... 4*dim//7)
            for s, dim in zip(window, SHAPE):
                assert dim - 4 * dim // 7 <= s.stop - s.start <= dim - 3 * dim // 7


def test_fill_uniform_covers_the_range_uniformly():
    values = np.empty(200_000, np.float32)
    T.fill_uniform(values, -2.0, 3.0, np.random.default_rng(0))
    assert values.min() >= -2.0 and values.max() < 3.0
    counts, _ = np.histogram(values, bins=10, range=(-2.0, 3.0))
    assert np.all(np.abs(counts - 20_000) < 5 * np.sqrt(20_000))


def test_paint_outside_maps_overlapping_windows_once_and_paints_the_rest():
    original = z_scored_patch(seed=12)[0]
    lo, hi = float(original.min()), float(original.max())
    windows = [(slice(3, 12), slice(4, 15), slice(5, 20)), (slice(8, 16), slice(10, 20), slice(12, 25))]
    table = T.bezier_lookup_table(np.array([[0.2, 0.7], [0.5, 0.1]]), decreasing=True)
    mapped = original.copy()
    T.apply_lookup_table(mapped, table, lo, hi)
    kept = T.boxes_mask(SHAPE, windows)
    for use_table, expected in ((False, original), (True, mapped)):
        channel = original.copy()
        T.paint_outside(channel, windows, lo, hi, np.random.default_rng(0), table=table if use_table else None)
        assert np.array_equal(channel[kept], expected[kept]), "kept voxels: mapped exactly once, or left alone"
        assert (channel[~kept] != original[~kept]).mean() > 0.99
        assert channel[~kept].min() >= lo and channel[~kept].max() < hi


# --------------------------------------------------------------------------- local pixel shuffling

def window_boxes(origins, sizes):
    return [tuple(slice(o, o + n) for o, n in zip(origin, size)) for origin, size in zip(origins, sizes)]


def test_overlapping_windows_follow_the_published_rule_the_last_drawn_wins():
    """Every voxel takes a value from the window drawn last among those covering it (the
    published loop overwrites), each value at most once per window."""
    source = np.arange(np.prod(SHAPE), dtype=np.float64).reshape(SHAPE)  # every value tells where it came from
    out = source.copy()
    origins, sizes = T.sample_shuffle_windows(SHAPE, np.random.default_rng(0), n_windows=300, max_side_fraction=0.3)
    T.shuffle_windows(source, out, origins, sizes, np.random.default_rng(1))
    last_drawn = np.full(SHAPE, -1)
    for w, box in enumerate(window_boxes(origins, sizes)):
        last_drawn[box] = w
    assert np.array_equal(out[last_drawn < 0], source[last_drawn < 0])
    for w, box in enumerate(window_boxes(origins, sizes)):
        owned = out[last_drawn == w]
        assert np.isin(owned, source[box]).all(), "window %d got a value from outside itself" % w
        assert len(np.unique(owned)) == len(owned), "window %d used a value twice" % w
    assert (out != source).mean() > 0.5


def test_shuffling_is_uniform_over_the_orders_of_a_window():
    """20,000 disjoint windows of 3 voxels: each of the 6 orders about equally often."""
    source = np.tile(np.arange(3.0), (200, 100, 1))
    origins = np.array([[z, y, 0] for z in range(200) for y in range(100)])
    out = source.copy()
    T.shuffle_windows(source, out, origins, np.tile([1, 1, 3], (len(origins), 1)), np.random.default_rng(0))
    codes = (out.reshape(-1, 3) @ np.array([9.0, 3.0, 1.0])).astype(int)  # which of the 6 orders each window got
    counts = np.bincount(codes, minlength=22)[[5, 7, 11, 15, 19, 21]]
    assert counts.sum() == 20_000
    assert np.all(np.abs(counts - 20_000 / 6) < 5 * np.sqrt(20_000 / 6 * 5 / 6))


def test_shuffling_one_window_as_large_as_the_patch_keeps_its_multiset():
    source = z_scored_patch(seed=13)[0]
    out = np.zeros_like(source)
    T.shuffle_windows(source, out, np.zeros((1, 3), int), np.array([SHAPE]), np.random.default_rng(2))
    assert np.array_equal(np.sort(out, axis=None), np.sort(source, axis=None))
    assert (out != source).mean() > 0.99


def test_shuffle_windows_refuses_windows_outside_the_array():
    source = np.zeros(SHAPE, np.float32)
    with pytest.raises(ValueError, match="every window must lie inside"):
        T.shuffle_windows(source, source.copy(), np.array([[18, 0, 0]]), np.array([[3, 1, 1]]),
                          np.random.default_rng(0))


def test_shuffling_one_window_keeps_its_multiset_and_nothing_else_moves():
    source = z_scored_patch(seed=4)[0]
    out = source.copy()
    origin, size = np.array([[3, 5, 7]]), np.array([[4, 5, 6]])
    T.shuffle_windows(source, out, origin, size, np.random.default_rng(0))
    window = (slice(3, 7), slice(5, 10), slice(7, 13))
    inside = T.boxes_mask(SHAPE, [window])
    assert np.array_equal(np.sort(out[window], axis=None), np.sort(source[window], axis=None))
    assert np.array_equal(out[~inside], source[~inside])
    assert (out[window] != source[window]).mean() > 0.8


def test_shuffling_disjoint_windows_keeps_the_global_multiset():
    source = z_scored_patch(seed=5)[0]
    out = source.copy()
    # a grid of disjoint windows of assorted sizes
    origins = np.array([[z, y, x] for z in (0, 7, 14) for y in (0, 8, 16) for x in (0, 10, 20)])
    sizes = np.array([[1 + (i % 6), 2 + (i % 5), 3 + (i % 7)] for i in range(len(origins))])
    masks = [T.boxes_mask(SHAPE, [tuple(slice(o, o + s) for o, s in zip(origin, size))])
             for origin, size in zip(origins, sizes)]
    assert np.sum(masks, axis=0).max() == 1, "the test windows must be disjoint"
    T.shuffle_windows(source, out, origins, sizes, np.random.default_rng(1))
    assert np.array_equal(np.sort(out, axis=None), np.sort(source, axis=None))
    for mask in masks:
        assert np.array_equal(np.sort(out[mask]), np.sort(source[mask]))
    assert not np.array_equal(out, source)


def test_shuffle_transform_moves_values_only_inside_its_windows():
    original = z_scored_patch(seed=6)[0]
    channel = original.copy()
    origins, sizes = T.LocalPixelShuffleTransform().distort_channel(channel, np.random.default_rng(0))
    covered = T.boxes_mask(SHAPE, [tuple(slice(o, o + s) for o, s in zip(origin, size))
                                   for origin, size in zip(origins, sizes)])
    assert np.array_equal(channel[~covered], original[~covered])
    assert np.isin(channel, original).all(), "shuffling only moves values"
    assert (channel != original).mean() > 0.3
    assert np.all(sizes >= 1) and np.all(sizes <= np.array(SHAPE) // 10)


def test_shuffle_only_touching_skips_windows_away_from_the_boxes():
    rng = np.random.default_rng(0)
    origins, sizes = T.sample_shuffle_windows(SHAPE, rng, n_windows=500, max_side_fraction=0.2)
    box = (slice(2, 9), slice(10, 20), slice(0, 5))
    touching = T.windows_touching(origins, sizes, [box])
    box_mask = T.boxes_mask(SHAPE, [box])
    expected = [T.boxes_mask(SHAPE, [tuple(slice(o, o + s) for o, s in zip(origin, size))])[box_mask].any()
                for origin, size in zip(origins, sizes)]
    assert np.array_equal(touching, expected)
    assert 0 < touching.sum() < len(touching)


def test_sample_shuffle_windows_uses_the_published_sizes():
    origins, sizes = T.sample_shuffle_windows((64, 64, 32), np.random.default_rng(0))
    assert len(sizes) == 10_000
    assert sizes.min() == 1 and np.array_equal(sizes.max(axis=0), [6, 6, 3])
    assert np.all(origins >= 0) and np.all(origins + sizes <= [64, 64, 32])


# --------------------------------------------------------------------------- non-linear intensity map

def test_bezier_curve_is_monotone_for_any_inner_points():
    rng = np.random.default_rng(0)
    for _ in range(200):
        x, y = T.bezier_curve(rng.random((2, 2)), 1000)
        assert np.all(np.diff(x) >= -1e-12) and np.all(np.diff(y) >= -1e-12)
        assert (x[0], y[0], x[-1], y[-1]) == (0.0, 0.0, 1.0, 1.0)


def test_lookup_table_matches_the_exact_bezier_map():
    inner = np.array([[0.3, 0.7], [0.6, 0.1]])
    x, y = T.bezier_curve(inner, 1_000_001)  # a dense curve as ground truth
    values = np.linspace(-1.5, 2.5, 10_001).astype(np.float64)
    for decreasing in (False, True):
        mapped = values.copy()
        T.apply_lookup_table(mapped, T.bezier_lookup_table(inner, decreasing), -1.5, 2.5)
        exact = -1.5 + 4.0 * np.interp((values + 1.5) / 4.0, x, y[::-1] if decreasing else y)
        assert np.abs(mapped - exact).max() < 5e-4 * 4.0  # a fraction of the range (4.0)


def test_lookup_table_matches_the_published_construction():
    """The published code: Bernstein weights C(3, i) t^(3-i) (1-t)^i on [0,0], P1, P2, [1,1] at
    100,000 parameters, x sorted; y sorted too for the increasing map, left as is for the
    decreasing one; then np.interp."""
    from scipy.special import comb

    t = np.linspace(0.0, 1.0, 100_000)
    values = np.linspace(0.0, 1.0, 5001)
    rng = np.random.default_rng(3)
    for _ in range(10):
        inner = rng.random((2, 2))
        points = np.vstack([[0.0, 0.0], inner, [1.0, 1.0]])
        weights = np.array([comb(3, i) * t ** (3 - i) * (1 - t) ** i for i in range(4)])
        xs, ys = points[:, 0] @ weights, points[:, 1] @ weights
        for decreasing, published in ((False, np.interp(values, np.sort(xs), np.sort(ys))),
                                      (True, np.interp(values, np.sort(xs), ys))):
            ours = values.copy()
            T.apply_lookup_table(ours, T.bezier_lookup_table(inner, decreasing), 0.0, 1.0)
            assert np.abs(ours - published).max() < 2e-3


def test_lookup_table_sends_values_outside_the_range_to_its_ends():
    table = T.bezier_lookup_table(np.array([[0.3, 0.7], [0.6, 0.1]]))
    values = np.array([np.nan, -np.inf, -3.0, 5.0, np.inf], dtype=np.float32)
    T.apply_lookup_table(values, table, -1.0, 2.0)
    assert values.tolist() == [-1.0, -1.0, -1.0, 2.0, 2.0]  # NaN -> the lower end; the map keeps its ends


def test_lookup_table_works_on_strided_views_and_refuses_what_it_cannot_view():
    original = z_scored_patch(seed=9)[0]
    table = T.bezier_lookup_table(np.array([[0.3, 0.7], [0.6, 0.1]]))
    whole = original.copy()
    T.apply_lookup_table(whole, table, -4.0, 4.0)
    part = original.copy()
    T.apply_lookup_table(part[2:9, ::2, 5:], table, -4.0, 4.0)
    assert np.array_equal(part[2:9, ::2, 5:], whole[2:9, ::2, 5:])
    untouched = np.ones(SHAPE, bool)
    untouched[2:9, ::2, 5:] = False
    assert np.array_equal(part[untouched], original[untouched])
    with pytest.raises(ValueError, match="apply_lookup_table: the array must be 3-D or C-contiguous"):
        T.apply_lookup_table(original[:, :, 0].T, table, -4.0, 4.0)


@pytest.mark.parametrize("seed", range(6))
def test_nonlinear_map_is_monotone_per_channel_and_stays_in_range(seed):
    original = z_scored_patch(n_channels=3, seed=seed)
    out = T.NonLinearIntensityTransform(p_per_channel=1.0, seed=seed)(data=original[None].copy())["data"][0]
    directions = set()
    for c in range(3):
        order = np.argsort(original[c], axis=None)
        steps = np.diff(out[c].ravel()[order])
        assert np.all(steps >= 0) or np.all(steps <= 0), "channel %d: sort order neither kept nor reversed" % c
        directions.add(bool(np.all(steps >= 0)))
        lo, hi = original[c].min(), original[c].max()
        assert out[c].min() >= lo and out[c].max() <= hi
        assert {out[c].min(), out[c].max()} == {lo, hi}, "the map sends [lo, hi] onto itself"
    assert not np.array_equal(out, original)


def test_nonlinear_decreases_about_half_of_the_time():
    transform = T.NonLinearIntensityTransform(p_per_channel=1.0)
    rng = np.random.default_rng(0)
    decreasing = [transform.sample_table(rng)[0] == 1.0 for _ in range(400)]
    assert 0.4 < np.mean(decreasing) < 0.6


# --------------------------------------------------------------------------- channels, seeds, processes

@pytest.mark.parametrize("name", ["shuffle", "nonlinear", "inpaint", "outpaint", "genesis"])
def test_channels_are_distorted_independently(name):
    patch = z_scored_patch(n_channels=2, seed=7)
    other = patch.copy()
    other[0] = z_scored_patch(n_channels=1, seed=99)[0] * 3.0 + 1.0  # a different channel 0
    first = all_transforms(seed=11)[name](data=patch[None].copy())["data"][0]
    second = all_transforms(seed=11)[name](data=other[None].copy())["data"][0]
    assert np.array_equal(first[1], second[1]), "channel 1 depends on channel 0"
    assert not np.array_equal(first[0], second[0])


def test_channels_draw_different_distortions():
    patch = np.stack([z_scored_patch(seed=8)[0]] * 2)  # two identical channels
    out = T.GenesisTransform(seed=0)(data=patch[None])["data"][0]
    assert not np.array_equal(out[0], out[1])


@pytest.mark.parametrize("name", ["flip", "shuffle", "nonlinear", "inpaint", "outpaint", "genesis"])
def test_same_seed_same_output_different_seed_different_output(name):
    patch = np.stack([z_scored_patch(n_channels=2, seed=s) for s in range(4)])
    run = lambda seed: all_transforms(seed)[name](data=patch.copy())["data"]  # noqa: E731
    assert np.array_equal(run(4), run(4))
    assert not np.array_equal(run(4), run(5))
    generator_runs = [all_transforms(np.random.default_rng(4))[name](data=patch.copy())["data"] for _ in range(2)]
    assert np.array_equal(*generator_runs)


def _distort_in_child(transform, patch, queue):
    queue.put(transform(data=patch[None].copy())["data"][0])


@pytest.mark.parametrize("seed", [1234, None, "generator"])
def test_worker_processes_do_not_repeat_each_other(seed):
    """batchgenerators' workers get forked copies of the transform: each must draw its own stream."""
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs the fork start method")
    if seed == "generator":
        seed = np.random.default_rng(1234)
    patch = z_scored_patch(seed=10)
    transform = T.GenesisTransform(seed=seed)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [context.Process(target=_distort_in_child, args=(transform, patch, queue)) for _ in range(2)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    in_parent = transform(data=patch[None].copy())["data"][0]
    assert not np.array_equal(results[0], results[1])
    assert not any(np.array_equal(result, in_parent) for result in results)


def test_multithreaded_augmenter_workers_give_different_batches():
    """The real thing: batchgenerators' MultiThreadedAugmenter, two workers, the same patch every time."""
    from batchgenerators.dataloading.data_loader import SlimDataLoaderBase
    from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter

    class SamePatch(SlimDataLoaderBase):
        def generate_train_batch(self):
            return {"data": z_scored_patch(shape=(16, 16, 16), seed=15)[None]}

    augmenter = MultiThreadedAugmenter(SamePatch(None, 1), T.GenesisTransform(seed=5), num_processes=2,
                                       num_cached_per_queue=1)
    try:
        batches = [next(augmenter)["data"] for _ in range(4)]  # batches alternate between the two workers
    finally:
        augmenter._finish()  # batchgenerators has no public close
    assert not any(np.array_equal(a, b) for a, b in itertools.combinations(batches, 2))


def test_pickled_or_copied_transform_rederives_its_stream_per_process(monkeypatch):
    patch = z_scored_patch(seed=11)[None]
    transform = T.GenesisTransform(seed=77)
    reference = T.GenesisTransform(seed=77)(data=patch)["data"]
    clones = [pickle.loads(pickle.dumps(transform)), copy.deepcopy(transform)]
    assert all(np.array_equal(clone(data=patch)["data"], reference) for clone in clones), "same process, same seed"

    outputs = {}
    for worker_pid in (10_001, 10_002):
        monkeypatch.setattr(random_state.os, "getpid", lambda pid=worker_pid: pid)
        outputs[worker_pid] = pickle.loads(pickle.dumps(transform))(data=patch)["data"]
        again = pickle.loads(pickle.dumps(transform))(data=patch)["data"]
        assert np.array_equal(outputs[worker_pid], again), "a worker's stream depends only on seed and pid"
    assert not np.array_equal(outputs[10_001], outputs[10_002])
    assert not np.array_equal(outputs[10_001], reference)


def test_seed_of_the_wrong_type_is_refused():
    with pytest.raises(TypeError, match="seed must be"):
        T.GenesisTransform(seed="42")


# --------------------------------------------------------------------------- published probabilities

def test_flip_rounds_follow_the_published_probabilities():
    rng = np.random.default_rng(0)
    draws = [T.draw_flip_axes(rng) for _ in range(20_000)]
    p_unflipped = 0.6 + 0.4 * 0.4 * 0.6 * (1 / 3)  # no round, or exactly two rounds on the same axis
    assert abs(np.mean([len(d) == 0 for d in draws]) - p_unflipped) < 0.02
    assert all(len(set(d)) == len(d) and all(0 <= a < 3 for a in d) for d in draws)


def test_genesis_outpaints_and_shuffles_with_the_published_probabilities():
    patch = z_scored_patch(shape=(12, 12, 12), seed=12)[None]
    only_painting = T.GenesisTransform(shuffle=T.LocalPixelShuffleTransform(p_per_channel=0.0),
                                       nonlinear=T.NonLinearIntensityTransform(p_per_channel=0.0), seed=0)
    # out-painting replaces most voxels, in-painting at most 5 boxes of (1/3)^3
    outpainted = sum((lambda out: (out["data"] != out["target"]).mean() > 0.4)(only_painting(data=patch))
                     for _ in range(200))
    assert 125 <= outpainted <= 163  # published: 0.9 * 0.8 = 72 % (+- 3 standard deviations)
    only_shuffling = T.GenesisTransform(nonlinear=T.NonLinearIntensityTransform(p_per_channel=0.0), p_paint=0.0, seed=0)
    patch = z_scored_patch(seed=12)[None]  # windows of side up to dim // 10 = 2 .. 3 voxels
    shuffled = sum((lambda out: (out["data"] != out["target"]).any())(only_shuffling(data=patch)) for _ in range(200))
    assert 79 <= shuffled <= 121  # published: 50 %


# --------------------------------------------------------------------------- previews

def test_preview_png_is_written(tmp_path):
    import matplotlib.image

    patch = z_scored_patch(n_channels=2, seed=13)
    path = preview_transforms(patch, str(tmp_path / "previews" / "transforms.png"), seed=0)
    image = matplotlib.image.imread(path)
    assert os.path.getsize(path) > 0
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 500  # 2 rows x 7 columns

    grid = save_preview_grid({"original": patch[0], "restored": patch[0] * 0.9}, str(tmp_path / "grid.png"),
                             title="restoration")
    assert matplotlib.image.imread(grid).shape[1] > matplotlib.image.imread(grid).shape[0]


def test_preview_grid_refuses_mismatched_columns(tmp_path):
    with pytest.raises(ValueError, match="column 'b' has shape"):
        save_preview_grid({"a": np.zeros((2, 4, 5, 6)), "b": np.zeros((1, 4, 5, 6))}, str(tmp_path / "x.png"))
