"""The pretraining seed as a study factor (docs/measurements_study18_crn.md section 7): one setting's studies from
several pretraining checkpoints of one recipe, all against the same scratch runs.

    python benchmarks/study18/pretrain_seed_table.py [--seeds=5,6,7,8,9] [--against=CONTROL_STUDY[,...]] \
        SETTING=STUDY_P0,STUDY_P1[,...] [...]

Each argument names a setting and its ``nnUNet_genesis_study`` folders, one per pretraining seed, in seed order
(seed 0's is section 6's ``s6_SETTING_mix30``; ``pretrain_seeds.sh`` writes ``s7_SETTING_pN``), each holding one
labelled-case count. Over the fine-tuning seeds that every folder holds (or over those ``--seeds`` names, which every
folder must hold: e.g. the seeds a study added later, as a replication of the first ones), per setting:

* per checkpoint (named by its study folder): the paired difference Genesis − scratch over the fine-tuning seeds,
  its 95 % t-interval, the seeds better / worse and the exact Wilcoxon signed-rank p over seeds
  (``competition/study_stats.py``, the study's own statistics);
* "mean of the checkpoints": per fine-tuning seed the mean of the checkpoints' differences, then the same
  statistics over those seeds. Its interval is about these checkpoints, not about the recipe's checkpoints in
  general: with two of them the between-checkpoint variance cannot be estimated, only shown;
* the spread: the largest minus the smallest of the checkpoints' mean differences.

``--against=CONTROL_STUDY`` compares the Genesis arms with the Genesis arm of another study of the same setting
instead of with scratch, seed by seed (section 9): with ``random_control.sh``'s study, whose checkpoint has the
pretrained one's weight norms and no learned content, Δ is what the pretrained content adds; with the default
trainer's study from the same checkpoint, what a fine-tuning variant (``variant_seeds.sh``) changes. That study must
share the scratch runs too (checked as below), so its draws are the same. ``--against=STUDY_A,STUDY_B`` (several
controls, e.g. two random draws): per fine-tuning seed the mean of their Genesis arms is the baseline.

The scratch runs must be the same runs in every folder (``share_scratch.sh`` copies them): their test Dice is
compared seed by seed, and a difference stops the script.
"""
import os
import sys

import numpy as np

from competition.study_stats import paired_over_seeds
from share_rule import check_shared_scratch, genesis_and_scratch, seeds_in_all


def row(setting, count, seeds, label, stats):
    """One table row: the paired statistics of ``paired_over_seeds`` (baseline first, Genesis second)."""
    low, high = stats["ci95"]
    return "| %s | %s | %s | %s | %+.3f | [%+.3f, %+.3f] | %d / %d | %.3g |" % (
        setting, count, seeds, label, stats["mean_difference"], low, high, stats["genesis_better_seeds"],
        stats["scratch_better_seeds"], stats["p_value"])


def seed_range(seeds):
    """'0-9' for consecutive seeds, else the list."""
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return "%d-%d" % (seeds[0], seeds[-1])
    return ", ".join(map(str, seeds))


def main(args):
    chosen, against = None, []     # against: [(folder, (genesis, scratch, count))] of the --against studies
    while args and args[0].startswith("--"):
        option, _, text = args.pop(0).partition("=")
        if option == "--seeds":
            try:
                chosen = sorted(int(s) for s in text.split(","))
            except ValueError:
                sys.exit("--seeds=%s: not a comma-separated list of seeds (e.g. --seeds=5,6,7,8,9)" % text)
        elif option == "--against" and text:
            against = [(folder, genesis_and_scratch(folder)) for folder in text.split(",")]
            for folder, (_, _, count) in against:
                if count is None:
                    sys.exit("--against=%s: no study.json there" % folder)
        else:
            sys.exit("%s: not an option of this script (--seeds=..., --against=FOLDER)" % option)
    if not args:
        sys.exit(__doc__)
    print("| setting | labelled | fine-tuning seeds | checkpoint | Δ (Genesis − %s) | 95 %% CI of Δ "
          "| seeds better / worse | Wilcoxon p |" % (
              "scratch" if not against else "the --against study's Genesis" if len(against) == 1 else
              "the mean of the %d --against studies' Genesis" % len(against)))
    print("|---|---:|---|---|---:|---:|---:|---:|")
    for arg in args:
        setting, _, joined = arg.partition("=")
        folders = joined.split(",")
        studies = [genesis_and_scratch(folder) for folder in folders]
        # every check below covers the --against study too; only the rows are the setting's own folders
        checked = list(zip(folders, studies)) + against
        missing = [folder for folder, (_, _, count) in checked if count is None]
        if missing:
            print("| %s | | | none yet (no study.json in %s) | | | | |" % (setting, missing[0]))
            continue
        counts = {count for _, (_, _, count) in checked}
        if len(counts) != 1:
            sys.exit("%s: the folders hold other counts (%s)" % (setting, sorted(counts)))
        count = counts.pop()
        seeds = seeds_in_all(study for _, study in checked)
        if chosen is not None:
            if set(chosen) - set(seeds):
                sys.exit("%s: seeds %s are not in every folder" % (setting, sorted(set(chosen) - set(seeds))))
            seeds = chosen
        if len(seeds) < 2:
            print("| %s | %s | | fewer than 2 fine-tuning seeds in every folder | | | | |" % (setting, count))
            continue
        for folder, (_, other, _) in checked[1:]:
            check_shared_scratch(studies[0][1], other, seeds, "%s: %s" % (setting, folder))
        baseline_arms = [genesis for _, (genesis, _, _) in against] or [studies[0][1]]
        baseline = {s: float(np.mean([arm[s]["mean_dice"] for arm in baseline_arms])) for s in seeds}
        means = []
        for folder, (genesis, _, _) in zip(folders, studies):
            stats = paired_over_seeds(baseline, {s: genesis[s]["mean_dice"] for s in seeds})
            means.append(stats["mean_difference"])
            print(row(setting, count, seed_range(seeds), os.path.basename(folder.rstrip("/")), stats))
        averaged = {s: baseline[s] + float(np.mean([g[s]["mean_dice"] - baseline[s] for g, _, _ in studies]))
                    for s in seeds}
        print(row(setting, count, seed_range(seeds), "**mean of the %d checkpoints** (spread %.3f)" % (
            len(studies), max(means) - min(means)), paired_over_seeds(baseline, averaged)))


if __name__ == "__main__":
    main(sys.argv[1:])
