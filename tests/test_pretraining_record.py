"""A checkpoint whose own pretraining record says it did not learn is not transferred silently (issue #18;
#19 item 10: a refused -pretrained_weights ends the stock command with one line, no traceback).

Unit tier: ``read_record`` on record files as the pretraining trainers write them (summary.json of
``pretraining.restoration_report``, restoration_history.json of ``pretraining.record_restoration``).
End to end: stock ``nnUNet_train`` with a tiny nnUNetTrainerV2_Genesis subclass and a checkpoint whose record
says "not learned": refused with one line, exit status 1, no traceback; with nnUNet_genesis_allow_unlearned=1
it trains and the transfer report carries the verdict.
"""
import json
import os
import subprocess
import time

import pytest

from nnunet_genesis.checkpoints.pretraining_record import (ALLOW_UNLEARNED_ENV, LEARNED, NOT_LEARNED, UNKNOWN, describe,
                                               read_record, refusal)
from nnunet_genesis.pretraining.scores import DISTORTIONS, collapse_reasons

# the held-out run of issue #18 at 1,000 iterations: below identity on shuffling and in-painting
BELOW = {"local_shuffle": (0.537, 0.592, 0.0), "in_painting": (0.549, 0.683, 0.0), "non_linear": (0.366, 0.1, 0.0),
         "out_painting": (0.213, -0.5, 0.0), "composite": (0.4, 0.3, 0.0)}
ABOVE = {"local_shuffle": (0.9, 0.85, 0.0), "in_painting": (0.8, 0.7, 0.0), "non_linear": (0.5, 0.1, 0.0),
         "out_painting": (0.3, -0.5, 0.0), "composite": (0.6, 0.3, 0.0)}


def scores(table, variance_ratio=0.5):
    return {kind: {"network": n, "identity": i, "mean": m, "template": 0.1, "variance_ratio": variance_ratio}
            for kind, (n, i, m) in table.items()}


def write_record(folder, summary_scores=None, history=(), weights_name="model_final_checkpoint.model"):
    """A fold folder as a pretraining trainer leaves it: weights first, then the record (written after)."""
    os.makedirs(folder, exist_ok=True)
    weights = os.path.join(folder, weights_name)
    with open(weights, "wb") as f:
        f.write(b"weights")
    if history:
        with open(os.path.join(folder, "restoration_history.json"), "w") as f:
            json.dump(list(history), f)
    if summary_scores is not None:
        os.makedirs(os.path.join(folder, "validation_restoration"), exist_ok=True)
        with open(os.path.join(folder, "validation_restoration", "summary.json"), "w") as f:
            json.dump({"cases": ["a"], "patch_size": [8, 8, 8], "scores": summary_scores,
                       "collapse": collapse_reasons(summary_scores, None)}, f)
    return weights


def test_no_record_is_none_and_says_so(tmp_path):
    weights = write_record(str(tmp_path / "published"))
    assert read_record(weights) is None
    assert "none beside" in describe(None, weights)
    assert refusal(None, weights) is None


def test_learned(tmp_path):
    record = read_record(write_record(str(tmp_path), scores(ABOVE)))
    assert record["verdict"] == LEARNED
    assert record["source"].endswith(os.path.join("validation_restoration", "summary.json"))
    assert any("local_shuffle: R^2 0.900 beats identity 0.850" in r for r in record["reasons"])


def test_below_baselines_at_the_end_is_not_learned(tmp_path):
    weights = write_record(str(tmp_path), scores(BELOW))
    record = read_record(weights)
    assert record["verdict"] == NOT_LEARNED
    assert any("in_painting: R^2 0.549 below identity 0.683" in r for r in record["reasons"])
    line = refusal(record, weights, environ={})
    assert "REFUSED" in line and weights in line and ALLOW_UNLEARNED_ENV in line and "\n" not in line
    # it says what to do: pretrain again, or check the weights on images like the task's before allowing them
    assert "COLLAPSE advice" in line and "nnUNet_genesis_restoration" in line
    assert refusal(record, weights, environ={ALLOW_UNLEARNED_ENV: "1"}) is None


def test_collapsed_at_the_end_is_not_learned(tmp_path):
    record = read_record(write_record(str(tmp_path), scores(ABOVE, variance_ratio=0.02)))
    assert record["verdict"] == NOT_LEARNED
    assert any("collapsed" in r and "flat" in r for r in record["reasons"])


def test_history_only_judges_the_last_entry_and_reports_earlier_collapses(tmp_path):
    history = [{"epoch": 0, "scores": scores(BELOW), "collapse": ["flat"]},
               {"epoch": 5, "scores": scores(BELOW), "collapse": ["flat"]},
               {"epoch": 9, "scores": scores(ABOVE), "collapse": []}]
    record = read_record(write_record(str(tmp_path), None, history))
    assert record["verdict"] == LEARNED
    assert record["source"].endswith("restoration_history.json")
    assert "COLLAPSE warnings during pretraining at 2 of 3 scored epochs (epochs 0-5)" in record["reasons"]


def test_unreadable_or_stale_record_is_unknown(tmp_path):
    weights = write_record(str(tmp_path / "bad"), scores(ABOVE))
    with open(os.path.join(str(tmp_path / "bad"), "validation_restoration", "summary.json"), "w") as f:
        f.write("{cut")
    record = read_record(weights)
    assert record["verdict"] == UNKNOWN and "cannot read" in record["reasons"][0]
    weights = write_record(str(tmp_path / "stale"), scores(BELOW))
    later = time.time() + 60
    os.utime(weights, (later, later))   # trained further (-c) after the record was written
    record = read_record(weights)
    assert record["verdict"] == UNKNOWN and "older than" in record["reasons"][0]
    assert refusal(record, weights, environ={}) is None


def test_v2_checkpoint_name_reads_the_same_record(tmp_path):
    weights = write_record(str(tmp_path), scores(BELOW), weights_name="checkpoint_final.pth")
    assert read_record(weights)["verdict"] == NOT_LEARNED


def test_collapse_warning_says_what_to_do():
    from nnunet_genesis.pretraining.scores import collapse_warning
    text = collapse_warning(["restored patches are flat"])
    assert "README" not in text
    assert "genesis_recipe" in text and "adamw_inpaint_inside" in text


# ------------------------------------------------------------------------------------------------------------
# end to end: stock nnUNet_train
# ------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unlearned(ct_task, module_tmp_path_factory):
    from tests.conftest import subprocess_env
    from tests.test_finetune_e2e import TINY_TRAINER, published_genesis_checkpoint  # nnUNetTrainerV2_Genesis_Tiny
    root = module_tmp_path_factory.mktemp("record")
    ext = root / "ext"
    ext.mkdir()
    (ext / "record_tiny.py").write_text(TINY_TRAINER)
    fold = str(root / "pretrain" / "fold_all")
    weights = write_record(fold, scores(BELOW))
    published_genesis_checkpoint(weights)
    os.utime(os.path.join(fold, "validation_restoration", "summary.json"))  # written after the checkpoint
    env = subprocess_env(nnUNet_extTrainer=str(ext))
    env.pop(ALLOW_UNLEARNED_ENV, None)
    return dict(env=env, weights=weights, task=ct_task.task_name)


def _train(unlearned, fold, **extra):
    from tests.conftest import stock_command
    env = dict(unlearned["env"], **extra)
    return subprocess.run([stock_command("nnUNet_train"), "3d_fullres", "nnUNetTrainerV2_Genesis_Tiny",
                           unlearned["task"], fold, "-pretrained_weights", unlearned["weights"]], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)


def _fold_dir(unlearned, fold):
    return os.path.join(os.environ["RESULTS_FOLDER"], "nnUNet", "3d_fullres", unlearned["task"],
                        "nnUNetTrainerV2_Genesis_Tiny__nnUNetPlansv2.1", "fold_%s" % fold)


def test_stock_train_refuses_an_unlearned_checkpoint_with_one_line(unlearned):
    out = _train(unlearned, "1")
    assert out.returncode == 1, out.stdout[-3000:]
    assert "Traceback" not in out.stdout, out.stdout[-3000:]
    refused = [line for line in out.stdout.splitlines() if "REFUSED" in line]
    assert len(refused) == 1 and unlearned["weights"] in refused[0] and ALLOW_UNLEARNED_ENV in refused[0]
    assert "NOT LEARNED" in out.stdout   # the verdict line printed first
    assert not os.path.isfile(os.path.join(_fold_dir(unlearned, "1"), "model_final_checkpoint.model"))


def test_stock_train_proceeds_when_allowed_and_reports_the_verdict(unlearned):
    out = _train(unlearned, "2", **{ALLOW_UNLEARNED_ENV: "1"})
    assert out.returncode == 0, out.stdout[-3000:]
    assert "pretraining record: not learned" in out.stdout
    with open(os.path.join(_fold_dir(unlearned, "2"), "transfer_report.json")) as f:
        report = json.load(f)
    assert report["pretraining_record"]["verdict"] == NOT_LEARNED
    assert os.path.isfile(os.path.join(_fold_dir(unlearned, "2"), "model_final_checkpoint.model"))


def test_trainer_setting_allows_what_the_environment_would(tmp_path):
    """genesis_allow_unlearned = True (a trainer variant, e.g. the demo's) takes a 'not learned' checkpoint,
    printing its verdict; without it the same call is refused (the function both trainers call)."""
    from nnunet_genesis.transfer.finetuning import PretrainedWeightsRefused, transfer_for_training
    from nnunet_genesis.nnunet_v1.network import build_generic_unet
    from tests.test_finetune_e2e import published_genesis_checkpoint
    weights = write_record(str(tmp_path / "pretrain"), scores(BELOW))
    published_genesis_checkpoint(weights)
    os.utime(os.path.join(str(tmp_path / "pretrain"), "validation_restoration", "summary.json"))
    network = build_generic_unet(1, 32, 2, [[2, 2, 2]] * 3, [[3, 3, 3]] * 4)
    lines = []
    before = os.environ.pop(ALLOW_UNLEARNED_ENV, None)
    try:
        with pytest.raises(PretrainedWeightsRefused):
            transfer_for_training(network, weights, str(tmp_path / "refused"), "encoder", 0.5, False, False,
                                  lines.append)
        report, names = transfer_for_training(network, weights, str(tmp_path / "taken"), "encoder", 0.5, False,
                                              False, lines.append, allow_unlearned=True)
    finally:
        if before is not None:
            os.environ[ALLOW_UNLEARNED_ENV] = before
    assert names and any("NOT LEARNED" in line for line in lines)
    with open(str(tmp_path / "taken" / "transfer_report.json")) as f:
        assert json.load(f)["pretraining_record"]["verdict"] == NOT_LEARNED
