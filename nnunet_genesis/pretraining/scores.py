"""Does a pretraining network restore? Per-distortion restoration scores against two baselines,
and the collapse check. Framework-free: the network enters as a function ``restore``.

Scores
------
For one kind of distortion ``k`` and a set of patches ``p`` (each channel of each patch on its
own), with ``x`` the original, ``d`` the distorted copy and ``r`` the answer being scored::

    R^2_k = 1 - sum_p sum_v (r - x)^2 / sum_p sum_v (x - mean_p(x))^2

(``mean_p`` is the mean over the voxels ``v`` of one channel of one patch). Pooling the sums
weights every voxel equally, as nnU-Net's global Dice does. Three answers are scored:

* **network**: ``r = restore(d)``;
* **identity**: ``r = d`` (the distorted patch handed back unchanged; a network that learned
  nothing useful but to copy its input scores this);
* **mean**: ``r = mean_p(x)`` everywhere (the best any constant output can do, knowing the
  original's mean: its R^2 is exactly 0 for a non-constant patch). A network that collapsed to
  a flat output scores at or below it;
* **template**: ``r`` = the voxel-wise mean of all the original patches scored (reported, not
  judged). A network that learned the average anatomy but ignores its input scores about this:
  on the demo's data, where every case is one deformed template, the template alone explains
  most of the variance, so a network must beat it to show it restores *this* patch.

and the **variance ratio** ``sum_p sum_v (r - mean_p(r))^2 / sum_p sum_v (x - mean_p(x))^2`` of
the network's answer (1 for a perfect restoration, 0 for a flat one).

What "learns" means (the design guide's rule): where the distortion keeps the information
(local shuffling, in-painting: ``INFORMATION_KEPT``) the network must beat identity; where it
destroys it (non-linear map, out-painting: ``INFORMATION_DESTROYED``) the network must beat
the mean. :func:`restoration_verdict` says which of these hold.

Collapse
--------
:func:`collapse_reasons` flags a network whose restored patches are flat: the variance ratio of
the composite distortion below ``COLLAPSE_VARIANCE_RATIO`` (0.1), or no better than the mean
(R^2 <= 0) and below returning the input on both local shuffling and in-painting, where simply
returning the input scores about 0.85. Both are checked only after ``COLLAPSE_MIN_ITERATIONS`` (250, one nnU-Net epoch)
training iterations, because a freshly initialised network is flat too. The numbers come from
the runs reported in issue #10 (the collapsed network scored R^2 -0.17 / -0.18 on shuffling /
in-painting, its training loss flat from iteration 75 on) and from ``benchmarks/pretrain_learning.py``
(healthy recipes: variance ratio 0.15 to 0.6 and R^2 above 0.15 there after 300 iterations).
"""
import copy
import os
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from nnunet_genesis.io.atomic import save_figure_atomic

DISTORTIONS = ("local_shuffle", "non_linear", "in_painting", "out_painting", "composite")
INFORMATION_KEPT = ("local_shuffle", "in_painting")        # judged against identity
INFORMATION_DESTROYED = ("non_linear", "out_painting")    # judged against the mean
ANSWERS = ("network", "identity", "mean", "template")
COLLAPSE_VARIANCE_RATIO = 0.1
COLLAPSE_MIN_ITERATIONS = 250
# what the collapse warning tells the user to change (issue #18; docs/measurements_pretraining.md)
COLLAPSE_ADVICE = ('genesis_recipe = "adamw_inpaint_lowlr" (peak learning rate 3e-4 instead of 1e-3, 15 % warm-up: the '
                   'collapsed run of issue #18 recovered only once its rate had decayed); genesis_recipe = '
                   '"adamw_inpaint_inside" where cases are smaller than the patch or surrounded by air (padding left '
                   'out of the loss); a larger max_num_epochs (the same schedule, stretched)')


# --------------------------------------------------------------------------------------------
# Distortions one at a time
# --------------------------------------------------------------------------------------------
def single_distortion(kind: str, base=None, seed=None):
    """A GenesisTransform that applies exactly one distortion ``kind`` (with probability 1, no
    flip) with ``base``'s sizes and parameters (default: the published ones); ``composite`` is
    ``base`` itself, reseeded. Returns a transform taking ``data`` (B, C, Z, Y, X)."""
    from nnunet_genesis.distortions.composite import GenesisTransform
    from nnunet_genesis.distortions.transforms import PairedFlipTransform
    if kind not in DISTORTIONS:
        raise ValueError("unknown distortion %r (known: %s)" % (kind, ", ".join(DISTORTIONS)))
    base = base if base is not None else GenesisTransform()
    if kind == "composite":
        transform = copy.deepcopy(base)
        transform.seed, transform._rng = seed, None
        transform._home_pid = os.getpid()
        return transform
    shuffle, nonlinear = copy.deepcopy(base.shuffle), copy.deepcopy(base.nonlinear)
    shuffle.p_per_channel = 1.0 if kind == "local_shuffle" else 0.0
    nonlinear.p_per_channel = 1.0 if kind == "non_linear" else 0.0
    painting = kind in ("in_painting", "out_painting")
    return GenesisTransform(flip=PairedFlipTransform(p_per_round=0.0), shuffle=shuffle, nonlinear=nonlinear,
                            inpaint=copy.deepcopy(base.inpaint), outpaint=copy.deepcopy(base.outpaint),
                            p_paint=1.0 if painting else 0.0, p_inpaint=1.0 if kind == "in_painting" else 0.0,
                            seed=seed)


def distorted_pairs(patches: Sequence[np.ndarray], base=None, seed: int = 0,
                    kinds: Sequence[str] = DISTORTIONS) -> Dict[str, List[tuple]]:
    """For each kind, ``(distorted, original)`` pairs of the (C, Z, Y, X) ``patches``, drawn from
    a stream fixed by ``seed`` and the kind, so that epochs and checkpoints are scored on the
    same distorted patches. NaN voxels of a patch are outside the image (padding, see
    ``pretraining.central_patch``): the network sees 0 there, as in training, and the original
    keeps NaN there, so that the scores leave them out (:class:`R2Sums`)."""
    pairs = {}
    for k, kind in enumerate(kinds):
        transform = single_distortion(kind, base, seed=np.random.SeedSequence([seed, k]))
        transform.inside_key = "seg"
        pairs[kind] = []
        for patch in patches:
            batch = transform(**masked_batch(patch))
            pairs[kind].append((batch["data"][0], batch["target"][0]))
    return pairs


def masked_batch(patch: np.ndarray) -> Dict[str, np.ndarray]:
    """A batch of one (C, Z, Y, X) ``patch`` for ``GenesisTransform(inside_key="seg")``: ``data`` with 0 at
    its NaN voxels (what nnU-Net's loaders pad with), ``seg`` -1 there and 0 elsewhere."""
    patch = np.array(patch, dtype=np.float32)
    inside = np.isfinite(patch).all(axis=0, keepdims=True)
    return {"data": np.where(inside, patch, np.float32(0))[None],
            "seg": np.where(inside, 0, -1).astype(np.int16)[None]}


# --------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------
class R2Sums:
    """Running sums for the pooled R^2 and variance ratio of one answer (see module doc)."""

    def __init__(self):
        self.sse = self.sst = self.ssr = 0.0

    def add(self, answer: np.ndarray, original: np.ndarray) -> None:
        """One (C, Z, Y, X) patch; voxels where ``original`` is NaN (outside the image, see
        ``GenesisTransform(inside_key=...)``) are left out of every sum and mean."""
        answer = np.asarray(answer, dtype=np.float64)
        original = np.asarray(original, dtype=np.float64)
        axes = tuple(range(1, original.ndim))  # per channel: (C, Z, Y, X) -> sums over Z, Y, X
        inside = np.isfinite(original)
        if not inside.all():
            answer, original = np.where(inside, answer, 0.0), np.where(inside, original, 0.0)
        count = np.maximum(inside.sum(axis=axes, keepdims=True), 1)
        self.sse += float(np.sum((answer - original) ** 2))
        self.sst += float(np.sum(((original - original.sum(axis=axes, keepdims=True) / count) * inside) ** 2))
        self.ssr += float(np.sum(((answer - answer.sum(axis=axes, keepdims=True) / count) * inside) ** 2))

    def r2(self) -> float:
        return 1.0 - self.sse / self.sst if self.sst > 0 else float("nan")

    def variance_ratio(self) -> float:
        return self.ssr / self.sst if self.sst > 0 else float("nan")


def mean_answer(original: np.ndarray) -> np.ndarray:
    """The mean baseline's answer: each channel's mean (over the voxels inside the image), everywhere."""
    original = np.asarray(original)
    inside = np.isfinite(original)
    axes = tuple(range(1, original.ndim))
    mean = np.where(inside, original, 0.0).sum(axis=axes, keepdims=True) / np.maximum(inside.sum(axis=axes,
                                                                                                   keepdims=True), 1)
    return np.broadcast_to(mean, original.shape)


def template_answer(originals: Sequence[np.ndarray]) -> Optional[np.ndarray]:
    """The template baseline's answer: the voxel-wise mean of ``originals`` (None if their shapes differ)."""
    if not originals or any(np.shape(o) != np.shape(originals[0]) for o in originals):
        return None
    stack = np.asarray(originals, dtype=np.float64)
    inside = np.isfinite(stack)
    return np.where(inside, stack, 0.0).sum(axis=0) / np.maximum(inside.sum(axis=0), 1)


def score_pairs(pairs: Mapping[str, Sequence[tuple]], restore: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                answers: Optional[Mapping[str, Sequence[np.ndarray]]] = None) -> Dict[str, Dict[str, float]]:
    """Scores per kind: ``{kind: {"network", "identity", "mean": R^2, "variance_ratio": ...}}``.

    The network's answers are ``restore(distorted)`` for each (C, Z, Y, X) distorted patch, or
    given ready in ``answers`` (same kinds and order as ``pairs``); with neither, only the
    baselines are scored (the network's entries are NaN)."""
    scores = {}
    for kind, kind_pairs in pairs.items():
        sums = {answer: R2Sums() for answer in ANSWERS}
        has_network = restore is not None or answers is not None
        template = template_answer([original for _, original in kind_pairs])
        for i, (distorted, original) in enumerate(kind_pairs):
            sums["identity"].add(distorted, original)
            sums["mean"].add(mean_answer(original), original)
            if template is not None:
                sums["template"].add(template, original)
            if answers is not None:
                sums["network"].add(answers[kind][i], original)
            elif restore is not None:
                sums["network"].add(restore(distorted), original)
        scores[kind] = {answer: (s.r2() if answer != "network" or has_network else float("nan"))
                        for answer, s in sums.items()}
        scores[kind]["variance_ratio"] = sums["network"].variance_ratio() if has_network else float("nan")
    return scores


def restoration_verdict(scores: Mapping[str, Mapping[str, float]]) -> Dict[str, bool]:
    """Per judged kind, whether the network beats its baseline (see module doc)."""
    verdict = {}
    for kind in INFORMATION_KEPT:
        if kind in scores:
            verdict[kind] = bool(scores[kind]["network"] > scores[kind]["identity"])
    for kind in INFORMATION_DESTROYED:
        if kind in scores:
            verdict[kind] = bool(scores[kind]["network"] > scores[kind]["mean"])
    return verdict


def collapse_reasons(scores: Mapping[str, Mapping[str, float]], iterations: Optional[int] = None,
                     min_iterations: int = COLLAPSE_MIN_ITERATIONS,
                     variance_ratio: float = COLLAPSE_VARIANCE_RATIO) -> List[str]:
    """Why the network looks collapsed ([] if it does not, or after fewer than ``min_iterations``
    training iterations; ``iterations=None``, weights of unknown history, is always judged)."""
    if iterations is not None and iterations < min_iterations:
        return []
    reasons = []
    composite = scores.get("composite")
    if composite is not None and composite["variance_ratio"] < variance_ratio:
        reasons.append("restored patches are flat: their variance is %.1f %% of the originals' (composite "
                       "distortion; below %g %%)" % (100 * composite["variance_ratio"], 100 * variance_ratio))
    kept = [k for k in INFORMATION_KEPT if k in scores]
    # a network that does about as well as handing its input back has not collapsed, even where that is itself
    # below a constant (small cases: the distortions pull padding into the image, scored inside only)
    if kept and all(scores[k]["network"] <= scores[k]["mean"] and scores[k]["network"] < scores[k]["identity"]
                    for k in kept):
        reasons.append("no better than a constant on %s (R^2 %s), where returning the input scores %s"
                       % (" and ".join(kept), " / ".join("%.2f" % scores[k]["network"] for k in kept),
                          " / ".join("%.2f" % scores[k]["identity"] for k in kept)))
    return reasons


def collapse_warning(reasons: Sequence[str]) -> str:
    """The one warning text the trainer's log, its end-of-training summary and the scoring
    command print."""
    return ("WARNING: the pretraining network has COLLAPSED (%s): it paints an average instead of restoring its "
            "input, and fine-tuning from such weights cost a quarter of the Dice in issue #18 (the fine-tuning "
            "trainers refuse them unless nnUNet_genesis_allow_unlearned=1). What to change, in a subclass of the "
            "pretraining trainer, try: %s." % ("; ".join(reasons), COLLAPSE_ADVICE))


def format_scores(scores: Mapping[str, Mapping[str, float]]) -> str:
    """A table: one row per distortion, R^2 of network / identity / mean, variance ratio, verdict."""
    verdict = restoration_verdict(scores)
    lines = ["%-14s %8s %9s %7s %9s %9s  %s" % ("distortion", "network", "identity", "mean", "template", "var.ratio",
                                                 "verdict")]
    for kind, s in scores.items():
        if kind in INFORMATION_KEPT:
            judged = "beats identity" if verdict[kind] else "below identity"
        elif kind in INFORMATION_DESTROYED:
            judged = "beats mean" if verdict[kind] else "below mean"
        else:
            judged = ""
        lines.append("%-14s %8.3f %9.3f %7.3f %9.3f %9.3f  %s" % (kind, s["network"], s["identity"], s["mean"],
                                                                 s.get("template", float("nan")),
                                                                 s["variance_ratio"], judged))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The history plot
# --------------------------------------------------------------------------------------------
PLOT_FLOOR = -1.0   # the history plot's lowest R^2: the identity on the non-linear map reaches -8


def clip_to_floor(values: Sequence[float], floor: float = PLOT_FLOOR):
    """(values with everything below ``floor`` raised to it, the indices that were raised). The history plot
    draws the raised points as down-pointing triangles on the floor, so a network far below every baseline
    (a collapse) stays visible instead of leaving the chart."""
    values = [float(v) for v in values]
    below = [i for i, v in enumerate(values) if np.isfinite(v) and v < floor]
    return [floor if i in below else v for i, v in enumerate(values)], below


def plot_history(history: Sequence[Mapping], path: str, title: str = "restoration R² per distortion") -> str:
    """PNG of the network's R^2 per distortion over epochs (solid), with each kind's judged
    baseline (identity or mean, dashed, same colour). ``history``: dicts with ``epoch`` and
    ``scores`` (as :func:`score_pairs` returns). The axis stops at ``PLOT_FLOOR``; network scores below it
    are drawn on it as down-pointing triangles (:func:`clip_to_floor`). Written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.5))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot(1, 1, 1)
    epochs = [h["epoch"] for h in history]
    colours = dict(zip(DISTORTIONS, ("tab:blue", "tab:orange", "tab:green", "tab:red", "black")))
    clipped = False
    for kind in DISTORTIONS:
        if not history or kind not in history[0]["scores"]:
            continue
        values, below = clip_to_floor([h["scores"][kind]["network"] for h in history])
        ax.plot(epochs, values, "-o", ms=3, color=colours[kind], label=kind)
        if below:
            ax.plot([epochs[i] for i in below], [values[i] for i in below], "v", ms=7, color=colours[kind])
            clipped = True
        baseline = "identity" if kind in INFORMATION_KEPT else ("mean" if kind in INFORMATION_DESTROYED else None)
        if baseline:
            ax.plot(epochs, [h["scores"][kind][baseline] for h in history], "--", color=colours[kind], lw=1,
                    label="%s: %s" % (kind, baseline))
    finite = [v for h in history for s in h["scores"].values() for v in (s["network"],) if np.isfinite(v)]
    ax.set_ylim(max(PLOT_FLOOR, min([0.0] + finite)) - 0.05, 1.0)
    if clipped:
        ax.plot([], [], "v", ms=7, color="grey", label="below %g, drawn at %g" % (PLOT_FLOOR, PLOT_FLOOR))
    ax.axhline(0.0, color="grey", lw=0.5)
    ax.set_xlabel("epoch")
    ax.set_ylabel("R$^2$ (validation patches)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.tight_layout()
    return save_figure_atomic(figure, path, dpi=100)
