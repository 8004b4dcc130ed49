"""Command lines ``nnUNet_genesis_evaluate`` and ``nnUNet_genesis_compare`` (argument parsing only;
the work is done in evaluation.evaluate and evaluation.compare)."""
import argparse
import sys
from typing import List, Optional

from evaluation.evaluate import DEFAULT_TOLERANCE_MM, EvaluationError, default_num_processes
from nnunet_genesis.commands.wrapper import command


def _add_scoring_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-l", "--labels", type=int, nargs="+", default=None, metavar="LABEL",
                        help="labels to score (default: the task's labels with -t, else every non-zero "
                             "label found in the references or the predictions; a label only predicted "
                             "scores its false positives and is named in a warning)")
    parser.add_argument("--tolerance", type=float, default=None, metavar="MM",
                        help="NSD tolerance in mm (default: the Decathlon task's value where one is sourced "
                             "in evaluation/tasks.py, else %g mm)" % DEFAULT_TOLERANCE_MM)
    parser.add_argument("-t", "--task", default=None, metavar="MSD_TASK",
                        help="Decathlon task (Task07_Pancreas, Task007_Pancreas, Dataset007_Pancreas, Pancreas or 7): "
                             "gives the labels, their names and the NSD tolerance")
    parser.add_argument("-np", "--num_processes", type=int, default=default_num_processes(),
                        help="worker processes (default: %(default)s)")


@command("nnUNet_genesis_evaluate")
def evaluate_main(argv: Optional[List[str]] = None) -> int:
    """nnUNet_genesis_evaluate -ref LABELS_DIR -pred PRED_DIR [-l LABEL ...] [--tolerance MM | -t MSD_TASK]
    -o OUT_DIR [-np N]. Exit status: 0 scored, 1 bad input (named file and fault), 4 a file could not be
    written (earlier results left intact)."""
    parser = argparse.ArgumentParser(
        prog="nnUNet_genesis_evaluate",
        description="Score predicted label maps against references with the Medical Segmentation Decathlon's "
                    "metrics: Dice and Normalised Surface Distance (surface Dice at a tolerance in mm, "
                    "area-weighted surfels as in Nikolov et al. 2018), plus HD95. Writes per_case.csv and "
                    "summary.json. A reference case without a prediction scores 0.")
    parser.add_argument("-ref", "--reference", required=True, metavar="LABELS_DIR",
                        help="folder of reference label maps (.nii.gz/.nii)")
    parser.add_argument("-pred", "--prediction", required=True, metavar="PRED_DIR",
                        help="folder of predicted label maps, matched to the references by file name")
    parser.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="where to write the results")
    _add_scoring_options(parser)
    parser.add_argument("--only_predicted_cases", action="store_true",
                        help="score only the reference cases that have a prediction (e.g. one fold's "
                             "validation cases against all of labelsTr) instead of scoring missing ones 0")
    args = parser.parse_args(argv)
    from evaluation.evaluate import evaluate_folders
    try:
        evaluate_folders(args.reference, args.prediction, labels=args.labels, tolerance_mm=args.tolerance,
                         out_dir=args.output, num_processes=args.num_processes, task=args.task,
                         only_predicted_cases=args.only_predicted_cases)
    except EvaluationError as error:
        print("nnUNet_genesis_evaluate: error: %s" % error, file=sys.stderr)
        return 1
    return 0


@command("nnUNet_genesis_compare")
def compare_main(argv: Optional[List[str]] = None) -> int:
    """nnUNet_genesis_compare -a RUN_A -b RUN_B [--names A B] -o OUT_DIR [--ref LABELS_DIR] ...
    Exit status: 0 compared, 1 bad input (also: no case in common), 4 a file could not be written."""
    parser = argparse.ArgumentParser(
        prog="nnUNet_genesis_compare",
        description="Compare two runs case by case (e.g. nnU-Net from scratch vs. Models Genesis): per label "
                    "and metric the mean of each run, the mean paired difference B-A and the Wilcoxon "
                    "signed-rank p-value. Writes compare.md, compare.png and compare.json. A run is a folder "
                    "written by nnUNet_genesis_evaluate, or an nnU-Net fold folder (with validation_raw/), "
                    "which is evaluated first into OUT_DIR/eval_A or OUT_DIR/eval_B.")
    parser.add_argument("-a", required=True, metavar="RUN_A", help="evaluation folder or nnU-Net fold folder (A)")
    parser.add_argument("-b", required=True, metavar="RUN_B", help="evaluation folder or nnU-Net fold folder (B)")
    parser.add_argument("--names", nargs=2, default=None, metavar=("NAME_A", "NAME_B"),
                        help="names of the two runs in the report (default: the end of each path that tells "
                             "them apart, e.g. the trainer folders of two nnU-Net folds)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="where to write the report")
    parser.add_argument("--ref", default=None, metavar="LABELS_DIR",
                        help="reference labels for nnU-Net fold folders (default: the task's labelsTr under "
                             "$nnUNet_raw_data_base, else gt_segmentations under $nnUNet_preprocessed)")
    _add_scoring_options(parser)
    args = parser.parse_args(argv)
    from evaluation.compare import compare_folders
    try:
        compare_folders(args.a, args.b, args.output, names=args.names, ref_dir=args.ref, labels=args.labels,
                        tolerance_mm=args.tolerance, task=args.task, num_processes=args.num_processes)
    except EvaluationError as error:
        print("nnUNet_genesis_compare: error: %s" % error, file=sys.stderr)
        return 1
    return 0
