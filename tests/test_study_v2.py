"""nnUNet_genesis_study --nnunet 2 (#21 item 1): the benefit study through the stock nnUNetv2_train /
nnUNetv2_predict, in its own v2 folders.

Fast: the v2 seam (competition/study_nnunet_v2.py) on a hand-made preprocessed dataset (nnU-Net v2's own
default split, the study's splits_final.json beside the user's untouched folder) and the refusals before
any training (no such dataset, no plans, a configuration the plans lack, a cascade stage, region labels).

End to end: a tiny v2 dataset (tests/test_v2_e2e.py's) planned by the stock nnUNetv2_plan_and_preprocess,
pretrained with our nnUNetTrainer_GenesisPretrain (a tiny subclass), then the study (count 2, seed 0: two
trainings with tiny trainers found through nnUNet_extTrainer), resumed (nothing run again), and resumed
with a published Models Genesis file as the weights (the Genesis arm alone trained again).
"""
import csv
import glob
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch

from competition.cli import study_main
from competition.study import ALL, plan_runs
from competition.study_inputs import StudyError
from competition.study_nnunet_v2 import NnUNetV2
from competition.study_report import STUDY_FILES
from evaluation.evaluate import evaluate_folders
from tests.conftest import run_stock, stock_command, subprocess_env
from tests.test_finetune_e2e import published_genesis_checkpoint
from tests.test_v2_e2e import NUM_TEST, NUM_TRAINING, TARGET, TARGET_ID, TINY_TRAINERS, write_v2_raw_dataset

CASES = ["case_%02d" % i for i in range(7)]

# the two arms: the same tiny budget; neither mirrors its end-of-training validation case 8 ways (stock
# nnUNetTrainerNoMirroring; the study's own predictions run without test-time augmentation anyway)
STUDY_TRAINERS = TINY_TRAINERS + '''

from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerNoMirroring import \\
    nnUNetTrainerNoMirroring
from nnunet_genesis.nnunet_v2.trainers.seeded import SeededTraining


class StudyScratchV2_Tiny(_TinyBudget, SeededTraining, nnUNetTrainerNoMirroring):
    pass


class StudyGenesisV2_Tiny(GenesisV2_Tiny, nnUNetTrainerNoMirroring):
    pass
'''


# ------------------------------------------------------------------------------------------ the seam
def _plans(configurations=None):
    return {"plans_name": "nnUNetPlans", "dataset_name": "Dataset970_Fake",
            "configurations": configurations or {"3d_fullres": {"data_identifier": "nnUNetPlans_3d_fullres",
                                                                "architecture": {}}}}


def _v2_dataset(root, cases=CASES, labels=None, plans=None):
    """A preprocessed v2 dataset as nnUNetv2_plan_and_preprocess leaves it, by name only: plans, dataset.json
    and the configuration's data folder (nnU-Net's file names, empty files: nothing here reads them)."""
    folder = root / "nnUNet_preprocessed" / "Dataset970_Fake"
    data = folder / "nnUNetPlans_3d_fullres"
    data.mkdir(parents=True)
    for case in cases:
        for suffix in (".b2nd", "_seg.b2nd", ".pkl"):
            (data / (case + suffix)).write_bytes(b"")
    (folder / "gt_segmentations").mkdir()
    (folder / "nnUNetPlans.json").write_text(json.dumps(plans or _plans()))
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": labels or {"background": 0, "organ": 1, "lesion": 2},
        "numTraining": len(cases), "file_ending": ".nii.gz"}))
    return folder


def _backend(root, **options):
    return NnUNetV2({"nnUNet_preprocessed": str(root / "nnUNet_preprocessed"), "nnUNet_raw": str(root / "raw")},
                    str(root / "study"), device="cpu", **options)


def test_v2_seam_uses_nnunets_default_split_and_its_own_splits_file(tmp_path):
    from nnunetv2.utilities.crossval_split import generate_crossval_split
    folder = _v2_dataset(tmp_path)
    nn = _backend(tmp_path)
    assert nn.find_task("970") == nn.find_task("Dataset970_Fake") == str(folder)
    assert nn.training_cases(str(folder)) == CASES and nn.labels(str(folder)) == {1: "organ", 2: "lesion"}
    assert nn.num_modalities(str(folder)) == 1
    assert nn.default_test_images("Dataset970_Fake") == str(tmp_path / "raw" / "Dataset970_Fake" / "imagesTs")
    train, val, source = nn.user_fold(str(folder), 1)
    expected = generate_crossval_split(CASES, seed=12345, n_splits=5)[1]
    assert (train, val) == (list(expected["train"]), list(expected["val"]))
    assert "default 5-fold split" in source and "splits_final.json does not exist" in source

    runs = nn.build_workspace(str(folder), plan_runs(train, ["2", ALL], [0]), val)
    assert [r.fold_index for r in runs] == [0, 0, 1, 1]
    study_dataset = tmp_path / "study" / "nnUNet_preprocessed" / "Dataset970_Fake"
    splits = json.loads((study_dataset / "splits_final.json").read_text())
    assert [s["train"] for s in splits] == [list(runs[0].train_cases), sorted(train)]
    assert all(s["val"] == sorted(val) for s in splits) and [s["count"] for s in splits] == ["2", ALL]
    for entry in ("nnUNetPlans.json", "dataset.json", "nnUNetPlans_3d_fullres", "gt_segmentations"):
        assert os.path.islink(study_dataset / entry), entry
    assert not os.path.exists(folder / "splits_final.json")            # the user's folder is only read

    # the user's own splits_final.json is read (never written), and the study env points at OUT
    (folder / "splits_final.json").write_text(json.dumps([{"train": CASES[:5], "val": CASES[5:]}]))
    assert nn.user_fold(str(folder), 0) == (CASES[:5], CASES[5:], str(folder / "splits_final.json"))
    assert nn.study_env()["nnUNet_results"] == str(tmp_path / "study" / "nnUNet_results")
    fold_dir = nn.fold_dir("Dataset970_Fake", "T", 3)
    assert fold_dir == str(tmp_path / "study" / "nnUNet_results" / "Dataset970_Fake" / "T__nnUNetPlans__3d_fullres"
                           / "fold_3")
    train_command = nn.train_command("Dataset970_Fake", "T", 3, "w.pth", resume=False)
    assert train_command[1:] == ["Dataset970_Fake", "3d_fullres", "3", "-tr", "T", "-p", "nnUNetPlans", "-device",
                                 "cpu", "-pretrained_weights", os.path.abspath("w.pth")]
    assert nn.train_command("Dataset970_Fake", "T", 3, "w.pth", resume=True)[-1] == "--c"


def _refused(tmp_path, capsys, task, *extra):
    weights = tmp_path / "w.pth"
    torch.save({"network_weights": {"w": torch.ones(1)}}, str(weights))
    out = tmp_path / "out"
    status = study_main(["--nnunet", "2", "-t", task, "-w", str(weights), "-o", str(out),
                         "--test_labels", str(tmp_path), *extra])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1, err
    assert not out.exists()                                           # nothing made, nothing trained
    return err


def test_v2_study_refuses_what_it_cannot_train_before_any_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "nnUNet_preprocessed"))
    folder = _v2_dataset(tmp_path)
    assert "no such planned dataset with id 971 (looked in " in _refused(tmp_path, capsys, "971")
    assert "no such planned dataset Dataset971_Other (looked in " in _refused(tmp_path, capsys, "Dataset971_Other")
    err = _refused(tmp_path, capsys, "970", "-p", "nnUNetResEncUNetMPlans")
    assert "no plans nnUNetResEncUNetMPlans.json" in err and "nnUNetv2_plan_and_preprocess -d 970 -c 3d_fullres" in err
    err = _refused(tmp_path, capsys, "970", "-c", "2d")
    assert "configuration 2d is not in the plans nnUNetPlans; they have 3d_fullres" in err
    assert str(folder / "nnUNetPlans.json") in err
    cascade = dict(_plans()["configurations"], **{"3d_cascade_fullres": {"inherits_from": "3d_fullres",
                                                                        "previous_stage": "3d_lowres"}})
    (folder / "nnUNetPlans.json").write_text(json.dumps(_plans(cascade)))
    assert "is a cascade stage after 3d_lowres" in _refused(tmp_path, capsys, "970", "-c", "3d_cascade_fullres")
    shutil.rmtree(folder / "nnUNetPlans_3d_fullres")
    err = _refused(tmp_path, capsys, "970")
    assert "no preprocessed cases of configuration 3d_fullres" in err and "nnUNetv2_preprocess -d 970" in err
    shutil.rmtree(folder)
    _v2_dataset(tmp_path, labels={"background": 0, "whole": [1, 2], "core": 2})
    assert "region-based labels (whole)" in _refused(tmp_path, capsys, "970")
    with pytest.raises(SystemExit):                                      # -c is v2's: parser error, exit 2
        study_main(["-t", "970", "-w", "w", "-o", "o", "--test_labels", "l", "-c", "2d"])
    assert "-c/--configuration and -p/--plans are for --nnunet 2" in capsys.readouterr().err
    with pytest.raises(StudyError, match="environment variable nnUNet_preprocessed is not set: nnU-Net v2"):
        NnUNetV2({}, str(tmp_path / "study"), device="cpu")
    without_raw = NnUNetV2({"nnUNet_preprocessed": str(tmp_path)}, str(tmp_path / "study"), device="cpu")
    with pytest.raises(StudyError, match="--test_images is not given and nnUNet_raw is not set"):
        without_raw.default_test_images("Dataset970_Fake")


# ------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def v2_study(module_tmp_path_factory):
    root = module_tmp_path_factory.mktemp("study_v2")
    (root / "ext").mkdir()
    (root / "ext" / "tiny_study_v2.py").write_text(STUDY_TRAINERS)
    folders = {key: str(root / key) for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for path in folders.values():
        os.makedirs(path)
    raw = write_v2_raw_dataset(folders["nnUNet_raw"])
    env = subprocess_env(nnUNet_extTrainer=str(root / "ext"), nnUNet_n_proc_DA=1, nnUNet_def_n_proc=1, **folders)
    run_stock([stock_command("nnUNetv2_plan_and_preprocess"), "-d", TARGET_ID, "-c", "3d_fullres", "-np", 1], env=env)
    run_stock([stock_command("nnUNet_genesis_prepare"), "--nnunet", 2, "-t", TARGET_ID, "-i", raw, "-o", 962,
               "-np", 1], env=env)
    run_stock([stock_command("nnUNetv2_train"), 962, "3d_fullres", "all", "-tr", "GenesisPretrainV2_Tiny",
               "-device", "cpu"], env=env)
    weights = glob.glob(os.path.join(folders["nnUNet_results"], "Dataset962_*", "GenesisPretrainV2_Tiny__nnUNetPlans"
                                     "__3d_fullres", "fold_all", "checkpoint_final.pth"))
    assert len(weights) == 1
    user_dataset = os.path.join(folders["nnUNet_preprocessed"], TARGET)
    return {"root": root, "env": env, "raw": raw, "folders": folders, "weights": weights[0], "out": root / "study",
            "user_dataset": user_dataset, "user_files": sorted(os.listdir(user_dataset))}


def _run(s, weights):
    command = [stock_command("nnUNet_genesis_study"), "--nnunet", "2", "-t", str(TARGET_ID), "-w", weights,
               "-o", str(s["out"]), "--test_labels", os.path.join(s["raw"], "labelsTs"), "--counts", "2",
               "--seeds", "0", "--scratch_trainer", "StudyScratchV2_Tiny", "--genesis_trainer", "StudyGenesisV2_Tiny"]
    done = subprocess.run(command, env=s["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    return done


def _commands_run(s):
    """{(run, command): times started} from the study's logs."""
    counts = {}
    for log in glob.glob(os.path.join(str(s["out"]), "logs", "*.log")):
        text = open(log).read()
        for command in ("nnUNetv2_train", "nnUNetv2_predict"):
            counts[(os.path.basename(log).split("__")[0], command)] = text.count("/%s " % command)
    return counts


def _fresh_scores(predictions, labels_dir, out):
    evaluate_folders(labels_dir, predictions, labels=[1, 2], out_dir=out, num_processes=1, verbose=False)
    with open(os.path.join(out, "per_case.csv")) as f:
        rows = list(csv.DictReader(f))
    return {c: float(np.mean([float(r["dice"]) for r in rows if r["case"] == c])) for c in {r["case"] for r in rows}}


def test_v2_study_end_to_end_writes_the_three_files_and_scores_exactly_the_test_cases(v2_study):
    from nnunetv2.utilities.crossval_split import generate_crossval_split
    s = v2_study
    done = _run(s, s["weights"])
    assert "written: " in done.stdout
    for name in STUDY_FILES:
        assert (s["out"] / name).is_file() and (s["out"] / name).stat().st_size > 0, name
    data = json.loads((s["out"] / "study.json").read_text())
    config = data["config"]
    test_cases = ["tinyct_%03d" % i for i in range(NUM_TRAINING, NUM_TRAINING + NUM_TEST)]
    assert config["test_cases"] == test_cases and config["num_test_cases"] == NUM_TEST
    assert config["backend"] == "nnU-Net v2 (3d_fullres, nnUNetPlans)" and config["task"] == TARGET
    assert config["test_images"] == os.path.join(s["raw"], "imagesTs")          # the default: $nnUNet_raw
    assert (config["scratch_trainer"], config["genesis_trainer"]) == ("StudyScratchV2_Tiny", "StudyGenesisV2_Tiny")
    # fold 0 of nnU-Net v2's own default split (the dataset has no splits_final.json)
    fold0 = generate_crossval_split(["tinyct_%03d" % i for i in range(NUM_TRAINING)], seed=12345, n_splits=5)[0]
    assert config["validation_cases"] == list(fold0["val"]) and "default 5-fold split" in config["split_source"]
    assert [(r["arm"], r["count"], r["seed"], r["fold_index"]) for r in data["runs"]] == [
        ("scratch", "2", 0, 0), ("genesis", "2", 0, 0)]
    scratch, genesis = data["runs"]
    assert scratch["train_cases"] == genesis["train_cases"] and len(scratch["train_cases"]) == 2
    assert scratch["training_seed"] == genesis["training_seed"] and scratch["seeded"] and genesis["seeded"]
    assert config["common_random_numbers"]["seeded_pairs"] == 1
    assert set(scratch["train_cases"]) <= set(fold0["train"])
    for run in data["runs"]:
        assert sorted(run["per_case_dice"]) == test_cases
        fresh = _fresh_scores(run["predictions"], os.path.join(s["raw"], "labelsTs"), run["predictions"] + "_fresh")
        assert run["per_case_dice"] == pytest.approx(fresh, abs=1e-9)
        assert run["fold_dir"] == os.path.join(str(s["out"]), "nnUNet_results", TARGET,
                                               "%s__nnUNetPlans__3d_fullres" % run["trainer"], "fold_0")
        assert os.path.isfile(os.path.join(run["fold_dir"], "checkpoint_final.pth"))
        assert np.isfinite(run["validation_dice"])                  # read from fold_0/validation/summary.json
        assert run["records"]["training"]["backend"] == config["backend"]
    with open(os.path.join(genesis["fold_dir"], "transfer_report.json")) as f:
        assert json.load(f)["source"] == s["weights"]
    assert not os.path.exists(os.path.join(scratch["fold_dir"], "transfer_report.json"))
    # the study's own splits; the user's dataset folder and results untouched
    splits = json.loads((s["out"] / "nnUNet_preprocessed" / TARGET / "splits_final.json").read_text())
    assert splits == [{"train": scratch["train_cases"], "val": config["validation_cases"], "count": "2", "seed": 0}]
    assert sorted(os.listdir(s["user_dataset"])) == s["user_files"] and "splits_final.json" not in s["user_files"]
    assert not os.path.exists(os.path.join(s["folders"]["nnUNet_results"], TARGET))
    assert TARGET in (s["out"] / "study.md").read_text()
    logs = {os.path.basename(p).split("__")[0]: open(p).read() for p in glob.glob(str(s["out"] / "logs" / "*.log"))}
    assert "-pretrained_weights %s" % s["weights"] in logs["genesis_n2_s0"]
    assert "-pretrained_weights" not in logs["scratch_n2_s0"]
    assert all(len(NnUNetV2.epoch_done.findall(log)) == 2 for log in logs.values())   # the epoch bar's line
    assert _commands_run(s) == {(run, command): 1 for run in ("scratch_n2_s0", "genesis_n2_s0")
                                for command in ("nnUNetv2_train", "nnUNetv2_predict")}

    # resumed as it is: nothing runs again, the same numbers
    _run(s, s["weights"])
    assert set(_commands_run(s).values()) == {1}
    assert json.loads((s["out"] / "study.json").read_text())["runs"][0]["per_case_dice"] == scratch["per_case_dice"]

    # a published Models Genesis file as the weights: only the Genesis arm trains again (from it)
    published = str(s["root"] / "Genesis_Chest_CT.pt")
    published_genesis_checkpoint(published)
    done = _run(s, published)
    assert "genesis_n2_s0: the pretrained weights (sha256" in done.stdout and "training again" in done.stdout
    counts = _commands_run(s)
    assert counts[("scratch_n2_s0", "nnUNetv2_train")] == 1 and counts[("genesis_n2_s0", "nnUNetv2_train")] == 2
    again = json.loads((s["out"] / "study.json").read_text())
    assert again["config"]["weights"] == published and sorted(again["runs"][1]["per_case_dice"]) == test_cases
    with open(os.path.join(again["runs"][1]["fold_dir"], "transfer_report.json")) as f:
        report = json.load(f)
    assert report["source"] == published and report["encoder_fraction"] > 0.5
