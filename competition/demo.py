"""``nnUNet_genesis_demo``: the whole project on real data, on a CPU, in about ten minutes.

1. data      a Decathlon-format brain tissue task built from the MNI152 template that ships with
             nilearn (``competition/demo_data.py``);
2. pipeline  ``nnUNet_genesis_run_task`` on it: convert, plan, prepare the unlabeled volumes
             (imagesTr without labels + imagesTs) with the task's plans, Models Genesis pretraining,
             fine-tuning fold 0 from the pretrained weights, prediction of the test images;
3. scratch   the same fold trained from scratch with the same budget, and its predictions;
4. submit    a leaderboard-style zip of the Genesis predictions, validated first;
5. evaluate  Dice / NSD / HD95 of both runs on the test labels and the paired comparison (table + PNG).

Every stock command is printed before it runs; nnU-Net's own output goes to ``DIR/logs/nnunet.log``.
The demo's trainers are thin subclasses with a small budget in ``competition/demo_trainers/``, found by
the stock ``nnUNet_train`` through ``nnUNet_extTrainer``, as a user's own trainers would be.
Re-running on the same folder resumes: finished steps are skipped.
"""
import contextlib
import os
import shlex
import subprocess
import sys
import time

from competition.pipeline import format_seconds

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


class DemoError(RuntimeError):
    pass


def demo_environment(out_dir, scale=1.0):
    """The environment of the demo's stock commands: its own nnU-Net folders inside ``out_dir``."""
    import competition.demo_trainers as demo_trainers
    env = dict(os.environ)
    env.update({"nnUNet_raw_data_base": os.path.join(out_dir, "nnUNet_raw_data_base"),
                "nnUNet_preprocessed": os.path.join(out_dir, "nnUNet_preprocessed"),
                "RESULTS_FOLDER": os.path.join(out_dir, "nnUNet_results"),
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


def _run(command, env, say):
    from competition.pipeline import format_command
    say("$ " + format_command(command, env))
    done = subprocess.run(command, env=env)
    if done.returncode != 0:
        raise DemoError("failed (exit status %d): %s" % (done.returncode, shlex.join(command)))


def train_and_predict_from_scratch(env, task_name, decathlon_task, pred_dir, say):
    """Stock nnUNet_train + nnUNet_predict with the scratch trainer (skipped when already done)."""
    bin_dir = os.path.dirname(sys.executable)
    fold_dir = os.path.join(env["RESULTS_FOLDER"], "nnUNet", "3d_fullres", task_name,
                            SCRATCH_TRAINER + "__nnUNetPlansv2.1", "fold_%d" % FOLD)
    if os.path.isfile(os.path.join(fold_dir, "model_final_checkpoint.model")):
        say("[skip] scratch training: %s exists" % os.path.join(fold_dir, "model_final_checkpoint.model"))
    else:
        resume = ["-c"] if os.path.isfile(os.path.join(fold_dir, "model_latest.model")) else []
        _run([os.path.join(bin_dir, "nnUNet_train"), "3d_fullres", SCRATCH_TRAINER, task_name, str(FOLD)] + resume,
             env, say)
    from competition.submission import read_test_cases
    expected, _ = read_test_cases(os.path.join(decathlon_task, "dataset.json"))
    if all(os.path.isfile(os.path.join(pred_dir, f)) for f in expected):
        say("[skip] scratch prediction: all %d test cases predicted in %s" % (len(expected), pred_dir))
    else:
        images_ts = os.path.join(env["nnUNet_raw_data_base"], "nnUNet_raw_data", task_name, "imagesTs")
        _run([os.path.join(bin_dir, "nnUNet_predict"), "-i", images_ts, "-o", pred_dir, "-t", task_name,
              "-m", "3d_fullres", "-tr", SCRATCH_TRAINER, "-f", str(FOLD)], env, say)


def run_demo(out_dir="demo_output", scale=1.0, stream=None):
    """Run the demo into ``out_dir``; returns a dict of its outputs. See the module docstring."""
    start = time.time()
    out_dir = os.path.abspath(out_dir)
    claim_output_folder(out_dir)
    env = demo_environment(out_dir, scale)
    for key in ("nnUNet_raw_data_base", "nnUNet_preprocessed", "RESULTS_FOLDER"):
        os.makedirs(env[key], exist_ok=True)
    logs = os.path.join(out_dir, "logs")
    os.makedirs(logs, exist_ok=True)
    nnunet_log = os.path.join(logs, "nnunet.log")

    from competition.demo_data import demo_test_labels_dir, describe_demo_data, write_mni_demo_task
    from competition.msd import task_from_dataset_json
    from competition.pipeline import run_task
    from competition.submission import build_submission
    from evaluation.compare import compare_runs
    from evaluation.evaluate import evaluate_folders

    total = 5
    decathlon_root = os.path.join(out_dir, "decathlon")
    decathlon_task = os.path.join(decathlon_root, DEMO_TASK)
    predictions = {"scratch": os.path.join(out_dir, "predictions", "scratch", DEMO_TASK),
                   "Genesis": os.path.join(out_dir, "predictions", "genesis", DEMO_TASK)}
    with child_output_to(nnunet_log) as console_stream:
        say = Console(stream or console_stream, start)
        say("nnunet-genesis demo -> %s   (nnU-Net's own output: %s)" % (out_dir, nnunet_log))

        say.stage(1, total, "data: a Decathlon-format task from real MRI shipped with pip")
        say(describe_demo_data())
        if os.path.isfile(os.path.join(decathlon_task, "dataset.json")):
            say("[skip] data: %s exists" % decathlon_task)
        else:
            write_mni_demo_task(decathlon_root, name=DEMO_TASK)
            say("wrote %s" % decathlon_task)

        say.stage(2, total, "Models Genesis pipeline (nnUNet_genesis_run_task): convert, plan, prepare, "
                            "pretrain, fine-tune fold %d, predict" % FOLD)
        run_task(decathlon_task, task_id=TASK_ID, folds=(FOLD,), pretrain_task_id=PRETRAIN_TASK_ID,
                 pretrainer=PRETRAINER, trainer=GENESIS_TRAINER,
                 pred_root=os.path.dirname(predictions["Genesis"]), env=env, log=say)
        task_name = "Task%03d_%s" % (TASK_ID, DEMO_TASK.split("_", 1)[1])

        say.stage(3, total, "the same fold from scratch, same budget (stock nnUNetTrainerV2)")
        train_and_predict_from_scratch(env, task_name, decathlon_task, predictions["scratch"], say)

        say.stage(4, total, "leaderboard-style submission of the Genesis predictions (validated first)")
        zip_path = os.path.join(out_dir, "submission.zip")
        task = task_from_dataset_json(decathlon_task, nsd_tolerance_mm=NSD_TOLERANCE_MM)
        if os.path.isfile(zip_path):
            say("[skip] submission: %s exists" % zip_path)
        else:
            result = build_submission(os.path.dirname(predictions["Genesis"]), decathlon_root, zip_path,
                                      tasks=[task], progress=False)
            say(result.format_table())
            say("wrote %s" % zip_path)

        say.stage(5, total, "evaluation on the test labels (Dice, NSD at %g mm, HD95) and comparison"
                  % NSD_TOLERANCE_MM)
        evaluations = {}
        for name, pred_dir in predictions.items():
            evaluations[name] = os.path.join(out_dir, "evaluation", name.lower())
            evaluate_folders(demo_test_labels_dir(decathlon_task), pred_dir, labels=[1, 2],
                             tolerance_mm=NSD_TOLERANCE_MM, out_dir=evaluations[name], num_processes=2,
                             label_names={1: "grey matter", 2: "white matter"}, verbose=False)
        comparison_dir = os.path.join(out_dir, "comparison")
        comparison = compare_runs(evaluations["scratch"], evaluations["Genesis"], names=("scratch", "Genesis"),
                                  out_dir=comparison_dir, verbose=False)
        with open(os.path.join(comparison_dir, "compare.md")) as f:
            say(f.read())

        results = os.path.join(env["RESULTS_FOLDER"], "nnUNet", "3d_fullres")
        outputs = {
            "submission zip": zip_path,
            "comparison table": os.path.join(comparison_dir, "compare.md"),
            "comparison plot": os.path.join(comparison_dir, "compare.png"),
            "evaluation (per case, summary)": os.path.join(out_dir, "evaluation"),
            "restoration previews": os.path.join(results, "Task%03d_Genesis%s" % (PRETRAIN_TASK_ID,
                                                                                   DEMO_TASK.split("_", 1)[1]),
                                                 PRETRAINER + "__nnUNetPlansv2.1", "all", "restoration_preview.png"),
            "transfer report": os.path.join(results, task_name, GENESIS_TRAINER + "__nnUNetPlansv2.1",
                                            "fold_%d" % FOLD, "transfer_report.json"),
            "predictions": os.path.join(out_dir, "predictions"),
            "nnU-Net log": nnunet_log,
        }
        say("\n=== outputs   (total time %s)" % format_seconds(time.time() - start))
        for what, path in outputs.items():
            say("  %-32s %s%s" % (what, path, "" if os.path.exists(path) else "   (MISSING)"))
    return {"outputs": outputs, "comparison": comparison, "seconds": time.time() - start}
