"""The picture of docs/measurements_study18_crn.md section 9: per fine-tuning seed, each Genesis arm's test Dice
minus scratch's, from the pretrained checkpoints and from the control checkpoints (random_checkpoint.py).

    python benchmarks/study18/control_plot.py OUT.png LABEL=GENESIS_1,GENESIS_2,...:CONTROL_1[,CONTROL_2] [...]

One panel per argument (a setting, e.g. ``n4=$S/s8_deepgrey_n4_p0,$S/s8_deepgrey_n4_p1:$S/s9_deepgrey_n4_random``):
a dot per seed and pretrained checkpoint, a cross per seed and control, and each group's mean over the seeds as a
line. Every folder must hold the same scratch runs (share_scratch.sh): checked seed by seed as in
pretrain_seed_table.py.
"""
import sys

import numpy as np

from nnunet_genesis.io.atomic import save_figure_atomic
from share_rule import check_shared_scratch, genesis_and_scratch, seeds_in_all


def differences(folders):
    """{folder: {seed: Genesis − scratch}} over the seeds every folder holds, and those seeds."""
    studies = {folder: genesis_and_scratch(folder) for folder in folders}
    for folder, (_, _, count) in studies.items():
        if count is None:
            sys.exit("%s: no study.json" % folder)
    seeds = seeds_in_all(studies.values())
    first = studies[folders[0]][1]
    for folder in folders[1:]:
        check_shared_scratch(first, studies[folder][1], seeds, folder)
    return {folder: {s: g[s]["mean_dice"] - first[s]["mean_dice"] for s in seeds}
            for folder, (g, _, _) in studies.items()}, seeds


def main(args):
    if len(args) < 2:
        sys.exit(__doc__)
    from matplotlib.figure import Figure
    out, panels = args[0], args[1:]
    figure = Figure(figsize=(5.2 * len(panels), 3.8))
    for i, panel in enumerate(panels):
        label, _, groups = panel.partition("=")
        pretrained, _, controls = groups.partition(":")
        pretrained, controls = pretrained.split(","), controls.split(",") if controls else []
        diffs, seeds = differences(pretrained + controls)
        axis = figure.add_subplot(1, len(panels), i + 1)
        axis.axhline(0, color="grey", lw=0.8)
        axis.axhspan(-0.005, 0.03, color="0.93", lw=0)
        for group, marker, colour, name in ((pretrained, "o", "tab:blue", "pretrained checkpoints"),
                                            (controls, "x", "tab:red", "control (no learned content)")):
            if not group:
                continue
            for k, folder in enumerate(group):
                offset = (k - (len(group) - 1) / 2) * 0.08 + (0.2 if marker == "x" else -0.2)
                axis.plot([s + offset for s in seeds], [diffs[folder][s] for s in seeds], marker, color=colour,
                          ms=5, alpha=0.8, label=name if k == 0 else None)
            mean = np.mean([[diffs[f][s] for s in seeds] for f in group])
            axis.axhline(mean, color=colour, lw=1.2, ls="--")
        axis.set_xticks(seeds)
        axis.set_xlabel("fine-tuning seed")
        axis.set_ylabel("test Dice − scratch (same seed)")
        axis.set_title("%s (dashed: means; grey band: floor −0.005 to target +0.03)" % label, fontsize=8)
        axis.legend(fontsize=7, loc="best")
    figure.tight_layout()
    save_figure_atomic(figure, out, dpi=100)
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1:])
