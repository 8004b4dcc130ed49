"""Issue #11: nothing corrupt passes, nothing is half-written.

Real files throughout: NIfTI files cut short (an interrupted download: the gzip stream stops; or a complete
gzip stream of a NIfTI that lacks voxel bytes), a .npz cut or damaged, checkpoints filled with NaN, and write
failures made real with a file-size limit (RLIMIT_FSIZE, as ``ulimit -f``, set in the child process only) or
an output path whose parent is a regular file (tests run as root, so a read-only folder would not stop them).
Commands are the installed console scripts; every test checks that the message names the file and the fault
and that earlier outputs are byte-identical afterwards.
"""
import glob
import gzip
import os
import re
import resource
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from tests.conftest import run_stock, stock_command, subprocess_env
from tests.msd_fixtures import make_ct_case
from tests.test_submission import SCRIPT as SUBMISSION, TEST_IMAGES, make_decathlon_root, make_predictions, \
    write_prediction

EXIT_FILE_ERROR = 4
SPACING = (0.8, 0.8, 2.5)
SHAPE_ZYX = (14, 20, 20)


# ------------------------------------------------------------------------------------------- helpers

def truncate_gzip_stream(path):
    """An interrupted download: the compressed bytes stop half-way."""
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def truncate_voxel_data(path):
    """A complete gzip stream whose NIfTI lacks the second half of its voxel bytes."""
    with gzip.open(path, "rb") as f:
        payload = f.read()
    with open(path, "wb") as f:
        f.write(gzip.compress(payload[: 352 + (len(payload) - 352) // 2]))


def file_bytes(*paths):
    out = {}
    for path in paths:
        with open(path, "rb") as f:
            out[str(path)] = f.read()
    return out


def tree_bytes(folder):
    return file_bytes(*sorted(p for p in glob.glob(os.path.join(str(folder), "**", "*"), recursive=True)
                              if os.path.isfile(p)))


def hidden_files(folder):
    """Temporary files an atomic write would leave behind (.name.PID.tmp...)."""
    return [n for n in os.listdir(str(folder)) if n.startswith(".") and ".tmp" in n]


def run(args, env=None, max_file_bytes=None, timeout=600):
    """A console script, optionally under a file-size limit (RLIMIT_FSIZE = ``ulimit -f``) set in the child."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                          env=env if env is not None else subprocess_env(),
                          preexec_fn=limit if max_file_bytes is not None else None)


def one_error_line(done, command):
    """stderr ends with exactly one error line of ``command`` and holds no traceback; returns that line."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith(command + ": error:")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def write_labels(array, path, spacing=SPACING, origin=(-10.0, 5.0, 3.0), dtype=np.uint8):
    image = sitk.GetImageFromArray(array.astype(dtype))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))


def labels_case(shift=0):
    labels = np.zeros(SHAPE_ZYX, np.uint8)
    labels[2 + shift:6 + shift, 3:9, 3:11] = 1
    labels[8:11, 12:18, 4:10] = 2
    return labels


@pytest.fixture
def scored(tmp_path):
    """references (3 cases), predictions (case_001 shifted), and an evaluation of them in out/."""
    ref, pred, out = tmp_path / "ref", tmp_path / "pred", tmp_path / "out"
    ref.mkdir()
    pred.mkdir()
    for i in range(3):
        write_labels(labels_case(), ref / ("case_%03d.nii.gz" % i))
        write_labels(labels_case(shift=1 if i == 1 else 0), pred / ("case_%03d.nii.gz" % i))
    done = run([stock_command("nnUNet_genesis_evaluate"), "-ref", ref, "-pred", pred, "-o", out, "-np", 1])
    assert done.returncode == 0, done.stderr
    return ref, pred, out


# ------------------------------------------------------------------ 1. submission: truncated prediction

@pytest.mark.parametrize("damage", [truncate_gzip_stream, truncate_voxel_data])
def test_submission_refuses_a_truncated_prediction_and_keeps_the_earlier_zip(tmp_path, damage):
    decathlon = make_decathlon_root(str(tmp_path / "decathlon"))
    preds = make_predictions(str(tmp_path / "preds"))
    out_zip = str(tmp_path / "submission.zip")
    args = [SUBMISSION, "-i", preds, "-d", decathlon, "-o", out_zip, "--tasks", "4", "5"]
    assert run(args).returncode == 0
    earlier = file_bytes(out_zip)

    victim = os.path.join(preds, "Task04_Hippocampus", "hippocampus_268.nii.gz")
    damage(victim)
    sitk.ReadImage(victim)   # the fault is real: SimpleITK reads the cut file without a word (zero-filled)

    done = run(args + ["--overwrite"])
    assert done.returncode == 1
    line = [l for l in done.stderr.splitlines() if victim in l]
    assert len(line) == 1 and "truncated" in line[0], done.stderr
    assert "Nothing was written" in done.stderr
    assert file_bytes(out_zip) == earlier and not hidden_files(tmp_path)


# --------------------------------------------------------------------- 2. evaluation: truncated files

@pytest.mark.parametrize("which", ["pred", "ref"])
def test_evaluate_refuses_a_truncated_label_map_and_keeps_earlier_results(scored, which):
    ref, pred, out = scored
    earlier = tree_bytes(out)
    victim = (pred if which == "pred" else ref) / "case_002.nii.gz"
    truncate_voxel_data(str(victim))
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(victim))).shape == SHAPE_ZYX   # silently zero-filled

    done = run([stock_command("nnUNet_genesis_evaluate"), "-ref", ref, "-pred", pred, "-o", out, "-np", 1])
    assert done.returncode == 1
    line = one_error_line(done, "nnUNet_genesis_evaluate")
    assert str(victim) in line and "truncated" in line
    assert ("prediction" if which == "pred" else "reference") in line
    assert tree_bytes(out) == earlier


def test_label_maps_follow_one_policy_in_evaluation_and_submission(tmp_path):
    """Same dtype rule and geometry tolerance in both commands: an origin 5e-4 mm off passes both, 2e-3 mm
    fails both; a float prediction fails both; a float reference with integral values is scored."""
    from competition.submission import case_faults
    from evaluation.evaluate import EvaluationError, evaluate_folders
    image = tmp_path / "image.nii.gz"
    spacing, origin, direction = TEST_IMAGES["Task04_Hippocampus"]["hippocampus_267.nii.gz"]
    write_prediction(str(image), spacing=spacing, origin=origin, direction=direction, seed=3)
    for offset, ok in ((5e-4, True), (2e-3, False)):
        prediction = tmp_path / ("p%g" % offset) / "image.nii.gz"
        prediction.parent.mkdir()
        write_prediction(str(prediction), spacing=spacing, origin=(origin[0] + offset,) + origin[1:],
                         direction=direction, seed=3)
        faults = case_faults(str(prediction), str(image), [0, 1, 2])
        assert (faults == []) is ok, faults
        if ok:
            evaluate_folders(str(tmp_path), str(prediction.parent), num_processes=1, verbose=False)
        else:
            assert [f for f in faults if f.startswith("origin")]
            with pytest.raises(EvaluationError, match="origin"):
                evaluate_folders(str(tmp_path), str(prediction.parent), num_processes=1, verbose=False)

    floats = tmp_path / "floats"
    floats.mkdir()
    write_prediction(str(floats / "image.nii.gz"), spacing=spacing, origin=origin, direction=direction, seed=3,
                     dtype=np.float32)
    assert [f for f in case_faults(str(floats / "image.nii.gz"), str(image), [0, 1, 2]) if "32-bit float" in f]
    with pytest.raises(EvaluationError, match="32-bit float"):
        evaluate_folders(str(tmp_path), str(floats), num_processes=1, verbose=False)
    # the float file as a *reference*, the integer one as prediction: scored, Dice 1 on every label
    summary = evaluate_folders(str(floats), str(tmp_path), num_processes=1, verbose=False)
    assert summary["mean_over_labels"]["dice"] == 1.0


def test_evaluate_and_compare_with_nothing_in_common_are_errors(scored, tmp_path):
    ref, _, out = scored
    other = tmp_path / "other_pred"
    other.mkdir()
    write_labels(labels_case(), other / "unrelated.nii.gz")
    done = run([stock_command("nnUNet_genesis_evaluate"), "-ref", ref, "-pred", other, "-o", tmp_path / "o2"])
    assert done.returncode == 1
    line = one_error_line(done, "nnUNet_genesis_evaluate")
    assert str(other) in line and "nothing would be scored" in line
    assert not (tmp_path / "o2" / "summary.json").exists()

    # an output folder inside its own input is refused, and nothing is written there
    done = run([stock_command("nnUNet_genesis_evaluate"), "-ref", ref, "-pred", other, "-o", other / "scores"])
    assert done.returncode == 2   # bad input (the shared check of nnunet_genesis.io.atomic)
    assert "lies inside the input folder %s" % other in one_error_line(done, "nnUNet_genesis_evaluate")
    assert os.listdir(str(other)) == ["unrelated.nii.gz"]

    # a second evaluation with other case names, then compare: no case in common
    ref2, pred2 = tmp_path / "ref2", tmp_path / "pred2"
    ref2.mkdir()
    pred2.mkdir()
    write_labels(labels_case(), ref2 / "other_000.nii.gz")
    write_labels(labels_case(), pred2 / "other_000.nii.gz")
    assert run([stock_command("nnUNet_genesis_evaluate"), "-ref", ref2, "-pred", pred2, "-o", tmp_path / "e2"]
               ).returncode == 0
    done = run([stock_command("nnUNet_genesis_compare"), "-a", out, "-b", tmp_path / "e2", "-o", tmp_path / "cmp"])
    assert done.returncode == 1
    line = one_error_line(done, "nnUNet_genesis_compare")
    assert "no case in common" in line and str(out) in line
    assert not (tmp_path / "cmp" / "compare.json").exists()


# -------------------------------------------------------------------- 3. NaN weights and a NaN loss

def nan_checkpoint(path, names=("conv_blocks_context.0.blocks.0.conv.weight",), everything=False):
    from tests.test_finetune_e2e import published_genesis_checkpoint
    published_genesis_checkpoint(str(path))
    checkpoint = torch.load(str(path), map_location="cpu")
    state = checkpoint["state_dict"]
    for key in state:
        if everything or key[len("module."):] in names:
            if state[key].is_floating_point():
                state[key] = torch.full_like(state[key], float("nan"))
    torch.save(checkpoint, str(path))
    return path


def test_checkpoint_with_nan_tensors_is_refused_naming_them(tmp_path):
    from nnunet_genesis.checkpoints.files import CheckpointError, load_state_dict_from_checkpoint
    path = nan_checkpoint(tmp_path / "one_nan.pt")
    with pytest.raises(CheckpointError) as error:
        load_state_dict_from_checkpoint(str(path))
    message = str(error.value)
    assert str(path) in message and "non-finite" in message
    assert "conv_blocks_context.0.blocks.0.conv.weight" in message
    assert "conv_blocks_context.1" not in message     # only the tensors that hold NaN are named


def test_truncated_checkpoint_is_named_as_such(tmp_path):
    from nnunet_genesis.checkpoints.files import CheckpointError, read_checkpoint_file
    from tests.test_finetune_e2e import published_genesis_checkpoint
    path = tmp_path / "cut.pt"
    published_genesis_checkpoint(str(path))
    truncate_gzip_stream(str(path))                      # the same cut: half of the bytes
    with pytest.raises(CheckpointError) as error:
        read_checkpoint_file(str(path))
    assert str(path) in str(error.value) and "truncated or damaged" in str(error.value)


def test_transfer_dry_run_refuses_nan_weights(ct_task, tmp_path):
    weights = nan_checkpoint(tmp_path / "all_nan.pt", everything=True)
    report = tmp_path / "report.json"
    done = run([stock_command("nnUNet_genesis_transfer"), "-w", weights, "-t", ct_task.task_name, "-o", report])
    assert done.returncode == 2, done.stdout + done.stderr
    line = one_error_line(done, "nnUNet_genesis_transfer")
    assert str(weights) in line and "non-finite weights (NaN or inf)" in line
    counts = re.search(r"in (\d+) of (\d+) tensors: conv_blocks", line)     # every tensor, named
    assert counts and counts.group(1) == counts.group(2), line
    assert "transferred" not in done.stdout and not report.exists()


def test_study_refuses_nan_weights_before_any_training(tmp_path):
    weights = nan_checkpoint(tmp_path / "nan.pt")
    done = run([stock_command("nnUNet_genesis_study"), "-t", "Task901_X", "-w", weights, "-o", tmp_path / "out",
                "--test_labels", tmp_path], timeout=120)
    assert done.returncode == 2
    line = one_error_line(done, "nnUNet_genesis_study")
    assert str(weights) in line and "non-finite" in line
    assert not (tmp_path / "out").exists()


DIVERGING_TRAINER = '''
import torch
from nnunet_genesis.nnunet_v1.trainers import {base}


class {base}_Diverging({base}):
    """One epoch of two iterations with a network that has diverged: its output convolutions hold
    NaN, so the very first loss is NaN."""
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_num_epochs = 1
        self.num_batches_per_epoch = 2
        self.num_val_batches_per_epoch = 1

    def initialize_network(self):
        super().initialize_network()
        with torch.no_grad():
            for head in self.network.seg_outputs:
                head.weight.fill_(float("nan"))
'''


def test_training_with_nan_weights_or_nan_loss_stops_and_saves_nothing(ct_task, tmp_path):
    ext = tmp_path / "ext"
    ext.mkdir()
    (ext / "diverging.py").write_text(DIVERGING_TRAINER.format(base="nnUNetTrainerV2_Genesis"))
    env = subprocess_env(nnUNet_extTrainer=str(ext))
    results = os.path.join(os.environ["RESULTS_FOLDER"], "nnUNet", "3d_fullres", ct_task.task_name)
    fold = os.path.join(results, "nnUNetTrainerV2_Genesis_Diverging__nnUNetPlansv2.1", "fold_1")

    # -pretrained_weights with NaN tensors: refused before any training, naming file and tensors
    weights = nan_checkpoint(tmp_path / "nan.pt")
    done = run([stock_command("nnUNet_train"), "3d_fullres", "nnUNetTrainerV2_Genesis_Diverging",
                ct_task.task_name, "1", "-pretrained_weights", weights], env=env, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "CheckpointError" in output and str(weights) in output and "non-finite" in output
    assert not glob.glob(os.path.join(fold, "*.model"))

    # a loss that becomes NaN in training: the run stops at once with a clear error, no checkpoint saved
    done = run([stock_command("nnUNet_train"), "3d_fullres", "nnUNetTrainerV2_Genesis_Diverging",
                ct_task.task_name, "1"], env=env, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert "NonFiniteLossError: training stopped: the training loss became nan at epoch 0, iteration 1" in output
    assert not glob.glob(os.path.join(fold, "*.model")), os.listdir(fold)
    logs = []
    for path in glob.glob(os.path.join(fold, "training_log_*.txt")):     # one per run (named by start time)
        with open(path) as f:
            logs.append(f.read())
    assert any("training stopped: the training loss became nan" in log for log in logs)


def test_pretraining_whose_loss_becomes_nan_stops_and_saves_nothing(ct_task, tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    _write_scan(folder / "a.nii.gz", 41)
    _write_scan(folder / "b.nii.gz", 42)
    run_stock([stock_command("nnUNet_genesis_prepare"), "-t", ct_task.task_id, "-i", folder, "-o", 925, "-np", 1],
              env=ct_task.env)
    ext = tmp_path / "ext"
    ext.mkdir()
    (ext / "diverging_pretrain.py").write_text(DIVERGING_TRAINER.format(base="nnUNetTrainerV2_GenesisPretrain"))
    trainer = "nnUNetTrainerV2_GenesisPretrain_Diverging"
    done = run([stock_command("nnUNet_train"), "3d_fullres", trainer, "Task925_GenesisFakeCT", "all"],
               env=subprocess_env(nnUNet_extTrainer=str(ext)), timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert "NonFiniteLossError: training stopped: the training loss became nan at epoch 0, iteration 1" in output
    fold = os.path.join(os.environ["RESULTS_FOLDER"], "nnUNet", "3d_fullres", "Task925_GenesisFakeCT",
                        trainer + "__nnUNetPlansv2.1", "all")
    assert os.path.isdir(fold) and not glob.glob(os.path.join(fold, "*.model")), os.listdir(fold)


# ---------------------------------------------------- 4. prepare: a damaged prepared case is redone

def _write_scan(path, seed, shape=(40, 40, 20)):
    import nibabel as nib
    image, _ = make_ct_case(np.random.default_rng(seed), shape=shape)
    nib.save(nib.Nifti1Image(image, np.diag([1.0, 1.0, 2.0, 1.0])), str(path))


@pytest.mark.parametrize("damage", ["truncate", "corrupt"])
def test_prepare_redoes_a_truncated_or_damaged_case(ct_task, tmp_path, capsys, damage):
    from nnunet_genesis.io.integrity import npz_problem
    from nnunet_genesis.nnunet_v1.prepare import prepare_pretraining_task
    task_id = 921 if damage == "truncate" else 922
    folder = tmp_path / "scans"
    folder.mkdir()
    _write_scan(folder / "a.nii.gz", 21)
    _write_scan(folder / "b.nii.gz", 22)
    report = prepare_pretraining_task(ct_task.task_id, [str(folder)], task_id, 1)
    npz = {c["case_id"]: os.path.join(report["data_dir"], c["case_id"] + ".npz") for c in report["cases"]}
    victim, other = sorted(npz)
    intact = file_bytes(npz[other])
    with open(npz[victim], "rb") as f:
        data = bytearray(f.read())
    if damage == "truncate":             # an --overwrite interrupted while the .npz was rewritten
        data = data[: len(data) * 2 // 3]
    else:                                # damaged later: bytes inside the compressed array flipped
        middle = len(data) // 2
        data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    with open(npz[victim], "wb") as f:
        f.write(data)
    assert npz_problem(npz[victim]) is not None
    capsys.readouterr()

    report = prepare_pretraining_task(ct_task.task_id, [str(folder)], task_id, 1)
    printed = capsys.readouterr().out
    status = {c["case_id"]: c["status"] for c in report["cases"]}
    assert status == {victim: "prepared", other: "already prepared"}
    assert "redoing %s: %s" % (victim, npz[victim]) in printed
    assert [w for w in report["warnings"] if victim in w and npz[victim] in w]
    assert npz_problem(npz[victim]) is None and np.load(npz[victim])["data"].ndim == 4
    assert file_bytes(npz[other]) == intact


def test_preprocessing_a_case_is_atomic(ct_task, tmp_path):
    """nnU-Net's preprocessor writes straight into the stage folder; ours goes through a temporary folder:
    a preprocessing that fails leaves an earlier prepared case byte-identical and nothing behind."""
    from nnunet_genesis.nnunet_v1 import layout
    from nnunet_genesis.nnunet_v1.prepare import _find_preprocessor, prepare_pretraining_task
    from nnunet_genesis.nnunet_v1.prepare_cases import CaseJob, preprocess_atomically
    folder = tmp_path / "scans"
    folder.mkdir()
    _write_scan(folder / "a.nii.gz", 31)
    report = prepare_pretraining_task(ct_task.task_id, [str(folder)], 923, 1)
    case_id = report["cases"][0]["case_id"]
    stage_dir = report["data_dir"]
    before = {name: file_bytes(os.path.join(stage_dir, name)) for name in os.listdir(stage_dir)}
    plans = layout.load_plans(ct_task.plans_3d_file)
    stage = layout.last_stage(plans)
    empty_cropped = tmp_path / "no_cropped_data"   # the preprocessor finds nothing to read: it fails
    empty_cropped.mkdir()
    job = CaseJob(case=None, raw_images_dir="", cropped_dir=str(empty_cropped), stage_dir=stage_dir,
                  preprocessor=_find_preprocessor(plans),
                  target_spacing=plans["plans_per_stage"][stage]["current_spacing"],
                  all_classes=plans["all_classes"], use_mask_for_norm={})
    assert not [n for n in os.listdir(os.path.dirname(stage_dir)) if n.startswith(".preparing_")]
    with pytest.raises(FileNotFoundError, match=case_id):
        preprocess_atomically(job, case_id)
    assert {name: file_bytes(os.path.join(stage_dir, name)) for name in os.listdir(stage_dir)} == before
    assert not [n for n in os.listdir(os.path.dirname(stage_dir)) if n.startswith(".preparing_")]


# ------------------------------------------------ 5 + 6. failed writes: earlier results survive, one line

def test_evaluate_write_failure_keeps_earlier_results_and_says_so_in_one_line(scored, tmp_path):
    ref, pred, out = scored
    earlier = tree_bytes(out)
    write_labels(labels_case(shift=2), pred / "case_000.nii.gz")        # new results would differ
    args = [stock_command("nnUNet_genesis_evaluate"), "-ref", ref, "-pred", pred, "-o", out, "-np", 1]
    done = run(args, max_file_bytes=200)
    assert done.returncode == EXIT_FILE_ERROR
    line = one_error_line(done, "nnUNet_genesis_evaluate")
    assert line == "nnUNet_genesis_evaluate: error: cannot write %s: File too large" % (out / "per_case.csv")
    assert tree_bytes(out) == earlier and not hidden_files(out)

    # an output folder that cannot be created: its parent is a regular file
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    done = run([stock_command("nnUNet_genesis_evaluate"), "-ref", ref, "-pred", pred, "-o", blocker / "out"])
    assert done.returncode == EXIT_FILE_ERROR
    line = one_error_line(done, "nnUNet_genesis_evaluate")
    assert "cannot write %s" % (blocker / "out") in line and "Not a directory" in line

    # the debug switch shows the traceback
    done = run(args, max_file_bytes=200, env=subprocess_env(NNUNET_GENESIS_DEBUG="1"))
    assert done.returncode != 0 and "Traceback" in done.stderr and "WriteError" in done.stderr
    assert tree_bytes(out) == earlier


def test_compare_write_failure_keeps_the_earlier_report(scored, tmp_path):
    _, _, out = scored
    report = tmp_path / "cmp"
    shutil.copytree(str(out), str(tmp_path / "same_scores"))    # a second run (a run with itself is refused)
    args = [stock_command("nnUNet_genesis_compare"), "-a", out, "-b", tmp_path / "same_scores", "-o", report]
    assert run(args + ["--names", "A", "B"]).returncode == 0
    earlier = tree_bytes(report)
    done = run(args + ["--names", "C", "D"], max_file_bytes=300)     # a new report would differ
    assert done.returncode == EXIT_FILE_ERROR
    line = one_error_line(done, "nnUNet_genesis_compare")
    assert "cannot write %s" % (report / "compare.md") in line and "File too large" in line
    assert tree_bytes(report) == earlier and not hidden_files(report)


def test_submission_zip_write_failure_keeps_the_earlier_zip(tmp_path):
    decathlon = make_decathlon_root(str(tmp_path / "decathlon"))
    preds = make_predictions(str(tmp_path / "preds"))
    out_zip = tmp_path / "submission.zip"
    args = [SUBMISSION, "-i", preds, "-d", decathlon, "-o", out_zip, "--tasks", "4"]
    assert run(args).returncode == 0
    earlier = file_bytes(out_zip)
    write_prediction(os.path.join(preds, "Task04_Hippocampus", "hippocampus_267.nii.gz"),
                     test_image=("Task04_Hippocampus", "hippocampus_267.nii.gz"), seed=9)
    done = run(args + ["--overwrite"], max_file_bytes=300)
    assert done.returncode == EXIT_FILE_ERROR
    line = one_error_line(done, "nnUNet_genesis_submission")
    assert line == "nnUNet_genesis_submission: error: cannot write %s: File too large" % out_zip
    assert file_bytes(out_zip) == earlier and not hidden_files(tmp_path)
    with zipfile.ZipFile(str(out_zip)) as archive:
        assert archive.testzip() is None


def test_transfer_report_write_failure_is_not_a_refusal(ct_task, tmp_path):
    from nnunet_genesis.nnunet_v1.network import build_generic_unet
    from tests.test_finetune_e2e import PUBLISHED_KERNELS, PUBLISHED_POOLS, published_genesis_checkpoint
    weights = tmp_path / "genesis.pt"
    published_genesis_checkpoint(str(weights))
    report = tmp_path / "report.json"
    args = [stock_command("nnUNet_genesis_transfer"), "-w", weights, "-t", ct_task.task_name, "-o", report]
    assert run(args).returncode == 0
    earlier = file_bytes(report)

    done = run(args, max_file_bytes=500)                 # accepted, but the report cannot be written
    assert done.returncode == EXIT_FILE_ERROR
    assert one_error_line(done, "nnUNet_genesis_transfer") == \
        "nnUNet_genesis_transfer: error: cannot write %s: File too large" % report
    assert file_bytes(report) == earlier and not hidden_files(tmp_path)

    # refused, and the report cannot be written (its parent is a file): the write failure's status, not 1
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": build_generic_unet(1, 16, 1, PUBLISHED_POOLS, PUBLISHED_KERNELS).state_dict()},
               str(foreign))
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    done = run([stock_command("nnUNet_genesis_transfer"), "-w", foreign, "-t", ct_task.task_name,
                "-o", blocker / "report.json"])
    assert done.returncode == EXIT_FILE_ERROR
    assert "encoder" in done.stderr                      # the refusal itself is still shown
    line = one_error_line(done, "nnUNet_genesis_transfer")
    assert "cannot write %s" % (blocker / "report.json") in line and "Not a directory" in line


def test_prepare_write_failure_is_one_line(ct_task, tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    _write_scan(folder / "a.nii.gz", 31)
    done = run([stock_command("nnUNet_genesis_prepare"), "-t", ct_task.task_id, "-i", folder, "-o", 923, "-np", 1],
               env=ct_task.env, max_file_bytes=4096)
    assert done.returncode == EXIT_FILE_ERROR, done.stdout + done.stderr
    line = one_error_line(done, "nnUNet_genesis_prepare")
    assert line.startswith("nnUNet_genesis_prepare: error: cannot write ") and line.endswith(": File too large")
    raw = os.path.join(os.environ["nnUNet_raw_data_base"], "nnUNet_raw_data", "Task923_GenesisFakeCT")
    leftovers = [p for p in glob.glob(os.path.join(raw, "**", ".*tmp*"), recursive=True)]
    assert not leftovers


def test_preview_write_failure_keeps_the_earlier_png(tmp_path):
    png = tmp_path / "preview.png"
    code = ("import sys, numpy as np; from nnunet_genesis.pretraining.previews import save_preview_grid; "
            "save_preview_grid({'a': np.random.default_rng(int(sys.argv[1])).random((8, 16, 16))}, sys.argv[2])")
    assert run([sys.executable, "-c", code, "1", png]).returncode == 0
    earlier = file_bytes(png)
    done = run([sys.executable, "-c", code, "2", png], max_file_bytes=1000)
    assert done.returncode != 0 and "cannot write %s: File too large" % png in done.stderr
    assert file_bytes(png) == earlier and not hidden_files(tmp_path)


def test_atomic_write_leaves_no_partial_file(tmp_path):
    from nnunet_genesis.io.atomic import WriteError, write_json_atomic
    target = tmp_path / "summary.json"
    write_json_atomic({"run": 1}, str(target))
    earlier = file_bytes(target)
    with pytest.raises(TypeError):                       # not serialisable: fails half-way through the dump
        write_json_atomic({"run": 2, "bad": object()}, str(target))
    assert file_bytes(target) == earlier and not hidden_files(tmp_path)
    with pytest.raises(WriteError) as error:             # a missing folder names the target, not a temp name
        write_json_atomic({"run": 2}, str(tmp_path / "missing" / "summary.json"))
    assert str(error.value) == "cannot write %s: No such file or directory" % (tmp_path / "missing" / "summary.json")
