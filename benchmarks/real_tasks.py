"""Real labelled segmentation tasks in the Medical Segmentation Decathlon's raw format, built from public
data that installs here (no download at run time): the input of nnU-Net v1's ``nnUNet_convert_decathlon_task``.

    python benchmarks/real_tasks.py -o /work/data18_run/raw [--tasks deepgrey headct wholehead] [--png docs]

Each task is written as ``DIR/TaskNN_Name/`` with ``imagesTr/ labelsTr/ imagesTs/ dataset.json`` (NIfTI) plus
the held-out test labels in ``labelsTs/``, and ``DIR/TaskNN_Name_unlabelled/``: extra volumes for pretraining
(never labelled, never a test subject). See docs/real_tasks.md for sources, label rules, counts and plans.

* ``Task61_DeepGrey`` (MRI, cases smaller than nnU-Net's patch, like Task04_Hippocampus): 1-mm crops around the
  left or right striatum; label 1 caudate, 2 putamen (AAL atlas propagated from Colin27).
* ``Task62_HeadCT`` (CT in HU): crops of a real head CT; label 1 bone (HU >= 300), 2 intracranial soft tissue.
* ``Task63_WholeHead`` (MRI, whole heads at 1 mm, larger than the patch): label 1 cerebrum and brainstem,
  2 cerebellum.

Sources, and how to install them (Debian packages as root, Python wheels into the venv; the wheels are only
read as files, never imported, so ``--no-deps`` is enough; SimpleITK, nibabel, scipy, tqdm and matplotlib come
with nnU-Net):

    apt-get update && apt-get install -y mricron-data invesalius-examples insighttoolkit5-examples
    pip install --no-deps nilearn nimare pydeface

Sources, grids, registration and readers live in benchmarks/real_tasks_sources.py. Deterministic:
registrations run single-threaded with regular (not random) metric sampling; crop positions come from fixed
tables and generators seeded by the case name. Every file is written atomically (nnunet_genesis/io/atomic.py).
"""
import argparse
import os
import shutil
import sys

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from tqdm import tqdm

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
from real_tasks_sources import (MRICRON, SourceMissing, array, canonical, case_rng, crop, fill_holes,  # noqa: E402
                                image_like, largest_component, load_head, load_head_ct, mri_sources, pitched,
                                read, slicewise_fill, system_file, write_image)
from nnunet_genesis.io import raw_dataset  # noqa: E402
from nnunet_genesis.io.atomic import make_dirs, write_json_atomic  # noqa: E402

CAUDATE, PUTAMEN = {"L": 71, "R": 72}, {"L": 73, "R": 74}      # AAL label values (aal.nii.txt)
CEREBELLUM = range(91, 117)                                   # AAL 91-108 cerebellar lobules, 109-116 vermis


# ----------------------------------------------------------------------------------------------------------
# Task61_DeepGrey: 1-mm crops smaller than the patch, two structures

DEEPGREY_TEST = ("mni6asym", "pydefacemean")     # whole subjects (templates) kept for testing


def deepgrey_labels(head):
    labels = np.zeros(head["aal"].shape, np.uint8)
    labels[np.isin(head["aal"], list(CAUDATE.values()))] = 1
    labels[np.isin(head["aal"], list(PUTAMEN.values()))] = 2
    labels[~head["brain"]] = 0
    return labels


def deepgrey_box(case, centre):
    """Case-specific size about Task04_Hippocampus's (36 x 50 x 35 median) and a jittered centre."""
    rng = case_rng(case)
    size = np.array([rng.integers(32, 40), rng.integers(44, 53), rng.integers(32, 40)])
    centre = np.asarray(centre) + rng.integers(-2, 3, 3)
    return centre - size // 2, size


def deepgrey_cases(heads):
    """(case, split, image, labels or None, grid, start) for every crop; split: train, test or unlabelled."""
    for head in heads:
        split = "test" if head["name"] in DEEPGREY_TEST else "train"
        labels = deepgrey_labels(head)
        for hemi in "LR":
            region = np.isin(head["aal"], [CAUDATE[hemi], PUTAMEN[hemi]])
            centre = np.round(ndimage.center_of_mass(region)).astype(int)
            for k, shift in enumerate((-4, 4)):        # two crops 8 mm apart along the y axis
                case = "deepgrey_%s_%s%d" % (head["name"], hemi, k)
                start, size = deepgrey_box(case, centre + np.array([0, shift, 0]))
                yield case, split, crop(head["t1"], start, size), crop(labels, start, size), head["grid"], start
        if split == "train":                           # unlabelled crops elsewhere in the brain, for pretraining
            inside = np.argwhere(ndimage.binary_erosion(head["brain"], iterations=15))
            for k in range(8):
                case = "deepgrey_%s_extra%d" % (head["name"], k)
                start, size = deepgrey_box(case, inside[case_rng(case).integers(len(inside))])
                yield case, "unlabelled", crop(head["t1"], start, size), None, head["grid"], start


# ----------------------------------------------------------------------------------------------------------
# Task63_WholeHead: whole heads at 1-1.3 mm, much larger than the patch

WHOLEHEAD_TEST = ("mni6asym", "mni2009a")       # one whole head, one brain-extracted template
WHOLEHEAD_VARIANTS = ((0, False), (0, True), (8, False), (-8, True))   # (head pitch in degrees, mirrored)


def wholehead_labels(head):
    cerebellum = np.isin(head["aal"], list(CEREBELLUM))
    cerebellum = fill_holes(ndimage.binary_closing(cerebellum, iterations=3)) & head["brain"]
    labels = head["brain"].astype(np.uint8)
    labels[cerebellum] = 2
    return labels


def wholehead_cases(heads):
    for head in heads:
        split = "test" if head["name"] in WHOLEHEAD_TEST else "train"
        labels = wholehead_labels(head)
        t1 = head["t1"]
        foreground = ndimage.binary_opening(t1 > 0.1 * np.percentile(t1[t1 > 0], 99), iterations=2)
        box = np.argwhere(foreground)
        start = np.maximum(box.min(0) - 4, 0)
        stop = np.minimum(box.max(0) + 5, t1.shape)
        slices = tuple(slice(int(a), int(b)) for a, b in zip(start, stop))
        image = image_like(t1[slices], head["grid"], start)
        label_image = image_like(labels[slices], head["grid"], start)
        for k, (degrees, mirrored) in enumerate(WHOLEHEAD_VARIANTS):
            case = "wholehead_%s_v%d" % (head["name"], k)
            im = canonical(pitched(image, degrees), 1.0)
            lab = canonical(pitched(label_image, degrees), 1.0, sitk.sitkNearestNeighbor)
            im_a, lab_a = array(im), array(lab)
            if mirrored:                                # left-right mirror image (labels are not lateralised)
                im_a, lab_a = im_a[::-1], lab_a[::-1]
            yield case, split, im_a, lab_a, im, (0, 0, 0)
    extras = (("colin27bet", MRICRON + "/ch2bet.nii.gz"), ("inia19macaque", MRICRON + "/inia19-t1-brain.nii.gz"))
    for name, path in extras:
        grid = canonical(read(system_file(path, "mricron-data")), 1.0)      # unlabelled brains, for pretraining
        yield "wholehead_%s_extra" % name, "unlabelled", array(grid), None, grid, (0, 0, 0)


# ----------------------------------------------------------------------------------------------------------
# Task62_HeadCT: crops of one real head CT (HU); training crops from one side of the head, test crops from
# the other, no voxel shared


def head_ct_labels(hu):
    """1 bone: HU >= 300 inside the body; 2 intracranial soft tissue: HU in [-30, 120] (brain, CSF-like
    densities), inside the convex hull of the largest bone component of its axial slice (the skull ring above
    the skull base), not next to bone; the largest connected region after an opening that cuts thin bridges."""
    from skimage.morphology import convex_hull_image
    body = ndimage.binary_opening(hu > -500, iterations=2)
    body = slicewise_fill(largest_component(body))
    bone = body & (hu >= 300)
    hull = np.zeros_like(bone)
    for z in range(bone.shape[2]):
        if bone[:, :, z].any():
            hull[:, :, z] = convex_hull_image(largest_component(bone[:, :, z]))
    soft = hull & (hu >= -30) & (hu <= 120) & ~ndimage.binary_dilation(bone, iterations=1)
    brain = largest_component(ndimage.binary_opening(soft, iterations=3))
    brain = slicewise_fill(ndimage.binary_dilation(brain, iterations=3) & soft) & ~bone
    labels = bone.astype(np.uint8)
    labels[brain] = 2
    return labels, body


HEADCT_SIZE = np.array([64, 80, 40])


def head_ct_cases():
    hu, spacing = load_head_ct()
    labels, body = head_ct_labels(hu)
    grid = sitk.Image([1, 1, 1], sitk.sitkFloat32)
    grid.SetSpacing(spacing)
    box = np.argwhere(body)
    low, high = box.min(0), box.max(0) + 1
    middle = int(round(ndimage.center_of_mass(body)[0]))
    sx, sy, sz = HEADCT_SIZE
    ys = np.linspace(low[1], high[1] - sy, 4).round().astype(int)
    zs = np.linspace(max(low[2], 0), hu.shape[2] - sz, 3).round().astype(int)
    sides = {"train": np.linspace(low[0], middle - sx, 2).round().astype(int),      # crops end at the midline
             "test": [middle]}                                                  # crops start at it
    for split, xs in sides.items():
        for i, x in enumerate(xs):
            for j, y in enumerate(ys if split == "train" else ys[1:3]):
                for k, z in enumerate(zs if split == "train" else zs[1:]):
                    case = "headct_%s_x%dy%dz%d" % (split, i, j, k)
                    start = np.array([x, y, z])
                    yield (case, split, crop(hu, start, HEADCT_SIZE).astype(np.int16),
                           crop(labels, start, HEADCT_SIZE), grid, start)
    for k in range(24):                               # unlabelled crops from the training side
        case = "headct_extra%d" % k
        rng = case_rng(case)
        start = np.array([rng.integers(low[0], middle - sx + 1), rng.integers(low[1], high[1] - sy + 1),
                          rng.integers(0, hu.shape[2] - sz + 1)])
        yield case, "unlabelled", crop(hu, start, HEADCT_SIZE).astype(np.int16), None, grid, start


# ----------------------------------------------------------------------------------------------------------
# writing

TASKS = {
    "deepgrey": dict(folder="Task61_DeepGrey", modality="MRI", axis=2,
                     labels={"0": "background", "1": "caudate", "2": "putamen"},
                     description="1-mm T1 crops around the left or right striatum (smaller than the patch)"),
    "headct": dict(folder="Task62_HeadCT", modality="CT", axis=2,
                   labels={"0": "background", "1": "bone", "2": "intracranial"},
                   description="crops of a real head CT in HU; bone and intracranial soft tissue"),
    "wholehead": dict(folder="Task63_WholeHead", modality="MRI", axis=0,
                      labels={"0": "background", "1": "cerebrum_brainstem", "2": "cerebellum"},
                      description="whole-head T1 volumes at 1 mm (larger than the patch)"),
}


def case_image(data, grid, start, spacing=None):
    image = image_like(data, grid, start)
    if spacing is not None:
        image.SetSpacing(spacing)
    return image


def write_task(out, key, cases, overwrite):
    """Writes the task under temporary folder names, then renames them into place; a failure removes them."""
    spec = TASKS[key]
    final = {"task": os.path.join(out, spec["folder"]),
             "unlabelled": os.path.join(out, spec["folder"] + "_unlabelled")}
    for path in final.values():
        if os.path.exists(path) and not overwrite:
            raise SystemExit("%s exists: pass --overwrite to rebuild it" % path)
    partial = {k: os.path.join(out, "." + os.path.basename(v) + ".partial") for k, v in final.items()}
    try:
        result = write_cases(partial, spec, cases)
    except BaseException:
        for path in partial.values():
            shutil.rmtree(path, ignore_errors=True)
        raise
    for k in ("task", "unlabelled"):
        if os.path.exists(final[k]):
            old = partial[k] + ".old"
            os.replace(final[k], old)
            os.replace(partial[k], final[k])
            shutil.rmtree(old)
        else:
            os.replace(partial[k], final[k])
    result["folder"] = final["task"]
    return result


def write_cases(partial, spec, cases):
    for path in partial.values():
        shutil.rmtree(path, ignore_errors=True)
    for sub in raw_dataset.TASK_SUBFOLDERS + ("labelsTs",):
        make_dirs(os.path.join(partial["task"], sub))
    make_dirs(partial["unlabelled"])
    listing = {"train": [], "test": [], "unlabelled": []}
    shapes, spacings, previews = {}, {}, []
    for case, split, data, labels, grid, start in tqdm(cases, desc=spec["folder"], unit="case"):
        image = case_image(data, grid, start)
        name = case + ".nii.gz"
        if split == "unlabelled":
            write_image(image, os.path.join(partial["unlabelled"], name))
        else:
            folders = ((raw_dataset.IMAGES_TR, raw_dataset.LABELS_TR) if split == "train"
                       else (raw_dataset.IMAGES_TS, "labelsTs"))
            write_image(image, os.path.join(partial["task"], folders[0], name))
            write_image(case_image(labels.astype(np.uint8), grid, start),
                        os.path.join(partial["task"], folders[1], name))
            if split == "train":
                previews.append((case, preview_slice(data, labels, spec["axis"]), image.GetSpacing()))
        listing[split].append(name)
        shapes.setdefault(split, []).append(data.shape)
        spacings.setdefault(split, []).append(tuple(round(s, 3) for s in image.GetSpacing()))
    dataset = {
        "name": spec["folder"].split("_", 1)[1], "description": spec["description"],
        "reference": "built by benchmarks/real_tasks.py; sources and label rules in docs/real_tasks.md",
        "licence": "see docs/real_tasks.md (per source)", "release": "1.0", "tensorImageSize": "3D",
        "modality": {"0": spec["modality"]}, "labels": spec["labels"],
        "numTraining": len(listing["train"]), "numTest": len(listing["test"]),
        "training": [{"image": raw_dataset.listed_path(raw_dataset.IMAGES_TR, n),
                      "label": raw_dataset.listed_path(raw_dataset.LABELS_TR, n)} for n in listing["train"]],
        "test": [raw_dataset.listed_path(raw_dataset.IMAGES_TS, n) for n in listing["test"]],
    }
    write_json_atomic(dataset, raw_dataset.dataset_json(partial["task"]))
    return dict(shapes=shapes, spacings=spacings, previews=previews)


def preview_slice(data, labels, axis):
    """The slice through the labels' centre along ``axis``, as (image, labels)."""
    index = int(round(ndimage.center_of_mass(labels > 0)[axis])) if labels.any() else data.shape[axis] // 2
    return np.take(data, index, axis).astype(np.float32), np.take(labels, index, axis)


def save_preview(key, previews, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from nnunet_genesis.io.atomic import save_figure_atomic
    picks = [previews[i] for i in np.linspace(0, len(previews) - 1, 3).round().astype(int)]
    axis = TASKS[key]["axis"]
    figure, axes = plt.subplots(1, 3, figsize=(9, 3.4))
    colours = ListedColormap([(0, 0, 0, 0), (1, 0.2, 0.2, 0.45), (0.2, 0.6, 1, 0.45)])
    for ax, (case, (image, labels), spacing) in zip(axes, picks):
        sp = [s for i, s in enumerate(spacing) if i != axis]
        low, high = np.percentile(image, [1, 99.5])
        ax.imshow(image.T, cmap="gray", vmin=low, vmax=high, origin="lower", aspect=sp[1] / sp[0],
                  interpolation="nearest")
        ax.imshow(labels.T, cmap=colours, vmin=0, vmax=2, origin="lower", aspect=sp[1] / sp[0],
                  interpolation="nearest")
        ax.set_title("%s\n%s" % (case, "x".join(str(n) for n in image.shape)), fontsize=7)
        ax.axis("off")
    names = TASKS[key]["labels"]
    figure.suptitle("%s: red = 1 %s, blue = 2 %s" % (TASKS[key]["folder"], names["1"], names["2"]), fontsize=9)
    figure.tight_layout()
    save_figure_atomic(figure, path, dpi=80)
    plt.close(figure)


def report(key, result):
    print("%s -> %s" % (TASKS[key]["folder"], result["folder"]))
    for split in ("train", "test", "unlabelled"):
        shapes = np.array(result["shapes"].get(split, []))
        if not len(shapes):
            continue
        spacing = sorted(set(result["spacings"][split]))
        print("  %-10s %3d cases  shape min %s median %s max %s  spacing %s" % (
            split, len(shapes), shapes.min(0).tolist(), np.median(shapes, 0).tolist(), shapes.max(0).tolist(),
            spacing if len(spacing) <= 2 else "%s .. %s" % (spacing[0], spacing[-1])))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", required=True, help="folder for the TaskNN_Name folders")
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=sorted(TASKS))
    parser.add_argument("--png", help="folder for real_tasks_<task>.png previews (3 training cases each)")
    parser.add_argument("--overwrite", action="store_true", help="rebuild tasks that already exist")
    args = parser.parse_args(argv)
    sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(1)        # deterministic registration
    try:
        heads = None
        if {"deepgrey", "wholehead"} & set(args.tasks):
            heads = [load_head(s) for s in tqdm(mri_sources(), desc="MRI heads (atlas registration)")]
        make_dirs(args.output)
        for key in [k for k in ("deepgrey", "headct", "wholehead") if k in args.tasks]:
            cases = {"deepgrey": lambda: deepgrey_cases(heads), "headct": head_ct_cases,
                     "wholehead": lambda: wholehead_cases(heads)}[key]()
            result = write_task(args.output, key, cases, args.overwrite)
            report(key, result)
            if args.png:
                save_preview(key, result["previews"], os.path.join(args.png, "real_tasks_%s.png" % key))
    except SourceMissing as error:
        raise SystemExit(str(error))


if __name__ == "__main__":
    main()
