"""nnUNet_genesis_prepare: unlabeled volumes preprocessed with the target task's own plans."""
import glob
import gzip
import hashlib
import json
import os
import pickle

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import run_stock, stock_command, subprocess_env
from tests.msd_fixtures import make_ct_case, write_unusual_sources

CT_PRETRAIN_ID = 911
PLANS = "nnUNetPlansv2.1"


def _tree_hashes(*folders):
    """sha256 of every file below the folders (to prove the sources are left untouched)."""
    hashes = {}
    for folder in folders:
        for path in sorted(glob.glob(os.path.join(folder, "**", "*"), recursive=True)):
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    hashes[path] = hashlib.sha256(f.read()).hexdigest()
    return hashes


def _load_pickle(path):
    with open(path, "rb") as f:
        return pickle.load(f)


@pytest.fixture(scope="module")
def extra_source(module_tmp_path_factory):
    """A plain folder: a LUNA16-like .mhd/.raw CT volume, a corrupt and a truncated .nii.gz, and a 2D image."""
    folder = module_tmp_path_factory.mktemp("extra_source")
    image = write_unusual_sources(folder)
    good = str(folder / "good_then_truncated.nii.gz")
    nib.save(nib.Nifti1Image(image, np.diag([1.0, 1.0, 2.0, 1.0])), good)
    with open(good, "rb") as f:
        payload = gzip.decompress(f.read())
    os.remove(good)
    # a complete gzip stream of a NIfTI cut short (ITK would silently fill the missing voxels with zeros)
    with open(str(folder / "truncated.nii.gz"), "wb") as f:
        f.write(gzip.compress(payload[: len(payload) // 5]))
    # an interrupted download: the gzip stream itself stops half-way
    compressed = gzip.compress(payload)
    with open(str(folder / "interrupted.nii.gz"), "wb") as f:
        f.write(compressed[: len(compressed) // 2])
    nib.save(nib.Nifti1Image(np.zeros((32, 32), np.int16), np.eye(4)), str(folder / "slice2d.nii.gz"))
    return str(folder)


@pytest.fixture(scope="module")
def prepared_ct(ct_task, extra_source):
    """Run the console script once on the Decathlon CT folder plus the extra folder."""
    before = _tree_hashes(ct_task.decathlon_dir, extra_source)
    output = run_stock([stock_command("nnUNet_genesis_prepare"), "-t", ct_task.task_id,
                        "-i", ct_task.decathlon_dir, extra_source, "-o", CT_PRETRAIN_ID, "-np", 2],
                       env=ct_task.env)
    task_name = "Task%03d_GenesisFakeCT" % CT_PRETRAIN_ID
    preprocessed = os.path.join(os.environ["nnUNet_preprocessed"], task_name)
    with open(os.path.join(preprocessed, "prepare_report.json")) as f:
        report = json.load(f)
    return {"report": report, "output": output, "hashes_before": before, "task_name": task_name,
            "preprocessed": preprocessed, "sources": [ct_task.decathlon_dir, extra_source]}


def _case(report, name_part):
    matches = [c for c in report["cases"] if name_part in c["case_id"]]
    assert len(matches) == 1, (name_part, [c["case_id"] for c in report["cases"]])
    return matches[0]


def test_report_lists_bad_files_with_reasons_and_keeps_the_good(prepared_ct, ct_task, extra_source):
    report = prepared_ct["report"]
    reasons = {os.path.basename(s["file"]): s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"corrupt.nii.gz", "truncated.nii.gz", "interrupted.nii.gz", "slice2d.nii.gz"}
    assert "2D" in reasons["slice2d.nii.gz"]
    assert "unreadable" in reasons["corrupt.nii.gz"]
    assert "truncated" in reasons["truncated.nii.gz"] and "truncated" in reasons["interrupted.nii.gz"]
    # every Decathlon image (8 imagesTr, labels ignored, + 3 imagesTs) and the .mhd volume became a case
    decathlon_images = glob.glob(os.path.join(ct_task.decathlon_dir, "images*", "*.nii.gz"))
    assert len(report["cases"]) == len(decathlon_images) + 1 == 12
    assert len({c["case_id"] for c in report["cases"]}) == 12
    assert _case(report, "luna_like")["files"] == [os.path.join(extra_source, "luna_like.mhd")]
    assert report["task_name"] == prepared_ct["task_name"]
    assert report["next_command"] == ("nnUNet_train 3d_fullres nnUNetTrainerV2_GenesisPretrain %s all"
                                      % prepared_ct["task_name"])
    assert report["next_command"] in prepared_ct["output"]
    assert "corrupt.nii.gz" in prepared_ct["output"]
    raw_report = os.path.join(os.environ["nnUNet_raw_data_base"], "nnUNet_raw_data", report["task_name"],
                              "prepare_report.json")
    assert os.path.isfile(raw_report)


def test_valid_cases_are_preprocessed_with_one_channel_plus_seg(prepared_ct, ct_task):
    plans = ct_task.load_plans_3d()
    stage = max(plans["plans_per_stage"])
    stage_dir = os.path.join(prepared_ct["preprocessed"], "%s_stage%d" % (plans["data_identifier"], stage))
    for case in prepared_ct["report"]["cases"]:
        data = np.load(os.path.join(stage_dir, case["case_id"] + ".npz"))["data"]
        assert data.shape[0] == 1 + 1          # CT channel + nnU-Net's (nonzero-mask) seg channel
        assert set(np.unique(data[-1])) <= {-1.0, 0.0}
        props = _load_pickle(os.path.join(stage_dir, case["case_id"] + ".pkl"))
        assert "class_locations" in props
        assert np.allclose(props["spacing_after_resampling"], plans["plans_per_stage"][stage]["current_spacing"])
        raw = os.path.join(os.environ["nnUNet_raw_data_base"], "nnUNet_raw_data", prepared_ct["task_name"],
                           "imagesTr", case["case_id"] + "_0000.nii.gz")
        assert os.path.isfile(raw)
    assert os.path.isfile(os.path.join(prepared_ct["preprocessed"], "dataset.json"))


PLAN_FIELDS = ["num_modalities", "modalities", "base_num_features", "conv_per_stage", "normalization_schemes",
               "use_mask_for_norm", "transpose_forward", "transpose_backward", "data_identifier",
               "preprocessor_name", "num_classes", "all_classes", "num_stages"]
STAGE_FIELDS = ["patch_size", "pool_op_kernel_sizes", "conv_kernel_sizes", "current_spacing", "original_spacing",
                "num_pool_per_axis", "batch_size", "do_dummy_2D_data_aug"]


def test_plans_define_the_same_network_and_preprocessing_as_the_target(prepared_ct, ct_task):
    target = ct_task.load_plans_3d()
    ours = _load_pickle(os.path.join(prepared_ct["preprocessed"], PLANS + "_plans_3D.pkl"))
    for key in PLAN_FIELDS:
        assert repr(ours[key]) == repr(target[key]), key
    assert ours["plans_per_stage"].keys() == target["plans_per_stage"].keys()
    for stage in target["plans_per_stage"]:
        for key in STAGE_FIELDS:
            assert np.array_equal(np.asarray(ours["plans_per_stage"][stage][key]),
                                  np.asarray(target["plans_per_stage"][stage][key])), (stage, key)
    assert ours["dataset_properties"]["intensityproperties"] == target["dataset_properties"]["intensityproperties"]
    assert ours["preprocessed_data_folder"] == prepared_ct["preprocessed"]
    # the plans list exactly the new task's cases
    assert sorted(os.path.basename(f)[:-4] for f in ours["list_of_npz_files"]) == \
        sorted(c["case_id"] for c in prepared_ct["report"]["cases"])


def test_plans_build_the_same_generic_unet_as_the_target(prepared_ct, ct_task):
    from nnunet_genesis.nnunet_v1.network import build_network_from_plans
    ours = _load_pickle(os.path.join(prepared_ct["preprocessed"], PLANS + "_plans_3D.pkl"))
    target_net = build_network_from_plans(ct_task.load_plans_3d())
    our_net = build_network_from_plans(ours)
    target_shapes = {k: tuple(v.shape) for k, v in target_net.state_dict().items()}
    our_shapes = {k: tuple(v.shape) for k, v in our_net.state_dict().items()}
    assert our_shapes == target_shapes


def test_ct_normalisation_uses_the_target_statistics(prepared_ct, ct_task):
    """A Decathlon test image already has the target spacing, so nnU-Net does not resample it and every voxel
    must be (clip(v, p0.5, p99.5) - mean) / sd with the target's foreground statistics."""
    target = ct_task.load_plans_3d()
    stats = target["dataset_properties"]["intensityproperties"][0]
    assert target["use_mask_for_norm"][0] is False
    stage = max(target["plans_per_stage"])
    stage_dir = os.path.join(prepared_ct["preprocessed"], "%s_stage%d" % (target["data_identifier"], stage))
    case = _case(prepared_ct["report"], "fakect_009")
    props = _load_pickle(os.path.join(stage_dir, case["case_id"] + ".pkl"))
    preprocessed = np.load(os.path.join(stage_dir, case["case_id"] + ".npz"))["data"][0]

    hu = nib.load(case["files"][0]).get_fdata().transpose(2, 1, 0)     # (x, y, z) -> nnU-Net's (z, y, x)
    (z0, z1), (y0, y1), (x0, x1) = props["crop_bbox"]
    hu = hu[z0:z1, y0:y1, x0:x1].transpose(target["transpose_forward"])
    expected = (np.clip(hu, stats["percentile_00_5"], stats["percentile_99_5"]) - stats["mean"]) / stats["sd"]
    assert preprocessed.shape == expected.shape
    np.testing.assert_allclose(preprocessed, expected, rtol=1e-5, atol=1e-4)
    # not a per-case z-score: this mostly-air volume sits far below the target's foreground mean
    assert preprocessed.mean() < -2


def test_other_spacing_is_resampled_to_the_target_spacing(prepared_ct, ct_task):
    target = ct_task.load_plans_3d()
    stage = max(target["plans_per_stage"])
    target_spacing = np.asarray(target["plans_per_stage"][stage]["current_spacing"])
    stage_dir = os.path.join(prepared_ct["preprocessed"], "%s_stage%d" % (target["data_identifier"], stage))
    case = _case(prepared_ct["report"], "luna_like")
    props = _load_pickle(os.path.join(stage_dir, case["case_id"] + ".pkl"))
    data = np.load(os.path.join(stage_dir, case["case_id"] + ".npz"))["data"]
    # the .mhd was written with spacing (x, y, z) = (0.8, 0.8, 2.5); nnU-Net orders axes (z, y, x)
    cropped_zyx = np.array([b - a for a, b in props["crop_bbox"]])
    expected_shape = np.round(np.array([2.5, 0.8, 0.8]) / target_spacing * cropped_zyx).astype(int)
    assert tuple(data.shape[1:]) == tuple(expected_shape)
    assert np.allclose(props["original_spacing"], [2.5, 0.8, 0.8])


def test_sources_are_not_modified(prepared_ct):
    assert _tree_hashes(*prepared_ct["sources"]) == prepared_ct["hashes_before"]


def test_rerun_skips_finished_cases_and_overwrite_redoes_them(prepared_ct, ct_task, extra_source):
    from nnunet_genesis.nnunet_v1.prepare import prepare_pretraining_task
    target = ct_task.load_plans_3d()
    stage_dir = os.path.join(prepared_ct["preprocessed"], "%s_stage%d"
                             % (target["data_identifier"], max(target["plans_per_stage"])))
    npz_files = sorted(glob.glob(os.path.join(stage_dir, "*.npz")))
    for path in npz_files:                       # mark every output as old
        os.utime(path, (1_000_000_000, 1_000_000_000))

    report = prepare_pretraining_task(ct_task.task_id, prepared_ct["sources"], CT_PRETRAIN_ID, num_processes=1)
    assert [c["status"] for c in report["cases"]] == ["already prepared"] * 12
    assert [c["case_id"] for c in report["cases"]] == [c["case_id"] for c in prepared_ct["report"]["cases"]]
    assert all(os.path.getmtime(p) == 1_000_000_000 for p in npz_files)

    # the single .mhd file keeps its case id (tag = its folder's name) and is redone with overwrite;
    # a .npy that nnU-Net's trainer unpacked from the old .npz must go, or training would read the old data
    mhd = os.path.join(extra_source, "luna_like.mhd")
    stale_npy = os.path.join(stage_dir, _case(prepared_ct["report"], "luna_like")["case_id"] + ".npy")
    np.save(stale_npy, np.zeros((2, 2, 2, 2), np.float32))
    report = prepare_pretraining_task(str(ct_task.task_id), [mhd], CT_PRETRAIN_ID, num_processes=1, overwrite=True)
    redone = _case(prepared_ct["report"], "luna_like")["case_id"]
    assert [(c["case_id"], c["status"]) for c in report["cases"]] == [(redone, "prepared")]
    assert os.path.getmtime(os.path.join(stage_dir, redone + ".npz")) > 1_000_000_000
    assert not os.path.exists(stale_npy)
    untouched = [p for p in npz_files if not p.endswith(redone + ".npz")]
    assert all(os.path.getmtime(p) == 1_000_000_000 for p in untouched)
    # the cases of the first run are still there, and the report says so
    assert len(report["stale_cases"]) == 11 and report["warnings"]
    assert _tree_hashes(*prepared_ct["sources"]) == prepared_ct["hashes_before"]


def test_channel_mismatch_is_a_clear_error_and_channels_selects(ct_task, mri_task):
    from nnunet_genesis.nnunet_v1.prepare import PrepareError, prepare_pretraining_task
    mri_test_images = os.path.join(mri_task.decathlon_dir, "imagesTs")
    first = sorted(glob.glob(os.path.join(mri_test_images, "*.nii.gz")))[0]
    with pytest.raises(PrepareError) as err:
        prepare_pretraining_task(ct_task.task_id, [mri_test_images], 913, num_processes=1)
    assert os.path.basename(first) in str(err.value) and "--channels" in str(err.value)
    assert "2 channel" in str(err.value) and "1 modalit" in str(err.value)
    with pytest.raises(PrepareError, match="does not have"):
        prepare_pretraining_task(ct_task.task_id, [mri_test_images], 913, channels=[2], num_processes=1)

    # a 2-channel target takes the channels in the order given: ADC first, then T2
    report = prepare_pretraining_task(mri_task.task_id, [mri_test_images], 914, channels=[1, 0], num_processes=2)
    assert len(report["cases"]) == 2
    source = nib.load(first).get_fdata()                                 # (x, y, z, channel)
    raw_dir = os.path.join(report["raw_dir"], "imagesTr")
    case_id = _case(report, os.path.basename(first)[:-7])["case_id"]
    np.testing.assert_allclose(nib.load(os.path.join(raw_dir, case_id + "_0000.nii.gz")).get_fdata(),
                               source[..., 1])
    np.testing.assert_allclose(nib.load(os.path.join(raw_dir, case_id + "_0001.nii.gz")).get_fdata(),
                               source[..., 0])
    data = np.load(os.path.join(report["data_dir"], case_id + ".npz"))["data"]
    assert data.shape[0] == 2 + 1


def test_nnunet_raw_layout_groups_channels_by_suffix(mri_task):
    from nnunet_genesis.nnunet_v1.prepare import discover_cases
    found = discover_cases([mri_task.raw_dir], expected_channels=2)
    assert not found.skipped
    assert len(found.cases) == 10    # 8 imagesTr (labelsTr ignored) + 2 imagesTs
    for case in found.cases:
        names = [os.path.basename(c.path) for c in case.channels]
        assert [n[-12:] for n in names] == ["_0000.nii.gz", "_0001.nii.gz"]
        assert names[0][:-12] == names[1][:-12]


def test_numbered_single_files_are_not_glued_into_one_case(tmp_path):
    from nnunet_genesis.nnunet_v1.prepare import discover_cases
    for i in range(3):
        nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.int16), np.eye(4)), str(tmp_path / ("scan_%04d.nii.gz" % i)))
    found = discover_cases([str(tmp_path)], expected_channels=1)
    assert len(found.cases) == 3 and all(len(c.channels) == 1 for c in found.cases)


def test_nothing_usable_fails_with_nonzero_exit(ct_task, extra_source, tmp_path):
    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    for name in ("corrupt.nii.gz", "slice2d.nii.gz"):
        (only_bad / name).write_bytes(open(os.path.join(extra_source, name), "rb").read())
    with pytest.raises(AssertionError) as err:
        run_stock([stock_command("nnUNet_genesis_prepare"), "-t", ct_task.task_id, "-i", str(only_bad),
                   "-o", 915], env=subprocess_env())
    message = str(err.value)
    assert "exit 1" in message and "nothing usable" in message and "corrupt.nii.gz" in message
    assert not os.path.isdir(os.path.join(os.environ["nnUNet_preprocessed"], "Task915_GenesisFakeCT"))


def test_stock_data_loader_samples_patches_from_the_prepared_task(prepared_ct, ct_task):
    """nnU-Net's own DataLoader3D, asked to oversample foreground on every sample, copes with a task that has
    no labels (empty class locations) and yields patches of the target's patch size."""
    from nnunet.training.dataloading.dataset_loading import DataLoader3D, load_dataset
    plans = _load_pickle(os.path.join(prepared_ct["preprocessed"], PLANS + "_plans_3D.pkl"))
    stage = max(plans["plans_per_stage"])
    patch = list(plans["plans_per_stage"][stage]["patch_size"])
    folder = os.path.join(prepared_ct["preprocessed"], "%s_stage%d" % (plans["data_identifier"], stage))
    dataset = load_dataset(folder)
    assert len(dataset) == 12
    loader = DataLoader3D(dataset, patch, patch, 2, oversample_foreground_percent=1.0)
    batch = loader.generate_train_batch()
    assert batch["data"].shape == (2, 1, *patch)
    assert np.isfinite(batch["data"]).all()


def test_a_replaced_source_file_is_prepared_again(ct_task, tmp_path):
    from nnunet_genesis.nnunet_v1.prepare import prepare_pretraining_task
    folder = tmp_path / "changing"
    folder.mkdir()
    path = str(folder / "scan.nii.gz")
    first, _ = make_ct_case(np.random.default_rng(11), shape=(40, 40, 20))
    nib.save(nib.Nifti1Image(first, np.diag([1.0, 1.0, 2.0, 1.0])), path)
    assert prepare_pretraining_task(ct_task.task_id, [str(folder)], 916, 1)["cases"][0]["status"] == "prepared"
    assert prepare_pretraining_task(ct_task.task_id, [str(folder)], 916, 1)["cases"][0]["status"] == \
        "already prepared"
    second, _ = make_ct_case(np.random.default_rng(12), shape=(40, 40, 24))
    nib.save(nib.Nifti1Image(second, np.diag([1.0, 1.0, 2.0, 1.0])), path)
    report = prepare_pretraining_task(ct_task.task_id, [str(folder)], 916, 1)
    assert report["cases"][0]["status"] == "prepared"
    data = np.load(os.path.join(report["data_dir"], report["cases"][0]["case_id"] + ".npz"))["data"]
    assert data.shape[1] == 24      # z of the new volume (spacing already the target's: no resampling)
