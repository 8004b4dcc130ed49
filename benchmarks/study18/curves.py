"""Per-epoch validation Dice (nnU-Net's online "Average global foreground Dice" on the fold's validation
batches) of every run of an ``nnUNet_genesis_study`` folder, averaged over seeds per count and arm.

    python benchmarks/study18/curves.py STUDY_FOLDER [--png PATH]

Read from the study's logs (``OUT/logs/<arm>_n<count>_s<seed>__<trainer>.log``); one Markdown row per count,
arm and structure: the seed mean at every epoch. Online Dice is a noisy estimate on 2 batches per epoch; it
shows how fast each arm learns, not the result (that is the test Dice of study.json). ``--png``: one panel per
structure and count, every seed's curve thin, the seed mean thick, scratch and Genesis in two colours.
"""
import argparse
import csv
import glob
import json
import os
import re

import numpy as np

from nnunet_genesis.io.atomic import save_figure_atomic

LINE = re.compile(r"Average global foreground Dice: \[(.*)\]")


def curve(path):
    rows = []
    for line in open(path, errors="replace"):
        m = LINE.search(line)
        if m:
            rows.append([float(x) for x in re.findall(r"np\.float32\(([-0-9.e]+)\)", m.group(1))]
                        or [float(x) for x in m.group(1).split(",")])
    return np.array(rows)


def structure_names(folder):
    """The scored labels' names in label order, read from the study's first evaluation (its per_case.csv);
    nnU-Net's online Dice lists the foreground labels in the same order."""
    study = json.load(open(os.path.join(folder, "study.json")))
    names = {}
    for row in csv.DictReader(open(os.path.join(study["runs"][0]["evaluation"], "per_case.csv"))):
        names[int(row["label"])] = row["label_name"] or row["label"]
    return [names.get(label, str(label)) for label in study["config"]["labels"]]


def plot(stacks, names, path):
    """``stacks``: (count, arm) -> seeds x epochs x labels, as ``aligned`` returns them."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    counts = sorted({count for count, _ in stacks}, key=lambda c: (len(c), c))
    fig, axes = plt.subplots(len(counts), len(names), figsize=(5 * len(names), 3.6 * len(counts)), squeeze=False)
    for i, count in enumerate(counts):
        for k, name in enumerate(names):
            ax = axes[i][k]
            for arm, colour in (("scratch", "tab:gray"), ("genesis", "tab:blue")):
                if (count, arm) not in stacks:
                    continue
                stack = stacks[(count, arm)][:, :, k]
                epochs = np.arange(1, stack.shape[1] + 1)
                for row in stack:
                    ax.plot(epochs, row, color=colour, lw=0.7, alpha=0.45)
                ax.plot(epochs, stack.mean(0), color=colour, lw=2.2, label="%s (mean of %d seeds)" % (arm, len(stack)))
            ax.set_ylim(0, 1)
            ax.set_title("%s, %s labelled cases" % (name, count))
            ax.set_xlabel("epoch")
            ax.set_ylabel("online validation Dice")
            ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=90)
    print("wrote %s" % path)


def aligned(runs):
    """(count, arm) -> seeds x epochs x labels, every seed's curve cut to the shortest one's epochs."""
    stacks = {}
    for key, curves in runs.items():
        n = min(len(c) for c in curves)
        stacks[key] = np.stack([c[:n] for c in curves])
    return stacks


def main(folder, png=None):
    names = structure_names(folder)
    runs = {}
    for path in sorted(glob.glob(os.path.join(folder, "logs", "*.log"))):
        m = re.match(r"(scratch|genesis)_n(\w+)_s(\d+)__", os.path.basename(path))
        if m:
            c = curve(path)
            if len(c):
                runs.setdefault((m.group(2), m.group(1)), []).append(c)
    print("| labelled cases | arm | structure | seeds | online validation Dice per epoch (seed mean) |")
    print("|---|---|---|---:|---|")
    stacks = aligned(runs)
    for (count, arm), stack in sorted(stacks.items()):
        for k, name in enumerate(names):
            print("| %s | %s | %s | %d | %s |" % (count, arm, name, len(stack),
                                               " ".join("%.2f" % v for v in stack[:, :, k].mean(0))))
    if png:
        plot(stacks, names, png)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="an nnUNet_genesis_study output folder")
    parser.add_argument("--png", help="also draw the curves into this PNG")
    args = parser.parse_args()
    main(args.folder, args.png)
