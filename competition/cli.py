"""Entry points of the competition commands: argument parsing only, the work lives elsewhere."""
import argparse
import sys


def submission_main(argv=None):
    """nnUNet_genesis_submission: validate Decathlon predictions and pack the leaderboard zip
    (see competition/submission.py). Returns 0 when valid (and written), 1 when invalid."""
    parser = argparse.ArgumentParser(
        prog="nnUNet_genesis_submission",
        description="Validate predictions for the Medical Segmentation Decathlon test sets and pack them "
                    "into one leaderboard zip (TaskXX_Name/<test image name>). Every problem is listed "
                    "before anything is written; predictions are never modified.")
    parser.add_argument("-i", "--input", dest="pred_root", required=True, metavar="PRED_ROOT",
                        help="folder with one prediction folder per task, named Task01_BrainTumour or "
                             "Task001_BrainTumour")
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


def run_task_main(argv=None):
    """nnUNet_genesis_run_task: one Decathlon task end to end (to be written)."""
    raise NotImplementedError


def demo_main(argv=None):
    """nnUNet_genesis_demo (to be written)."""
    raise NotImplementedError
