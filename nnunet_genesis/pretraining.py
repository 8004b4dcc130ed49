"""Models Genesis pretraining inside nnU-Net, as plain functions the pretraining trainer calls.

What a training batch goes through (``genesis_augmentation``):
    nnU-Net's DataLoader3D (the target task's patch size, its preprocessed data)
    -> nnU-Net's SpatialTransform with the trainer's own augmentation parameters (rotation,
       scaling, elastic deformation, dummy-2D handling for anisotropic patches)
    -> GenesisTransform: ``data`` = distorted patch, ``target`` = original patch
    -> tensors.
nnU-Net's intensity augmentations (noise, blur, gamma, brightness, contrast, low resolution) are
left out on purpose: the network learns to undo the Genesis distortions, and extra intensity
changes applied to both input and target would only change what "original" means.

Loss and output (``RestorationLoss``): mean squared error between the full-resolution output and
the original patch. Two deliberate departures from the published Models Genesis code:
  * no sigmoid: nnU-Net feeds z-scored intensities (negative, unbounded), which a sigmoid cannot
    produce; the output is linear, as nnU-Net's own network output is before its softmax;
  * no deep supervision: the network is nnU-Net's Generic_UNet with its deep-supervision heads, but
    only the full-resolution head is scored (the published model has a single output, and the
    low-resolution heads are never transferred to the segmentation network anyway).
"""
import os
from typing import Dict, Optional

import numpy as np
import torch
from torch import nn

from nnunet_genesis.diagnostics_schedule import DEFAULT_SHARE, ScheduledDiagnostics
from nnunet_genesis.recipes import DEFAULT_RECIPE, RECIPES, transform_kwargs
from nnunet_genesis.restoration import COLLAPSE_MIN_ITERATIONS


# --------------------------------------------------------------------------------------------
# Loss and metrics
# --------------------------------------------------------------------------------------------
def full_resolution(output):
    """Generic_UNet returns a tuple of outputs (full resolution first) under deep supervision."""
    return output[0] if isinstance(output, (tuple, list)) else output


class RestorationLoss(nn.Module):
    """MSE between the full-resolution output and the original patch (see module doc).

    The lower-resolution deep-supervision outputs enter with weight 0: their gradients are exactly
    zero, but every parameter takes part in the graph, which DistributedDataParallel requires
    (it fails on parameters that produced no gradient).
    """

    def forward(self, output, target):
        target = full_resolution(target).float()
        output_full = full_resolution(output).float()
        inside = torch.isfinite(target)  # NaN: outside the image (GenesisTransform's inside_key)
        if bool(inside.all()):
            loss = nn.functional.mse_loss(output_full, target)
        else:
            squared = torch.where(inside, output_full - torch.nan_to_num(target), torch.zeros_like(output_full)) ** 2
            loss = squared.sum() / inside.sum().clamp(min=1)
        if isinstance(output, (tuple, list)):
            for low_resolution in output[1:]:
                loss = loss + 0.0 * low_resolution.sum()
        return loss


class RestorationAccumulator:
    """Sums of squared errors and of squares around the mean over validation batches, so the
    epoch's R^2 weights every voxel equally (what nnU-Net's global Dice does for overlaps)."""

    def __init__(self):
        self.sse = self.sum = self.sum_sq = self.count = 0.0

    def add(self, output, target):
        """Voxels where ``target`` is NaN (outside the image) are left out."""
        output, target = full_resolution(output).detach().float(), full_resolution(target).detach().float()
        inside = torch.isfinite(target)
        target = torch.where(inside, target, torch.zeros_like(target))
        self.sse += float(torch.where(inside, output - target, torch.zeros_like(output)).pow(2).sum())
        self.sum += float(target.sum())
        self.sum_sq += float((target ** 2).sum())
        self.count += int(inside.sum())

    def r2(self):
        if self.count == 0:
            return float("nan")
        sst = self.sum_sq - self.sum ** 2 / self.count
        return 1.0 - self.sse / sst if sst > 0 else float("nan")

    def mse(self):
        return self.sse / self.count if self.count else float("nan")


# --------------------------------------------------------------------------------------------
# Data pipeline
# --------------------------------------------------------------------------------------------
def genesis_transforms(patch_size, params, genesis_transform, spatial=True):
    """batchgenerators Compose: [nnU-Net's spatial augmentation], Genesis, to tensors.

    Follows ``get_moreDA_augmentation`` in nnU-Net 1.7.1's
    ``nnunet/training/data_augmentation/data_augmentation_moreDA.py``: the same Convert3DTo2D /
    SpatialTransform(data_aug_params) / Convert2DTo3D wiring. Departs from it by dropping the noise,
    blur, brightness, contrast, low-resolution, gamma and mirror transforms (the Genesis distortions
    take their place) and by applying no spatial augmentation to validation patches."""
    from batchgenerators.transforms.abstract_transforms import Compose
    from batchgenerators.transforms.spatial_transforms import SpatialTransform
    from batchgenerators.transforms.utility_transforms import NumpyToTensor
    from nnunet.training.data_augmentation.custom_transforms import Convert2DTo3DTransform, Convert3DTo2DTransform

    transforms = []
    if spatial:
        dummy_2d = bool(params.get("dummy_2D"))
        if dummy_2d:  # anisotropic patches: nnU-Net augments them slice-wise in 2D
            transforms.append(Convert3DTo2DTransform())
        transforms.append(SpatialTransform(
            patch_size[1:] if dummy_2d else patch_size, patch_center_dist_from_border=None,
            do_elastic_deform=params.get("do_elastic"), alpha=params.get("elastic_deform_alpha"),
            sigma=params.get("elastic_deform_sigma"), do_rotation=params.get("do_rotation"),
            angle_x=params.get("rotation_x"), angle_y=params.get("rotation_y"), angle_z=params.get("rotation_z"),
            p_rot_per_axis=params.get("rotation_p_per_axis"), do_scale=params.get("do_scaling"),
            scale=params.get("scale_range"), border_mode_data=params.get("border_mode_data"), border_cval_data=0,
            order_data=3, border_mode_seg="constant", border_cval_seg=-1, order_seg=1,
            random_crop=params.get("random_crop"), p_el_per_sample=params.get("p_eldef"),
            p_scale_per_sample=params.get("p_scale"), p_rot_per_sample=params.get("p_rot"),
            independent_scale_for_each_axis=params.get("independent_scale_factor_for_each_axis")))
        if dummy_2d:
            transforms.append(Convert2DTo3DTransform())
    transforms.append(genesis_transform)
    transforms.append(NumpyToTensor(["data", "target"], "float"))
    return Compose(transforms)


def genesis_augmentation(dl_tr, dl_val, patch_size, params, make_genesis_transform, pin_memory=False):
    """(train, validation) MultiThreadedAugmenters for restoration, with nnU-Net's worker counts.

    ``make_genesis_transform(seed)`` builds a GenesisTransform. Training uses seed None (fresh
    entropy in every worker process); validation a fixed seed so its loss is comparable between
    epochs.
    """
    from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter
    num_threads = params.get("num_threads")
    tr = MultiThreadedAugmenter(dl_tr, genesis_transforms(patch_size, params, make_genesis_transform(None)),
                                num_threads, params.get("num_cached_per_thread"), pin_memory=pin_memory)
    val = MultiThreadedAugmenter(dl_val, genesis_transforms(patch_size, params, make_genesis_transform(12345),
                                                            spatial=False),
                                 max(num_threads // 2, 1), params.get("num_cached_per_thread"), pin_memory=pin_memory)
    return tr, val


# --------------------------------------------------------------------------------------------
# Validation: restoration of whole validation cases' central patches, with previews
# --------------------------------------------------------------------------------------------
def outside_as_nan(data: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """A preprocessed case's (C, Z, Y, X) ``data`` as float32 with NaN where its nnU-Net ``seg`` (1, Z, Y, X)
    says the voxel is outside the image (``transforms.inside_image``): what the diagnostics leave out."""
    from nnunet_genesis.transforms import inside_image
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


def add_residual_output(network, zero_init: bool = False) -> None:
    """Make ``network`` answer ``input + network(input)`` at full resolution (a residual output,
    see ``nnunet_genesis/recipes.py``), with a forward hook: the weights, their names and the
    checkpoint format stay Generic_UNet's, so the fine-tuning transfer reads them as before. Under
    deep supervision only the full-resolution output gets the input (the others have weight 0).
    Needs as many output channels as input channels, as restoration has. ``zero_init``: the
    full-resolution output layer (Generic_UNet's ``seg_outputs[-1]``) starts at zero, so the network
    starts as the identity."""
    if zero_init:
        head = network.seg_outputs[-1]
        with torch.no_grad():
            head.weight.zero_()
            if head.bias is not None:
                head.bias.zero_()

    def hook(module, inputs, output):
        x = inputs[0]
        if isinstance(output, (tuple, list)):
            return type(output)([output[0] + x] + list(output[1:]))
        return output + x
    network._genesis_residual_hook = network.register_forward_hook(hook)


def validation_pairs(cases: Dict[str, np.ndarray], patch_size, make_genesis_transform, seed: int = 0):
    """The central patch of each validation case, distorted once per distortion kind (the stream
    fixed by ``seed``; see ``nnunet_genesis.restoration.distorted_pairs``)."""
    from nnunet_genesis.restoration import distorted_pairs
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
    and mean baselines (``nnunet_genesis.restoration``), check it for collapse, and write
    ``summary.json`` plus one preview PNG per distortion (original / distorted / restored of up
    to ``max_previews`` cases) to ``output_folder``. ``iterations``: training iterations behind the
    network (None: unknown, always judged; see ``restoration.collapse_reasons``). ``extra``: more
    entries for the summary (what was scored, by whom). Returns the summary."""
    from nnunet_genesis.previews import save_preview_grid
    from nnunet_genesis.atomic import output_set
    from nnunet_genesis.restoration import COLLAPSE_MIN_ITERATIONS, collapse_reasons, restoration_verdict, score_pairs
    pairs = validation_pairs(cases, patch_size, make_genesis_transform, seed)
    restored = {kind: [restore_patch(network, d) for d, _ in kind_pairs] for kind, kind_pairs in pairs.items()}
    scores = score_pairs(pairs, answers=restored)
    names = sorted(cases)
    # one output set: summary.json and the PNGs replace the earlier ones together (an earlier PNG not drawn again
    # is removed), or not at all (nnunet_genesis.atomic.OutputSet)
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


# ------------------------------------------------------------------------------------------------
# What a pretraining trainer (v1 and v2 alike) writes while it trains
# ------------------------------------------------------------------------------------------------
class GenesisPretrainSettings(ScheduledDiagnostics):
    """The settings a pretraining trainer (v1 ``GenesisPretrainMixin``, v2 ``nnUNetTrainer_GenesisPretrain``)
    shares, as class attributes a thin subclass overrides, and the training transform they make."""
    genesis_recipe = DEFAULT_RECIPE   # a key of nnunet_genesis.recipes.RECIPES (measured: see the README)
    genesis_transform_kwargs = {}     # GenesisTransform arguments, over the recipe's mix and the published values
    genesis_preview_every = 50        # epochs, like nnU-Net's checkpoint interval
    genesis_diagnostics_every = 1     # at most every this many epochs: per-distortion scores (log, history, plot)
    genesis_diagnostics_share = DEFAULT_SHARE  # ... and spaced to take at most this share of the wall time
    genesis_diagnostic_cases = 4      # validation cases whose central patches are scored every epoch
    genesis_validation_cases = 20     # validation cases scored when training ends
    genesis_validation_folder = "validation_restoration"
    genesis_collapse_min_iterations = COLLAPSE_MIN_ITERATIONS  # judge collapse only after this many iterations

    @property
    def recipe(self):
        return RECIPES[self.genesis_recipe]

    def make_genesis_transform(self, seed):
        from nnunet_genesis.transforms import GenesisTransform
        return GenesisTransform(seed=seed, **transform_kwargs(self.recipe, self.genesis_transform_kwargs))


HISTORY_FILE = "restoration_history.json"
PROGRESS_PLOT = "restoration_progress.png"
PREVIEW_FILE = "restoration_preview.png"


def load_restoration_history(output_folder: str, before_epoch: int) -> list:
    """The entries of ``HISTORY_FILE`` in ``output_folder`` for epochs before ``before_epoch`` (a resumed
    training, ``-c``, keeps its history; epochs it redoes are scored again); [] without the file."""
    import json
    path = os.path.join(output_folder, HISTORY_FILE)
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [h for h in json.load(f) if h["epoch"] < before_epoch]


def record_restoration(pairs, network, history: list, epoch: int, iterations_done: int, min_iterations: int,
                       output_folder: str, title: str, log) -> Dict:
    """Score ``network`` per distortion on the fixed ``pairs`` (:func:`validation_pairs`), append the entry
    ``{"epoch", "scores", "collapse"}`` to ``history``, ``log`` the table (and a collapse warning, judged from
    ``min_iterations`` training iterations on), and write ``HISTORY_FILE`` and ``PROGRESS_PLOT`` into
    ``output_folder``. Returns the entry."""
    from nnunet_genesis.atomic import write_json_atomic
    from nnunet_genesis.restoration import collapse_reasons, collapse_warning, format_scores, plot_history, score_pairs
    scores = score_pairs(pairs, restore=lambda d: restore_patch(network, d))
    reasons = collapse_reasons(scores, iterations_done, min_iterations)
    entry = {"epoch": int(epoch), "scores": scores, "collapse": reasons}
    history.append(entry)
    log("restoration per distortion (R^2 on %d validation patches):\n%s"
        % (len(next(iter(pairs.values()), [])), format_scores(scores)))
    if reasons:
        log(collapse_warning(reasons))
    write_json_atomic(history, os.path.join(output_folder, HISTORY_FILE))
    plot_history(history, os.path.join(output_folder, PROGRESS_PLOT), title=title)
    return entry


def final_restoration_report(network, cases: Dict[str, np.ndarray], patch_size, make_genesis_transform,
                             output_folder: str, iterations_done: int, min_iterations: int, recipe: str,
                             log) -> Dict:
    """What a pretraining trainer does when its training ends (v1 ``validate``, v2
    ``perform_actual_validation``): :func:`restoration_report` of ``cases`` into ``output_folder``, the table
    (and a collapse warning) in the ``log``. Returns the summary."""
    from nnunet_genesis.restoration import collapse_warning, format_scores
    summary = restoration_report(network, cases, patch_size, make_genesis_transform, output_folder,
                                 iterations=iterations_done, min_iterations=min_iterations)
    log("restoration of %d validation cases (central patches), recipe %s:\n%s"
        % (len(summary["cases"]), recipe, format_scores(summary["scores"])))
    if summary["collapse"]:
        log(collapse_warning(summary["collapse"]))
    return summary


def write_restoration_preview(cases: Dict[str, np.ndarray], patch_size, make_genesis_transform, network,
                              output_folder: str, epoch: int) -> Optional[str]:
    """``PREVIEW_FILE`` (original / distorted / restored) of the central patch of the first of ``cases``
    (a fixed distortion, seed 2024, so that previews of successive epochs compare); its path, or None
    without cases."""
    from nnunet_genesis.previews import save_preview_grid
    if not cases:
        return None
    from nnunet_genesis.restoration import masked_batch
    name, volume = next(iter(cases.items()))
    transform = make_genesis_transform(2024)
    transform.inside_key = "seg"
    batch = transform(**masked_batch(central_patch(volume, patch_size, fill=np.nan)))
    restored = restore_patch(network, batch["data"][0])
    path = os.path.join(output_folder, PREVIEW_FILE)
    save_preview_grid({"original": batch["target"][0], "distorted": batch["data"][0], "restored": restored},
                      path, title="%s, epoch %d" % (name, epoch))
    return path
