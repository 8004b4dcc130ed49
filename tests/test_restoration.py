"""Restoration diagnostics (nnunet_genesis/pretraining/scores.py) on hand-made cases, the recipes' schedules,
and the pretraining trainer's learning rate read back after several epochs (no training)."""
import json
import os

import numpy as np
import pytest

from nnunet_genesis.pretraining.recipes import RECIPES, Recipe, learning_rate
from nnunet_genesis.pretraining.scores import (DISTORTIONS, R2Sums, clip_to_floor, collapse_reasons, collapse_warning,
                                        distorted_pairs, format_scores, mean_answer, plot_history,
                                        restoration_verdict, score_pairs, single_distortion)


def test_r2_and_variance_ratio_by_hand():
    original = np.array([[[[0.0, 1.0, 2.0, 3.0]]]])          # one channel, mean 1.5, SST = 5
    answer = np.array([[[[0.0, 1.0, 2.0, 5.0]]]])            # SSE = 4
    sums = R2Sums()
    sums.add(answer, original)
    assert sums.r2() == pytest.approx(1 - 4 / 5)
    # answer's own mean 2, squares around it 4 + 1 + 0 + 9 = 14
    assert sums.variance_ratio() == pytest.approx(14 / 5)


def test_sums_pool_patches_and_channels_around_their_own_means():
    a = np.array([[[[0.0, 2.0]]], [[[10.0, 14.0]]]])         # two channels: SST 2 and 8
    answer = a + np.array([[[[1.0, 1.0]]], [[[0.0, 0.0]]]])   # SSE 2 in channel 0
    sums = R2Sums()
    sums.add(answer, a)
    assert sums.r2() == pytest.approx(1 - 2 / 10)
    assert sums.variance_ratio() == pytest.approx(1.0)       # a shift keeps the variance


def test_baselines_on_hand_made_pairs():
    original = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2)       # mean 3.5, SST 42
    distorted = original.copy()
    distorted[0, 0, 0, 0], distorted[0, 1, 1, 1] = 7.0, 0.0             # a swap: SSE 98
    scores = score_pairs({"local_shuffle": [(distorted, original)]})
    s = scores["local_shuffle"]
    assert s["identity"] == pytest.approx(1 - 98 / 42)
    assert s["mean"] == pytest.approx(0.0)
    assert s["template"] == 1.0                                          # one patch is its own template
    assert np.isnan(s["network"]) and np.isnan(s["variance_ratio"])     # no network given
    assert np.all(mean_answer(original) == 3.5)
    flat = score_pairs({"local_shuffle": [(distorted, original)]}, restore=lambda d: np.zeros_like(d))
    assert flat["local_shuffle"]["network"] == pytest.approx(1 - (original ** 2).sum() / 42)
    assert flat["local_shuffle"]["variance_ratio"] == 0.0
    perfect = score_pairs({"local_shuffle": [(distorted, original)]}, answers={"local_shuffle": [original]})
    assert perfect["local_shuffle"]["network"] == 1.0 and perfect["local_shuffle"]["variance_ratio"] == 1.0


def test_template_baseline_is_the_voxelwise_mean_of_the_originals():
    from nnunet_genesis.pretraining.scores import template_answer
    a, b = np.zeros((1, 1, 1, 2)), np.array([[[[2.0, 4.0]]]])
    assert np.array_equal(template_answer([a, b]), np.array([[[[1.0, 2.0]]]]))
    # template (1, 2) against a = (0, 0): SSE 5, SST 0; against b: SSE 5, SST 2 -> R^2 = 1 - 10 / 2
    s = score_pairs({"in_painting": [(a, a), (b, b)]})["in_painting"]
    assert s["template"] == pytest.approx(1 - 10 / 2)
    assert template_answer([a, np.zeros((1, 1, 1, 3))]) is None


def test_constant_original_has_no_r2():
    constant = np.ones((1, 2, 2, 2))
    sums = R2Sums()
    sums.add(constant, constant)
    assert np.isnan(sums.r2())


def _patches(seed=0, n=3, shape=(1, 20, 24, 20)):
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape[1:]], indexing="ij")
    return [(np.sin(3 * z + k) * np.cos(2 * y) + x + 0.1 * rng.standard_normal(shape[1:]))[None].astype(np.float32)
            for k in range(n)]


def test_single_distortions_do_what_they_say():
    pairs = distorted_pairs(_patches(), seed=3)
    assert set(pairs) == set(DISTORTIONS)
    for distorted, original in pairs["local_shuffle"]:      # values moved within windows, none made up
        assert np.isin(distorted, original).all()
        assert 0.3 < (distorted != original).mean() < 1
    for distorted, original in pairs["non_linear"]:          # a monotone map of every voxel
        order = np.argsort(original.ravel())
        d = distorted.ravel()[order]
        assert np.all(np.diff(d) >= -1e-5) or np.all(np.diff(d) <= 1e-5)
    for distorted, original in pairs["in_painting"]:         # noise in boxes, the rest untouched
        changed = distorted != original
        assert 0 < changed.mean() < 0.5
    for distorted, original in pairs["out_painting"]:        # noise everywhere but the kept windows
        assert (distorted != original).mean() > 0.3
    again = distorted_pairs(_patches(), seed=3)              # fixed streams: the same patches every epoch
    for kind in DISTORTIONS:
        assert all(np.array_equal(a[0], b[0]) for a, b in zip(pairs[kind], again[kind]))


def test_single_distortion_rejects_unknown_kinds():
    with pytest.raises(ValueError, match="unknown distortion"):
        single_distortion("blur")


def test_identity_beats_mean_where_information_is_kept():
    scores = score_pairs(distorted_pairs(_patches(), seed=1))
    for kind in ("local_shuffle", "in_painting"):
        assert scores[kind]["identity"] > 0.5 > scores[kind]["mean"]
    assert scores["out_painting"]["identity"] < 0


def _scores(network, identity=0.85, variance_ratio=0.9):
    return {k: {"network": network, "identity": identity, "mean": 0.0, "variance_ratio": variance_ratio}
            for k in DISTORTIONS}


def test_collapse_fires_on_a_collapsed_network_and_not_on_a_healthy_one():
    pairs = distorted_pairs(_patches(), seed=2)
    collapsed = score_pairs(pairs, restore=lambda d: np.full_like(d, float(d.mean())))
    healthy = score_pairs(pairs, answers={k: [o for _, o in v] for k, v in pairs.items()})
    reasons = collapse_reasons(collapsed, iterations=500)
    assert len(reasons) == 2 and "flat" in reasons[0] and "local_shuffle and in_painting" in reasons[1]
    assert "COLLAPSED" in collapse_warning(reasons)
    assert collapse_reasons(healthy, iterations=500) == []
    assert collapse_reasons(collapsed, iterations=100) == []  # a fresh network is flat too: wait
    assert collapse_reasons(collapsed, iterations=100, min_iterations=50) == reasons
    assert collapse_reasons(collapsed) == reasons            # weights of unknown history: always judged


def test_collapse_rules_separately():
    assert collapse_reasons(_scores(0.6, variance_ratio=0.05))[0].startswith("restored patches are flat")
    below_mean = collapse_reasons(_scores(-0.2))
    assert len(below_mean) == 1 and "no better than a constant" in below_mean[0]
    assert collapse_reasons(_scores(0.3)) == []               # below identity but learning: no collapse


def test_verdict_and_table():
    scores = _scores(0.5)
    scores["local_shuffle"]["network"] = 0.9
    verdict = restoration_verdict(scores)
    assert verdict == {"local_shuffle": True, "in_painting": False, "non_linear": True, "out_painting": True}
    table = format_scores(scores)
    assert "beats identity" in table and "below identity" in table and "beats mean" in table


def test_history_plot_is_written(tmp_path):
    history = [{"epoch": e, "scores": _scores(0.1 * e)} for e in range(4)]
    path = plot_history(history, str(tmp_path / "restoration_progress.png"))
    assert os.path.getsize(path) > 10_000 and os.listdir(tmp_path) == ["restoration_progress.png"]


def test_scores_below_the_plot_floor_are_raised_to_it_and_marked():
    values, below = clip_to_floor([0.5, -1.0, -3.2, float("nan"), -1.5], floor=-1.0)
    assert below == [2, 4]
    assert values[:3] == [0.5, -1.0, -1.0] and np.isnan(values[3]) and values[4] == -1.0


def test_history_plot_of_a_collapsed_run_is_written(tmp_path):
    history = [{"epoch": e, "scores": _scores(-2.0 - e)} for e in range(3)]   # every network score off the axis
    path = plot_history(history, str(tmp_path / "collapsed.png"))
    assert os.path.getsize(path) > 10_000


def test_recipe_schedules():
    adamw = RECIPES["adamw_residual"]
    assert learning_rate(adamw, 0.0) == 0.0
    assert learning_rate(adamw, adamw.warmup / 2) == pytest.approx(adamw.peak_lr / 2)
    assert learning_rate(adamw, adamw.warmup) == pytest.approx(adamw.peak_lr)
    assert learning_rate(adamw, 1.0) == 0.0
    sgd = RECIPES["nnunet_sgd"]   # nnU-Net's poly_lr: 0.01 * (1 - 500/1000) ** 0.9
    assert learning_rate(sgd, 0.5) == pytest.approx(0.01 * 0.5 ** 0.9)
    assert all(learning_rate(RECIPES["published_sgd"], t) == 0.1 for t in (0, 0.3, 0.99))
    with pytest.raises(ValueError):
        from nnunet_genesis.pretraining.recipes import make_optimizer
        make_optimizer(Recipe("x", "rmsprop", 1.0), [])


def _pretrainer(cls, task, output_folder):
    trainer = cls(task.plans_3d_file, 0, output_folder=str(output_folder), dataset_directory=task.preprocessed_dir,
                  batch_dice=False, stage=0, unpack_data=False, deterministic=False, fp16=False)
    trainer.initialize(training=False)
    return trainer


def test_published_variant_keeps_its_constant_rate_after_several_epochs(ct_task, tmp_path):
    from nnunet_genesis.nnunet_v1.trainers import nnUNetTrainerV2_GenesisPretrain, nnUNetTrainerV2_GenesisPretrain_Published
    published = _pretrainer(nnUNetTrainerV2_GenesisPretrain_Published, ct_task, tmp_path / "published")
    for epoch in (0, 5, 50, 500):
        published.maybe_update_lr(epoch)
        assert published.optimizer.param_groups[0]["lr"] == 0.1
        assert published.optimizer.param_groups[0]["momentum"] == 0.9
    default = _pretrainer(nnUNetTrainerV2_GenesisPretrain, ct_task, tmp_path / "default")
    recipe = RECIPES[default.genesis_recipe]
    default.maybe_update_lr(500)
    assert default.optimizer.param_groups[0]["lr"] == pytest.approx(learning_rate(recipe, 0.5))
    assert type(default.optimizer).__name__ == {"sgd": "SGD", "adamw": "AdamW"}[recipe.optimizer]


def test_residual_output_adds_the_input(ct_task, tmp_path):
    import torch
    from nnunet_genesis.nnunet_v1.trainers import nnUNetTrainerV2_GenesisPretrain, nnUNetTrainerV2_GenesisPretrain_Residual
    residual = _pretrainer(nnUNetTrainerV2_GenesisPretrain_Residual, ct_task, tmp_path / "r")
    direct = _pretrainer(nnUNetTrainerV2_GenesisPretrain, ct_task, tmp_path / "d")
    assert RECIPES[residual.genesis_recipe].residual and not RECIPES[direct.genesis_recipe].residual
    direct.network.load_state_dict(residual.network.state_dict())  # same weights, same keys
    x = torch.randn(1, 1, *[int(p) for p in residual.patch_size])
    residual.network.do_ds = direct.network.do_ds = False
    with torch.no_grad():
        assert torch.allclose(residual.network(x), direct.network(x) + x, atol=1e-5)
    json.dumps(RECIPES[residual.genesis_recipe].as_dict())  # the recipe is plain data


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path):
    from nnunet_genesis.io.atomic import atomic_write, write_json_atomic
    path = str(tmp_path / "summary.json")
    write_json_atomic({"a": 1}, path)
    before = open(path, "rb").read()

    def failing(tmp):
        with open(tmp, "w") as f:
            f.write('{"a": ')
        raise OSError("No space left on device")
    with pytest.raises(OSError, match="No space"):
        atomic_write(path, failing)
    assert open(path, "rb").read() == before and os.listdir(tmp_path) == ["summary.json"]


def _inpainted_share(transform, n=300, side=24):
    """Share of ``n`` painted patches that were in-painted: in-painting boxes and out-painting windows both
    lie inside the patch, so only out-painting replaces the corner voxel."""
    data = np.random.default_rng(3).uniform(0.1, 1.0, (n, 1, side, side, side)).astype(np.float32)
    distorted = transform(data=data.copy())["data"]
    return float(np.mean(distorted[:, 0, 0, 0, 0] == data[:, 0, 0, 0, 0]))


def test_the_recipe_sets_the_share_of_in_painted_training_patches(ct_task, tmp_path):
    from nnunet_genesis.pretraining.recipes import DEFAULT_RECIPE, transform_kwargs
    from nnunet_genesis.nnunet_v1.trainers import nnUNetTrainerV2_GenesisPretrain, nnUNetTrainerV2_GenesisPretrain_AdamW
    from nnunet_genesis.distortions.composite import PUBLISHED_P_INPAINT, GenesisTransform
    from nnunet_genesis.distortions.transforms import (LocalPixelShuffleTransform, NonLinearIntensityTransform,
                                                       PairedFlipTransform)
    assert transform_kwargs(RECIPES["adamw"]) == {"p_inpaint": PUBLISHED_P_INPAINT}
    assert transform_kwargs(RECIPES["adamw_inpaint"], {"p_inpaint": 0.5, "p_paint": 1.0}) == \
        {"p_inpaint": 0.5, "p_paint": 1.0}     # a trainer's genesis_transform_kwargs win over the recipe
    default = _pretrainer(nnUNetTrainerV2_GenesisPretrain, ct_task, tmp_path / "default")
    published_mix = _pretrainer(nnUNetTrainerV2_GenesisPretrain_AdamW, ct_task, tmp_path / "adamw")
    assert default.genesis_recipe == DEFAULT_RECIPE
    assert default.make_genesis_transform(0).p_inpaint == RECIPES[DEFAULT_RECIPE].p_inpaint == 0.8
    assert published_mix.make_genesis_transform(0).p_inpaint == PUBLISHED_P_INPAINT
    # what the transform draws: painting only, 300 patches; binomial sd 0.023 at 0.8, 0.023 at 0.2
    for p_inpaint in (RECIPES[DEFAULT_RECIPE].p_inpaint, PUBLISHED_P_INPAINT):
        painting_only = GenesisTransform(flip=PairedFlipTransform(p_per_round=0.0),
                                         shuffle=LocalPixelShuffleTransform(p_per_channel=0.0),
                                         nonlinear=NonLinearIntensityTransform(p_per_channel=0.0),
                                         p_paint=1.0, p_inpaint=p_inpaint, seed=0)
        assert abs(_inpainted_share(painting_only) - p_inpaint) < 0.08
