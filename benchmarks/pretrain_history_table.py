"""A pretraining run's per-distortion history as a Markdown table (docs/measurements_pretraining.md).

    python benchmarks/pretrain_history_table.py FOLD_FOLDER [FOLD_FOLDER ...] [--iterations-per-epoch 25]
        [--png PATH [--labels NAME ...]]

Reads each fold folder's ``restoration_history.json`` (``pretraining.record_restoration``) and prints one row
per scored epoch: network R^2 on shuffling and in-painting (identity baseline in brackets), non-linear and
out-painting (mean baseline 0), the composite variance ratio and whether the collapse check fired.
``--png``: also draws the runs side by side, one panel each for shuffling and in-painting (network R^2 against
iterations, the identity's as a dashed line, scores below the plot floor on it as in the trainers' own plot).
"""
import argparse
import json
import os


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--iterations-per-epoch", type=int, default=25)
    parser.add_argument("--png", help="also draw the runs' shuffling and in-painting curves into this PNG")
    parser.add_argument("--labels", nargs="+", help="one legend name per folder (default: the trainer's folder)")
    args = parser.parse_args(argv)
    histories = {}
    for folder in args.folders:
        path = os.path.join(folder, "restoration_history.json")
        if not os.path.isfile(path):
            print("%s: no restoration_history.json" % folder)
            continue
        with open(path) as f:
            history = json.load(f)
        histories[folder] = history
        print("\n%s\n| epoch | iterations | shuffle (identity) | in-painting (identity) | non-linear | out-painting | "
              "composite var. ratio | collapse |\n|---|---|---|---|---|---|---|---|" % folder)
        for h in history:
            s = h["scores"]
            print("| %d | %d | %.3f (%.3f) | %.3f (%.3f) | %.3f | %.3f | %.3f | %s |" % (
                h["epoch"], args.iterations_per_epoch * (h["epoch"] + 1), s["local_shuffle"]["network"],
                s["local_shuffle"]["identity"], s["in_painting"]["network"], s["in_painting"]["identity"],
                s["non_linear"]["network"], s["out_painting"]["network"], s["composite"]["variance_ratio"],
                "yes" if h["collapse"] else "no"))
    if args.png:
        labels = args.labels or [os.path.basename(os.path.dirname(os.path.normpath(f))).split("__")[0]
                                 for f in args.folders]
        if len(labels) != len(args.folders):
            raise SystemExit("--labels: one name per folder")
        plot_runs({label: histories[f] for label, f in zip(labels, args.folders) if f in histories},
                  args.iterations_per_epoch, args.png)


def plot_runs(histories, iterations_per_epoch, path):
    """Shuffling and in-painting R^2 of several runs against iterations (the identity's dashed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from nnunet_genesis.io.atomic import save_figure_atomic
    from nnunet_genesis.pretraining.scores import PLOT_FLOOR, clip_to_floor
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.8), sharey=True)
    for ax, distortion in zip(axes, ("local_shuffle", "in_painting")):
        for i, (label, history) in enumerate(histories.items()):
            colour = "C%d" % i
            x = [iterations_per_epoch * (h["epoch"] + 1) for h in history]
            y, below = clip_to_floor([h["scores"][distortion]["network"] for h in history])
            ax.plot(x, y, "-o", color=colour, markersize=3, label=label)
            ax.plot([x[j] for j in below], [PLOT_FLOOR] * len(below), "v", color=colour)
        identity = next(iter(histories.values()))[0]["scores"][distortion]["identity"]
        ax.axhline(identity, color="k", linestyle="--", linewidth=1, label="identity (returning the input)")
        ax.set_title(distortion)
        ax.set_xlabel("pretraining iterations")
        ax.set_ylim(PLOT_FLOOR - 0.05, 1.0)
    axes[0].set_ylabel("R² on the validation patches (▼: below %g)" % PLOT_FLOOR)
    handles, names = axes[0].get_legend_handles_labels()
    figure.legend(handles, names, fontsize=8, loc="lower center", ncol=min(len(names), 3))
    figure.tight_layout(rect=(0, 0.05 * (1 + len(names) // 3), 1, 1))
    save_figure_atomic(figure, path, dpi=90)
    plt.close(figure)
    print("wrote", path)


if __name__ == "__main__":
    main()
