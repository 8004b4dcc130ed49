"""``nnUNet_genesis_demo``: the whole project on real data, on a CPU, within 15 minutes on 2 cores (measured time: docs/measurements.md, section 1).

1. data      a Decathlon-format brain tissue task built from the MNI152 template that ships with
             nilearn (``competition/demo_data.py``);
2. pipeline  ``nnUNet_genesis_run_task`` on it up to the unlabeled volumes: convert, plan, prepare
             (imagesTr without labels + imagesTs) with the task's plans;
3. pretrain  Models Genesis pretraining with the default recipe (stock ``nnUNet_train``, seeded with
             ``nnUNet_genesis_training_seed``: the same checkpoint on every run on one machine; progress per
             epoch), then its restoration per distortion against the identity and mean baselines;
4. study     ``nnUNet_genesis_study``: scratch vs Genesis fine-tuning with 2 and all labelled cases
             of fold 0, 2 seeds each, same budget; test predictions scored; ``study.md`` / ``study.png``;
5. submit    a leaderboard-style zip of the Genesis predictions (all labelled cases, seed 0), validated;
6. compare   Dice / NSD / HD95 of that run against its scratch twin, per case (table + PNG).

Every stock command is printed before it runs; nnU-Net's own output goes to ``DIR/logs/``.
The demo's trainers are thin subclasses with a small budget in ``competition/demo_trainers/``, found by
the stock ``nnUNet_train`` through ``nnUNet_extTrainer``, as a user's own trainers would be.
Re-running on the same folder resumes: finished steps are skipped.
"""
import contextlib
import json
import os
import shutil
import sys
import time

from competition.pipeline import format_seconds
from competition.study import NETWORK
from nnunet_genesis.io import raw_dataset
from nnunet_genesis.io.atomic import atomic_write
from nnunet_genesis.nnunet_v1 import layout
from nnunet_genesis.training_seed import VARIABLE as SEED_VARIABLE
from nnunet_genesis.transfer.report import TRANSFER_REPORT_FILE

DEMO_TASK = "Task11_BrainTissueDemo"
TASK_ID = 11
PRETRAIN_TASK_ID = 511
FOLD = 0
PRETRAINER = "nnUNetTrainerV2_GenesisPretrain_Demo"
GENESIS_TRAINER = "nnUNetTrainerV2_Genesis_Demo"
SCRATCH_TRAINER = "nnUNetTrainerV2_Scratch_Demo"
# The demo's voxels are 4 mm: one voxel of tolerance for the NSD.
NSD_TOLERANCE_MM = 4.0
MARKER = ".nnunet_genesis_demo"
SCALE_ENV = "NNUNET_GENESIS_DEMO_SCALE"
STUDY_COUNTS = ("2", "all")
STUDY_SEEDS = (0, 1)
# The pretraining's seed: a rerun on the same machine gives the same checkpoint, so the demo's study is repeatable
# (the study seeds its own runs; docs/measurements_study18_crn.md, section 6: the pretraining draw alone moves
# the study's difference as much as the recipe does).
PRETRAIN_SEED = 0


class DemoError(RuntimeError):
    pass


def demo_environment(out_dir, scale=1.0):
    """The environment of the demo's stock commands: its own nnU-Net folders inside ``out_dir``."""
    import competition.demo_trainers as demo_trainers
    env = dict(os.environ)
    env.update({layout.RAW_BASE_VARIABLE: os.path.join(out_dir, "nnUNet_raw_data_base"),
                layout.PREPROCESSED_VARIABLE: os.path.join(out_dir, "nnUNet_preprocessed"),
                layout.RESULTS_VARIABLE: os.path.join(out_dir, "nnUNet_results"),
                "nnUNet_extTrainer": os.path.dirname(demo_trainers.__file__),
                "nnUNet_n_proc_DA": env.get("nnUNet_n_proc_DA", "2"),
                SCALE_ENV: str(scale)})
    return env


def claim_output_folder(out_dir):
    """Use ``out_dir`` only if it is new, empty, or an earlier demo's (then the demo resumes)."""
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not os.path.isfile(os.path.join(out_dir, MARKER)):
        raise DemoError("%s exists and is not an earlier demo's output folder: choose another -o "
                        "(nothing in it was touched)" % out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise DemoError("%s exists and is not a folder" % out_dir)
    os.makedirs(out_dir, exist_ok=True)
    open(os.path.join(out_dir, MARKER), "a").close()


@contextlib.contextmanager
def child_output_to(log_file):
    """Send the output of child processes (nnU-Net's verbose logs) to ``log_file``; yields a stream
    to the real console for the demo's own messages."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    console = os.fdopen(os.dup(1), "w", buffering=1)
    with open(log_file, "a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield console
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)
            console.close()


class Console:
    """Prints stage headers with the elapsed time of the whole demo."""

    def __init__(self, stream, start):
        self.stream, self.start = stream, start

    def __call__(self, message=""):
        print(message, file=self.stream, flush=True)

    def stage(self, number, total, title):
        self("\n=== [%d/%d] %s   (elapsed %s)" % (number, total, title, format_seconds(time.time() - self.start)))


def pretrain_with_progress(env, pretrain_task, log_file, say):
    """Stock ``nnUNet_train`` of the demo's pretraining trainer, seeded with :data:`PRETRAIN_SEED`, with an epoch
    progress bar (skipped when finished, resumed with ``-c`` when interrupted)."""
    from tqdm import tqdm
    from competition.pipeline import format_command
    from competition.study import run_logged
    fold_dir = layout.fold_folder(os.path.join(env[layout.RESULTS_VARIABLE], layout.RESULTS_SUBFOLDER), NETWORK,
                                  pretrain_task, PRETRAINER, "all")
    weights = os.path.join(fold_dir, layout.FINAL_CHECKPOINT)
    if os.path.isfile(weights):
        say("[skip] pretraining: %s exists" % weights)
        return fold_dir
    command = [os.path.join(os.path.dirname(sys.executable), "nnUNet_train"), NETWORK, PRETRAINER,
               pretrain_task, "all"]
    if os.path.isfile(os.path.join(fold_dir, layout.LATEST_CHECKPOINT)):
        command.append("-c")
    seeded = dict(env, **{SEED_VARIABLE: str(PRETRAIN_SEED)})
    say("$ %s=%d %s" % (SEED_VARIABLE, PRETRAIN_SEED, format_command(command, seeded)))
    with tqdm(desc="pretraining", unit="epoch", file=say.stream) as bar:
        run_logged(command, seeded, log_file, progress=lambda: bar.update(1))
    return fold_dir


def run_demo(out_dir="demo_output", scale=1.0, stream=None, seeds=STUDY_SEEDS):
    """Run the demo into ``out_dir``; returns a dict of its outputs. See the module docstring."""
    start = time.time()
    out_dir = os.path.abspath(out_dir)
    claim_output_folder(out_dir)
    env = demo_environment(out_dir, scale)
    for key in layout.FOLDER_VARIABLES:
        os.makedirs(env[key], exist_ok=True)
    logs = os.path.join(out_dir, "logs")
    os.makedirs(logs, exist_ok=True)
    nnunet_log = os.path.join(logs, "nnunet.log")

    from competition.demo_data import demo_test_labels_dir, describe_demo_data, write_mni_demo_task
    from evaluation.tasks import task_from_dataset_json
    from competition.pipeline import run_task
    from competition.study import format_study_markdown, run_study
    from competition.submission import build_submission
    from evaluation.compare import compare_runs
    from nnunet_genesis.pretraining.scores import collapse_warning, format_scores

    total = 6
    decathlon_root = os.path.join(out_dir, "decathlon")
    decathlon_task = os.path.join(decathlon_root, DEMO_TASK)
    from nnunet_genesis.nnunet_v1.prepare import pretraining_task_name
    task_name = layout.task_name(TASK_ID, layout.short_name_of(DEMO_TASK))
    pretrain_task = pretraining_task_name(PRETRAIN_TASK_ID, task_name)
    with child_output_to(nnunet_log) as console_stream:
        say = Console(stream or console_stream, start)
        say("nnunet-genesis demo -> %s   (nnU-Net's own output: %s)" % (out_dir, logs))

        say.stage(1, total, "data: a Decathlon-format task from real MRI shipped with pip")
        say(describe_demo_data())
        if os.path.isfile(raw_dataset.dataset_json(decathlon_task)):
            say("[skip] data: %s exists" % decathlon_task)
        else:
            write_mni_demo_task(decathlon_root, name=DEMO_TASK)
            say("wrote %s" % decathlon_task)

        say.stage(2, total, "nnUNet_genesis_run_task up to the unlabeled volumes: convert, plan, prepare")
        run_task(decathlon_task, task_id=TASK_ID, folds=(FOLD,), pretrain_task_id=PRETRAIN_TASK_ID,
                 pretrainer=PRETRAINER, trainer=GENESIS_TRAINER, stop_after="prepare", env=env, log=say)

        say.stage(3, total, "Models Genesis pretraining (%s), then its restoration per distortion" % PRETRAINER)
        pretrain_dir = pretrain_with_progress(env, pretrain_task, os.path.join(logs, "pretraining.log"), say)
        with open(os.path.join(pretrain_dir, "validation_restoration", "summary.json")) as f:
            restoration = json.load(f)
        say("R^2 on the central patches of %d cases (network vs the distorted input as the answer, and vs "
            "the patch mean):" % len(restoration["cases"]))
        say(format_scores(restoration["scores"]))
        if restoration["collapse"]:
            say(collapse_warning(restoration["collapse"]))
        weights = os.path.join(pretrain_dir, layout.FINAL_CHECKPOINT)

        say.stage(4, total, "study: scratch vs Genesis fine-tuning, %s labelled cases x seeds %s (same budget)"
                  % (" and ".join(STUDY_COUNTS), ", ".join(map(str, seeds))))
        study_dir = os.path.join(out_dir, "study")
        study = run_study(task_name, weights, study_dir, None, demo_test_labels_dir(decathlon_task), fold=FOLD,
                          counts=STUDY_COUNTS, seeds=seeds, scratch_trainer=SCRATCH_TRAINER,
                          genesis_trainer=GENESIS_TRAINER, labels=[1, 2], tolerance_mm=NSD_TOLERANCE_MM, env=env,
                          console=say.stream)
        say(format_study_markdown(study["summary"], study["config"]))
        runs = {(r["arm"], r["count"], r["seed"]): r for r in study["runs"]}
        chosen = {"scratch": runs[("scratch", STUDY_COUNTS[-1], seeds[0])],
                  "Genesis": runs[("genesis", STUDY_COUNTS[-1], seeds[0])]}

        say.stage(5, total, "leaderboard-style submission of the Genesis predictions (%s labelled cases, seed %d), "
                            "validated first" % (STUDY_COUNTS[-1], seeds[0]))
        zip_path = os.path.join(out_dir, "submission.zip")
        task = task_from_dataset_json(decathlon_task, nsd_tolerance_mm=NSD_TOLERANCE_MM)
        if os.path.isfile(zip_path):
            say("[skip] submission: %s exists" % zip_path)
        else:
            prediction_root = os.path.join(out_dir, "predictions", "genesis")
            os.makedirs(os.path.join(prediction_root, DEMO_TASK), exist_ok=True)
            for name in os.listdir(chosen["Genesis"]["predictions"]):
                if name.endswith(".nii.gz"):
                    source = os.path.join(chosen["Genesis"]["predictions"], name)
                    atomic_write(os.path.join(prediction_root, DEMO_TASK, name),
                                 lambda tmp, source=source: shutil.copyfile(source, tmp))
            result = build_submission(prediction_root, decathlon_root, zip_path, tasks=[task], progress=False)
            say(result.format_table())
            say("wrote %s" % zip_path)

        say.stage(6, total, "scratch vs Genesis with %s labelled cases, seed %d: Dice, NSD at %g mm, HD95 per case"
                  % (STUDY_COUNTS[-1], seeds[0], NSD_TOLERANCE_MM))
        comparison_dir = os.path.join(out_dir, "comparison")
        comparison = compare_runs(chosen["scratch"]["evaluation"], chosen["Genesis"]["evaluation"],
                                  names=("scratch", "Genesis"), out_dir=comparison_dir, verbose=False)
        with open(os.path.join(comparison_dir, "compare.md")) as f:
            say(f.read())

        outputs = {
            "restoration per distortion": os.path.join(pretrain_dir, "validation_restoration", "summary.json"),
            "restoration over epochs": os.path.join(pretrain_dir, "restoration_progress.png"),
            "restoration previews": os.path.join(pretrain_dir, "validation_restoration"),
            "study table": os.path.join(study_dir, "study.md"),
            "study plot (learning curve)": os.path.join(study_dir, "study.png"),
            "submission zip": zip_path,
            "comparison table": os.path.join(comparison_dir, "compare.md"),
            "comparison plot": os.path.join(comparison_dir, "compare.png"),
            "transfer report": os.path.join(chosen["Genesis"]["fold_dir"], TRANSFER_REPORT_FILE),
            "logs": logs,
        }
        say("\n=== outputs   (total time %s)" % format_seconds(time.time() - start))
        for what, path in outputs.items():
            say("  %-32s %s%s" % (what, path, "" if os.path.exists(path) else "   (MISSING)"))
    return {"outputs": outputs, "comparison": comparison, "study": study, "restoration": restoration,
            "seconds": time.time() - start}
