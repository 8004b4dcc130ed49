"""Voxels outside the image (nnU-Net's seg < 0: padding of cases smaller than the patch, spatial-augmentation
fill, outside the nonzero region) leave the restoration loss and the per-distortion scores (issue #18)."""
import numpy as np
import pytest
import torch

from nnunet_genesis.pretraining.loss import RestorationAccumulator, RestorationLoss
from nnunet_genesis.pretraining.validation import central_patch, outside_as_nan
from nnunet_genesis.pretraining.recipes import RECIPES, transform_kwargs
from nnunet_genesis.pretraining.scores import R2Sums, distorted_pairs, mean_answer, score_pairs
from nnunet_genesis.distortions.composite import GenesisTransform, inside_image
from nnunet_genesis.distortions.transforms import PairedFlipTransform


def _batch(rng, shape=(2, 2, 12, 14, 10)):
    data = rng.normal(size=shape).astype(np.float32)
    seg = np.zeros((shape[0], 1) + shape[2:], dtype=np.int16)
    seg[0, 0, :3] = -1          # padding along Z in sample 0
    seg[1, 0, :, :, -4:] = -1   # along X in sample 1
    data[seg[:, [0, 0]] < 0] = 0.0
    return data, seg


def test_inside_image_is_seg_not_negative():
    assert inside_image(np.array([-1, 0, 1, 2])).tolist() == [False, True, True, True]


def test_genesis_transform_marks_outside_nan_after_the_same_flips():
    rng = np.random.default_rng(0)
    data, seg = _batch(rng)
    transform = GenesisTransform(flip=PairedFlipTransform(p_per_round=1.0, max_rounds=1), inside_key="seg", seed=3)
    out = transform(data=data.copy(), seg=seg.copy())
    target = out["target"]
    for b in range(2):
        # one axis flipped per sample: find it from the finite values, then check the NaN mask follows it
        matches = [axis for axis in (1, 2, 3) if np.array_equal(np.isnan(target[b, 0]),
                                                                np.flip(seg[b, 0] < 0, axis - 1))]
        assert matches, "the NaN voxels are not the outside voxels flipped as the target"
        axis = matches[0]
        flipped = np.flip(data[b], axis)
        finite = np.isfinite(target[b])
        assert np.array_equal(target[b][finite], flipped[finite])
        assert np.isnan(target[b]).any() and np.isnan(target[b]).all(axis=0).sum() == np.isnan(target[b, 0]).sum()
    assert np.isfinite(out["data"]).all(), "the network's input never holds NaN"
    assert not np.isnan(data).any(), "the input array is not modified"


def test_genesis_transform_without_inside_key_keeps_every_voxel():
    rng = np.random.default_rng(1)
    data, seg = _batch(rng)
    out = GenesisTransform(seed=0)(data=data.copy(), seg=seg)
    assert np.isfinite(out["target"]).all()


def test_recipe_inside_only_sets_the_transform_key():
    assert transform_kwargs(RECIPES["adamw_inpaint_inside"])["inside_key"] == "seg"
    assert "inside_key" not in transform_kwargs(RECIPES["adamw_inpaint"])


def test_loss_leaves_outside_voxels_out():
    target = torch.zeros(1, 1, 4, 4, 4)
    target[..., :2] = float("nan")
    output = torch.zeros(1, 1, 4, 4, 4, requires_grad=True)
    with torch.no_grad():
        output[..., :2] = 100.0          # a wild answer outside the image costs nothing
        output[..., 2:] = 1.0            # inside: error 1 everywhere
    loss = RestorationLoss()(output, target)
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert torch.all(output.grad[..., :2] == 0) and torch.all(output.grad[..., 2:] != 0)
    # without NaN it is plain MSE
    assert RestorationLoss()(torch.ones(1, 1, 2, 2, 2), torch.zeros(1, 1, 2, 2, 2)).item() == pytest.approx(1.0)


def test_accumulator_leaves_outside_voxels_out():
    rng = np.random.default_rng(2)
    inside = torch.from_numpy(rng.normal(size=(1, 1, 4, 4, 4)).astype(np.float32))
    answer = inside + 0.1
    padded_target = torch.cat([inside, torch.full_like(inside, float("nan"))], dim=-1)
    padded_answer = torch.cat([answer, torch.full_like(answer, 50.0)], dim=-1)
    plain, masked = RestorationAccumulator(), RestorationAccumulator()
    plain.add(answer, inside)
    masked.add(padded_answer, padded_target)
    assert masked.r2() == pytest.approx(plain.r2()) and masked.mse() == pytest.approx(plain.mse())


def test_scores_of_a_padded_patch_equal_those_of_the_case_itself():
    rng = np.random.default_rng(4)
    case = rng.normal(size=(1, 6, 8, 6)).astype(np.float32)
    padded = central_patch(case, (10, 12, 8), fill=np.nan)
    assert np.isnan(padded).sum() == padded.size - case.size
    answer_case, answer_padded = case * 0.5, np.nan_to_num(padded) * 0.5 + np.isnan(padded) * 7.0
    a, b = R2Sums(), R2Sums()
    a.add(answer_case, case)
    b.add(answer_padded, padded)
    assert b.r2() == pytest.approx(a.r2()) and b.variance_ratio() == pytest.approx(a.variance_ratio())
    assert mean_answer(padded)[0, 0, 0, 0] == pytest.approx(case.mean(), rel=1e-5)


def test_distorted_pairs_of_padded_patches_score_inside_only():
    rng = np.random.default_rng(5)
    case = rng.normal(size=(1, 10, 12, 10)).astype(np.float32)
    pairs = distorted_pairs([central_patch(case, (12, 16, 12), fill=np.nan)], seed=0)
    for kind, [(distorted, original)] in pairs.items():
        assert np.isfinite(distorted).all()
        assert np.isnan(original).sum() == original.size - case.size, kind
    scores = score_pairs(pairs, restore=lambda d: d)  # the identity, through the network path
    for kind in scores:
        assert scores[kind]["network"] == pytest.approx(scores[kind]["identity"])
        assert scores[kind]["mean"] == pytest.approx(0.0, abs=1e-9)


def test_outside_as_nan_from_the_seg_channel():
    data = np.ones((2, 3, 3, 3), dtype=np.float32)
    seg = np.zeros((1, 3, 3, 3))
    seg[0, 0] = -1
    out = outside_as_nan(data, seg)
    assert np.isnan(out[:, 0]).all() and np.isfinite(out[:, 1:]).all()


def test_v2_transform_passes_the_segmentation():
    from nnunet_genesis.nnunet_v2.augmentation import GenesisRestorationTransform
    rng = np.random.default_rng(6)
    image = torch.from_numpy(rng.normal(size=(1, 8, 8, 8)).astype(np.float32))
    segmentation = torch.zeros((1, 8, 8, 8), dtype=torch.int16)
    segmentation[0, :2] = -1
    genesis = GenesisTransform(flip=PairedFlipTransform(p_per_round=0.0), inside_key="seg", seed=0)
    out = GenesisRestorationTransform(genesis)(image=image, segmentation=segmentation)
    target = out["segmentation"].numpy()
    assert np.isnan(target[0, :2]).all() and np.isfinite(target[0, 2:]).all()


def test_a_network_as_good_as_its_input_is_not_collapsed_where_identity_is_below_a_constant():
    """Small cases: distortions pull padding into the image, so handing the input back can score below the
    mean inside the image; a network doing that well has not collapsed (restoration.collapse_reasons)."""
    from nnunet_genesis.pretraining.scores import collapse_reasons
    kinds = ("local_shuffle", "in_painting")
    copying = {k: {"network": -0.41, "identity": -0.43, "mean": 0.0, "variance_ratio": 1.9} for k in kinds}
    flat = {k: {"network": -0.5, "identity": -0.43, "mean": 0.0, "variance_ratio": 1.9} for k in kinds}
    assert collapse_reasons(copying, None) == []
    assert collapse_reasons(flat, None)
