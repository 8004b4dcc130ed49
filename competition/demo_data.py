"""A small brain-tissue task in the Medical Segmentation Decathlon layout, made from real imaging data.

Source
------
nilearn (``pip install nilearn``) ships, inside its package folder ``nilearn/datasets/data/``, the MNI ICBM152
2009a non-linear symmetric template at 1 mm: a skull-stripped average T1-weighted image of 152 adults
(``mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz``) and its grey- and white-matter probability maps
(``..._gm_...`` and ``..._wm_...``), each stored as uint8 0..255.  Nothing is downloaded: the files are read
from the installed package.

How the cases are made
----------------------
One template is turned into several "subjects" by giving every case its own random (seeded) but plausible
variation, applied in the same way to the T1 and to both tissue maps:

1. Anti-aliasing.  The template and the maps are blurred once with a Gaussian of FWHM
   ``sqrt(s^2 - 1)`` mm (s = output spacing, 1 mm = template spacing), so that sampling them every s mm
   neither aliases nor sharpens: the result approximates an s-mm acquisition.
2. Geometry.  Output voxel centres ``x`` (mm, RAS, a grid of spacing s around the brain) are mapped into the
   template by ``y = c + R S (x - c) + t + d(x)``: ``c`` the centre of the brain's bounding box, ``R`` a
   rotation (angles uniform in +-10 degrees about each axis), ``S`` a diagonal scaling (uniform 0.9..1.1 per
   axis), ``t`` a translation (uniform +-4 mm per axis) and ``d`` a smooth displacement field (independent
   N(0, 3 mm) displacements on a coarse control grid about 32 mm apart, interpolated with cubic splines).
   Values at ``y`` are read with trilinear interpolation (zero outside the template).  Finally each case is
   cropped to the bounding box of its own tissue labels plus one voxel, so image sizes vary with the
   "subject" (about 39 x 47 x 40 voxels at 4 mm, median of 40 cases).
3. Labels.  From the deformed probability maps ``p_gm``, ``p_wm`` (template values / 255) the background
   probability is ``p_bg = max(0, 1 - p_gm - p_wm)`` (CSF and everything outside the brain) and the label is
   ``argmax(p_bg, p_gm, p_wm)`` -> 0 background, 1 grey matter, 2 white matter (ties go to the lower label).
   Resampling the probabilities and then taking the argmax -- instead of nearest-neighbour sampling of a
   label map -- keeps the partial-volume decision consistent with the blurred image.
4. Intensities.  ``I = 1000 g b(x) T(y)^gamma`` with ``T`` the deformed template scaled to [0, 1], a
   contrast exponent ``gamma`` (uniform 0.85..1.2), a global gain ``g`` (log-uniform 0.7..1.4: MRI has no
   absolute scale) and a smooth multiplicative bias field ``b = exp(beta)``, ``beta`` cubic-spline
   interpolated from a 3x3x3 grid of N(0, 0.1) values.  Rician noise as in magnitude MRI:
   ``sqrt((I + n1)^2 + n2^2)`` with ``n1, n2 ~ N(0, sigma)``, ``sigma = 1000 g f``, ``f`` uniform 1..4 %.

Layout written
--------------
``<root>/TaskXX_Name/{imagesTr, labelsTr, imagesTs, dataset.json}`` with case names ``brain_001.nii.gz``...
(dataset.json with the keys the Decathlon uses), plus the test cases' labels *outside* the Decathlon folder, in
``<root>/TaskXX_Name_test_labels/``, so that a demo can score predictions without the labels ever being
visible to nnU-Net.  Case ``i`` (1-based) is made from the random stream ``default_rng([seed, i])`` alone;
cases ``1..num_training`` are the training set and the next ``num_test`` the test set, so the split (and each
case) is a deterministic function of ``seed`` and the counts.
"""
import functools
import importlib.util
import os
import re
import shutil
from dataclasses import dataclass
from typing import Tuple

import numpy as np

from evaluation.tasks import MSD_TASKS
from nnunet_genesis.io import raw_dataset
from nnunet_genesis.io.atomic import atomic_write, write_json_atomic

DEFAULT_TASK_NAME = "Task11_BrainTissueDemo"
CASE_PREFIX = "brain"
LABELS = {"0": "background", "1": "grey matter", "2": "white matter"}
TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
TEMPLATE_REFERENCE = (
    "MNI ICBM152 2009a non-linear symmetric template (T1 and grey/white-matter probability maps, 1 mm) as "
    "shipped by nilearn in nilearn/datasets/data/ (files %s). Fonov VS, Evans AC, McKinstry RC, Almli CR, "
    "Collins DL. Unbiased nonlinear average age-appropriate brain templates from birth to adulthood. "
    "NeuroImage 47 (Suppl. 1): S102, 2009. Fonov V, Evans AC, Botteron K, Almli CR, McKinstry RC, Collins DL, "
    "Brain Development Cooperative Group. Unbiased average age-appropriate atlases for pediatric studies. "
    "NeuroImage 54(1): 313-327, 2011. Cases derived by nnunet-genesis (competition/demo_data.py)."
    % ", ".join(TEMPLATE_FILES.values()))
TEMPLATE_LICENCE = (
    "Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological Institute, "
    "McGill University. Permission to use, copy, modify, and distribute this software and its documentation "
    "for any purpose and without fee is hereby granted, provided that the above copyright notice appear in all "
    "copies. The authors and McGill University make no representations about the suitability of this software "
    "for any purpose. It is provided \"as is\" without express or implied warranty. The authors are not "
    "responsible for any data loss, equipment damage, property loss, or injury to subjects or patients "
    "resulting from the use or misuse of this software package.")

# The random variation of one case (see the module docstring for the model).
MAX_ROTATION_DEG = 10.0
SCALE_RANGE = (0.9, 1.1)
MAX_TRANSLATION_MM = 4.0
DISPLACEMENT_SD_MM = 3.0
DISPLACEMENT_CONTROL_SPACING_MM = 32.0
BIAS_LOG_SD = 0.1
GAMMA_RANGE = (0.85, 1.2)
GAIN_RANGE = (0.7, 1.4)
NOISE_FRACTION_RANGE = (0.01, 0.04)
# A case is sampled on the brain's bounding box plus this margin on every side (room for the largest
# scaling, rotation, shift and displacement above), then cropped to its own tissue bounding box plus
# CROP_MARGIN_VOXELS, as skull-stripped data sets often are. At 4 mm that gives about 39 x 47 x 40 voxels,
# so nnU-Net plans a 40 x 48 x 40 patch.
FOV_MARGIN_MM = 24.0
CROP_MARGIN_VOXELS = 1

_TASK_NAME = re.compile(r"^Task(\d{2})_([A-Za-z0-9]+)$")


class DemoDataError(ValueError):
    """Bad arguments or a missing template (the message says which and why)."""


# ----------------------------------------------------------------------------------------------------------------
# The template
# ----------------------------------------------------------------------------------------------------------------

def nilearn_data_folder() -> str:
    """``nilearn/datasets/data`` of the installed nilearn, found without importing nilearn (which is slow)."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise DemoDataError("the demo data are made from the MNI152 template shipped with nilearn, "
                            "but nilearn is not installed (pip install nilearn)")
    folder = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data")
    missing = [f for f in TEMPLATE_FILES.values() if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        raise DemoDataError("nilearn is installed but %s lacks %s (this nilearn version does not ship the "
                            "MNI152 2009 template files)" % (folder, ", ".join(missing)))
    return folder


@dataclass(frozen=True)
class Template:
    """The template on its 1 mm grid, anti-aliased for one output spacing.

    ``t1`` in [0, 1]; ``gm``, ``wm`` probabilities in [0, 1]; ``affine`` voxel -> RAS mm (shared by all three);
    ``brain_lo``/``brain_hi`` the RAS corners (mm) of the bounding box of the voxels with T1 > 0.
    """
    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    affine: np.ndarray
    brain_lo: np.ndarray
    brain_hi: np.ndarray


def _antialias_sigma_voxels(spacing_mm, template_spacing_mm):
    """Gaussian sigma (template voxels) that takes the template's resolution to ``spacing_mm``.

    Resolutions (FWHM) add in quadrature: blurring a ``v``-mm image with FWHM ``sqrt(s^2 - v^2)`` gives FWHM
    ``s``; sigma = FWHM / sqrt(8 ln 2).
    """
    fwhm = np.sqrt(np.maximum(np.square(spacing_mm) - np.square(template_spacing_mm), 0.0))
    return fwhm / np.sqrt(8.0 * np.log(2.0)) / template_spacing_mm


@functools.lru_cache(maxsize=2)
def load_template(spacing_mm: float = 4.0) -> Template:
    """Read the nilearn MNI152 files, check they share one grid, scale to [0, 1], anti-alias for ``spacing_mm``."""
    import nibabel as nib
    from scipy import ndimage

    folder = nilearn_data_folder()
    images = {key: nib.load(os.path.join(folder, fname)) for key, fname in TEMPLATE_FILES.items()}
    reference = images["t1"]
    for key, img in images.items():
        if img.shape != reference.shape or not np.allclose(img.affine, reference.affine):
            raise DemoDataError("%s: grid %s / affine differ from the T1 template's %s"
                                % (os.path.join(folder, TEMPLATE_FILES[key]), img.shape, reference.shape))
    affine = reference.affine.astype(np.float64)
    voxel_mm = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    sigma = _antialias_sigma_voxels(spacing_mm, voxel_mm)

    arrays = {}
    for key, img in images.items():
        data = np.asarray(img.dataobj, dtype=np.float32)
        peak = float(data.max())
        if peak <= 0:
            raise DemoDataError("%s is empty" % os.path.join(folder, TEMPLATE_FILES[key]))
        # T1 to [0, 1] by its maximum (as nilearn does); probability maps are stored as 0..255.
        data /= peak if key == "t1" else 255.0
        arrays[key] = ndimage.gaussian_filter(data, sigma, mode="constant") if np.any(sigma > 0) else data

    brain_voxels = np.argwhere(np.asarray(reference.dataobj) > 0)
    corners = np.stack([brain_voxels.min(axis=0), brain_voxels.max(axis=0)]).astype(np.float64)
    corners_mm = nib.affines.apply_affine(affine, corners)
    return Template(t1=arrays["t1"], gm=arrays["gm"], wm=arrays["wm"], affine=affine,
                    brain_lo=corners_mm.min(axis=0), brain_hi=corners_mm.max(axis=0))


# ----------------------------------------------------------------------------------------------------------------
# One case
# ----------------------------------------------------------------------------------------------------------------

def rotation_matrix(angles_rad) -> np.ndarray:
    """R = Rz(c) Ry(b) Rx(a) for angles (a, b, c) about the x, y and z axes."""
    a, b, c = angles_rad
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _smooth_random_field(rng, control_shape, out_shape, sd):
    """Values N(0, sd) on a coarse control grid spanning the whole output grid, cubic-spline interpolated
    to ``out_shape``: a smooth field whose amplitude is about ``sd``."""
    from scipy import ndimage

    control = rng.normal(0.0, sd, control_shape)
    coords = np.meshgrid(*[np.linspace(0, c - 1, n) for c, n in zip(control_shape, out_shape)], indexing="ij")
    return ndimage.map_coordinates(control, coords, order=3, mode="nearest")


def output_grid(template: Template, spacing_mm: float) -> Tuple[Tuple[int, int, int], np.ndarray]:
    """(shape, affine) of the grid a case is first sampled on: axis-aligned RAS, ``spacing_mm`` isotropic,
    centred on the brain's bounding box plus ``FOV_MARGIN_MM`` on every side (room for the deformation)."""
    extent = template.brain_hi - template.brain_lo + 2 * FOV_MARGIN_MM
    shape = np.ceil(extent / spacing_mm).astype(int)
    centre = (template.brain_lo + template.brain_hi) / 2.0
    affine = np.diag([spacing_mm] * 3 + [1.0])
    affine[:3, 3] = centre - spacing_mm * (shape - 1) / 2.0
    return tuple(int(s) for s in shape), affine


def crop_to_tissue(image, label, affine, margin_voxels=CROP_MARGIN_VOXELS):
    """Crop image and label to the bounding box of the tissue (label > 0) plus ``margin_voxels`` on every side
    (clipped to the grid); the affine's origin moves to the new first voxel, ``o' = o + A @ lo``."""
    tissue = np.argwhere(label > 0)
    if tissue.size == 0:
        raise DemoDataError("a generated case has no tissue voxels; spacing or deformation settings are broken")
    lo = np.maximum(tissue.min(axis=0) - margin_voxels, 0)
    hi = np.minimum(tissue.max(axis=0) + margin_voxels + 1, label.shape)
    window = tuple(slice(a, b) for a, b in zip(lo, hi))
    cropped_affine = affine.copy()
    cropped_affine[:3, 3] = affine[:3, :3] @ lo + affine[:3, 3]
    return image[window], label[window], cropped_affine


def make_case(template: Template, spacing_mm: float, rng) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One random subject: (T1 image float32 (x, y, z), label map uint8 (x, y, z), affine voxel -> RAS mm).

    See the module docstring for the deformation, label and intensity models.
    """
    from scipy import ndimage

    shape, affine = output_grid(template, spacing_mm)
    centre = (template.brain_lo + template.brain_hi) / 2.0

    # Voxel centres of the output grid in RAS mm, shaped (3, N).
    ijk = np.indices(shape, dtype=np.float64).reshape(3, -1)
    x = affine[:3, :3] @ ijk + affine[:3, 3:4]

    angles = np.deg2rad(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG, 3))
    scales = rng.uniform(*SCALE_RANGE, 3)
    translation = rng.uniform(-MAX_TRANSLATION_MM, MAX_TRANSLATION_MM, 3)
    linear = rotation_matrix(angles) @ np.diag(scales)
    control_shape = tuple(int(max(2, np.ceil(n * spacing_mm / DISPLACEMENT_CONTROL_SPACING_MM) + 1)) for n in shape)
    displacement = np.stack([_smooth_random_field(rng, control_shape, shape, DISPLACEMENT_SD_MM).ravel()
                             for _ in range(3)])
    y = centre[:, None] + linear @ (x - centre[:, None]) + translation[:, None] + displacement

    # RAS mm in the template -> template voxel indices, then trilinear sampling (0 outside the template).
    template_ijk = np.linalg.solve(template.affine[:3, :3], y - template.affine[:3, 3:4])

    def sample(volume):
        return ndimage.map_coordinates(volume, template_ijk, order=1, mode="constant", cval=0.0).reshape(shape)

    t1, p_gm, p_wm = (np.clip(sample(v), 0.0, 1.0) for v in (template.t1, template.gm, template.wm))
    p_background = np.clip(1.0 - p_gm - p_wm, 0.0, None)
    label = np.argmax(np.stack([p_background, p_gm, p_wm]), axis=0).astype(np.uint8)

    gamma = rng.uniform(*GAMMA_RANGE)
    gain = np.exp(rng.uniform(*np.log(GAIN_RANGE)))
    bias = np.exp(_smooth_random_field(rng, (3, 3, 3), shape, BIAS_LOG_SD))
    signal = 1000.0 * gain * bias * t1 ** gamma
    sigma = 1000.0 * gain * rng.uniform(*NOISE_FRACTION_RANGE)
    image = np.sqrt((signal + rng.normal(0.0, sigma, shape)) ** 2 + rng.normal(0.0, sigma, shape) ** 2)
    return crop_to_tissue(image.astype(np.float32), label, affine)


# ----------------------------------------------------------------------------------------------------------------
# The Decathlon task
# ----------------------------------------------------------------------------------------------------------------

def demo_test_labels_dir(task_dir: str) -> str:
    """Where the test labels of the task in ``task_dir`` are written: a sibling ``<TaskXX_Name>_test_labels``."""
    task_dir = os.path.abspath(task_dir)
    return os.path.join(os.path.dirname(task_dir), os.path.basename(task_dir) + "_test_labels")


def case_name(index: int) -> str:
    """File name of case ``index`` (1-based): brain_001.nii.gz, ..."""
    return "%s_%03d.nii.gz" % (CASE_PREFIX, index)


def _save_nifti(array, affine, path, dtype):
    """NIfTI with the same affine in qform and sform (code 1, scanner), units mm: every reader
    (nibabel, SimpleITK/ITK used by nnU-Net) then agrees on spacing, origin and direction."""
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(array, dtype=dtype), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    atomic_write(path, lambda tmp: nib.save(img, tmp))


def _check_arguments(name, num_training, num_test, spacing_mm):
    match = _TASK_NAME.match(name)
    if match is None:
        raise DemoDataError("task name %r must look like TaskXX_Name (two digits, then letters/digits): "
                            "nnUNet_convert_decathlon_task reads the folder name that way" % name)
    if name in MSD_TASKS:
        raise DemoDataError("task name %r is an official Decathlon task; give the demo task a name of its own"
                            % name)
    if int(num_training) < 2 or int(num_test) < 1:
        raise DemoDataError("need num_training >= 2 (nnU-Net's cross-validation) and num_test >= 1, got %s and %s"
                            % (num_training, num_test))
    if not 1.0 <= float(spacing_mm) <= 8.0:
        raise DemoDataError("spacing_mm=%s outside 1..8 mm (the template is 1 mm; above 8 mm little brain is left)"
                            % spacing_mm)


def write_mni_demo_task(root: str, name: str = DEFAULT_TASK_NAME, num_training: int = 8, num_test: int = 4,
                        seed: int = 0, spacing_mm: float = 4.0, overwrite: bool = False) -> str:
    """Write the brain-tissue demo task under ``root``; return the Decathlon folder ``<root>/<name>``.

    The test labels go to :func:`demo_test_labels_dir` (``<root>/<name>_test_labels``), outside the Decathlon
    folder.  Existing output folders are an error unless ``overwrite``, which removes exactly those two folders
    first (so no stale case from an earlier, larger run survives: nnU-Net converts every file in imagesTr).
    """
    _check_arguments(name, num_training, num_test, spacing_mm)
    from tqdm import tqdm

    task_dir = os.path.join(os.path.abspath(root), name)
    labels_dir = demo_test_labels_dir(task_dir)
    for folder in (task_dir, labels_dir):
        if os.path.exists(folder):
            if not overwrite:
                raise FileExistsError("%s already exists; pass overwrite=True to replace it" % folder)
            shutil.rmtree(folder)
    for folder in [os.path.join(task_dir, s) for s in raw_dataset.TASK_SUBFOLDERS] + [labels_dir]:
        os.makedirs(folder)

    template = load_template(float(spacing_mm))
    training, test = [], []
    for index in tqdm(range(1, num_training + num_test + 1), desc="demo cases", unit="case"):
        rng = np.random.default_rng([int(seed), index])
        image, label, affine = make_case(template, float(spacing_mm), rng)
        fname = case_name(index)
        if index <= num_training:
            _save_nifti(image, affine, os.path.join(raw_dataset.images_tr(task_dir), fname), np.float32)
            _save_nifti(label, affine, os.path.join(raw_dataset.labels_tr(task_dir), fname), np.uint8)
            training.append({"image": raw_dataset.listed_path(raw_dataset.IMAGES_TR, fname),
                             "label": raw_dataset.listed_path(raw_dataset.LABELS_TR, fname)})
        else:
            _save_nifti(image, affine, os.path.join(raw_dataset.images_ts(task_dir), fname), np.float32)
            _save_nifti(label, affine, os.path.join(labels_dir, fname), np.uint8)
            test.append(raw_dataset.listed_path(raw_dataset.IMAGES_TS, fname))

    dataset = {
        "name": _TASK_NAME.match(name).group(2),
        "description": describe_demo_data(spacing_mm),
        "reference": TEMPLATE_REFERENCE,
        "licence": TEMPLATE_LICENCE,
        "release": "1.0 (nnunet-genesis demo, seed %d)" % int(seed),
        "tensorImageSize": "3D",
        "modality": {"0": "MRI"},
        "labels": dict(LABELS),
        "numTraining": int(num_training),
        "numTest": int(num_test),
        "training": training,
        "test": test,
    }
    write_json_atomic(dataset, raw_dataset.dataset_json(task_dir))
    return task_dir


def describe_demo_data(spacing_mm: float = 4.0) -> str:
    """One paragraph for the demo to print and the README to quote."""
    return (
        "Demo data: a brain-tissue segmentation task (0 background, 1 grey matter, 2 white matter) in the Medical "
        "Segmentation Decathlon layout, made from real imaging data that installs with pip: the MNI ICBM152 2009a "
        "non-linear symmetric template (Fonov et al., NeuroImage 2009 and 2011; an average T1-weighted MRI of 152 "
        "adults with grey- and white-matter probability maps) shipped inside nilearn. Every case is the template "
        "seen as a different 'subject': resampled to %g mm isotropic after anti-aliasing, with its own random but "
        "plausible rotation (up to %g degrees per axis), scaling (%g-%g per axis), shift (up to %g mm) and smooth "
        "elastic displacement (about %g mm), a smooth multiplicative bias field, a contrast and gain change and "
        "Rician noise. The same deformation is applied to the probability maps, and each voxel's label is the most "
        "probable of background (1 - GM - WM), grey matter and white matter. All cases come from one template, so "
        "this is a plumbing demonstration, not a benchmark: Dice scores on it say nothing about real patients."
        % (spacing_mm, MAX_ROTATION_DEG, SCALE_RANGE[0], SCALE_RANGE[1], MAX_TRANSLATION_MM, DISPLACEMENT_SD_MM))
