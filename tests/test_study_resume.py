"""nnUNet_genesis_study end to end (console script, stock nnUNet_train / nnUNet_predict, tiny trainers found
through nnUNet_extTrainer) and resumed after each change of its inputs (#19 items 1 and 3): the numbers
in study.json always equal a fresh evaluation of the stored predictions against the recorded inputs, and
only what depends on a changed input is redone.

One study (count 2, seed 0: two trainings) on Task901_FakeCT, resumed in turn with: other test labels
(re-scored, nothing retrained), -l 1 (re-scored), a truncated prediction of an interrupted run (predicted
again), other test images (predicted again), weights replaced at the same path (Genesis arm trained again),
and a study record whose plans differ (refused in one line).
"""
import glob
import json
import os
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pytest

from evaluation.evaluate import evaluate_folders
from tests.conftest import stock_command, subprocess_env
from tests.test_finetune_e2e import published_genesis_checkpoint
from tests.test_study_checks import write_ct_test_labels

TINY_TRAINERS = '''
from nnunet_genesis.nnunet_v1.trainers import nnUNetTrainerV2_Genesis, nnUNetTrainerV2_Seeded


class TinyBudget:
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_num_epochs = 1
        self.num_batches_per_epoch = 2
        self.num_val_batches_per_epoch = 1


class nnUNetTrainerV2_StudyScratch_Tiny(TinyBudget, nnUNetTrainerV2_Seeded):
    pass


class nnUNetTrainerV2_StudyGenesis_Tiny(TinyBudget, nnUNetTrainerV2_Genesis):
    genesis_warmup_epochs = 0
'''


@pytest.fixture(scope="module")
def study(ct_task, module_tmp_path_factory):
    root = module_tmp_path_factory.mktemp("study_resume")
    (root / "ext").mkdir()
    (root / "ext" / "tiny_study.py").write_text(TINY_TRAINERS)
    weights = str(root / "genesis.pt")
    published_genesis_checkpoint(weights, seed=0)
    return {"root": root, "task": ct_task, "weights": weights, "out": root / "study",
            "labels": write_ct_test_labels(ct_task, str(root / "labels")),
            "images": os.path.join(ct_task.raw_dir, "imagesTs"),
            "env": subprocess_env(nnUNet_extTrainer=str(root / "ext"))}


def run_study(s, labels=None, images=None, *extra):
    command = [stock_command("nnUNet_genesis_study"), "-t", s["task"].task_name, "-w", s["weights"], "-o", str(s["out"]),
               "--test_labels", labels or s["labels"], "--test_images", images or s["images"], "--counts", "2",
               "--seeds", "0", "--scratch_trainer", "nnUNetTrainerV2_StudyScratch_Tiny",
               "--genesis_trainer", "nnUNetTrainerV2_StudyGenesis_Tiny", *extra]
    return subprocess.run(command, env=s["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=1500)


def commands_run(s):
    """How many times each run's log shows nnUNet_train / nnUNet_predict started: {(run, command): n}."""
    counts = {}
    for log in glob.glob(os.path.join(str(s["out"]), "logs", "*.log")):
        run = os.path.basename(log).split("__")[0]
        text = open(log).read()
        for command in ("nnUNet_train", "nnUNet_predict"):
            counts[(run, command)] = text.count("/%s " % command)
    return counts


def study_json(s):
    return json.loads((s["out"] / "study.json").read_text())


def fresh_scores(run, labels_dir, labels):
    """Per test case, mean Dice over ``labels`` of the run's stored predictions, evaluated now."""
    summary_dir = run["predictions"] + "_fresh_eval"
    shutil.rmtree(summary_dir, ignore_errors=True)
    evaluate_folders(labels_dir, run["predictions"], labels=labels, out_dir=summary_dir, num_processes=1, verbose=False)
    import csv
    with open(os.path.join(summary_dir, "per_case.csv")) as f:
        rows = list(csv.DictReader(f))
    shutil.rmtree(summary_dir)
    cases = sorted({r["case"] for r in rows})
    return {c: float(np.mean([float(r["dice"]) for r in rows if r["case"] == c and int(r["label"]) in labels]))
            for c in cases}


def assert_numbers_match_inputs(s, labels_dir, labels):
    data = study_json(s)
    assert data["config"]["labels"] == labels
    assert data["config"]["test_labels"] == os.path.abspath(labels_dir)
    for run in data["runs"]:
        assert sorted(run["per_case_dice"]) == data["config"]["test_cases"]
        assert run["per_case_dice"] == pytest.approx(fresh_scores(run, labels_dir, labels), abs=1e-9)
    return data


def test_study_resumes_only_what_its_changed_inputs_touch(study):
    s = study
    first = run_study(s)
    assert first.returncode == 0, first.stderr[-3000:] + first.stdout[-3000:]
    data = assert_numbers_match_inputs(s, s["labels"], [1, 2])
    assert data["config"]["test_cases"] == ["fakect_008", "fakect_009", "fakect_010"]
    assert len(data["runs"]) == 2 and data["summary"][0]["num_seeds"] == 1
    assert data["config"]["pretraining_record"]["verdict"] in ("learned", "not learned", "unknown")
    assert "Pretraining record of the weights:" in (s["out"] / "study.md").read_text()
    # common random numbers: both arms trained with the pair's one seed, and their logs say so
    scratch, genesis = data["runs"]
    assert scratch["training_seed"] == genesis["training_seed"] and scratch["seeded"] and genesis["seeded"]
    assert data["config"]["common_random_numbers"]["seeded_pairs"] == 1
    assert "Common random numbers: 1 of 1 pairs with both arms" in (s["out"] / "study.md").read_text()
    baseline = commands_run(s)
    assert set(baseline.values()) == {1}                                  # each run trained and predicted once

    # 1. other test labels (case 009's lesion relabelled organ): scored again, nothing retrained
    other = str(s["root"] / "labels_other")
    shutil.copytree(s["labels"], other)
    path = os.path.join(other, "fakect_009.nii.gz")
    image = nib.load(path)
    voxels = np.asarray(image.dataobj).copy()
    voxels[voxels == 2] = 1
    nib.save(nib.Nifti1Image(voxels, image.affine, image.header), path)
    done = run_study(s, other)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "test label maps: 1 changed (fakect_009.nii.gz)" in done.stdout and "scoring again" in done.stdout
    again = assert_numbers_match_inputs(s, other, [1, 2])
    assert [r["per_case_dice"]["fakect_009"] for r in again["runs"]] != [r["per_case_dice"]["fakect_009"]
                                                                          for r in data["runs"]]
    assert commands_run(s) == baseline

    # 2. -l 1: scored again with label 1 only
    done = run_study(s, other, None, "-l", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert_numbers_match_inputs(s, other, [1])
    assert commands_run(s) == baseline

    # 3. a prediction cut short by an interrupted nnUNet_predict, before it was scored: predicted again;
    #    and a damaged record of the other run's evaluation: scored again
    scratch, genesis = sorted(study_json(s)["runs"], key=lambda r: r["arm"] != "scratch")
    shutil.rmtree(scratch["evaluation"])
    cut = os.path.join(scratch["predictions"], "fakect_010.nii.gz")
    data_bytes = open(cut, "rb").read()
    open(cut, "wb").write(data_bytes[:len(data_bytes) // 3])
    open(os.path.join(genesis["evaluation"], "study_evaluation.json"), "w").write('{"predictions": {"fake')
    done = run_study(s, other, None, "-l", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "prediction(s) missing or damaged: fakect_010" in done.stdout
    assert "genesis_n2_s0: its record %s is damaged: scoring again" % os.path.join(
        genesis["evaluation"], "study_evaluation.json") in done.stdout
    assert_numbers_match_inputs(s, other, [1])
    expected = {**baseline, ("scratch_n2_s0", "nnUNet_predict"): 2}
    assert commands_run(s) == expected

    # 4. other test images (one voxel changed in one image): predicted again, not retrained
    images = str(s["root"] / "images_other")
    shutil.copytree(s["images"], images)
    path = os.path.join(images, "fakect_008_0000.nii.gz")
    image = nib.load(path)
    voxels = np.asarray(image.dataobj).copy()
    voxels[0, 0, 0] += 1
    nib.save(nib.Nifti1Image(voxels, image.affine, image.header), path)
    done = run_study(s, other, images, "-l", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("the test images: 1 changed (fakect_008_0000.nii.gz): predicting again") == 2
    assert_numbers_match_inputs(s, other, [1])
    expected = {**expected, ("scratch_n2_s0", "nnUNet_predict"): 3, ("genesis_n2_s0", "nnUNet_predict"): 2}
    assert commands_run(s) == expected

    # 5. the weights replaced at the same path: the Genesis arm is trained again, scratch is not
    published_genesis_checkpoint(s["weights"], seed=1)
    done = run_study(s, other, images, "-l", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "genesis_n2_s0: the pretrained weights (sha256" in done.stdout and "training again" in done.stdout
    assert os.listdir(s["out"] / "superseded") == ["nnUNetTrainerV2_StudyGenesis_Tiny__genesis_n2_s0_1"]
    expected = {**expected, ("genesis_n2_s0", "nnUNet_train"): 2, ("genesis_n2_s0", "nnUNet_predict"): 3}
    assert commands_run(s) == expected
    final = assert_numbers_match_inputs(s, other, [1])
    genesis = [r for r in final["runs"] if r["arm"] == "genesis"][0]
    assert genesis["records"]["training"]["weights_sha256"] == final["config"]["weights_sha256"]

    # 6. the task's plans differ from what the study recorded: refused in one line, nothing run
    record = s["out"] / "study_record.json"
    content = json.loads(record.read_text())
    record.write_text(json.dumps(dict(content, plans_sha256="0" * 64)))
    done = run_study(s, other, images, "-l", "1")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "the task's plans file (sha256 000000000000 ->" in done.stderr and "new -o" in done.stderr
    assert commands_run(s) == expected
    record.write_text(json.dumps(content))
