"""Entry points of the competition commands: argument parsing only, the work lives elsewhere."""
import os
import argparse
import sys

from nnunet_genesis.commands.wrapper import command


@command("nnUNet_genesis_submission")
def submission_main(argv=None):
    """nnUNet_genesis_submission: validate Decathlon predictions and pack the leaderboard zip
    (see competition/submission.py). Returns 0 when valid (and written), 1 when invalid, 4 when the zip
    cannot be written (an earlier zip is left as it was)."""
    parser = argparse.ArgumentParser(
        prog="nnUNet_genesis_submission",
        description="Validate predictions for the Medical Segmentation Decathlon test sets and pack them "
                    "into one leaderboard zip (TaskXX_Name/<test image name>). Every problem is listed "
                    "before anything is written; predictions are never modified.")
    parser.add_argument("-i", "--input", dest="pred_root", required=True, metavar="PRED_ROOT",
                        help="folder with one prediction folder per task, named Task01_BrainTumour or "
                             "Task001_BrainTumour (nnU-Net v1) or Dataset001_BrainTumour (v2)")
    parser.add_argument("-d", "--decathlon", dest="decathlon_root", required=True, metavar="DECATHLON_ROOT",
                        help="folder with the original Decathlon task folders (TaskXX_Name/dataset.json, imagesTs/)")
    parser.add_argument("-o", "--output", dest="out_zip", metavar="ZIP",
                        help="submission zip to write (required unless --check_only)")
    parser.add_argument("--tasks", nargs="+", metavar="TASK",
                        help="submit only these tasks (Task04_Hippocampus, Task004_Hippocampus, Hippocampus or 4); "
                             "default: all ten, each must have predictions")
    parser.add_argument("--check_only", action="store_true", help="validate only, write nothing")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output zip")
    args = parser.parse_args(argv)
    if args.out_zip is None and not args.check_only:
        parser.error("-o/--output is required unless --check_only is given")

    from competition.submission import SubmissionError, build_submission

    try:
        result = build_submission(args.pred_root, args.decathlon_root, args.out_zip, tasks=args.tasks,
                                  check_only=args.check_only, overwrite=args.overwrite)
    except SubmissionError as error:
        _report(error.result)
        print(error.result.format_problems(), file=sys.stderr)
        print("Nothing was written.", file=sys.stderr)
        return 1
    _report(result)
    if args.check_only:
        print("The submission is valid (--check_only: nothing written).")
    else:
        print("The submission is valid: wrote %s (%d files)." % (args.out_zip, len(result.files)))
    return 0


def _report(result):
    print(result.format_table())
    for warning in result.warnings:
        print("warning: %s" % warning, file=sys.stderr)


@command("nnUNet_genesis_run_task")
def run_task_main(argv=None):
    """nnUNet_genesis_run_task: one Decathlon task end to end with the stock nnU-Net v1 commands
    (see competition/pipeline.py). Exit status: 0 done (or stopped as asked), 1 a step failed, 2 bad input."""
    from competition.pipeline import (DEFAULT_FOLDS, DEFAULT_PLANS_IDENTIFIER, DEFAULT_PRED_ROOT, DEFAULT_PRETRAINER,
                                      DEFAULT_TRAINER, STEP_NAMES, PipelineConfigError, PipelineError, run_task)
    parser = argparse.ArgumentParser(
        prog="nnUNet_genesis_run_task",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run one Medical Segmentation Decathlon task end to end with Models Genesis pretraining,\n"
                    "through the stock nnU-Net v1 commands. Each command is printed before it runs (copy-\n"
                    "pasteable) and inherits the environment: nnUNet_raw_data_base, nnUNet_preprocessed and\n"
                    "RESULTS_FOLDER must be set (and nnUNet_extTrainer for trainers of your own).",
        epilog="""steps (TASK_ID = NNN, pretraining task id = MMM):
  1 convert   nnUNet_convert_decathlon_task -i TaskXX_Name -output_task_id NNN
              done: nnUNet_raw_data/TaskNNN_Name/dataset.json exists
  2 plan      nnUNet_plan_and_preprocess -t NNN -pl2d None -tl NP -tf NP
              done: the 3D plans and every training case's full-resolution data exist
  3 prepare   nnUNet_genesis_prepare -t NNN -i TaskXX_Name [EXTRA ...] -o MMM
              done: its prepare_report.json lists the same sources and all their cases are
              preprocessed, or the pretraining is finished; otherwise it runs again and
              prepares only the cases not done yet
  4 pretrain  nnUNet_train 3d_fullres PRETRAINER TaskMMM_Genesis<Name> all
              done: model_final_checkpoint.model exists in its 'all' folder; a started run
              (model_latest.model or model_best.model there) is continued with -c
  5 finetune  nnUNet_train 3d_fullres TRAINER TaskNNN_Name FOLD -pretrained_weights
                .../TaskMMM_Genesis<Name>/PRETRAINER__PLANS/all/model_final_checkpoint.model
              done: model_final_checkpoint.model and validation_raw/summary.json exist (per
              fold); a started fold is continued with -c instead (nnU-Net ignores
              -pretrained_weights with -c), a trained but unvalidated one gets -val
              with all five folds also: nnUNet_determine_postprocessing -m 3d_fullres -t NNN
                -tr TRAINER   (done: postprocessing.json newer than the five checkpoints)
  6 predict   nnUNet_predict -i .../TaskNNN_Name/imagesTs -o PRED_ROOT/TaskXX_Name -t NNN
                -m 3d_fullres -tr TRAINER -f FOLDS
              done: a prediction for every test image of the Decathlon dataset.json, none older
              than the model (checkpoints, postprocessing.json); older ones are redone with
              --overwrite_existing

resume: rerun the same command after an interruption or a failure; finished steps print
"[skip] <step>: <why>" and the rest continue. --dry_run shows what would run now. A step is
judged by its own outputs only: delete them to redo it (e.g. after changing the pretraining).
PRED_ROOT/TaskXX_Name is the layout nnUNet_genesis_submission -i PRED_ROOT reads.
--verify_dataset_integrity is off by default: the Decathlon data are what nnU-Net was built on,
and the check stops planning on header differences nnU-Net's author advises ignoring.
The stock converter deletes hidden files ('._*' and other names starting with '.') from the
Decathlon folder's imagesTr, labelsTr and imagesTs.""")
    parser.add_argument("-i", "--input", dest="decathlon_dir", required=True, metavar="DECATHLON_TASK_DIR",
                        help="a Decathlon task folder as downloaded, e.g. /data/Task03_Liver (imagesTr, labelsTr, "
                             "imagesTs, dataset.json)")
    parser.add_argument("-t", "--task_id", type=int, default=None, metavar="TASK_ID",
                        help="nnU-Net task id NNN (default: the Decathlon number, Task03_Liver -> 3 -> "
                             "Task003_Liver)")
    parser.add_argument("-f", "--folds", nargs="+", default=[str(f) for f in DEFAULT_FOLDS], metavar="FOLD",
                        help="folds to fine-tune and to predict with (default: 0 1 2 3 4; 'all' trains on every "
                             "case)")
    parser.add_argument("--pretrain_task_id", type=int, default=None, metavar="ID",
                        help="id MMM of the pretraining task TaskMMM_Genesis<Name> (default TASK_ID + 500, or "
                             "TASK_ID - 500 when TASK_ID > 500)")
    parser.add_argument("--unlabeled", nargs="+", default=[], metavar="EXTRA_SOURCE",
                        help="more unlabeled volumes to pretrain on besides the task's own imagesTr and imagesTs: "
                             "other task folders, plain folders or files (see nnUNet_genesis_prepare -h)")
    parser.add_argument("--pretrainer", default=DEFAULT_PRETRAINER,
                        help="pretraining trainer class (default %(default)s)")
    parser.add_argument("--trainer", default=DEFAULT_TRAINER,
                        help="fine-tuning trainer class (default %(default)s)")
    parser.add_argument("-p", "--plans_identifier", default=DEFAULT_PLANS_IDENTIFIER,
                        help="plans identifier (default %(default)s; the plan step runs nnU-Net's default planners, "
                             "other identifiers must exist already)")
    parser.add_argument("--pred_root", default=DEFAULT_PRED_ROOT,
                        help="predictions go to PRED_ROOT/TaskXX_Name (default ./%(default)s)")
    parser.add_argument("--stop_after", choices=STEP_NAMES, default=None,
                        help="stop after this step")
    parser.add_argument("--dry_run", action="store_true",
                        help="print the commands the files on disk call for now, run nothing")
    parser.add_argument("-np", "--num_processes", type=int, default=2, metavar="N",
                        help="worker processes for conversion, preprocessing, preparation and prediction "
                             "(default %(default)s)")
    parser.add_argument("--plan_2d", action="store_true",
                        help="also plan and preprocess nnU-Net's 2D configuration (not used by this pipeline)")
    parser.add_argument("--verify_dataset_integrity", action="store_true",
                        help="pass --verify_dataset_integrity to nnUNet_plan_and_preprocess")
    args = parser.parse_args(argv)
    try:
        run_task(args.decathlon_dir, task_id=args.task_id, folds=args.folds, pretrain_task_id=args.pretrain_task_id,
                 unlabeled=args.unlabeled, pretrainer=args.pretrainer, trainer=args.trainer,
                 plans_identifier=args.plans_identifier, pred_root=args.pred_root, stop_after=args.stop_after,
                 dry_run=args.dry_run, num_processes=args.num_processes, plan_2d=args.plan_2d,
                 verify_dataset_integrity=args.verify_dataset_integrity)
    except PipelineConfigError as error:
        print("nnUNet_genesis_run_task: error: %s" % error, file=sys.stderr)
        return 2
    except PipelineError as error:
        print("nnUNet_genesis_run_task: %s" % error, file=sys.stderr)
        return 1
    return 0


@command("nnUNet_genesis_demo")
def demo_main(argv=None):
    """nnUNet_genesis_demo: the whole pipeline on real data shipped with pip (see competition/demo.py).
    Exit status: 0 done, 1 a step failed."""
    from competition.demo import DemoError, run_demo
    from competition.pipeline import PipelineConfigError, PipelineError
    from competition.study import StudyError
    parser = argparse.ArgumentParser(
        prog="nnUNet_genesis_demo",
        description="Build a small Decathlon-format brain tissue task from the MNI152 template shipped with "
                    "nilearn, then on CPU: Models Genesis pretraining and its restoration per distortion, a study "
                    "of fine-tuning from the pretrained weights against training from scratch (same budget) with "
                    "2 and all labelled cases of fold 0 and two seeds, scored on the test images, a validated "
                    "submission zip and a per-case comparison. About 12 minutes on 2 cores. Running it again on "
                    "the same folder resumes.")
    parser.add_argument("-o", "--output", default="demo_output", help="output folder (default ./demo_output); "
                        "must be new, empty, or an earlier demo's")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the training budget (default 1; "
                        "e.g. 0.2 for a quick smoke run, 5 for a more telling comparison)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds of the study (default 0 1)")
    args = parser.parse_args(argv)
    try:
        run_demo(args.output, scale=args.scale, seeds=tuple(args.seeds))
    except (DemoError, PipelineConfigError, PipelineError, StudyError) as error:
        print("nnUNet_genesis_demo: error: %s" % error, file=sys.stderr)
        return 1
    return 0


def _study_backend(args) -> dict:
    """run_study's backend for --nnunet (v2: with the configuration and plans)."""
    if args.nnunet == 1:
        return {}
    from functools import partial
    from competition.study_nnunet_v2 import NnUNetV2
    return {"backend": partial(NnUNetV2, configuration=args.configuration, plans=args.plans)}


@command("nnUNet_genesis_study")
def study_main(argv=None):
    """nnUNet_genesis_study: scratch vs Genesis fine-tuning at several labelled-case counts and seeds
    (see competition/study.py). Exit status: 0 done, 1 a step failed, 2 bad input (found before training)."""
    from competition.study import StepFailed, StudyError, run_study
    from nnunet_genesis.io.atomic import WriteError
    parser = argparse.ArgumentParser(
        prog="nnUNet_genesis_study",
        description="Does pretraining help, and with how many labels? For each labelled-case count and seed, train "
                    "the same cases of one fold from scratch and from pretrained weights (stock nnUNet_train, same "
                    "budget and schedule), predict the held-out test images (stock nnUNet_predict) and score them. "
                    "Writes study.json, study.md and study.png: per count mean +- sd over seeds per arm, the paired "
                    "difference Genesis - scratch over seeds with its 95%% interval and an exact Wilcoxon test "
                    "over seeds. Every input is checked before the first training. Works in its own nnU-Net "
                    "folders inside -o: your splits are never changed. Running it again resumes, reusing only "
                    "results whose recorded inputs (weights, plans, test images and labels, -l, --tolerance) "
                    "are unchanged.")
    parser.add_argument("-t", "--task", required=True, help="planned target task, id or name (with --nnunet 2: a "
                        "dataset id or DatasetXXX_Name planned with nnUNetv2_plan_and_preprocess)")
    parser.add_argument("-w", "--weights", required=True, help="pretrained weights (e.g. a GenesisPretrain run's "
                        "model_final_checkpoint.model or v2 checkpoint_final.pth, or a published Models Genesis file)")
    parser.add_argument("--nnunet", type=int, choices=[1, 2], default=1, help="nnU-Net version of the task and of the "
                        "commands (default 1; 2: nnUNetv2_train / nnUNetv2_predict)")
    parser.add_argument("-c", "--configuration", help="with --nnunet 2: the configuration (default 3d_fullres)")
    parser.add_argument("-p", "--plans", help="with --nnunet 2: the plans identifier (default nnUNetPlans)")
    parser.add_argument("-o", "--output", required=True, help="study folder (created; resumed when it exists)")
    parser.add_argument("--test_labels", required=True, help="folder of the held-out test cases' label maps, one "
                        "per test image, named like its case (CASE.nii.gz)")
    parser.add_argument("--test_images", help="nnU-Net-format test images (CASE_0000.nii.gz); default: the task's "
                        "imagesTs in $nnUNet_raw_data_base (v2: $nnUNet_raw)")
    parser.add_argument("-f", "--fold", type=int, default=0, help="fold whose training cases are drawn from and "
                        "whose validation cases validate every run (default 0)")
    parser.add_argument("--counts", nargs="+", default=["2", "4", "all"], help="labelled-case counts (default 2 4 all)")
    parser.add_argument("--seeds", nargs="+", default=["0", "1", "2"], help="seeds, integers >= 0 (default 0 1 2); "
                        "the seed is the unit of the statistics: use 5 or more for a test that can reach p < 0.05")
    parser.add_argument("--scratch_trainer", help="default nnUNetTrainerV2_Seeded (v2: nnUNetTrainer_Seeded): the stock "
                        "trainer, seeded like the Genesis arm (common random numbers)")
    parser.add_argument("--genesis_trainer", help="default nnUNetTrainerV2_Genesis (v2: nnUNetTrainer_Genesis)")
    parser.add_argument("-l", "--labels", nargs="+", type=int, help="labels to score (default: every foreground "
                        "label of the task's dataset.json)")
    parser.add_argument("--tolerance", type=float, help="NSD tolerance in mm (evaluation; default 2)")
    args = parser.parse_args(argv)
    if args.nnunet == 1 and (args.configuration or args.plans):
        parser.error("-c/--configuration and -p/--plans are for --nnunet 2; the v1 study trains 3d_fullres")
    # the weights are read once here, before hours of training: a missing, damaged or NaN checkpoint is
    # bad input now, not a failure of the first Genesis run after the scratch runs
    from nnunet_genesis.checkpoints.files import CheckpointError, load_state_dict_from_checkpoint
    try:
        load_state_dict_from_checkpoint(args.weights)
    except (CheckpointError, FileNotFoundError, IsADirectoryError) as error:
        print("nnUNet_genesis_study: error: %s" % error, file=sys.stderr)
        return 2
    try:
        study = run_study(args.task, args.weights, args.output, args.test_images, args.test_labels, fold=args.fold,
                          counts=args.counts, seeds=args.seeds, scratch_trainer=args.scratch_trainer,
                          genesis_trainer=args.genesis_trainer, labels=args.labels, tolerance_mm=args.tolerance,
                          **_study_backend(args))
    except (StepFailed, WriteError) as error:
        print("nnUNet_genesis_study: %s" % error, file=sys.stderr)
        return 1
    except OSError as error:      # e.g. a study folder that cannot be renamed into or read: one line, not a traceback
        print("nnUNet_genesis_study: %s" % error, file=sys.stderr)
        return 1
    except StudyError as error:
        print("nnUNet_genesis_study: error: %s" % error, file=sys.stderr)
        return 2
    from competition.study import format_study_markdown
    print(format_study_markdown(study["summary"], study["config"]))
    print("written: %s" % ", ".join(os.path.join(args.output, f) for f in ("study.json", "study.md", "study.png")))
    return 0
