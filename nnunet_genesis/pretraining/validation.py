"""Restoring validation cases' central patches (voxels outside the image left out) and scoring them per distortion.
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


def validation_pairs(cases: Dict[str, np.ndarray], patch_size, make_genesis_transform, seed: int = 0):
    """The central patch of each validation case, distorted once per distortion kind (the stream
    fixed by ``seed``; see ``nnunet_genesis.pretraining.scores.distorted_pairs``)."""
    from nnunet_genesis.pretraining.scores import distorted_pairs
    patches = [central_patch(volume, patch_size, fill=np.nan) for _, volume in sorted(cases.items())]
    return distorted_pairs(patches, base=make_genesis_transform(seed), seed=seed)


def short_names(names):
    """Case names without the prefix they all share (row labels of the preview grids)."""
    prefix = os.path.commonprefix(list(names)) if len(names) > 1 else ""
    prefix = prefix[:prefix.rfind("_") + 1]
    return [n[len(prefix):] or n for n in names]


def restoration_report(network, cases: Dict[str, np.ndarray], patch_size, make_genesis_transform,
                       output_folder: str, max_previews: int = 5, seed: int = 0, iterations=None,
                       min_iterations=None, extra: Optional[Dict] = None) -> Dict:
    """Score ``network`` per distortion on the central patches of ``cases`` against the identity
    and mean baselines (``nnunet_genesis.pretraining.scores``), check it for collapse, and write
    ``summary.json`` plus one preview PNG per distortion (original / distorted / restored of up
    to ``max_previews`` cases) to ``output_folder``. ``iterations``: training iterations behind the
    network (None: unknown, always judged; see ``restoration.collapse_reasons``). ``extra``: more
    entries for the summary (what was scored, by whom). Returns the summary."""
    from nnunet_genesis.pretraining.previews import save_preview_grid
    from nnunet_genesis.io.atomic import output_set
    from nnunet_genesis.pretraining.scores import COLLAPSE_MIN_ITERATIONS, collapse_reasons, restoration_verdict, score_pairs
    pairs = validation_pairs(cases, patch_size, make_genesis_transform, seed)
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
                   "verdict": restoration_verdict(scores),
                   "collapse": collapse_reasons(scores, iterations, min_iterations if min_iterations is not None
                                                else COLLAPSE_MIN_ITERATIONS)}
        summary.update(extra or {})
        files.write_json("summary.json", summary)
    return summary
