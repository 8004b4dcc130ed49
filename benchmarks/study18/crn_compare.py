"""Two ``nnUNet_genesis_study`` folders of one design (same task, fold, weights, counts, seeds), run without and
with common random numbers: how far each seed's numbers moved, and how wide each study's interval is.

    python benchmarks/study18/crn_compare.py UNSEEDED_STUDY SEEDED_STUDY [more pairs ...] [--png OUT.png]

Per count (both studies' own summaries, computed by the package): mean Δ, sd of the per-seed Δ, the 95 % interval
and its width; per seed: each arm's mean test Dice in both studies and Δ in both. Refuses two studies whose
subsets differ (then they are not the same design). ``--png``: per count, each seed's Δ in A and in B, the mean
and its 95 % interval, and zero.
"""
import json
import os
import sys

from nnunet_genesis.io.atomic import save_figure_atomic


def load(folder):
    with open(os.path.join(folder, "study.json")) as f:
        return json.load(f)


def compare(a_dir, b_dir):
    a, b = load(a_dir), load(b_dir)
    cases = lambda s: {(r["arm"], r["count"], r["seed"]): tuple(r["train_cases"]) for r in s["runs"]}
    if cases(a) != cases(b):
        sys.exit("%s and %s drew other subsets: not one design" % (a_dir, b_dir))
    if a["config"]["weights_sha256"] != b["config"]["weights_sha256"]:
        sys.exit("%s and %s fine-tune from other weights" % (a_dir, b_dir))
    crn = lambda s: s["config"].get("common_random_numbers", {}).get("text", "not recorded (study made before it)")
    print("A = %s (common random numbers: %s)\nB = %s (common random numbers: %s)\n" % (a_dir, crn(a), b_dir, crn(b)))
    print("| labelled cases | study | mean Δ | sd of Δ over seeds | 95 % CI of Δ | CI width | seeds G/S better |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for ra, rb in zip(a["summary"], b["summary"]):
        for name, row in (("A", ra), ("B", rb)):
            low, high = row["ci95"]
            print("| %s | %s | %+.3f | %.3f | [%+.3f, %+.3f] | %.3f | %d / %d |" % (
                row["count"], name, row["mean_difference"], row["sd_difference"], low, high, high - low,
                row["genesis_better_seeds"], row["scratch_better_seeds"]))
    print("\n| labelled cases | seed | scratch A | scratch B | Genesis A | Genesis B | Δ A | Δ B |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    dice = lambda s: {(r["arm"], r["count"], r["seed"]): r["mean_dice"] for r in s["runs"]}
    da, db = dice(a), dice(b)
    for arm, count, seed in sorted(k for k in da if k[0] == "scratch"):
        sa, sb = da[("scratch", count, seed)], db[("scratch", count, seed)]
        ga, gb = da[("genesis", count, seed)], db[("genesis", count, seed)]
        print("| %s | %d | %.3f | %.3f | %.3f | %.3f | %+.3f | %+.3f |" % (count, seed, sa, sb, ga, gb, ga - sa, gb - sb))
    return [(ra["count"], ra, rb) for ra, rb in zip(a["summary"], b["summary"])]


def draw(rows, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=(2.6 * len(rows) + 1.5, 4))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot(1, 1, 1)
    ticks = []
    for i, (count, ra, rb) in enumerate(rows):
        for j, (name, row, colour) in enumerate((("nnU-Net's own draws", ra, "tab:grey"),
                                                 ("common random numbers", rb, "tab:red"))):
            x = 3 * i + j
            ticks.append((x, "%s labelled\n%s" % (count, "unseeded" if j == 0 else "seeded")))
            ax.scatter([x - 0.2] * len(row["seed_differences"]), row["seed_differences"], s=20, color=colour,
                       alpha=0.8, label=name if i == 0 else None)
            low, high = row["ci95"]
            ax.errorbar([x + 0.15], [row["mean_difference"]], yerr=[[row["mean_difference"] - low],
                                                                 [high - row["mean_difference"]]],
                        fmt="s", color="black", capsize=5, label="mean, 95 % CI" if (i, j) == (0, 0) else None)
    ax.axhline(0.0, color="tab:grey", lw=1, ls="--")
    ax.set_xticks([t[0] for t in ticks])
    ax.set_xticklabels([t[1] for t in ticks], fontsize=8)
    ax.set_ylabel("Dice Genesis − scratch (per seed)")
    ax.set_title("one study design, run without and with common random numbers", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure.tight_layout()
    save_figure_atomic(figure, path, dpi=110)


if __name__ == "__main__":
    args = sys.argv[1:]
    png = None
    if "--png" in args:
        png = args[args.index("--png") + 1]
        del args[args.index("--png"):args.index("--png") + 2]
    if not args or len(args) % 2:
        sys.exit(__doc__)
    rows = []
    for i in range(0, len(args), 2):
        rows += compare(args[i], args[i + 1])
        print()
    if png:
        draw(rows, png)
        print("written:", png)
