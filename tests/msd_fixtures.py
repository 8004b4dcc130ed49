"""Small synthetic tasks in the Medical Segmentation Decathlon layout.

The Decathlon ships every task as ``TaskXX_Name/`` with ``imagesTr/``, ``labelsTr/``, ``imagesTs/`` and a
``dataset.json``; multi-modal images are single 4D NIfTI files shaped (x, y, z, modality).  These writers
reproduce that layout (and the dataset.json keys the Decathlon uses) so that the stock
``nnUNet_convert_decathlon_task`` reads them exactly as it reads the real download.

The content is synthetic but plausible, so that nnU-Net's planning makes ordinary decisions on it:

* CT-like task: Hounsfield-like values -- air -1000, an ellipsoidal body of soft tissue (~0..60 HU),
  an enhancing organ (~100 HU, label 1) and a hypodense lesion inside the organ (~45 HU, label 2);
  anisotropic spacing (1, 1, 2) mm.
* MRI-like task: two channels ("T2", "ADC") with positive, arbitrary-scale intensities and a different
  contrast per channel for the two zones (labels 1 and 2), like the prostate task.

Everything is deterministic for a given seed; object positions and sizes are random.  Images are small
(about 48-56 x 48-56 x 24-32 voxels) so that nnU-Net plans a small network and runs fast on two CPU cores.
"""
import json
import os

import nibabel as nib
import numpy as np

CT_LABELS = {"0": "background", "1": "organ", "2": "lesion"}
MRI_LABELS = {"0": "background", "1": "peripheral zone", "2": "transition zone"}
MRI_MODALITIES = {"0": "T2", "1": "ADC"}


def _ellipsoid(shape, centre, radii):
    """Boolean mask of the voxels x with sum(((x - centre) / radii)^2) <= 1 (voxel units)."""
    grids = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    distance = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii))
    return distance <= 1.0


def _random_shape(rng, base=(52, 52, 28), jitter=(4, 4, 4)):
    """Image size (x, y, z) varying a little between cases, as in a real data set."""
    return tuple(int(b + rng.integers(-j, j + 1)) for b, j in zip(base, jitter))


def _affine(spacing, origin=(0.0, 0.0, 0.0)):
    """NIfTI affine (RAS) of an axis-aligned grid with the given voxel spacing in mm."""
    affine = np.diag(list(spacing) + [1.0])
    affine[:3, 3] = origin
    return affine


def _save_nifti(array, spacing, path, dtype):
    """Write ``array`` (x, y, z[, modality]) as NIfTI; for 4D the fourth zoom is 1, as in the Decathlon."""
    img = nib.Nifti1Image(np.asarray(array, dtype=dtype), _affine(spacing))
    zooms = tuple(spacing) + (1.0,) * (array.ndim - 3)
    img.header.set_zooms(zooms)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, path)


def _organ_and_lesion(rng, shape):
    """Random body, organ (inside body) and lesion (inside organ) masks for one case."""
    centre = np.array(shape) / 2.0 + rng.uniform(-2, 2, 3)
    body_radii = np.array(shape) * rng.uniform(0.38, 0.46, 3)
    body = _ellipsoid(shape, centre, body_radii)

    organ_radii = body_radii * rng.uniform(0.35, 0.5, 3)
    organ_centre = centre + rng.uniform(-0.3, 0.3, 3) * (body_radii - organ_radii)
    organ = _ellipsoid(shape, organ_centre, organ_radii) & body

    lesion_radii = organ_radii * rng.uniform(0.25, 0.4, 3)
    lesion_centre = organ_centre + rng.uniform(-0.4, 0.4, 3) * (organ_radii - lesion_radii)
    lesion = _ellipsoid(shape, lesion_centre, lesion_radii) & organ
    return body, organ, lesion


def make_ct_case(rng, shape=None):
    """One CT-like case: (image in HU as int16, label map as uint8), both shaped (x, y, z)."""
    shape = shape or _random_shape(rng)
    body, organ, lesion = _organ_and_lesion(rng, shape)
    image = np.full(shape, -1000.0) + rng.normal(0, 15, shape)
    # soft tissue with a smooth gradient (fat to muscle, roughly 0..60 HU)
    tissue = 30 + 25 * np.sin(np.linspace(0, np.pi, shape[0]))[:, None, None] - 20 + rng.normal(0, 10, shape)
    image[body] = tissue[body]
    image[organ] = rng.normal(100, 10, shape)[organ]
    image[lesion] = rng.normal(45, 10, shape)[lesion]
    label = np.zeros(shape, np.uint8)
    label[organ] = 1
    label[lesion] = 2
    return np.round(image).astype(np.int16), label


def write_unusual_sources(folder):
    """Into ``folder``: ``luna_like.mhd``/``.raw`` (a CT-like volume in LUNA16's MetaImage format, spacing
    0.8 x 0.8 x 2.5 mm, not the Decathlon's) and ``corrupt.nii.gz`` (random bytes). Returns the volume
    (x, y, z), for callers that write damaged copies of it."""
    import SimpleITK as sitk
    image, _ = make_ct_case(np.random.default_rng(7), shape=(44, 46, 20))
    mhd = sitk.GetImageFromArray(image.transpose(2, 1, 0))   # (x, y, z) -> SimpleITK's (z, y, x)
    mhd.SetSpacing((0.8, 0.8, 2.5))
    sitk.WriteImage(mhd, os.path.join(str(folder), "luna_like.mhd"))
    with open(os.path.join(str(folder), "corrupt.nii.gz"), "wb") as f:
        f.write(np.random.default_rng(1).bytes(3000))
    return image


def make_mri_case(rng, shape=None):
    """One 2-channel MRI-like case: (image (x, y, z, 2) float32, label map uint8 (x, y, z)).

    Channel 0 (T2): zone 1 bright, zone 2 intermediate.  Channel 1 (ADC): zone 1 high, zone 2 low --
    the two channels order the zones differently, so a network needs both.
    """
    shape = shape or _random_shape(rng, base=(50, 50, 26))
    body, zone1, zone2 = _organ_and_lesion(rng, shape)
    zone1 = zone1 & ~zone2
    gain = rng.uniform(0.8, 1.25)  # MRI has no absolute scale: every case gets its own gain
    t2 = np.abs(rng.normal(20, 5, shape))
    t2[body] = rng.normal(300, 30, shape)[body]
    t2[zone1] = rng.normal(600, 40, shape)[zone1]
    t2[zone2] = rng.normal(380, 40, shape)[zone2]
    adc = np.abs(rng.normal(5, 2, shape))
    adc[body] = rng.normal(1000, 80, shape)[body]
    adc[zone1] = rng.normal(1600, 100, shape)[zone1]
    adc[zone2] = rng.normal(700, 80, shape)[zone2]
    image = np.stack([t2 * gain, adc], axis=-1).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    label[zone1] = 1
    label[zone2] = 2
    return image, label


def _write_task(root, task_folder_name, description, modality, labels, make_case, spacing,
                num_training, num_test, seed, case_prefix, image_dtype):
    """Write a Decathlon-format task and return its folder."""
    rng = np.random.default_rng(seed)
    task_dir = os.path.join(root, task_folder_name)
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        os.makedirs(os.path.join(task_dir, sub), exist_ok=True)

    training, test = [], []
    for i in range(num_training + num_test):
        name = "%s_%03d.nii.gz" % (case_prefix, i)
        image, label = make_case(rng)
        if i < num_training:
            _save_nifti(image, spacing, os.path.join(task_dir, "imagesTr", name), image_dtype)
            _save_nifti(label, spacing, os.path.join(task_dir, "labelsTr", name), np.uint8)
            training.append({"image": "./imagesTr/" + name, "label": "./labelsTr/" + name})
        else:
            _save_nifti(image, spacing, os.path.join(task_dir, "imagesTs", name), image_dtype)
            test.append("./imagesTs/" + name)

    dataset = {
        "name": task_folder_name.split("_", 1)[1],
        "description": description,
        "reference": "synthetic test data (nnunet-genesis tests)",
        "licence": "CC-BY-SA 4.0",
        "release": "1.0 01/01/2024",
        "tensorImageSize": "4D" if len(modality) > 1 else "3D",
        "modality": modality,
        "labels": labels,
        "numTraining": num_training,
        "numTest": num_test,
        "training": training,
        "test": test,
    }
    with open(os.path.join(task_dir, "dataset.json"), "w") as f:
        json.dump(dataset, f, indent=4)
    return task_dir


def write_ct_task(root, task_folder_name="Task91_FakeCT", num_training=8, num_test=3, seed=0,
                  spacing=(1.0, 1.0, 2.0)):
    """Write a 1-channel CT-like Decathlon task (labels 1 organ, 2 lesion) under ``root``; returns its folder.

    The folder name must be ``TaskXX_Name`` with a two-digit id, as nnUNet_convert_decathlon_task demands.
    """
    return _write_task(root, task_folder_name, "Synthetic CT: organ and lesion", {"0": "CT"}, CT_LABELS,
                       make_ct_case, spacing, num_training, num_test, seed, "fakect", np.int16)


def write_mri_task(root, task_folder_name="Task92_FakeMRI", num_training=8, num_test=2, seed=1,
                   spacing=(0.75, 0.75, 2.5)):
    """Write a 2-channel (T2, ADC) MRI-like Decathlon task with 4D NIfTI images; returns its folder."""
    return _write_task(root, task_folder_name, "Synthetic bi-parametric MRI: two zones", MRI_MODALITIES,
                       MRI_LABELS, make_mri_case, spacing, num_training, num_test, seed, "fakemri", np.float32)
