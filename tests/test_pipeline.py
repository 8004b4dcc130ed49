"""nnUNet_genesis_run_task (competition/pipeline.py): the commands it plans, how it decides a step is done, its
dry run and failures -- and one real run of a small Decathlon-format task through every stock command.

The pure tests give the pipeline a private set of nnU-Net folders (an ``env`` dict) and mark steps done by
writing the files each done-check reads; expected commands are written out by hand from the nnU-Net
command lines documented in the brief, not taken from the implementation.
"""
import json
import os
import pickle
import subprocess
import sys
import time

import numpy as np
import pytest
import SimpleITK as sitk

from competition import pipeline
from competition.cli import run_task_main
from competition.pipeline import (PipelineConfigError, PipelineError, default_pretrain_task_id, format_command,
                                  plan_steps, run_task)
from tests.conftest import run_stock, stock_command, subprocess_env
from tests.msd_fixtures import write_ct_task

BIN = os.path.dirname(sys.executable)
WEIGHTS_TAIL = os.path.join("nnUNet", "3d_fullres", "Task593_GenesisPipeCT",
                            "nnUNetTrainerV2_GenesisPretrain__nnUNetPlansv2.1", "all", "model_final_checkpoint.model")


# ----------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def decathlon_task(module_tmp_path_factory):
    """A Decathlon-format task (3 training + 2 test images) that the pure tests only read."""
    return write_ct_task(str(module_tmp_path_factory.mktemp("decathlon")), "Task93_PipeCT", num_training=3, num_test=2)


@pytest.fixture
def folders(tmp_path):
    """Fresh, private nnU-Net folders for one test, as an environment dict."""
    env = {"nnUNet_raw_data_base": str(tmp_path / "raw_base"), "nnUNet_preprocessed": str(tmp_path / "pre"),
           "RESULTS_FOLDER": str(tmp_path / "results"), "PATH": os.environ.get("PATH", "")}
    for key in ("nnUNet_raw_data_base", "nnUNet_preprocessed", "RESULTS_FOLDER"):
        os.makedirs(env[key])
    env["pred_root"] = str(tmp_path / "predictions")  # not an nnU-Net variable; handed to the pipeline below
    return env


def steps_for(decathlon_task, folders, **kwargs):
    env = {k: v for k, v in folders.items() if k != "pred_root"}
    kwargs.setdefault("pred_root", folders["pred_root"])
    return {s.name: s for s in plan_steps(decathlon_task, env=env, **kwargs)}


def nnunet_env(folders):
    return {k: v for k, v in folders.items() if k != "pred_root"}


def touch(path, mtime=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"x")
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def training_case_ids(decathlon_task):
    with open(os.path.join(decathlon_task, "dataset.json")) as f:
        return [os.path.basename(t["image"])[:-len(".nii.gz")] for t in json.load(f)["training"]]


def decathlon_test_images(decathlon_task):
    with open(os.path.join(decathlon_task, "dataset.json")) as f:
        return [os.path.basename(t) for t in json.load(f)["test"]]


def fake_convert(decathlon_task, folders, task_name="Task093_PipeCT"):
    raw = os.path.join(folders["nnUNet_raw_data_base"], "nnUNet_raw_data", task_name)
    os.makedirs(raw, exist_ok=True)
    with open(os.path.join(decathlon_task, "dataset.json")) as src, open(os.path.join(raw, "dataset.json"), "w") as dst:
        dst.write(src.read())
    return raw


def fake_plan(decathlon_task, folders, task_name="Task093_PipeCT", skip_case=None):
    """3D plans with two stages (like a large task): the data must be in the last stage's folder."""
    pre = os.path.join(folders["nnUNet_preprocessed"], task_name)
    os.makedirs(pre, exist_ok=True)
    with open(os.path.join(pre, "nnUNetPlansv2.1_plans_3D.pkl"), "wb") as f:
        pickle.dump({"plans_per_stage": {0: {}, 1: {}}, "data_identifier": "nnUNetData_plans_v2.1"}, f)
    for case in training_case_ids(decathlon_task):
        if case != skip_case:
            for ext in (".npz", ".pkl"):
                touch(os.path.join(pre, "nnUNetData_plans_v2.1_stage1", case + ext))
    return pre


def fake_prepare(decathlon_task, folders, sources=None, cases=("a", "b")):
    pre = os.path.join(folders["nnUNet_preprocessed"], "Task593_GenesisPipeCT")
    data_dir = os.path.join(pre, "nnUNetData_plans_v2.1_stage0")
    for case in cases:   # a readable .npz (the done-check reads it to the end) and its .pkl
        touch(os.path.join(data_dir, case + ".pkl"))
        np.savez_compressed(os.path.join(data_dir, case + ".npz"), data=np.zeros((2, 4, 4, 4), np.float32))
    touch(os.path.join(pre, "nnUNetPlansv2.1_plans_3D.pkl"))
    report = {"task_name": "Task593_GenesisPipeCT", "target_task": "Task093_PipeCT",
              "plans_identifier": "nnUNetPlansv2.1", "sources": sources or [decathlon_task],
              "cases": [{"case_id": c} for c in cases], "data_dir": data_dir}
    with open(os.path.join(pre, "prepare_report.json"), "w") as f:
        json.dump(report, f)
    return data_dir


def results_dir(folders, task, trainer):
    return os.path.join(folders["RESULTS_FOLDER"], "nnUNet", "3d_fullres", task, trainer + "__nnUNetPlansv2.1")


# ----------------------------------------------------------------------------------------------------------------
# commands
# ----------------------------------------------------------------------------------------------------------------

def test_default_commands_of_a_fresh_task(decathlon_task, folders):
    steps = steps_for(decathlon_task, folders)
    raw_base, results = folders["nnUNet_raw_data_base"], folders["RESULTS_FOLDER"]
    assert list(steps) == ["convert", "plan", "prepare", "pretrain", "finetune", "predict"]
    assert [s.number for s in steps.values()] == [1, 2, 3, 4, 5, 6]
    assert steps["convert"].commands == [[os.path.join(BIN, "nnUNet_convert_decathlon_task"), "-i", decathlon_task,
                                          "-output_task_id", "93", "-p", "2"]]
    assert steps["plan"].commands == [[os.path.join(BIN, "nnUNet_plan_and_preprocess"), "-t", "93",
                                       "-pl2d", "None", "-tl", "2", "-tf", "2"]]
    # Task93 -> Task093_PipeCT; pretraining id 93 + 500
    assert steps["prepare"].commands == [[os.path.join(BIN, "nnUNet_genesis_prepare"), "-t", "93", "-i",
                                          decathlon_task, "-o", "593", "-np", "2"]]
    assert steps["pretrain"].commands == [[os.path.join(BIN, "nnUNet_train"), "3d_fullres",
                                           "nnUNetTrainerV2_GenesisPretrain", "Task593_GenesisPipeCT", "all"]]
    weights = os.path.join(results, WEIGHTS_TAIL)
    assert steps["finetune"].commands == [
        [os.path.join(BIN, "nnUNet_train"), "3d_fullres", "nnUNetTrainerV2_Genesis", "Task093_PipeCT", fold,
         "-pretrained_weights", weights] for fold in ("0", "1", "2", "3", "4")] + [
        # all five folds: nnU-Net's postprocessing choice from their cross-validation
        [os.path.join(BIN, "nnUNet_determine_postprocessing"), "-m", "3d_fullres", "-t", "93",
         "-tr", "nnUNetTrainerV2_Genesis"]]
    assert steps["predict"].commands == [[
        os.path.join(BIN, "nnUNet_predict"),
        "-i", os.path.join(raw_base, "nnUNet_raw_data", "Task093_PipeCT", "imagesTs"),
        "-o", os.path.join(folders["pred_root"], "Task93_PipeCT"), "-t", "93", "-m", "3d_fullres",
        "-tr", "nnUNetTrainerV2_Genesis", "-f", "0", "1", "2", "3", "4",
        "--num_threads_preprocessing", "2", "--num_threads_nifti_save", "2"]]
    # every command is one of the stock console scripts installed beside this Python
    for step in steps.values():
        for command in step.commands:
            assert os.path.isfile(command[0]), command[0]
    assert not any(s.done for s in steps.values())


def test_options_reach_the_commands(decathlon_task, folders, tmp_path):
    extra = tmp_path / "more_scans"
    extra.mkdir()
    steps = steps_for(decathlon_task, folders, task_id=903, folds=["0", "all", 0], unlabeled=[str(extra)],
                      pretrainer="MyPretrainer", trainer="MyTrainer", plans_identifier="MyPlans", num_processes=3,
                      plan_2d=True, verify_dataset_integrity=True)
    assert steps["convert"].commands[0][-4:] == ["-output_task_id", "903", "-p", "3"]
    assert steps["plan"].commands[0][1:] == ["-t", "903", "-tl", "3", "-tf", "3", "--verify_dataset_integrity"]
    # 903 -> pretraining id 403; plans identifier passed on since it is not nnU-Net's default
    assert steps["prepare"].commands[0][1:] == ["-t", "903", "-i", decathlon_task, str(extra), "-o", "403",
                                                "-np", "3", "-p", "MyPlans"]
    assert steps["pretrain"].commands[0][1:] == ["3d_fullres", "MyPretrainer", "Task403_GenesisPipeCT", "all",
                                                 "-p", "MyPlans"]
    weights = os.path.join(folders["RESULTS_FOLDER"], "nnUNet", "3d_fullres", "Task403_GenesisPipeCT",
                           "MyPretrainer__MyPlans", "all", "model_final_checkpoint.model")
    assert [c[1:] for c in steps["finetune"].commands] == [
        ["3d_fullres", "MyTrainer", "Task903_PipeCT", fold, "-p", "MyPlans", "-pretrained_weights", weights]
        for fold in ("0", "all")]   # the repeated fold 0 is trained once
    predict = steps["predict"].commands[0]
    assert predict[predict.index("-f") + 1:predict.index("-f") + 3] == ["0", "all"]
    assert predict[predict.index("-tr") + 1] == "MyTrainer" and "MyPlans" in predict


def test_pretrain_task_id_option_and_defaults(decathlon_task, folders):
    steps = steps_for(decathlon_task, folders, pretrain_task_id=777, stop_after="prepare")
    assert steps["prepare"].commands[0][-3] == "777"
    assert default_pretrain_task_id(3) == 503 and default_pretrain_task_id(499) == 999
    assert default_pretrain_task_id(501) == 1 and default_pretrain_task_id(903) == 403
    with pytest.raises(PipelineConfigError, match="--pretrain_task_id"):
        default_pretrain_task_id(500)


def test_stop_after_plans_only_the_first_steps(decathlon_task, folders):
    assert list(steps_for(decathlon_task, folders, stop_after="convert")) == ["convert"]
    assert list(steps_for(decathlon_task, folders, stop_after="pretrain")) == ["convert", "plan", "prepare",
                                                                                 "pretrain"]
    with pytest.raises(PipelineConfigError, match="stop_after"):
        steps_for(decathlon_task, folders, stop_after="train")


# ----------------------------------------------------------------------------------------------------------------
# done-detection from the files on disk
# ----------------------------------------------------------------------------------------------------------------

def test_convert_and_plan_done_from_their_files(decathlon_task, folders):
    fake_convert(decathlon_task, folders)
    cases = training_case_ids(decathlon_task)
    fake_plan(decathlon_task, folders, skip_case=cases[-1])
    steps = steps_for(decathlon_task, folders, stop_after="plan")
    assert steps["convert"].done and "dataset.json" in steps["convert"].skip_reasons[0]
    assert not steps["plan"].done                       # one training case lacks its preprocessed data
    assert "1 of %d" % len(cases) in steps["plan"].pending[0]
    fake_plan(decathlon_task, folders)
    assert steps_for(decathlon_task, folders, stop_after="plan")["plan"].done
    # with --plan_2d the 2D plans are wanted too
    assert not steps_for(decathlon_task, folders, stop_after="plan", plan_2d=True)["plan"].done


def test_prepare_done_only_for_the_same_sources(decathlon_task, folders, tmp_path):
    data_dir = fake_prepare(decathlon_task, folders)
    assert steps_for(decathlon_task, folders, stop_after="prepare")["prepare"].done
    extra = tmp_path / "luna"
    extra.mkdir()
    step = steps_for(decathlon_task, folders, stop_after="prepare", unlabeled=[str(extra)])["prepare"]
    assert not step.done and str(extra) in step.pending[0]
    with open(os.path.join(data_dir, "a.npz"), "r+b") as f:   # an interrupted rewrite: the file is cut
        f.truncate(os.path.getsize(os.path.join(data_dir, "a.npz")) // 2)
    step = steps_for(decathlon_task, folders, stop_after="prepare")["prepare"]
    assert not step.done and "a.npz" in step.pending[0] and "truncated or damaged" in step.pending[0]
    os.remove(os.path.join(data_dir, "b.npz"))          # a prepared case lost its data
    assert not steps_for(decathlon_task, folders, stop_after="prepare")["prepare"].done
    # ... which does not matter any more once the pretraining, its only reader, is finished
    touch(os.path.join(folders["RESULTS_FOLDER"], WEIGHTS_TAIL))
    assert steps_for(decathlon_task, folders, stop_after="prepare")["prepare"].done


def test_pretrain_resumes_then_skips(decathlon_task, folders):
    out = os.path.join(results_dir(folders, "Task593_GenesisPipeCT", "nnUNetTrainerV2_GenesisPretrain"), "all")
    touch(os.path.join(out, "model_latest.model"))
    step = steps_for(decathlon_task, folders, stop_after="pretrain")["pretrain"]
    assert step.commands[0][-2:] == ["all", "-c"]
    touch(os.path.join(out, "model_final_checkpoint.model"))
    step = steps_for(decathlon_task, folders, stop_after="pretrain")["pretrain"]
    assert step.done and step.commands == []


def test_finetune_per_fold_new_started_unvalidated_done(decathlon_task, folders):
    out = results_dir(folders, "Task093_PipeCT", "nnUNetTrainerV2_Genesis")
    touch(os.path.join(out, "fold_0", "model_final_checkpoint.model"))
    touch(os.path.join(out, "fold_0", "validation_raw", "summary.json"))
    touch(os.path.join(out, "fold_1", "model_best.model"))     # started; no latest checkpoint yet
    touch(os.path.join(out, "fold_3", "model_final_checkpoint.model"))   # trained, validation interrupted
    step = steps_for(decathlon_task, folders, folds=(0, 1, 2, 3))["finetune"]
    weights = os.path.join(folders["RESULTS_FOLDER"], WEIGHTS_TAIL)
    assert [c[4:] for c in step.commands] == [["1", "-c"], ["2", "-pretrained_weights", weights], ["3", "-val"]]
    assert len(step.skip_reasons) == 1 and "fold 0" in step.skip_reasons[0]


def test_postprocessing_after_the_five_folds(decathlon_task, folders):
    out = results_dir(folders, "Task093_PipeCT", "nnUNetTrainerV2_Genesis")
    past = time.time() - 100
    for fold in range(5):
        touch(os.path.join(out, "fold_%d" % fold, "model_final_checkpoint.model"), mtime=past)
        touch(os.path.join(out, "fold_%d" % fold, "validation_raw", "summary.json"))
    step = steps_for(decathlon_task, folders)["finetune"]
    assert [os.path.basename(c[0]) for c in step.commands] == ["nnUNet_determine_postprocessing"]
    pp_file = touch(os.path.join(out, "postprocessing.json"))
    assert steps_for(decathlon_task, folders)["finetune"].done
    # predictions made before the postprocessing was chosen lack it: predict again
    for name in decathlon_test_images(decathlon_task):
        touch(os.path.join(folders["pred_root"], "Task93_PipeCT", name), mtime=past + 50)
    assert steps_for(decathlon_task, folders)["predict"].commands[0][-1] == "--overwrite_existing"
    os.utime(pp_file, (past, past))
    assert steps_for(decathlon_task, folders)["predict"].done
    # a fold retrained after the postprocessing was chosen makes it stale
    os.utime(os.path.join(out, "fold_2", "model_final_checkpoint.model"), (past + 10, past + 10))
    assert not steps_for(decathlon_task, folders)["finetune"].done


def test_predict_done_missing_and_stale(decathlon_task, folders):
    out = results_dir(folders, "Task093_PipeCT", "nnUNetTrainerV2_Genesis")
    checkpoint = touch(os.path.join(out, "fold_0", "model_final_checkpoint.model"), mtime=time.time() - 100)
    pred_dir = os.path.join(folders["pred_root"], "Task93_PipeCT")
    names = decathlon_test_images(decathlon_task)
    for name in names:
        touch(os.path.join(pred_dir, name))
    assert steps_for(decathlon_task, folders, folds=[0])["predict"].done
    os.remove(os.path.join(pred_dir, names[0]))
    step = steps_for(decathlon_task, folders, folds=[0])["predict"]
    assert not step.done and "--overwrite_existing" not in step.commands[0]   # nnUNet_predict adds the missing one
    touch(os.path.join(pred_dir, names[0]))
    os.utime(checkpoint, (time.time() + 100, time.time() + 100))              # the model was retrained since
    step = steps_for(decathlon_task, folders, folds=[0])["predict"]
    assert not step.done and step.commands[0][-1] == "--overwrite_existing"
    # a fold that is still to be trained makes every existing prediction stale as well
    step = steps_for(decathlon_task, folders, folds=[0, 1])["predict"]
    assert step.commands[0][-1] == "--overwrite_existing"


# ----------------------------------------------------------------------------------------------------------------
# run_task: dry run, failures, bad input
# ----------------------------------------------------------------------------------------------------------------

@pytest.fixture
def no_subprocess(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a command was run: %s" % (args,))
    monkeypatch.setattr(pipeline.subprocess, "run", refuse)


def test_dry_run_prints_commands_and_runs_nothing(decathlon_task, folders, no_subprocess):
    fake_convert(decathlon_task, folders)
    lines = []
    env = nnunet_env(folders)
    results = run_task(decathlon_task, folds=(0,), pred_root=folders["pred_root"], dry_run=True, env=env,
                       log=lines.append)
    assert [(r.name, r.status) for r in results] == [("convert", "skipped"), ("plan", "dry_run"),
                                                     ("prepare", "dry_run"), ("pretrain", "dry_run"),
                                                     ("finetune", "dry_run"), ("predict", "dry_run")]
    text = "\n".join(lines)
    assert "[skip] convert:" in text
    for header in ("[1/6] convert", "[2/6] plan", "[3/6] prepare", "[4/6] pretrain", "[5/6] finetune",
                   "[6/6] predict"):
        assert header in text
    expected = {s.name: s.commands for s in plan_steps(decathlon_task, folds=(0,), pred_root=folders["pred_root"],
                                                       env=env)}
    for result in results[1:]:
        assert result.commands == expected[result.name] and result.commands
        for command in result.commands:
            assert "[dry run] " + format_command(command, env) in lines
    assert not os.path.exists(os.path.join(folders["nnUNet_preprocessed"], "Task093_PipeCT"))
    assert not os.path.exists(folders["pred_root"])


def test_dry_run_stops_after(decathlon_task, folders, no_subprocess):
    lines = []
    results = run_task(decathlon_task, pred_root=folders["pred_root"], dry_run=True, stop_after="plan",
                       env=nnunet_env(folders), log=lines.append)
    assert [r.name for r in results] == ["convert", "plan"]
    assert not any("prepare" in line for line in lines if line.startswith("[")), lines


def test_failing_step_names_step_and_command(decathlon_task, folders, monkeypatch, capsys):
    calls = []

    def fail(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, 3)
    monkeypatch.setattr(pipeline.subprocess, "run", fail)
    with pytest.raises(PipelineError) as info:
        run_task(decathlon_task, pred_root=folders["pred_root"], env=nnunet_env(folders), log=lambda *a: None)
    assert info.value.step == "convert" and info.value.returncode == 3
    assert "nnUNet_convert_decathlon_task" in info.value.command and "exit status 3" in str(info.value)
    assert len(calls) == 1                              # nothing after the failing step ran
    # the command line: exit status 1 and the message on stderr
    for key in ("nnUNet_raw_data_base", "nnUNet_preprocessed", "RESULTS_FOLDER"):
        monkeypatch.setenv(key, folders[key])
    assert run_task_main(["-i", decathlon_task, "--pred_root", folders["pred_root"]]) == 1
    assert "convert failed (exit status 3)" in capsys.readouterr().err


def test_step_without_its_output_is_an_error(decathlon_task, folders, monkeypatch):
    monkeypatch.setattr(pipeline.subprocess, "run", lambda command, **kw: subprocess.CompletedProcess(command, 0))
    with pytest.raises(PipelineError, match="convert: its command.* succeeded but its output is incomplete"):
        run_task(decathlon_task, pred_root=folders["pred_root"], env=nnunet_env(folders), log=lambda *a: None)


def test_bad_input_is_refused_before_anything_runs(decathlon_task, folders, tmp_path, no_subprocess, capsys):
    env = nnunet_env(folders)
    with pytest.raises(PipelineConfigError, match="RESULTS_FOLDER"):
        plan_steps(decathlon_task, env={k: v for k, v in env.items() if k != "RESULTS_FOLDER"})
    wrong = tmp_path / "Liver"
    wrong.mkdir()
    with pytest.raises(PipelineConfigError, match="TaskXX_Name"):
        plan_steps(str(wrong), env=env)
    # the id is taken by another task: nnU-Net's id lookup would fail later, so refuse now
    os.makedirs(os.path.join(env["nnUNet_preprocessed"], "Task593_Other"))
    with pytest.raises(PipelineConfigError, match="Task593_Other.*--pretrain_task_id"):
        plan_steps(decathlon_task, env=env)
    with pytest.raises(PipelineConfigError, match="does not exist"):
        plan_steps(decathlon_task, env=env, pretrain_task_id=594, unlabeled=[str(tmp_path / "nowhere")])
    with pytest.raises(PipelineConfigError, match="fold"):
        plan_steps(decathlon_task, env=env, pretrain_task_id=594, folds=["first"])
    assert run_task_main(["-i", str(wrong)]) == 2
    assert "TaskXX_Name" in capsys.readouterr().err


def test_format_command_is_copy_pasteable(tmp_path):
    script = tmp_path / "bin dir" / "nnUNet_train"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    command = [str(script), "3d_fullres", "T", "Task001_A", "0", "-pretrained_weights", "/w/my model.model"]
    # not on the PATH: the absolute path, quoted
    assert format_command(command, {"PATH": "/nonexistent"}) == \
        "'%s' 3d_fullres T Task001_A 0 -pretrained_weights '/w/my model.model'" % script
    # the PATH finds this very script: its name is enough
    assert format_command(command, {"PATH": str(script.parent)}).startswith("nnUNet_train 3d_fullres")


# ----------------------------------------------------------------------------------------------------------------
# one real run through every stock command
# ----------------------------------------------------------------------------------------------------------------

TINY_TRAINERS = '''
from nnunet_genesis.nnunet_v1.trainers import nnUNetTrainerV2_Genesis, nnUNetTrainerV2_GenesisPretrain


class nnUNetTrainerV2_GenesisPretrain_PipeTiny(nnUNetTrainerV2_GenesisPretrain):
    """One epoch of two iterations."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_num_epochs = 1
        self.num_batches_per_epoch = 2
        self.num_val_batches_per_epoch = 1


class nnUNetTrainerV2_Genesis_PipeTiny(nnUNetTrainerV2_Genesis):
    """One epoch of two iterations, all of it warm-up."""
    genesis_warmup_epochs = 1

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_num_epochs = 1
        self.num_batches_per_epoch = 2
        self.num_val_batches_per_epoch = 1
'''
E2E_ARGS = ["-t", "903", "-f", "0", "--pretrainer", "nnUNetTrainerV2_GenesisPretrain_PipeTiny",
            "--trainer", "nnUNetTrainerV2_Genesis_PipeTiny"]


@pytest.fixture(scope="module")
def e2e(module_tmp_path_factory):
    """Task93_PipeCT (6 training + 2 test images) run end to end by the console script, as a user would."""
    root = module_tmp_path_factory.mktemp("pipeline_e2e")
    decathlon_dir = write_ct_task(str(root), "Task93_PipeCT", num_training=6, num_test=2)
    ext = root / "ext_trainers"
    ext.mkdir()
    (ext / "tiny_pipeline.py").write_text(TINY_TRAINERS)
    pred_root = str(root / "predictions")
    env = subprocess_env(nnUNet_extTrainer=str(ext))
    output = run_stock([stock_command("nnUNet_genesis_run_task"), "-i", decathlon_dir, "--pred_root", pred_root]
                       + E2E_ARGS, env=env, timeout=900)
    return dict(decathlon_dir=decathlon_dir, pred_root=pred_root, env=env, output=output)


def test_e2e_predictions_for_every_test_image(e2e):
    output = e2e["output"]
    for number, name in enumerate(pipeline.STEP_NAMES, 1):
        assert "[%d/6] %s finished in" % (number, name) in output
    # the pretrained weights went into the fine-tuning (the transfer report says what was loaded)
    assert "-pretrained_weights" in output
    pred_dir = os.path.join(e2e["pred_root"], "Task93_PipeCT")
    names = decathlon_test_images(e2e["decathlon_dir"])
    assert len(names) == 2
    for name in names:
        image = sitk.ReadImage(os.path.join(e2e["decathlon_dir"], "imagesTs", name))
        prediction = sitk.ReadImage(os.path.join(pred_dir, name))
        assert prediction.GetSize() == image.GetSize()
        np.testing.assert_allclose(prediction.GetSpacing(), image.GetSpacing(), atol=1e-5)
        assert set(np.unique(sitk.GetArrayFromImage(prediction)).tolist()) <= {0, 1, 2}
    fold = os.path.join(os.environ["RESULTS_FOLDER"], "nnUNet", "3d_fullres", "Task903_PipeCT",
                        "nnUNetTrainerV2_Genesis_PipeTiny__nnUNetPlansv2.1", "fold_0")
    with open(os.path.join(fold, "transfer_report.json")) as f:
        assert json.load(f)["encoder_fraction"] == pytest.approx(1.0)   # same plans: the whole encoder transfers


def test_e2e_second_run_skips_every_step(e2e, monkeypatch, no_subprocess):
    lines = []
    results = run_task(e2e["decathlon_dir"], task_id=903, folds=[0], pred_root=e2e["pred_root"],
                       pretrainer="nnUNetTrainerV2_GenesisPretrain_PipeTiny",
                       trainer="nnUNetTrainerV2_Genesis_PipeTiny",
                       env=e2e["env"], log=lines.append)
    assert [(r.name, r.status) for r in results] == [(name, "skipped") for name in pipeline.STEP_NAMES]
    assert sum(line.startswith("[skip] ") for line in lines) == 6


def test_e2e_predictions_pass_the_submission_check(e2e):
    from evaluation.tasks import task_from_dataset_json
    from competition.submission import validate_submission
    task = task_from_dataset_json(e2e["decathlon_dir"])
    result = validate_submission(e2e["pred_root"], os.path.dirname(e2e["decathlon_dir"]), tasks=[task],
                                 progress=False)
    assert result.ok, result.format_problems()
