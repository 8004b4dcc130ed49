"""The README's main job, nnUNet_genesis_demo, run as a user runs it (console script), on a small budget."""
import json
import os
import re
import subprocess
import zipfile

from competition.demo import PRETRAIN_SEED
from competition.study import logged_training_seed
from tests.conftest import stock_command, subprocess_env


def run_demo(out_dir, *extra):
    return subprocess.run([stock_command("nnUNet_genesis_demo"), "-o", str(out_dir), *map(str, extra)],
                          env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=1500)


def test_demo_runs_end_to_end_and_resumes(tmp_path):
    out = tmp_path / "demo"
    first = run_demo(out, "--scale", "0.2", "--seeds", "0")
    assert first.returncode == 0, first.stdout[-4000:]
    assert "MISSING" not in first.stdout
    # the validated submission holds one prediction per test image, named like it
    test_images = sorted(os.listdir(out / "decathlon" / "Task11_BrainTissueDemo" / "imagesTs"))
    with zipfile.ZipFile(out / "submission.zip") as z:
        assert sorted(z.namelist()) == ["Task11_BrainTissueDemo/" + name for name in test_images]
    table = (out / "comparison" / "compare.md").read_text()
    for row in ("1 grey matter | Dice", "2 white matter | NSD"):
        assert row in table and row in first.stdout
    assert (out / "comparison" / "compare.png").stat().st_size > 0
    # restoration per distortion against the identity baseline, printed after pretraining
    assert "local_shuffle" in first.stdout and "identity" in first.stdout and "out_painting" in first.stdout
    # the pretraining is seeded: the printed command names the seed and nnU-Net's own log confirms it
    assert re.search(r"\$ nnUNet_genesis_training_seed=%d \S*nnUNet_train " % PRETRAIN_SEED, first.stdout)
    pretrain_fold, = (out / "nnUNet_results").glob("**/nnUNetTrainerV2_GenesisPretrain_Demo__*/all")
    assert logged_training_seed(str(pretrain_fold)) == PRETRAIN_SEED
    # the study: both arms at 2 and all labelled cases, its table and learning curve
    study = json.loads((out / "study" / "study.json").read_text())
    assert sorted((r["arm"], r["count"]) for r in study["runs"]) == [
        ("genesis", "2"), ("genesis", "all"), ("scratch", "2"), ("scratch", "all")]
    assert all(r["num_labelled"] == (2 if r["count"] == "2" else 6) for r in study["runs"])
    assert "| 2 (2) |" in (out / "study" / "study.md").read_text() and "| 2 (2) |" in first.stdout
    assert (out / "study" / "study.png").stat().st_size > 10_000
    assert "pretraining" in first.stdout and "study runs" in first.stdout  # progress bars
    # the user's own splits of the demo task are untouched by the study (it keeps its own)
    own_splits = out / "nnUNet_preprocessed" / "Task011_BrainTissueDemo" / "splits_final.pkl"
    assert not own_splits.exists()

    again = run_demo(out, "--scale", "0.2", "--seeds", "0")  # resumes: every step is found done
    assert again.returncode == 0, again.stdout[-4000:]
    assert again.stdout.count("[skip] ") >= 4 and "nnUNet_train" not in again.stdout


def test_demo_refuses_a_folder_that_is_not_its_own(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    done = run_demo(tmp_path)
    assert done.returncode == 1 and str(tmp_path) in done.stdout
    assert (tmp_path / "precious.txt").read_text() == "keep me" and os.listdir(tmp_path) == ["precious.txt"]


def test_only_the_trainers_the_demo_runs_ship_with_it():
    """Shipped code is product code: competition/demo_trainers holds the demo's three trainers; the variants its
    measurements compared are in benchmarks/trainers, found through nnUNet_extTrainer like a user's own."""
    import ast
    import competition.demo as demo
    import competition.demo_trainers as demo_trainers
    from nnunet_genesis.integration import find_ext_trainer
    from nnunet_genesis.nnunet_v1.trainers import nnUNetTrainerV2_Genesis
    shipped = os.path.dirname(demo_trainers.__file__)
    classes = {node.name for name in os.listdir(shipped) if name.endswith(".py")
               for node in ast.parse(open(os.path.join(shipped, name)).read()).body
               if isinstance(node, ast.ClassDef) and node.name.startswith("nnUNetTrainer")}
    assert classes == {demo.PRETRAINER, demo.GENESIS_TRAINER, demo.SCRATCH_TRAINER}
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    measured = find_ext_trainer("nnUNetTrainerV2_GenesisLinearWarmup_Demo",
                                [shipped, os.path.join(repo, "benchmarks", "trainers")])
    assert issubclass(measured, nnUNetTrainerV2_Genesis) and measured.genesis_warmup_shape == "linear"
    assert find_ext_trainer("nnUNetTrainerV2_GenesisLinearWarmup_Demo", [shipped]) is None
