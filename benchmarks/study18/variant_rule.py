"""The decision rule of docs/measurements_study18_crn.md sections 9 and 10: does a fine-tuning variant replace the
default? Decided on validation Dice only (the fold's validation cases, nnU-Net's own validation; never the test
cases).

    python benchmarks/study18/variant_rule.py DEFAULT_STUDY=VARIANT_STUDY [DEFAULT_STUDY=VARIANT_STUDY ...]

Each argument pairs the default trainer's study from one checkpoint (``s8_SETTING_pN``) with the variant's study
from the same checkpoint (``variant_seeds.sh``: ``s9_SETTING_pN_<variant>``); all of them hold one labelled-case
count, the same one, and share their scratch runs (checked seed by seed). Per pair, over the fine-tuning seeds
that every study given holds: the mean validation Dice of scratch, of the default and of the variant, and the
variant's mean test Dice minus the default's (reported, not decided on). Last line: the same means averaged over
the pairs (each checkpoint weighs the same), and whether the variant's validation mean is higher; what
follows from that is each section's rule, stated there before its runs.
"""
import os
import sys

import numpy as np

from share_rule import check_shared_scratch, genesis_and_scratch, seeds_in_all


def mean(arm, seeds, key):
    """Mean of ``key`` ("validation_dice" or "mean_dice", the test Dice) over ``seeds`` of one arm."""
    return float(np.mean([arm[s][key] for s in seeds]))


def main(args):
    if not args or any("=" not in a for a in args):
        sys.exit(__doc__)
    pairs = [a.split("=", 1) for a in args]
    studies = {folder: genesis_and_scratch(folder) for pair in pairs for folder in pair}
    for folder, (_, _, count) in studies.items():
        if count is None:
            sys.exit("%s: no study.json there" % folder)
    counts = sorted({count for _, _, count in studies.values()})
    if len(counts) != 1:
        sys.exit("the studies hold different labelled-case counts (%s)" % counts)
    seeds = seeds_in_all(studies.values())
    if len(seeds) < 2:
        sys.exit("fewer than 2 fine-tuning seeds in every study")
    first = studies[pairs[0][0]][1]
    for folder, (_, scratch, _) in studies.items():
        check_shared_scratch(first, scratch, seeds, folder)
    print("| default study | variant study | labelled | seeds | validation: scratch | validation: default "
          "| validation: variant | test: variant − default |")
    print("|---|---|---:|---|---:|---:|---:|---:|")
    rows = []
    for default, variant in pairs:
        (g_default, _, _), (g_variant, _, _) = studies[default], studies[variant]
        rows.append((mean(first, seeds, "validation_dice"), mean(g_default, seeds, "validation_dice"),
                     mean(g_variant, seeds, "validation_dice"),
                     mean(g_variant, seeds, "mean_dice") - mean(g_default, seeds, "mean_dice")))
        print("| %s | %s | %s | %d | %.3f | %.3f | %.3f | %+.3f |" % (
            (os.path.basename(default.rstrip("/")), os.path.basename(variant.rstrip("/")), counts[0], len(seeds))
            + rows[-1]))
    scratch, default, variant, test = np.mean(rows, axis=0)
    print("| **mean of the %d checkpoints** | | %s | %d | %.3f | %.3f | %.3f | %+.3f |" % (
        len(rows), counts[0], len(seeds), scratch, default, variant, test))
    # the rule of each section says what follows (section 9: higher at both counts; section 10: higher at 4
    # labelled cases, not below at 2); this line only states the comparison
    print("\nvalidation, mean of the checkpoints: the variant's %.3f is %s the default's %.3f" % (
        variant, "higher than" if variant > default else "not higher than", default))


if __name__ == "__main__":
    main(sys.argv[1:])
