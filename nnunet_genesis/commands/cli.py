"""Entry points of the nnUNet_genesis_* commands: argument parsing only, the work lives elsewhere.

Every entry point (also those of evaluation/cli.py and competition/cli.py) is wrapped by
:func:`nnunet_genesis.commands.wrapper.command` (a failed file operation: one line, exit status 4; the
traceback only with ``NNUNET_GENESIS_DEBUG=1``).
"""
import argparse
import sys

from nnunet_genesis.commands.wrapper import command
from nnunet_genesis.nnunet_v1 import layout


def add_version_arguments(parser):
    """--nnunet and -c, as nnUNet_genesis_prepare takes them (v2: a dataset, its configuration and plans)."""
    parser.add_argument("--nnunet", type=int, choices=[1, 2], default=1,
                        help="nnU-Net version of the task / dataset (default 1)")
    parser.add_argument("-c", "--configuration", default=None,
                        help="with --nnunet 2: the configuration (default 3d_fullres)")


def check_version_arguments(parser, args):
    if args.nnunet == 1 and args.configuration is not None:
        parser.error("-c/--configuration is for --nnunet 2; nnU-Net v1 takes 3d_fullres (nnUNet_genesis_transfer: -m)")
    if args.nnunet == 2 and getattr(args, "model", "3d_fullres") != "3d_fullres":
        parser.error("-m/--model is for nnU-Net v1; with --nnunet 2 give the configuration with -c")


@command("nnUNet_genesis_transfer")
def transfer_main(argv=None):
    """nnUNet_genesis_transfer: dry run of the adaptive weight transfer (see transfer.py).

    Exit status: 0 the transfer would be accepted, 1 it would be refused, 2 bad input (among it
    non-finite weights), 4 the report could not be written.
    """
    from nnunet_genesis.transfer.report import DEFAULT_MODE, MIN_ENCODER_FRACTION, MODES
    parser = argparse.ArgumentParser(
        prog="nnUNet_genesis_transfer",
        description="Print the transfer report of pretrained weights W into the network nnU-Net planned for "
                    "TASK, without training. Exit status 1 when nnUNetTrainerV2_Genesis (--nnunet 2: "
                    "nnUNetTrainer_Genesis) would refuse them.")
    parser.add_argument("-w", "--weights", required=True, help="checkpoint: nnU-Net .model or "
                        "checkpoint_*.pth, nnssl checkpoint, Models Genesis {'state_dict': ...} or a bare state dict")
    parser.add_argument("-t", "--task", required=True, help="planned target task, id or name (e.g. 3 or Task003_Liver); "
                        "with --nnunet 2 a planned dataset, id or name (e.g. 4 or Dataset004_Hippocampus)")
    parser.add_argument("-m", "--model", default="3d_fullres", choices=["2d", "3d_lowres", "3d_fullres"])
    parser.add_argument("-p", "--plans_identifier", default=None,
                        help="default %s; with --nnunet 2 nnUNetPlans (or e.g. nnUNetResEncUNetMPlans)"
                             % layout.DEFAULT_PLANS_IDENTIFIER)
    add_version_arguments(parser)
    parser.add_argument("--mode", default=DEFAULT_MODE, choices=MODES,
                        help="what is transferred (default %(default)s, as nnUNetTrainerV2_Genesis)")
    parser.add_argument("--min_encoder_fraction", type=float, default=MIN_ENCODER_FRACTION)
    parser.add_argument("--allow_partial", action="store_true", help="accept less than --min_encoder_fraction")
    parser.add_argument("--strict", action="store_true", help="refuse anything not transferred")
    parser.add_argument("-o", "--output", help="also write the report as JSON here")
    args = parser.parse_args(argv)
    check_version_arguments(parser, args)

    from nnunet_genesis.commands.transfer_dry_run import plan_transfer_for_dataset, plan_transfer_for_task
    from nnunet_genesis.transfer.report import TransferRefused
    if args.output:   # the report never replaces the weights it reports on
        from nnunet_genesis.io.atomic import refuse_output_inside_inputs
        refuse_output_inside_inputs(args.output, {"-w": args.weights})
    policy = dict(mode=args.mode, min_encoder_fraction=args.min_encoder_fraction, allow_partial=args.allow_partial,
                  strict=args.strict)
    try:
        if args.nnunet == 2:
            report = plan_transfer_for_dataset(args.weights, args.task, args.configuration, args.plans_identifier,
                                               **policy)
        else:
            report = plan_transfer_for_task(args.weights, args.task, model=args.model,
                                            plans_identifier=args.plans_identifier or layout.DEFAULT_PLANS_IDENTIFIER,
                                            **policy)
    except TransferRefused as refused:
        print(str(refused), file=sys.stderr)
        if args.output:
            refused.report.save_json(args.output)     # a failed write: EXIT_FILE_ERROR, not "refused"
        return 1
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as e:
        print("nnUNet_genesis_transfer: error: %s" % e, file=sys.stderr)
        return 2
    print(report.format())
    from nnunet_genesis.transfer.shrink_perturb import DEFAULT_PRETRAINED_SHARE
    print("then the fine-tuning trainer mixes the transferred convolution weights: %g x pretrained + %g x its own "
          "initialisation (genesis_pretrained_share; 1.0 keeps them as they are)"
          % (DEFAULT_PRETRAINED_SHARE, 1.0 - DEFAULT_PRETRAINED_SHARE))
    if args.output:
        report.save_json(args.output)
        print("report written to %s" % args.output)
    return 0


@command("nnUNet_genesis_prepare")
def prepare_main(argv=None):
    """nnUNet_genesis_prepare: unlabeled volumes -> pretraining task (v1, see unlabeled.py) or dataset (v2, see
    nnunet_v2/prepare.py) with the target's plans."""
    from nnunet_genesis.nnunet_v1.prepare import DEFAULT_PLANS_IDENTIFIER, PrepareError, prepare_pretraining_task
    parser = argparse.ArgumentParser(
        prog="nnUNet_genesis_prepare",
        description="Build TaskMMM_Genesis<Target> (nnU-Net v1; with --nnunet 2: DatasetMMM_Genesis<Target>) from "
                    "unlabeled volumes and preprocess it with the plans of an already planned target task (same "
                    "network, patch size, spacing and intensity normalisation, CT statistics from the target's "
                    "labelled data). Unreadable or non-3D files are skipped and listed in prepare_report.json; "
                    "finished cases are skipped on a re-run.")
    parser.add_argument("-t", "--target", required=True,
                        help="target task id or name (planned with nnUNet_plan_and_preprocess), e.g. 3 or "
                             "Task003_Liver; with --nnunet 2 a dataset id or name planned with "
                             "nnUNetv2_plan_and_preprocess, e.g. 4 or Dataset004_Hippocampus")
    parser.add_argument("-i", "--input", nargs="+", required=True, metavar="SOURCE",
                        help="Decathlon task folders (imagesTr without labels, imagesTs), nnU-Net raw task folders, "
                             "plain folders or single files (.nii.gz, .nii, .mhd, .mha, .nrrd); never modified")
    parser.add_argument("-o", "--output_task_id", required=True, type=int,
                        help="id MMM of the new task TaskMMM_Genesis<TargetName> (v2: DatasetMMM_Genesis<TargetName>)")
    parser.add_argument("-np", "--num_processes", type=int, default=2, help="parallel worker processes (default 2)")
    parser.add_argument("--overwrite", action="store_true", help="redo cases that are already prepared")
    parser.add_argument("--channels", type=int, nargs="+", default=None, metavar="I",
                        help="0-based channels to take from every source case, in the target's modality order "
                             "(e.g. '--channels 0' takes T2 from a T2/ADC source)")
    parser.add_argument("-p", "--plans_identifier", default=None,
                        help="plans identifier of the target (default %s; with --nnunet 2 nnUNetPlans, or e.g. "
                             "nnUNetResEncUNetMPlans)" % DEFAULT_PLANS_IDENTIFIER)
    parser.add_argument("--nnunet", type=int, choices=[1, 2], default=1,
                        help="nnU-Net version of the target and of the data written (default 1)")
    parser.add_argument("-c", "--configuration", default=None,
                        help="with --nnunet 2: the target's configuration to preprocess with (default 3d_fullres); "
                             "nnU-Net v1 always prepares 3d_fullres")
    args = parser.parse_args(argv)
    if args.nnunet == 1 and args.configuration is not None:
        parser.error("-c/--configuration is for --nnunet 2; nnU-Net v1 prepares the 3d_fullres stage")
    try:
        if args.nnunet == 2:
            from nnunet_genesis.nnunet_v2 import prepare as prepare_v2
            prepare_v2.prepare_pretraining_dataset(
                args.target, args.input, args.output_task_id, num_processes=args.num_processes,
                overwrite=args.overwrite, channels=args.channels,
                plans_identifier=args.plans_identifier or prepare_v2.DEFAULT_PLANS_IDENTIFIER,
                configuration=args.configuration or prepare_v2.DEFAULT_CONFIGURATION)
        else:
            prepare_pretraining_task(args.target, args.input, args.output_task_id, num_processes=args.num_processes,
                                     overwrite=args.overwrite, channels=args.channels,
                                     plans_identifier=args.plans_identifier or DEFAULT_PLANS_IDENTIFIER)
    except PrepareError as err:
        print("nnUNet_genesis_prepare: error: %s" % err, file=sys.stderr)
        return 1
    return 0


@command("nnUNet_genesis_restoration")
def restoration_main(argv=None):
    """nnUNet_genesis_restoration: does a pretraining checkpoint restore? (see score_checkpoint.py)

    Exit status: 0 scored, 3 scored and the network has collapsed, 2 bad input, 4 a file could not be written.
    """
    parser = argparse.ArgumentParser(
        prog="nnUNet_genesis_restoration",
        description="Score a pretraining checkpoint's restoration per distortion (local shuffling, non-linear map, "
                    "in-painting, out-painting, composite) on the central patches of a prepared task's cases, "
                    "against the identity baseline (the distorted patch as the answer) and the mean baseline. "
                    "Writes summary.json and one preview PNG per distortion. Exit status 3 when the network has "
                    "collapsed (flat output).")
    parser.add_argument("-w", "--weights", required=True,
                        help="checkpoint (.model, with its .model.pkl if it has one; v2: checkpoint_*.pth)")
    parser.add_argument("-t", "--task", required=True,
                        help="task prepared by nnUNet_genesis_prepare (id or name) whose plans fit the weights; with "
                             "--nnunet 2 the prepared dataset (id or name)")
    parser.add_argument("-o", "--output", required=True, help="folder for summary.json and the PNGs")
    parser.add_argument("--cases", type=int, default=20, help="score at most this many cases (default 20)")
    parser.add_argument("--residual", choices=["auto", "yes", "no"], default="auto",
                        help="residual output (restored = input + network): auto reads the recipe recorded in the "
                             "checkpoint's .pkl (v1) or in the checkpoint (v2: its adaptation plan or trainer)")
    parser.add_argument("-p", "--plans_identifier", default=None,
                        help="default %s; with --nnunet 2 nnUNetPlans" % layout.DEFAULT_PLANS_IDENTIFIER)
    add_version_arguments(parser)
    args = parser.parse_args(argv)
    check_version_arguments(parser, args)

    from nnunet_genesis.pretraining.scores import collapse_warning, format_scores
    from nnunet_genesis.commands.score_checkpoint import ScoreError, score_checkpoint
    from nnunet_genesis.nnunet_v1.prepare import PrepareError
    from nnunet_genesis.checkpoints.files import CheckpointError
    residual = {"auto": None, "yes": True, "no": False}[args.residual]
    try:
        summary, residual, how = score_checkpoint(args.weights, args.task, args.output, max_cases=args.cases,
                                                  residual=residual, plans_identifier=args.plans_identifier,
                                                  nnunet=args.nnunet, configuration=args.configuration)
    except (ScoreError, PrepareError, CheckpointError, FileNotFoundError) as error:
        print("nnUNet_genesis_restoration: error: %s" % error, file=sys.stderr)
        return 2
    print("%s on %s: %d case(s), %s output (%s)" % (args.weights, summary["task"], len(summary["cases"]),
                                                   "residual" if residual else "direct", how))
    print(format_scores(summary["scores"]))
    print("written: %s" % args.output)
    if summary["collapse"]:
        print(collapse_warning(summary["collapse"]))
        return 3
    return 0
