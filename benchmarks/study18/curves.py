"""Per-epoch validation Dice (nnU-Net's online "Average global foreground Dice" on the fold's validation
batches) of every run of an ``nnUNet_genesis_study`` folder, averaged over seeds per count and arm.

    python benchmarks/study18/curves.py STUDY_FOLDER

Read from the study's logs (``OUT/logs/<arm>_n<count>_s<seed>__<trainer>.log``); one Markdown row per count,
arm and structure: the seed mean at every epoch. Online Dice is a noisy estimate on 2 batches per epoch; it
shows how fast each arm learns, not the result (that is the test Dice of study.json).
"""
import glob
import os
import re
import sys

import numpy as np

LINE = re.compile(r"Average global foreground Dice: \[(.*)\]")


def curve(path):
    rows = []
    for line in open(path, errors="replace"):
        m = LINE.search(line)
        if m:
            rows.append([float(x) for x in re.findall(r"np\.float32\(([-0-9.e]+)\)", m.group(1))]
                        or [float(x) for x in m.group(1).split(",")])
    return np.array(rows)


def main(folder):
    runs = {}
    for path in sorted(glob.glob(os.path.join(folder, "logs", "*.log"))):
        m = re.match(r"(scratch|genesis)_n(\w+)_s(\d+)__", os.path.basename(path))
        if m:
            c = curve(path)
            if len(c):
                runs.setdefault((m.group(2), m.group(1)), []).append(c)
    print("| labelled cases | arm | structure | seeds | online validation Dice per epoch (seed mean) |")
    print("|---|---|---|---:|---|")
    for (count, arm), curves in sorted(runs.items()):
        n = min(len(c) for c in curves)
        stack = np.stack([c[:n] for c in curves])  # seeds x epochs x labels
        for k, name in enumerate(("caudate", "putamen")):
            print("| %s | %s | %s | %d | %s |" % (count, arm, name, len(curves),
                                               " ".join("%.2f" % v for v in stack[:, :, k].mean(0))))


if __name__ == "__main__":
    main(sys.argv[1])
