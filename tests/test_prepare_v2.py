"""nnUNet_genesis_prepare --nnunet 2: unlabeled volumes preprocessed with an nnU-Net v2 target dataset's own plans.

A small CT-like v2 dataset is planned and preprocessed by the stock ``nnUNetv2_plan_and_preprocess``; the stock
console script ``nnUNet_genesis_prepare --nnunet 2`` then prepares the Decathlon-style folder of the same images
plus a folder with a LUNA16-like .mhd, a corrupt and a truncated .nii.gz.  The prepared cases are compared with
nnU-Net's own preprocessing of the same images, and nnU-Net v2's own trainer loads the result.  The three v2
folders are private to this module (set while it runs, restored after).
"""
import json
import os
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from nnunet_genesis.nnunet_v2 import layout
from tests.conftest import run_stock, stock_command, subprocess_env
from tests.msd_fixtures import write_ct_task, write_unusual_sources

TARGET_ID, PRETRAIN_ID = 961, 962
TARGET_NAME, PRETRAIN_NAME = "Dataset961_FakeCT", "Dataset962_GenesisFakeCT"
PLANS, CONFIGURATION = "nnUNetPlans", "3d_fullres"

# run by a fresh Python: nnU-Net v2's own trainer (not found by name: its trainer search is not needed) on the
# prepared dataset, as nnUNetv2_train builds it (run_training.get_trainer_from_args), then one batch and one step
TRAINER_CHECK = r'''
import json, os, sys
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
folder = os.path.join(os.environ["nnUNet_preprocessed"], sys.argv[1])
with open(os.path.join(folder, "nnUNetPlans.json")) as f:
    plans = json.load(f)
with open(os.path.join(folder, "dataset.json")) as f:
    dataset_json = json.load(f)
plans["continue_training"] = False
trainer = nnUNetTrainer(plans=plans, configuration="3d_fullres", fold="all", dataset_json=dataset_json,
                        device=torch.device("cpu"))
trainer.num_iterations_per_epoch = trainer.num_val_iterations_per_epoch = 1
trainer.on_train_start()      # initialize(), get_dataloaders(), copies of plans, dataset.json and fingerprint
batch = next(trainer.dataloader_train)
target = batch["target"][0] if isinstance(batch["target"], list) else batch["target"]
loss = trainer.train_step(batch)["loss"]
print("RESULT " + json.dumps({"data": list(batch["data"].shape), "target_values": sorted(target.unique().tolist()),
                              "keys": sorted(batch["keys"]), "loss": float(loss), "batch_size": trainer.batch_size,
                              "output_folder": trainer.output_folder}))
'''


def _load_json(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def v2_folders(module_tmp_path_factory):
    """Private nnUNet_raw / nnUNet_preprocessed / nnUNet_results for this module's v2 datasets."""
    root = module_tmp_path_factory.mktemp("nnunet_v2")
    folders = {name: str(root / name) for name in layout.FOLDER_VARIABLES}
    with pytest.MonkeyPatch.context() as patch:
        for name, path in folders.items():
            os.makedirs(path)
            patch.setenv(name, path)
        yield folders


@pytest.fixture(scope="module")
def target(v2_folders, module_tmp_path_factory):
    """Dataset961_FakeCT (4 labelled CT-like cases) in v2's raw layout, planned by the stock command; returns the
    Decathlon-style folder its images come from (imagesTr = the same images, imagesTs 2 more)."""
    decathlon = write_ct_task(str(module_tmp_path_factory.mktemp("decathlon_v2")), "Task96_FakeCT", num_training=4,
                              num_test=2)
    raw = os.path.join(v2_folders["nnUNet_raw"], TARGET_NAME)
    for sub in ("imagesTr", "labelsTr"):
        os.makedirs(os.path.join(raw, sub))
    for name in sorted(os.listdir(os.path.join(decathlon, "imagesTr"))):
        shutil.copyfile(os.path.join(decathlon, "imagesTr", name),
                        os.path.join(raw, "imagesTr", name.replace(".nii.gz", "_0000.nii.gz")))
        shutil.copyfile(os.path.join(decathlon, "labelsTr", name), os.path.join(raw, "labelsTr", name))
    with open(os.path.join(raw, "dataset.json"), "w") as f:
        json.dump({"channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1, "lesion": 2},
                   "numTraining": 4, "file_ending": ".nii.gz"}, f)
    run_stock([stock_command("nnUNetv2_plan_and_preprocess"), "-d", TARGET_ID, "-c", CONFIGURATION,
               "-np", 1, "-npfp", 1])
    return decathlon


@pytest.fixture(scope="module")
def extra_source(module_tmp_path_factory):
    """A plain folder: a LUNA16-like .mhd/.raw CT volume (other spacing), a corrupt and a truncated .nii.gz."""
    folder = module_tmp_path_factory.mktemp("extra_v2")
    image = write_unusual_sources(folder)
    nib.save(nib.Nifti1Image(image, np.diag([1.0, 1.0, 2.0, 1.0])), str(folder / "truncated.nii.gz"))
    with open(str(folder / "truncated.nii.gz"), "r+b") as f:   # an interrupted copy: the header reads, data do not
        f.truncate(os.path.getsize(str(folder / "truncated.nii.gz")) // 2)
    return str(folder)


@pytest.fixture(scope="module")
def prepared(target, extra_source):
    """The stock console script, once, on the Decathlon-style folder and the extra folder."""
    output = run_stock([stock_command("nnUNet_genesis_prepare"), "--nnunet", 2, "-t", TARGET_ID,
                        "-i", target, extra_source, "-o", PRETRAIN_ID])
    folder = os.path.join(os.environ["nnUNet_preprocessed"], PRETRAIN_NAME)
    return {"output": output, "folder": folder, "report": _load_json(os.path.join(folder, "prepare_report.json")),
            "target_folder": os.path.join(os.environ["nnUNet_preprocessed"], TARGET_NAME)}


def _dataset(folder):
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    data_dir = os.path.join(folder, PLANS + "_" + CONFIGURATION)
    return infer_dataset_class(data_dir)(data_dir)


def test_layout_names_what_nnunet_v2_names(v2_folders, target, monkeypatch):
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    assert layout.resolve_dataset_name(TARGET_ID) == layout.resolve_dataset_name(str(TARGET_ID)) == \
        layout.resolve_dataset_name(TARGET_NAME) == maybe_convert_to_dataset_name(TARGET_ID) == TARGET_NAME
    assert layout.dataset_name(4, "Hippocampus") == "Dataset004_Hippocampus"
    assert layout.dataset_id_of("Dataset004_Hippocampus") == 4
    with pytest.raises(layout.LayoutError, match="no such dataset with id 963 .*nearest existing: %s" % TARGET_NAME):
        layout.resolve_dataset_name(963)
    plans = layout.load_json(layout.plans_file(os.path.join(v2_folders["nnUNet_preprocessed"], TARGET_NAME)))
    assert layout.configuration_folder_name(plans, CONFIGURATION) == "nnUNetPlans_3d_fullres"
    with pytest.raises(layout.LayoutError, match="configuration 3d_nothing is not in the plans nnUNetPlans"):
        layout.configuration_manager(plans, "3d_nothing")
    assert layout.final_checkpoint("Dataset004_H", "T", "all") == os.path.join(
        v2_folders["nnUNet_results"], "Dataset004_H", "T__nnUNetPlans__3d_fullres", "fold_all", "checkpoint_final.pth")
    assert layout.fold_folder_name(3) == "fold_3"
    monkeypatch.delenv("nnUNet_preprocessed")
    with pytest.raises(layout.LayoutError) as unset:
        layout.require_folder(layout.PREPROCESSED_VARIABLE)
    assert str(unset.value) == "environment variable nnUNet_preprocessed is not set: nnU-Net v2 does not know " \
                               "where its preprocessed datasets are"


def test_report_lists_bad_files_with_reasons_and_keeps_the_good(prepared, target, extra_source):
    report = prepared["report"]
    reasons = {os.path.basename(s["file"]): s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"corrupt.nii.gz", "truncated.nii.gz"}
    assert "unreadable" in reasons["corrupt.nii.gz"] and "truncated" in reasons["truncated.nii.gz"]
    ids = sorted(c["case_id"] for c in report["cases"])
    # every Decathlon image (4 imagesTr, labels ignored, + 2 imagesTs) and the .mhd volume became a case
    assert ids == sorted(["Task96_FakeCT_fakect_%03d" % i for i in range(6)]
                         + [os.path.basename(extra_source) + "_luna_like"])
    assert report["dataset_name"] == PRETRAIN_NAME and report["target_dataset"] == TARGET_NAME
    assert report["next_command"] == "nnUNetv2_train %d 3d_fullres all -tr nnUNetTrainer_GenesisPretrain" \
        % PRETRAIN_ID
    assert report["next_command"] in prepared["output"]
    assert "corrupt.nii.gz" in prepared["output"] and "preparing cases" in prepared["output"]   # the progress bar


def test_plans_are_the_targets_with_the_new_dataset_name(prepared):
    ours = _load_json(os.path.join(prepared["folder"], "nnUNetPlans.json"))
    theirs = _load_json(os.path.join(prepared["target_folder"], "nnUNetPlans.json"))
    assert ours["dataset_name"] == PRETRAIN_NAME and theirs["dataset_name"] == TARGET_NAME
    assert ours["genesis_pretraining"]["target_dataset"] == TARGET_NAME
    assert {k: v for k, v in ours.items() if k not in ("dataset_name", "genesis_pretraining")} == \
        {k: v for k, v in theirs.items() if k != "dataset_name"}
    a, b = layout.configuration_manager(ours, CONFIGURATION), layout.configuration_manager(theirs, CONFIGURATION)
    assert (a.patch_size, a.spacing, a.normalization_schemes) == (b.patch_size, b.spacing, ["CTNormalization"])
    dataset_json = _load_json(os.path.join(prepared["folder"], "dataset.json"))
    target_json = _load_json(os.path.join(prepared["target_folder"], "dataset.json"))
    for key in ("channel_names", "labels", "file_ending"):
        assert dataset_json[key] == target_json[key], key
    assert dataset_json["numTraining"] == len(prepared["report"]["cases"]) == 7
    assert _load_json(os.path.join(prepared["folder"], "dataset_fingerprint.json")) == \
        _load_json(os.path.join(prepared["target_folder"], "dataset_fingerprint.json"))


def test_cases_are_nnunets_own_preprocessing_of_the_same_images(prepared):
    ours, theirs = _dataset(prepared["folder"]), _dataset(prepared["target_folder"])
    assert type(ours).__name__ == "nnUNetDatasetBlosc2"
    assert ours.identifiers == sorted(c["case_id"] for c in prepared["report"]["cases"])
    for i in range(4):   # the target's training images, prepared again: the same arrays as nnU-Net's own
        data, seg, _, props = ours.load_case("Task96_FakeCT_fakect_%03d" % i)
        own_data, own_seg, _, own_props = theirs.load_case("fakect_%03d" % i)
        assert data.shape == own_data.shape and np.allclose(data[:], own_data[:])
        assert set(np.unique(seg[:])) <= {0, -1} and set(np.unique(own_seg[:])) >= {0, 1, 2}
        assert props["class_locations"] == {1: [], 2: []}
        assert np.allclose(props["spacing"], own_props["spacing"])


def test_ct_normalisation_and_spacing_are_the_targets(prepared):
    plans = _load_json(os.path.join(prepared["target_folder"], "nnUNetPlans.json"))
    stats = plans["foreground_intensity_properties_per_channel"]["0"]
    low = (stats["percentile_00_5"] - stats["mean"]) / stats["std"]
    high = (stats["percentile_99_5"] - stats["mean"]) / stats["std"]
    dataset = _dataset(prepared["folder"])
    for case_id in ("Task96_FakeCT_fakect_004", "Task96_FakeCT_fakect_005"):   # imagesTs: never seen by the target
        data = dataset.load_case(case_id)[0][:]
        # air (-1000 HU) is clipped to the target's p0.5: the minimum is exactly its normalised value
        assert np.isclose(data.min(), low, atol=1e-4) and data.max() <= high + 1e-4
    luna = next(c["case_id"] for c in prepared["report"]["cases"] if "luna_like" in c["case_id"])
    data, _, _, props = dataset.load_case(luna)
    from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape
    spacing = layout.configuration_manager(plans, CONFIGURATION).spacing
    expected = compute_new_shape(props["shape_after_cropping_and_before_resampling"], props["spacing"], spacing)
    assert np.allclose(props["spacing"], [2.5, 0.8, 0.8]) and list(data.shape[1:]) == list(expected)


def test_bad_target_is_one_clear_line_and_a_nonzero_exit(prepared, extra_source, capsys):
    done = subprocess.run([stock_command("nnUNet_genesis_prepare"), "--nnunet", "2", "-t", "969", "-i",
                           extra_source, "-o", "970"], env=subprocess_env(), capture_output=True, text=True,
                          timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert lines[0].startswith("nnUNet_genesis_prepare: error: no such dataset with id 969 (looked in "
                               "nnUNet_raw=%s" % os.environ["nnUNet_raw"])
    assert "nearest existing: " in lines[0]
    assert not os.path.exists(os.path.join(os.environ["nnUNet_preprocessed"], "Dataset970_GenesisFakeCT"))
    from nnunet_genesis.commands.cli import prepare_main
    for extra, expected in ((["-p", "nnUNetResEncUNetMPlans"], "no plans nnUNetResEncUNetMPlans.json for the "
                                                               "target Dataset961_FakeCT"),
                            (["-c", "3d_lowres"], "configuration 3d_lowres is not in the plans nnUNetPlans"),
                            (["-o", str(TARGET_ID)], "output dataset id 961 is the target's own id")):
        argv = ["--nnunet", "2", "-t", str(TARGET_ID), "-i", extra_source, "-o", "970"] + extra
        assert prepare_main(argv) == 1, extra
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("nnUNet_genesis_prepare: error: " + expected), lines


def test_rerun_skips_finished_cases_and_redoes_a_damaged_one(prepared, target, extra_source, capsys):
    from nnunet_genesis.nnunet_v2.prepare import case_files, prepare_pretraining_dataset
    data_dir = os.path.join(prepared["folder"], PLANS + "_" + CONFIGURATION)
    damaged = "Task96_FakeCT_fakect_001"
    before = {f: os.stat(os.path.join(data_dir, f)).st_mtime_ns for f in os.listdir(data_dir)}
    reference = _dataset(prepared["folder"]).load_case(damaged)[0][:]
    data_file = case_files(damaged, data_dir)[0]
    with open(data_file, "r+b") as f:
        f.truncate(os.path.getsize(data_file) // 2)
    report = prepare_pretraining_dataset(TARGET_ID, [target, extra_source], PRETRAIN_ID, num_processes=1)
    status = {c["case_id"]: c["status"] for c in report["cases"]}
    assert status.pop(damaged) == "prepared" and set(status.values()) == {"already prepared"}
    assert any(damaged in w and "truncated or damaged" in w for w in report["warnings"])
    after = {f: os.stat(os.path.join(data_dir, f)).st_mtime_ns for f in os.listdir(data_dir)}
    assert sorted(after) == sorted(before)
    assert {f for f in after if after[f] != before[f]} == {os.path.basename(p) for p in case_files(damaged, data_dir)}
    assert np.array_equal(_dataset(prepared["folder"]).load_case(damaged)[0][:], reference)
    assert sorted(os.listdir(prepared["folder"])) == ["dataset.json", "dataset_fingerprint.json", "nnUNetPlans.json",
                                                      "nnUNetPlans_3d_fullres", "prepare_report.json"]
    report = prepare_pretraining_dataset(TARGET_ID, [target, extra_source], PRETRAIN_ID, num_processes=1,
                                         overwrite=True)
    assert {c["status"] for c in report["cases"]} == {"prepared"}
    assert "nnUNetv2_train 962 3d_fullres all" in capsys.readouterr().out


def test_stock_trainer_initialises_and_trains_a_step_on_the_prepared_dataset(prepared, tmp_path):
    script = tmp_path / "trainer_check.py"
    script.write_text(TRAINER_CHECK)
    output = run_stock([sys.executable, str(script), PRETRAIN_NAME],
                       env=subprocess_env(nnUNet_n_proc_DA=0, nnUNet_compile="false"), timeout=300)
    result = json.loads(output.split("RESULT ", 1)[1].splitlines()[0])
    plans = _load_json(os.path.join(prepared["folder"], "nnUNetPlans.json"))
    config = layout.configuration_manager(plans, CONFIGURATION)
    assert result["data"] == [result["batch_size"], 1] + list(config.patch_size)
    assert result["target_values"] == [0]      # all background: nothing to segment, nothing broken
    assert set(result["keys"]) <= {c["case_id"] for c in prepared["report"]["cases"]}
    assert np.isfinite(result["loss"])
    assert result["output_folder"] == layout.fold_folder(PRETRAIN_NAME, "nnUNetTrainer", "all")
    assert os.path.isfile(os.path.join(os.path.dirname(result["output_folder"]), "dataset_fingerprint.json"))
