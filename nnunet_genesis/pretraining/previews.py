"""PNG figures of Models Genesis distortions and restorations: middle axial slices side by side.

matplotlib is imported inside the functions (it is slow to import and only needed here) and drawn
through its object-oriented Agg canvas, so no global backend is switched and no pyplot state is
kept: safe in training processes and on machines without a display.
"""
import os
from typing import Mapping, Optional

import numpy as np

from nnunet_genesis.io.atomic import save_figure_atomic


def _as_channels(name: str, array: np.ndarray) -> np.ndarray:
    """``array`` as (C, Z, Y, X); a (Z, Y, X) array is one channel."""
    array = np.asarray(array)
    if array.ndim == 3:
        return array[None]
    if array.ndim != 4:
        raise ValueError("save_preview_grid: column %r must be (C, Z, Y, X) or (Z, Y, X), got shape %s"
                         % (name, array.shape))
    return array


def save_preview_grid(columns: Mapping[str, np.ndarray], path: str, title: Optional[str] = None,
                      channel_names: Optional[list] = None) -> str:
    """Write a PNG grid of middle axial slices (the middle of axis Z) to ``path``; returns ``path``.

    ``columns`` maps a column title to a (C, Z, Y, X) or (Z, Y, X) array, e.g.
    ``{"original": x, "distorted": d, "restored": r}``; all columns need the same channel count
    and spatial shape. One row per channel (named by ``channel_names`` if given). Each row shares
    one grey scale, from the minimum to the maximum of its channel in the first column, so the
    columns of a row can be compared by eye (every Models Genesis distortion stays in that range).
    """
    if not columns:
        raise ValueError("save_preview_grid: no columns to draw")
    arrays = {name: _as_channels(name, array) for name, array in columns.items()}
    first_name, first = next(iter(arrays.items()))
    for name, array in arrays.items():
        if array.shape != first.shape:
            raise ValueError("save_preview_grid: column %r has shape %s but column %r has %s; all columns need "
                             "the same (C, Z, Y, X)" % (name, array.shape, first_name, first.shape))
    n_channels, depth = first.shape[0], first.shape[1]
    if channel_names is not None and len(channel_names) != n_channels:
        raise ValueError("save_preview_grid: %d channel names for %d channels" % (len(channel_names), n_channels))

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    height, width = first.shape[2], first.shape[3]
    panel = 2.4  # inches per panel, along the longer side of a slice
    panel_w, panel_h = panel * width / max(height, width), panel * height / max(height, width)
    figure = Figure(figsize=(panel_w * len(arrays) + 0.6, panel_h * n_channels + (0.7 if title else 0.4)))
    FigureCanvasAgg(figure)
    axes = figure.subplots(n_channels, len(arrays), squeeze=False)
    for c in range(n_channels):
        finite = first[c][np.isfinite(first[c])]   # NaN: outside the image, drawn blank
        vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        if vmax <= vmin:
            vmin, vmax = vmin - 0.5, vmax + 0.5
        for j, (name, array) in enumerate(arrays.items()):
            ax = axes[c, j]
            ax.imshow(array[c, depth // 2], cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_title(name, fontsize=9)
            if j == 0:
                ax.set_ylabel(channel_names[c] if channel_names else "channel %d" % c, fontsize=9)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    save_figure_atomic(figure, path, format="png", dpi=100)   # an earlier preview survives a failed write
    return path


def preview_transforms(patch: np.ndarray, path: str, seed: int = 0, title: Optional[str] = None) -> str:
    """Write a PNG of what each Models Genesis transform does to ``patch`` (C, Z, Y, X): columns
    original, each single transform applied with probability 1 (flip, local shuffle, non-linear,
    in-painting, out-painting) and the composite :class:`GenesisTransform` (published
    probabilities, so some steps may not happen). Returns ``path``."""
    from nnunet_genesis.distortions.composite import GenesisTransform
    from nnunet_genesis.distortions.transforms import (InPaintingTransform, LocalPixelShuffleTransform,
                                                       NonLinearIntensityTransform, OutPaintingTransform,
                                                       PairedFlipTransform)

    patch = _as_channels("patch", patch).astype(np.float32, copy=False)
    singles = {
        "flip": PairedFlipTransform(p_per_round=1.0, seed=seed),
        "local shuffle": LocalPixelShuffleTransform(p_per_channel=1.0, seed=seed),
        "non-linear": NonLinearIntensityTransform(p_per_channel=1.0, seed=seed),
        "in-painting": InPaintingTransform(p_per_channel=1.0, seed=seed),
        "out-painting": OutPaintingTransform(p_per_channel=1.0, seed=seed),
    }
    columns = {"original": patch}
    for name, transform in singles.items():
        columns[name] = transform(data=patch[None].copy())["data"][0]
    columns["composite"] = GenesisTransform(seed=seed)(data=patch[None])["data"][0]
    return save_preview_grid(columns, path, title=title or "Models Genesis transforms (seed %d)" % seed)
