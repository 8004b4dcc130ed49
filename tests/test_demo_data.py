"""The demo task made from nilearn's MNI152 template (competition/demo_data.py): layout, geometry, labels,
variation between cases, reproducibility, where the test labels go, and that the data are the template's."""
import filecmp
import json
import os
import re

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from nibabel.processing import resample_from_to

from competition.demo_data import (TEMPLATE_FILES, DemoDataError, demo_test_labels_dir, describe_demo_data,
                                   nilearn_data_folder, write_mni_demo_task)
from tests.conftest import run_stock, stock_command, subprocess_env

# The keys of a Decathlon dataset.json, as in the ten official tasks.
DECATHLON_KEYS = {"name", "description", "reference", "licence", "release", "tensorImageSize", "modality",
                  "labels", "numTraining", "numTest", "training", "test"}
CASE_FILE = re.compile(r"^brain_\d{3}\.nii\.gz$")
# nnU-Net task id for the conversion test; unused by the other test modules.
CONVERT_TASK_ID = 948


@pytest.fixture(scope="module")
def demo_task(module_tmp_path_factory):
    """The default demo task: 8 training + 4 test cases, seed 0, 4 mm."""
    return write_mni_demo_task(str(module_tmp_path_factory.mktemp("demo_default")))


@pytest.fixture(scope="module")
def small_task(module_tmp_path_factory):
    """2 training + 1 test case with the default seed: its cases must be the default task's first three."""
    return write_mni_demo_task(str(module_tmp_path_factory.mktemp("demo_small")), num_training=2, num_test=1)


def _dataset(task_dir):
    with open(os.path.join(task_dir, "dataset.json")) as f:
        return json.load(f)


def _all_files(folder):
    return sorted(os.path.relpath(os.path.join(root, f), folder) for root, _, files in os.walk(folder) for f in files)


def _geometry(path):
    image = sitk.ReadImage(path)
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def _cases(task_dir):
    """(image path, label path) of every case: training labels from labelsTr, test labels from outside."""
    pairs = [(os.path.join(task_dir, "imagesTr", f), os.path.join(task_dir, "labelsTr", f))
             for f in sorted(os.listdir(os.path.join(task_dir, "imagesTr")))]
    pairs += [(os.path.join(task_dir, "imagesTs", f), os.path.join(demo_test_labels_dir(task_dir), f))
              for f in sorted(os.listdir(os.path.join(task_dir, "imagesTs")))]
    return pairs


def test_decathlon_layout_and_dataset_json(demo_task):
    assert os.path.basename(demo_task) == "Task11_BrainTissueDemo"
    assert sorted(os.listdir(demo_task)) == ["dataset.json", "imagesTr", "imagesTs", "labelsTr"]
    dataset = _dataset(demo_task)
    assert set(dataset) == DECATHLON_KEYS
    assert dataset["tensorImageSize"] == "3D"
    assert dataset["modality"] == {"0": "MRI"}
    assert dataset["labels"] == {"0": "background", "1": "grey matter", "2": "white matter"}
    assert dataset["numTraining"] == len(dataset["training"]) == 8
    assert dataset["numTest"] == len(dataset["test"]) == 4
    assert "Fonov" in dataset["reference"] and "nilearn" in dataset["reference"]
    assert "McGill University" in dataset["licence"]

    train_names = [os.path.basename(entry["image"]) for entry in dataset["training"]]
    for entry in dataset["training"]:
        assert entry["image"] == "./imagesTr/" + os.path.basename(entry["image"])
        assert entry["label"] == "./labelsTr/" + os.path.basename(entry["image"])
    test_names = [os.path.basename(path) for path in dataset["test"]]
    assert all(path == "./imagesTs/" + name for path, name in zip(dataset["test"], test_names))
    assert all(CASE_FILE.match(name) for name in train_names + test_names)
    assert not set(train_names) & set(test_names)
    # The lists and the folders agree exactly: nnU-Net's converter reads the folders, evaluation the lists.
    assert sorted(os.listdir(os.path.join(demo_task, "imagesTr"))) == sorted(train_names)
    assert sorted(os.listdir(os.path.join(demo_task, "labelsTr"))) == sorted(train_names)
    assert sorted(os.listdir(os.path.join(demo_task, "imagesTs"))) == sorted(test_names)
    # Deterministic split: the first cases train, the following ones test.
    assert train_names == ["brain_%03d.nii.gz" % i for i in range(1, 9)]
    assert test_names == ["brain_%03d.nii.gz" % i for i in range(9, 13)]


def test_image_and_label_share_geometry(demo_task):
    for image_path, label_path in _cases(demo_task):
        size, spacing, origin, direction = _geometry(image_path)
        assert (size, spacing, origin, direction) == _geometry(label_path), image_path
        assert np.allclose(spacing, (4.0, 4.0, 4.0)), image_path
        assert len(size) == 3
        image = nib.load(image_path)
        assert image.header["qform_code"] > 0 and image.header["sform_code"] > 0


def test_labels_are_grey_and_white_matter(demo_task):
    for image_path, label_path in _cases(demo_task):
        label_img = nib.load(label_path)
        assert np.issubdtype(label_img.get_data_dtype(), np.integer), label_path
        label = np.asarray(label_img.dataobj)
        assert set(np.unique(label)) == {0, 1, 2}, label_path
        # On a T1-weighted image white matter is brighter than grey matter: labels and image must agree.
        image = nib.load(image_path).get_fdata()
        assert image[label == 2].mean() > image[label == 1].mean(), image_path


def test_cases_differ_like_subjects(demo_task):
    images = [nib.load(image_path).get_fdata() for image_path, _ in _cases(demo_task)]
    labels = [np.asarray(nib.load(label_path).dataobj) for _, label_path in _cases(demo_task)]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            if images[i].shape == images[j].shape:
                assert not np.allclose(images[i], images[j]), (i, j)
                assert not np.array_equal(labels[i], labels[j]), (i, j)
    # The deformation changes the tissue volumes (voxel counts) from case to case.
    grey_volumes = [int((label == 1).sum()) for label in labels]
    assert len(set(grey_volumes)) == len(grey_volumes)


def test_same_seed_gives_identical_files_other_seed_does_not(tmp_path, small_task):
    again = write_mni_demo_task(str(tmp_path / "again"), num_training=2, num_test=1)
    files = _all_files(small_task)
    assert files == _all_files(again)
    _, mismatch, errors = filecmp.cmpfiles(small_task, again, files, shallow=False)
    assert mismatch == [] and errors == []
    _, mismatch, errors = filecmp.cmpfiles(demo_test_labels_dir(small_task), demo_test_labels_dir(again),
                                           ["brain_003.nii.gz"], shallow=False)
    assert mismatch == [] and errors == []

    other = write_mni_demo_task(str(tmp_path / "other"), num_training=2, num_test=1, seed=1)
    first = nib.load(os.path.join(small_task, "imagesTr", "brain_001.nii.gz")).get_fdata()
    first_other = nib.load(os.path.join(other, "imagesTr", "brain_001.nii.gz")).get_fdata()
    assert first.shape != first_other.shape or not np.allclose(first, first_other)


def test_a_case_does_not_depend_on_the_split_counts(demo_task, small_task):
    """Case i is made from (seed, i) alone: a smaller task holds the larger one's first cases."""
    for name in ("brain_001.nii.gz", "brain_002.nii.gz"):
        assert filecmp.cmp(os.path.join(small_task, "imagesTr", name), os.path.join(demo_task, "imagesTr", name),
                           shallow=False)
    small_test = nib.load(os.path.join(small_task, "imagesTs", "brain_003.nii.gz"))
    big_train = nib.load(os.path.join(demo_task, "imagesTr", "brain_003.nii.gz"))
    assert np.array_equal(small_test.get_fdata(), big_train.get_fdata())
    assert np.allclose(small_test.affine, big_train.affine)


def test_test_labels_are_written_outside_the_decathlon_folder(demo_task):
    labels_dir = demo_test_labels_dir(demo_task)
    assert os.path.isdir(labels_dir)
    assert os.path.commonpath([labels_dir, os.path.abspath(demo_task)]) != os.path.abspath(demo_task)
    assert sorted(os.listdir(labels_dir)) == sorted(os.listdir(os.path.join(demo_task, "imagesTs")))
    # Nothing inside the Decathlon folder holds a test label.
    test_names = set(os.listdir(labels_dir))
    inside = _all_files(demo_task)
    assert not [f for f in inside if os.path.basename(f) in test_names and not f.startswith("imagesTs")]


def test_the_data_are_the_nilearn_template(demo_task):
    """Each case's T1 correlates highly with the nilearn template resampled (here, by nibabel) onto its grid,
    and more than with the same template mirrored front to back -- a brain-shaped blob would not."""
    template = nib.load(os.path.join(nilearn_data_folder(), TEMPLATE_FILES["t1"]))
    mirrored = nib.Nifti1Image(np.ascontiguousarray(np.asarray(template.dataobj)[:, ::-1, :]), template.affine)
    correlations = []
    for image_path, _ in _cases(demo_task):
        case = nib.load(image_path)
        values = case.get_fdata().ravel()
        reference = resample_from_to(template, case, order=1).get_fdata().ravel()
        control = resample_from_to(mirrored, case, order=1).get_fdata().ravel()
        correlation = np.corrcoef(values, reference)[0, 1]
        assert correlation > np.corrcoef(values, control)[0, 1], image_path
        correlations.append(correlation)
    assert np.mean(correlations) > 0.8


def test_nnunet_converts_the_task(demo_task):
    """The stock converter accepts the folder and writes one _0000 image per case (3D, one modality)."""
    run_stock([stock_command("nnUNet_convert_decathlon_task"), "-i", demo_task, "-output_task_id",
               CONVERT_TASK_ID, "-p", 1], env=subprocess_env())
    raw = os.path.join(os.environ["nnUNet_raw_data_base"], "nnUNet_raw_data",
                       "Task%03d_BrainTissueDemo" % CONVERT_TASK_ID)
    assert sorted(os.listdir(os.path.join(raw, "imagesTr"))) == ["brain_%03d_0000.nii.gz" % i for i in range(1, 9)]
    assert sorted(os.listdir(os.path.join(raw, "imagesTs"))) == ["brain_%03d_0000.nii.gz" % i for i in range(9, 13)]


def test_bad_names_and_existing_folders_are_refused(tmp_path):
    for bad in ("Task04_Hippocampus", "Task1_Demo", "Task111_Demo", "BrainDemo", "Task11_Brain_Demo"):
        with pytest.raises(DemoDataError, match=re.escape(bad)):
            write_mni_demo_task(str(tmp_path), name=bad)
    with pytest.raises(DemoDataError, match="num_training"):
        write_mni_demo_task(str(tmp_path), num_training=1)

    existing = tmp_path / "Task11_BrainTissueDemo"
    existing.mkdir()
    (existing / "mine.txt").write_text("a user's file")
    with pytest.raises(FileExistsError, match="Task11_BrainTissueDemo"):
        write_mni_demo_task(str(tmp_path), num_training=2, num_test=1)
    assert (existing / "mine.txt").read_text() == "a user's file"

    # Asked to overwrite: the folder is replaced, so nothing stale is left for nnU-Net's converter to pick up.
    task = write_mni_demo_task(str(tmp_path), num_training=2, num_test=1, overwrite=True)
    assert not os.path.exists(os.path.join(task, "mine.txt"))
    assert sorted(os.listdir(os.path.join(task, "imagesTr"))) == ["brain_001.nii.gz", "brain_002.nii.gz"]


def test_description_is_one_paragraph_naming_the_source():
    text = describe_demo_data()
    assert "\n" not in text.strip()
    for word in ("nilearn", "MNI", "grey matter", "white matter", "4 mm"):
        assert word in text
