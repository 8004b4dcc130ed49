"""Restoring validation cases' central patches (voxels outside the image left out) and scoring them per distortion.

What the scores mean, for every checkpoint: :func:`scoring_transform`, the one owner of the scored distortions.
The trainers' diagnostics (v1 and v2), their previews and final report, ``nnUNet_genesis_restoration`` and the
benchmarks all score with it: each distortion alone with the published sizes, and the composite with the
published mix (``GenesisTransform()``: of the painted patches 20 % in-painted), whatever mix the recipe trains
with. Why the published mix rather than each checkpoint's own: (1) one checkpoint shows one table, the same from
the trainer's log, its ``summary.json`` and the command; (2) checkpoints of different recipes are compared on the
same composite task (a recipe that in-paints more would otherwise score its composite on an easier task); (3) the
command can score any weights, also those that record no recipe (the published Models Genesis ones) and v1
checkpoints whose ``genesis_transform_kwargs`` are recorded nowhere. The training mix stays visible where it
belongs: the training loss and nnU-Net's per-epoch validation loss and R^2 use it.
"""
import os
from typing import Dict, Optional
import numpy as np
import torch
from nnunet_genesis.pretraining.loss import full_resolution


# --------------------------------------------------------------------------------------------
# Validation: restoration of whole validation cases' central patches, with previews
# --------------------------------------------------------------------------------------------
def outside_as_nan(data: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """A preprocessed case's (C, Z, Y, X) ``data`` as float32 with NaN where its nnU-Net ``seg`` (1, Z, Y, X)
    says the voxel is outside the image (``transforms.inside_image``): what the diagnostics leave out."""
    from nnunet_genesis.distortions.composite import inside_image
    data = np.array(data, dtype=np.float32)
    data[:, ~inside_image(np.asarray(seg)[0])] = np.nan
    return data


def central_patch(volume: np.ndarray, patch_size, fill: float = 0.0) -> np.ndarray:
    """The centred ``patch_size`` crop of a (C, Z, Y, X) volume, padded with ``fill`` where it is smaller
    (the trainers pass NaN: outside the image, left out of their scores, see ``restoration.distorted_pairs``)."""
    out = np.full((volume.shape[0],) + tuple(patch_size), fill, dtype=np.float32)
    src, dst = [slice(None)], [slice(None)]
    for size, p in zip(volume.shape[1:], patch_size):
        if size >= p:
            start = (size - p) // 2
            src.append(slice(start, start + p))
            dst.append(slice(0, p))
        else:
            start = (p - size) // 2
            src.append(slice(0, size))
            dst.append(slice(start, start + size))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def restore_patch(network, distorted: np.ndarray) -> np.ndarray:
    """Run ``network`` on one (C, Z, Y, X) patch; returns the full-resolution output as numpy."""
    device = next(network.parameters()).device
    was_training, ds = network.training, getattr(network, "do_ds", None)
    network.eval()
    if ds is not None:
        network.do_ds = False
    try:
        with torch.no_grad():
            out = full_resolution(network(torch.from_numpy(distorted[None]).to(device)))
    finally:
        network.train(was_training)
        if ds is not None:
            network.do_ds = ds
    return out[0].float().cpu().numpy()


def scoring_transform(seed=None):
    """The composite distortion every restoration score uses (module doc): the published ``GenesisTransform``
    (its per-distortion sizes and its mix), seeded."""
    from nnunet_genesis.distortions.composite import GenesisTransform
    return GenesisTransform(seed=seed)


def scored_composite() -> Dict[str, float]:
    """The mix of the scored composite, as ``summary.json`` records it."""
    transform = scoring_transform(0)
    return {"p_paint": float(transform.p_paint), "p_inpaint": float(transform.p_inpaint)}


def validation_pairs(cases: Dict[str, np.ndarray], patch_size, seed: int = 0):
    """The central patch of each validation case, distorted once per distortion kind with
    :func:`scoring_transform` (the stream fixed by ``seed``; see ``nnunet_genesis.pretraining.scores.distorted_pairs``)."""
    from nnunet_genesis.pretraining.scores import distorted_pairs
    patches = [central_patch(volume, patch_size, fill=np.nan) for _, volume in sorted(cases.items())]
    return distorted_pairs(patches, base=scoring_transform(seed), seed=seed)


def short_names(names):
    """Case names without the prefix they all share (row labels of the preview grids)."""
    prefix = os.path.commonprefix(list(names)) if len(names) > 1 else ""
    prefix = prefix[:prefix.rfind("_") + 1]
    return [n[len(prefix):] or n for n in names]


def restoration_report(network, cases: Dict[str, np.ndarray], patch_size, output_folder: str, max_previews: int = 5,
                       seed: int = 0, iterations=None,
                       min_iterations=None, extra: Optional[Dict] = None) -> Dict:
    """Score ``network`` per distortion (:func:`scoring_transform`) on the central patches of ``cases`` against the identity
    and mean baselines (``nnunet_genesis.pretraining.scores``), check it for collapse, and write
    ``summary.json`` plus one preview PNG per distortion (original / distorted / restored of up
    to ``max_previews`` cases) to ``output_folder``. ``iterations``: training iterations behind the
    network (None: unknown, always judged; see ``restoration.collapse_reasons``). ``extra``: more
    entries for the summary (what was scored, by whom). Returns the summary."""
    from nnunet_genesis.pretraining.previews import save_preview_grid
    from nnunet_genesis.io.atomic import output_set
    from nnunet_genesis.pretraining.scores import COLLAPSE_MIN_ITERATIONS, collapse_reasons, restoration_verdict, score_pairs
    pairs = validation_pairs(cases, patch_size, seed)
    restored = {kind: [restore_patch(network, d) for d, _ in kind_pairs] for kind, kind_pairs in pairs.items()}
    scores = score_pairs(pairs, answers=restored)
    names = sorted(cases)
    # one output set: summary.json and the PNGs replace the earlier ones together (an earlier PNG not drawn again
    # is removed), or not at all (nnunet_genesis.io.atomic.OutputSet)
    with output_set(output_folder, stale=["%s.png" % kind for kind in pairs]) as files:
        for kind, kind_pairs in pairs.items():
            n = min(max_previews, len(kind_pairs))
            if n == 0:
                continue
            columns = {}
            for i in range(n):
                distorted, original = kind_pairs[i]
                channel = slice(0, 1)  # first modality; one row per case
                columns.setdefault("original", []).append(original[channel])
                columns.setdefault("distorted", []).append(distorted[channel])
                columns.setdefault("restored", []).append(restored[kind][i][channel])
            files.write("%s.png" % kind, lambda tmp: save_preview_grid(
                {k: np.concatenate(v) for k, v in columns.items()}, tmp, channel_names=short_names(names[:n]),
                title="%s: R^2 network %.3f, identity %.3f" % (kind, scores[kind]["network"],
                                                              scores[kind]["identity"])))
        summary = {"cases": names, "patch_size": [int(p) for p in patch_size], "scores": scores,
                   "verdict": restoration_verdict(scores), "scored_composite": scored_composite(),
                   "collapse": collapse_reasons(scores, iterations, min_iterations if min_iterations is not None
                                                else COLLAPSE_MIN_ITERATIONS)}
        summary.update(extra or {})
        files.write_json("summary.json", summary)
    return summary
