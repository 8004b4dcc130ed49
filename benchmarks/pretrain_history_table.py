"""A pretraining run's per-distortion history as a Markdown table (docs/measurements_pretraining.md).

    python benchmarks/pretrain_history_table.py FOLD_FOLDER [FOLD_FOLDER ...] [--iterations-per-epoch 25]

Reads each fold folder's ``restoration_history.json`` (``pretraining.record_restoration``) and prints one row
per scored epoch: network R^2 on shuffling and in-painting (identity baseline in brackets), non-linear and
out-painting (mean baseline 0), the composite variance ratio and whether the collapse check fired.
"""
import argparse
import json
import os


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--iterations-per-epoch", type=int, default=25)
    args = parser.parse_args(argv)
    for folder in args.folders:
        path = os.path.join(folder, "restoration_history.json")
        if not os.path.isfile(path):
            print("%s: no restoration_history.json" % folder)
            continue
        with open(path) as f:
            history = json.load(f)
        print("\n%s\n| epoch | iterations | shuffle (identity) | in-painting (identity) | non-linear | out-painting | "
              "composite var. ratio | collapse |\n|---|---|---|---|---|---|---|---|" % folder)
        for h in history:
            s = h["scores"]
            print("| %d | %d | %.3f (%.3f) | %.3f (%.3f) | %.3f | %.3f | %.3f | %s |" % (
                h["epoch"], args.iterations_per_epoch * (h["epoch"] + 1), s["local_shuffle"]["network"],
                s["local_shuffle"]["identity"], s["in_painting"]["network"], s["in_painting"]["identity"],
                s["non_linear"]["network"], s["out_painting"]["network"], s["composite"]["variance_ratio"],
                "yes" if h["collapse"] else "no"))


if __name__ == "__main__":
    main()
