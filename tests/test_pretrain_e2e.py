"""Issue 4 end to end, with the stock console scripts only:

nnUNet_genesis_prepare (Decathlon imagesTr + imagesTs, plus a folder with a LUNA16-style .mhd volume
and a corrupt .nii.gz) -> nnUNet_train 3d_fullres <tiny GenesisPretrain> TaskMMM all (2 epochs)
-> nnUNet_train 3d_fullres <tiny Genesis> Task901 0 -pretrained_weights model_final_checkpoint.model
-> nnUNet_predict. Plus: an interrupted pretraining resumes with -c.
"""
import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_genesis.checkpoints.files import read_checkpoint_file
from nnunet_genesis.distortions.composite import PUBLISHED_P_INPAINT
from tests.conftest import run_stock, stock_command, subprocess_env

PRETRAIN_TASK_ID = 921
TRAINING_P_INPAINT = 0.8   # the tiny pretraining trainer's mix (TINY_TRAINERS)

TINY_TRAINERS = '''
import os
import time
from nnunet_genesis.nnunet_v1.trainers import nnUNetTrainerV2_Genesis, nnUNetTrainerV2_GenesisPretrain


class GenesisPretrain_Tiny(nnUNetTrainerV2_GenesisPretrain):
    genesis_preview_every = 1
    # a healthy run by construction: the residual output starts AT the identity (its output layer is
    # zero), so six AdamW steps cannot take it below a constant. With "adamw_residual" (random output
    # layer) a CI run once scored R^2 -0.38 on shuffling after six steps; the default recipe's direct
    # output is flat until it has trained for far longer than this test runs.
    genesis_recipe = "adamw_identity_start"
    # trained with another mix than the published one its diagnostics score (the restoration test below)
    genesis_transform_kwargs = {"p_inpaint": TRAINING_P_INPAINT}
    # two-iteration epochs: the diagnostics cost more than training, so the default 10 % share would skip
    # epoch 1 (nnunet_genesis/pretraining/schedule.py); this test checks that every epoch can be scored
    genesis_diagnostics_share = 1.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_num_epochs = int(os.environ.get("TINY_EPOCHS", 3))
        self.num_batches_per_epoch = 2
        self.num_val_batches_per_epoch = 1
        self.save_every = 1  # model_latest after every epoch, so an interruption loses at most one

    def on_epoch_end(self):
        keep_going = super().on_epoch_end()  # saves model_latest (save_every = 1)
        if os.environ.get("TINY_HANG_AFTER_EPOCH") == str(self.epoch):
            # stand still until the test kills the whole process group, like a preempted job
            open(os.environ["TINY_HANG_MARKER"], "w").close()
            time.sleep(600)
        return keep_going


class GenesisPretrain_TinyResume(GenesisPretrain_Tiny):
    pass


class GenesisPretrain_TinyCollapsed(GenesisPretrain_Tiny):
    """A run that collapses by construction: the output layer is zero and cannot learn, so every
    restored patch is flat (direct output, as the former default recipe)."""
    genesis_recipe = "nnunet_sgd"
    genesis_collapse_min_iterations = 6  # judged from the third epoch of 2 iterations on

    def initialize_network(self):
        super().initialize_network()
        for head in self.network.seg_outputs:
            head.weight.data.zero_()
            head.weight.requires_grad_(False)


class Genesis_Tiny(nnUNetTrainerV2_Genesis):
    genesis_warmup_epochs = 1

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_num_epochs = 2
        self.num_batches_per_epoch = 2
        self.num_val_batches_per_epoch = 1
'''.replace("TRAINING_P_INPAINT", repr(TRAINING_P_INPAINT))


def results_folder(configuration, task, trainer, fold):
    return os.path.join(os.environ["RESULTS_FOLDER"], "nnUNet", configuration, task,
                        trainer + "__nnUNetPlansv2.1", fold)


def write_luna_like_folder(folder, reference_image):
    """A LUNA16-style .mhd/.raw volume (resampled CT content) and a corrupt .nii.gz."""
    os.makedirs(folder, exist_ok=True)
    image = sitk.ReadImage(reference_image)
    image.SetSpacing([s * 0.9 for s in image.GetSpacing()])  # another scanner's spacing
    sitk.WriteImage(sitk.Cast(image, sitk.sitkInt16), os.path.join(folder, "1.3.6.1.4.1.14519.mhd"))
    with open(os.path.join(folder, "corrupt.nii.gz"), "wb") as f:
        f.write(b"\x1f\x8b\x08\x00 this is not a complete gzip stream")


@pytest.fixture(scope="module")
def pretrained(ct_task, module_tmp_path_factory):
    root = module_tmp_path_factory.mktemp("pretrain")
    ext = root / "ext"
    ext.mkdir()
    (ext / "tiny_genesis.py").write_text(TINY_TRAINERS)
    env = subprocess_env(nnUNet_extTrainer=str(ext))
    extra = str(root / "luna_like")
    first_test_image = sorted(os.listdir(os.path.join(ct_task.decathlon_dir, "imagesTs")))[0]
    write_luna_like_folder(extra, os.path.join(ct_task.decathlon_dir, "imagesTs", first_test_image))

    prepare_log = run_stock([stock_command("nnUNet_genesis_prepare"), "-t", ct_task.task_name,
                             "-i", ct_task.decathlon_dir, extra, "-o", PRETRAIN_TASK_ID], env=env)
    task = [l for l in os.listdir(os.environ["nnUNet_preprocessed"]) if l.startswith("Task%d_" % PRETRAIN_TASK_ID)]
    assert len(task) == 1, task
    pretrain_task = task[0]
    pretrain_log = run_stock([stock_command("nnUNet_train"), "3d_fullres", "GenesisPretrain_Tiny", pretrain_task,
                              "all"], env=env, timeout=1200)
    collapsed_log = run_stock([stock_command("nnUNet_train"), "3d_fullres", "GenesisPretrain_TinyCollapsed",
                               pretrain_task, "all"], env=env, timeout=1200)
    return dict(root=root, env=env, prepare_log=prepare_log, pretrain_log=pretrain_log, collapsed_log=collapsed_log,
                collapsed_fold=results_folder("3d_fullres", pretrain_task, "GenesisPretrain_TinyCollapsed", "all"),
                pretrain_task=pretrain_task, extra=extra,
                pretrain_fold=results_folder("3d_fullres", pretrain_task, "GenesisPretrain_Tiny", "all"))


def test_prepare_reports_the_corrupt_file_and_uses_the_rest(pretrained, ct_task):
    report_file = os.path.join(os.environ["nnUNet_raw_data_base"], "nnUNet_raw_data", pretrained["pretrain_task"],
                               "prepare_report.json")
    with open(report_file) as f:
        report = json.load(f)
    skipped = {os.path.basename(s["file"]): s["reason"] for s in report["skipped"]}
    assert "corrupt.nii.gz" in skipped and skipped["corrupt.nii.gz"]
    n_decathlon = len(os.listdir(os.path.join(ct_task.decathlon_dir, "imagesTr"))) + \
        len(os.listdir(os.path.join(ct_task.decathlon_dir, "imagesTs")))
    assert len(report["cases"]) == n_decathlon + 1  # + the .mhd volume
    assert any(f.endswith(".mhd") for c in report["cases"] for f in c["files"])
    assert "nnUNet_train 3d_fullres nnUNetTrainerV2_GenesisPretrain %s all" % pretrained["pretrain_task"] \
        in pretrained["prepare_log"]


def test_pretraining_writes_checkpoint_previews_and_restoration_scores(pretrained):
    fold = pretrained["pretrain_fold"]
    for name in ("model_final_checkpoint.model", "model_final_checkpoint.model.pkl", "progress.png",
                 "restoration_preview.png", "restoration_progress.png", "restoration_history.json"):
        assert os.path.isfile(os.path.join(fold, name)), name
    with open(os.path.join(fold, "validation_restoration", "summary.json")) as f:
        summary = json.load(f)
    assert summary["cases"]
    for kind in ("local_shuffle", "non_linear", "in_painting", "out_painting", "composite"):
        scores = summary["scores"][kind]
        assert all(np.isfinite(scores[k]) for k in ("network", "identity", "mean", "variance_ratio")), kind
        assert os.path.isfile(os.path.join(fold, "validation_restoration", kind + ".png"))
    with open(os.path.join(fold, "restoration_history.json")) as f:
        history = json.load(f)
    assert [h["epoch"] for h in history] == [0, 1, 2]  # every epoch scored per distortion
    log = pretrained["pretrain_log"]
    assert log.count("restoration per distortion") == 3 and "local_shuffle" in log and "identity" in log
    assert not os.path.isdir(os.path.join(fold, "validation_raw"))  # no segmentation export


def test_collapse_warning_fires_on_a_collapsed_run_and_not_on_a_healthy_one(pretrained):
    # healthy: a residual output near the identity
    assert "COLLAPSED" not in pretrained["pretrain_log"]
    log = pretrained["collapsed_log"]
    # from the third scored epoch on, in the log of that epoch and again at the end of training
    assert log.count("WARNING: the pretraining network has COLLAPSED") == 2
    assert "restored patches are flat" in log
    with open(os.path.join(pretrained["collapsed_fold"], "validation_restoration", "summary.json")) as f:
        assert json.load(f)["collapse"]
    with open(os.path.join(pretrained["pretrain_fold"], "validation_restoration", "summary.json")) as f:
        assert json.load(f)["collapse"] == []


def test_restoration_command_scores_any_checkpoint(pretrained, tmp_path):
    command = [stock_command("nnUNet_genesis_restoration"), "-t", pretrained["pretrain_task"], "--cases", "3"]
    healthy = subprocess.run(command + ["-w", os.path.join(pretrained["pretrain_fold"], "model_final_checkpoint.model"),
                                        "-o", str(tmp_path / "healthy")],
                             env=pretrained["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert healthy.returncode == 0, healthy.stdout[-3000:]
    # the tiny trainer's recipe (adamw_identity_start, residual) is read from the checkpoint's .pkl
    assert "residual output (recorded in" in healthy.stdout and "identity" in healthy.stdout
    with open(tmp_path / "healthy" / "summary.json") as f:
        summary = json.load(f)
    assert len(summary["cases"]) == 3 and summary["residual"] is True

    # One meaning for the scores (nnunet_genesis.pretraining.validation.scoring_transform): the trainer's
    # end-of-training report and the command both score the published distortions and mix, whatever mix the
    # checkpoint trained with (the tiny trainer: 80 % in-painting), so the command reproduces the trainer's whole
    # table, the composite included: same network, cases and distortions.
    with open(os.path.join(pretrained["pretrain_fold"], "validation_restoration", "summary.json")) as f:
        trained = json.load(f)
    same = subprocess.run([stock_command("nnUNet_genesis_restoration"), "-t", pretrained["pretrain_task"],
                           "--cases", str(len(trained["cases"])), "-o", str(tmp_path / "same"),
                           "-w", os.path.join(pretrained["pretrain_fold"], "model_final_checkpoint.model")],
                          env=pretrained["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert same.returncode == 0, same.stdout[-3000:]
    with open(tmp_path / "same" / "summary.json") as f:
        rescored = json.load(f)
    assert rescored["cases"] == trained["cases"]
    assert trained["scored_composite"] == rescored["scored_composite"] == {"p_paint": 0.9,
                                                                           "p_inpaint": PUBLISHED_P_INPAINT}
    assert TRAINING_P_INPAINT != PUBLISHED_P_INPAINT
    for kind, scores in trained["scores"].items():
        for answer in ("network", "identity", "mean"):
            assert rescored["scores"][kind][answer] == pytest.approx(scores[answer], abs=1e-4), (kind, answer)

    collapsed = subprocess.run(command + ["-w", os.path.join(pretrained["collapsed_fold"],
                                                             "model_final_checkpoint.model"),
                                          "-o", str(tmp_path / "collapsed")],
                               env=pretrained["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert collapsed.returncode == 3 and "COLLAPSED" in collapsed.stdout and "direct output" in collapsed.stdout

    bad = tmp_path / "not_a_checkpoint.model"
    bad.write_bytes(b"garbage")
    refused = subprocess.run(command + ["-w", str(bad), "-o", str(tmp_path / "bad")], env=pretrained["env"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert refused.returncode == 2 and str(bad) in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_pretrained_checkpoint_fine_tunes_with_encoder_transfer_and_predicts(pretrained, ct_task, tmp_path):
    weights = os.path.join(pretrained["pretrain_fold"], "model_final_checkpoint.model")
    run_stock([stock_command("nnUNet_train"), "3d_fullres", "Genesis_Tiny", ct_task.task_name, "0",
               "-pretrained_weights", weights], env=pretrained["env"], timeout=1200)
    fold = results_folder("3d_fullres", ct_task.task_name, "Genesis_Tiny", "fold_0")
    with open(os.path.join(fold, "transfer_report.json")) as f:
        report = json.load(f)
    # the default mode transfers the encoder, all of it; the decoder starts fresh
    assert report["mode"] == "encoder" and report["encoder_fraction"] == 1.0 and report["decoder_fraction"] == 0.0
    assert all(e["status"] == "loaded" for e in report["entries"] if e["part"] == "encoder")
    assert all(e["status"] == "excluded" for e in report["entries"] if e["part"] == "decoder")

    out = tmp_path / "pred"
    images_ts = os.path.join(ct_task.raw_dir, "imagesTs")
    run_stock([stock_command("nnUNet_predict"), "-i", images_ts, "-o", str(out), "-t", ct_task.task_name,
               "-m", "3d_fullres", "-tr", "Genesis_Tiny", "-f", "0"], env=pretrained["env"])
    n_test = len([f for f in os.listdir(images_ts) if f.endswith("_0000.nii.gz")])
    assert len([f for f in os.listdir(out) if f.endswith(".nii.gz")]) == n_test > 0


def test_interrupted_pretraining_resumes_with_c(pretrained):
    marker = str(pretrained["root"] / "hanging")
    env = dict(pretrained["env"], TINY_EPOCHS="3", TINY_HANG_AFTER_EPOCH="1", TINY_HANG_MARKER=marker)
    task, fold = pretrained["pretrain_task"], "all"
    # its own trainer name, hence its own output folder, next to the finished run of the other tests
    base = [stock_command("nnUNet_train"), "3d_fullres", "GenesisPretrain_TinyResume", task, fold]
    process = subprocess.Popen(base, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.time() + 900
        while not os.path.exists(marker) and process.poll() is None and time.time() < deadline:
            time.sleep(0.5)
        assert os.path.exists(marker), "the run ended or timed out before its first epochs"
    finally:  # kill -9 of the trainer and its data-augmentation workers
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    out_folder = results_folder("3d_fullres", task, "GenesisPretrain_TinyResume", fold)
    assert not os.path.isfile(os.path.join(out_folder, "model_final_checkpoint.model"))
    interrupted = read_checkpoint_file(os.path.join(out_folder, "model_latest.model"))
    assert interrupted["epoch"] == 2  # epochs 0 and 1 done

    env.pop("TINY_HANG_AFTER_EPOCH")
    log = run_stock(base + ["-c"], env=env, timeout=1200)
    final = read_checkpoint_file(os.path.join(out_folder, "model_final_checkpoint.model"))
    assert final["epoch"] == 3
    # the resumed run continued the interrupted one: its first two epochs' losses are kept
    assert list(final["plot_stuff"][0][:2]) == list(interrupted["plot_stuff"][0])
    assert "epoch:  2" in log and "epoch:  0" not in log


def test_a_seeded_pretraining_gives_identical_weights_twice_and_another_seed_others(pretrained, tmp_path):
    """nnUNet_genesis_training_seed seeds the pretraining as it seeds fine-tuning (nnunet_genesis/training_seed.py):
    the stock nnUNet_train, two augmentation workers, the same seed twice -> bit-identical final weights (the
    distortions' own Generators included: each worker's is derived from the seed and the worker's number, not its
    process id); another seed -> other weights."""
    import torch
    from competition.study import logged_training_seed
    from nnunet_genesis.checkpoints.files import load_state_dict_from_checkpoint
    from nnunet_genesis.training_seed import VARIABLE, seed_line
    weights = {}
    for name, seed in (("first", 5), ("again", 5), ("other", 6)):
        results = str(tmp_path / name)
        env = dict(pretrained["env"], RESULTS_FOLDER=results, nnUNet_n_proc_DA="2", OMP_NUM_THREADS="1",
                   TINY_EPOCHS="1", **{VARIABLE: str(seed)})
        log = run_stock([stock_command("nnUNet_train"), "3d_fullres", "GenesisPretrain_Tiny",
                         pretrained["pretrain_task"], "all"], env=env, timeout=1200)
        assert seed_line(seed) in log
        fold = os.path.join(results, "nnUNet", "3d_fullres", pretrained["pretrain_task"],
                            "GenesisPretrain_Tiny__nnUNetPlansv2.1", "all")
        assert logged_training_seed(fold) == seed
        weights[name] = load_state_dict_from_checkpoint(os.path.join(fold, "model_final_checkpoint.model"))
    assert weights["first"].keys() == weights["again"].keys()
    assert all(torch.equal(weights["first"][k], weights["again"][k]) for k in weights["first"])
    assert not all(torch.equal(weights["first"][k], weights["other"][k]) for k in weights["first"])
