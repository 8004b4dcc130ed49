"""The rule of docs/measurements_study18_crn.md section 5, applied: which pretrained share becomes the default.

    python benchmarks/study18/share_rule.py SETTING=STUDY_SHARE_0.3,STUDY_SHARE_0.1 [SETTING=... ...]

Each argument names one setting and its two ``nnUNet_genesis_study`` folders (``benchmarks/study18/two_shares.sh``
writes them: ``s6_SETTING_mix30`` and ``s6_SETTING_mix10``). Per setting, over the seeds whose Genesis run both
folders hold (each folder holds one labelled-case count): the mean validation Dice of each share (the fold's
validation cases, nnU-Net's own validation; what the rule decides on), then, for the report after the choice, the
mean test Dice of scratch and of each share and each share's paired difference from scratch. The scratch runs of
the two folders must be the same runs (share_scratch.sh copies them): their test Dice is compared seed by seed
and a difference stops the script. Last line: the rule's verdict, the mean over the settings given of each share's
validation mean, with how many settings it covers (the rule names five).
"""
import json
import os
import sys

import numpy as np

RULE_SETTINGS = 5


def genesis_and_scratch(folder):
    """{seed: run} of the Genesis arm and of the scratch arm of a one-count study folder, and that count; empty
    when the study has not written its study.json yet."""
    path = os.path.join(folder, "study.json")
    if not os.path.isfile(path):
        return {}, {}, None
    runs = json.load(open(path))["runs"]
    counts = sorted({r["count"] for r in runs})
    if len(counts) != 1:
        sys.exit("%s: holds counts %s; one count per folder expected" % (folder, counts))
    by_arm = {arm: {r["seed"]: r for r in runs if r["arm"] == arm} for arm in ("genesis", "scratch")}
    return by_arm["genesis"], by_arm["scratch"], counts[0]


def seeds_in_all(studies):
    """The fine-tuning seeds that every study ((genesis, scratch, count) from :func:`genesis_and_scratch`) holds
    in both arms, sorted."""
    return sorted(set.intersection(*(set(g) & set(s) for g, s, _ in studies)))


def check_shared_scratch(scratch, other, seeds, where):
    """Stop unless ``other``'s scratch runs ({seed: run}) have the test Dice of ``scratch``'s, seed by seed: the
    same runs, copied by share_scratch.sh. ``where`` names ``other`` in the message."""
    for s in seeds:
        if abs(other[s]["mean_dice"] - scratch[s]["mean_dice"]) > 1e-9:
            sys.exit("%s seed %d: the scratch run differs from the first folder's (%.6f, %.6f): not shared runs"
                     % (where, s, other[s]["mean_dice"], scratch[s]["mean_dice"]))


def main(args):
    if not args:
        sys.exit(__doc__)
    print("| setting | labelled | seeds | validation: share 0.3 | validation: share 0.1 | test: scratch "
          "| test: share 0.3 (Δ) | test: share 0.1 (Δ) |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    val30, val10 = [], []
    for arg in args:
        setting, _, folders = arg.partition("=")
        high, low = folders.split(",")
        g30, s30, count = genesis_and_scratch(high)
        g10, s10, count10 = genesis_and_scratch(low)
        if count is None or count10 is None:
            print("| %s | | none yet (no study.json in %s) | | | | | |" % (setting, high if count is None else low))
            continue
        if count != count10:
            sys.exit("%s: the two folders hold other counts (%s, %s)" % (setting, count, count10))
        seeds = sorted(set(g30) & set(g10) & set(s30) & set(s10))
        if not seeds:
            print("| %s | %s | none yet | | | | | |" % (setting, count))
            continue
        check_shared_scratch(s30, s10, seeds, "%s: %s" % (setting, low))
        v30 = float(np.mean([g30[s]["validation_dice"] for s in seeds]))
        v10 = float(np.mean([g10[s]["validation_dice"] for s in seeds]))
        sc = np.array([s30[s]["mean_dice"] for s in seeds])
        t30 = np.array([g30[s]["mean_dice"] for s in seeds])
        t10 = np.array([g10[s]["mean_dice"] for s in seeds])
        val30.append(v30)
        val10.append(v10)
        print("| %s | %s | %s | %.3f | %.3f | %.3f | %.3f (%+.3f) | %.3f (%+.3f) |" % (
            setting, count, " ".join(str(s) for s in seeds), v30, v10, sc.mean(), t30.mean(),
            (t30 - sc).mean(), t10.mean(), (t10 - sc).mean()))
    if val30:
        m30, m10 = float(np.mean(val30)), float(np.mean(val10))
        print("\nRule (validation Dice, mean over %d of the %d settings): share 0.3 %.3f, share 0.1 %.3f -> %s%s"
              % (len(val30), RULE_SETTINGS, m30, m10, "0.1" if m10 > m30 else "0.3",
                 "" if len(val30) == RULE_SETTINGS else " (not yet the rule's verdict: settings missing)"))


if __name__ == "__main__":
    main(sys.argv[1:])
