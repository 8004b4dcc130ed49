"""Decathlon submission builder/validator (competition/submission.py, nnUNet_genesis_submission).

Every test writes a small fake Decathlon root (Task04_Hippocampus: 3-D test images; Task05_Prostate:
4-D two-modality test images, as the Decathlon distributes them) and prediction folders with real
NIfTI files. The geometry of every image is chosen here, so expectations are known by construction.
"""
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import SimpleITK as sitk

from competition.submission import (GEOMETRY_TOLERANCE, SubmissionError, build_submission, case_faults,
                                    check_geometry, read_header, validate_submission)

SIZE = (12, 10, 8)                                  # x, y, z
FLIP_X = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

# task -> test image name -> (spacing, origin, direction) of the (first three dimensions of the) image
TEST_IMAGES = {
    "Task04_Hippocampus": {
        "hippocampus_267.nii.gz": ((1.0, 1.0, 1.0), (-10.0, 5.0, 2.5), IDENTITY),
        "hippocampus_268.nii.gz": ((1.0, 1.0, 1.0), (3.0, -7.0, 11.0), IDENTITY),
        "hippocampus_269.nii.gz": ((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), IDENTITY),
    },
    "Task05_Prostate": {
        "prostate_03.nii.gz": ((0.6, 0.6, 3.6), (80.0, -60.0, -40.0), FLIP_X),
        "prostate_04.nii.gz": ((0.625, 0.625, 3.0), (90.5, -61.25, -30.0), FLIP_X),
    },
}
MODALITIES = {"Task04_Hippocampus": {"0": "MRI"}, "Task05_Prostate": {"0": "T2", "1": "ADC"}}
LABELS = {"Task04_Hippocampus": {"0": "background", "1": "Anterior", "2": "Posterior"},
          "Task05_Prostate": {"0": "background", "1": "PZ", "2": "TZ"}}
NNUNET_NAMES = {"Task04_Hippocampus": "Task004_Hippocampus", "Task05_Prostate": "Task005_Prostate"}
SCRIPT = os.path.join(os.path.dirname(sys.executable), "nnUNet_genesis_submission")


def write_image(path, array, spacing, origin, direction):
    """array in numpy order (z, y, x) or (modality, z, y, x); a 4-D image gets a unit 4th axis."""
    image = sitk.GetImageFromArray(array, isVector=False)
    if array.ndim == 4:
        spacing, origin = tuple(spacing) + (1.0,), tuple(origin) + (0.0,)
        d = direction
        direction = (d[0], d[1], d[2], 0, d[3], d[4], d[5], 0, d[6], d[7], d[8], 0, 0, 0, 0, 1)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    sitk.WriteImage(image, path)


def make_decathlon_root(root):
    """Two Decathlon task folders, with dataset.json written as the Decathlon writes it."""
    rng = np.random.default_rng(0)
    for task, images in TEST_IMAGES.items():
        n_modalities = len(MODALITIES[task])
        os.makedirs(os.path.join(root, task, "imagesTs"))
        for name, (spacing, origin, direction) in images.items():
            shape = SIZE[::-1] if n_modalities == 1 else (n_modalities,) + SIZE[::-1]
            write_image(os.path.join(root, task, "imagesTs", name), rng.normal(size=shape).astype(np.float32),
                        spacing, origin, direction)
        # The Decathlon tarballs carry macOS resource forks next to the images; they are not test images.
        with open(os.path.join(root, task, "imagesTs", "._" + next(iter(images))), "wb") as f:
            f.write(b"\x00\x05\x16\x07")
        dataset = {
            "name": task.split("_", 1)[1], "description": "fake for tests", "reference": "none",
            "licence": "CC-BY-SA 4.0", "release": "1.0 04/05/2018",
            "tensorImageSize": "3D" if n_modalities == 1 else "4D",
            "modality": MODALITIES[task], "labels": LABELS[task],
            "numTraining": 1, "numTest": len(images),
            "training": [{"image": "./imagesTr/train_001.nii.gz", "label": "./labelsTr/train_001.nii.gz"}],
            "test": ["./imagesTs/%s" % name for name in images],
        }
        with open(os.path.join(root, task, "dataset.json"), "w") as f:
            json.dump(dataset, f, indent=4)
    return root


def write_prediction(path, labels=(0, 1, 2), spacing=None, origin=None, direction=None, test_image=None,
                     dtype=np.uint8, seed=1):
    """A 3-D label map on the grid of ``test_image`` = (task, name) unless geometry is given."""
    if test_image is not None:
        s, o, d = TEST_IMAGES[test_image[0]][test_image[1]]
        spacing, origin, direction = spacing or s, origin or o, direction or d
    array = np.random.default_rng(seed).choice(np.array(labels), size=SIZE[::-1]).astype(dtype)
    write_image(path, array, spacing, origin, direction)
    return array


def make_predictions(pred_root, folder_names=None):
    """Valid predictions for every test image; folder_names maps Decathlon task -> folder name."""
    for task, images in TEST_IMAGES.items():
        folder = os.path.join(pred_root, (folder_names or {}).get(task, task))
        os.makedirs(folder, exist_ok=True)
        for i, name in enumerate(images):
            write_prediction(os.path.join(folder, name), test_image=(task, name), seed=i)
    return pred_root


def snapshot(root):
    """{relative path: bytes} of every file under root."""
    files = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, root)] = f.read()
    return files


def expected_zip_names(tasks=TEST_IMAGES):
    return sorted("%s/%s" % (task, name) for task in tasks for name in TEST_IMAGES[task])


@pytest.fixture
def roots(tmp_path):
    decathlon = make_decathlon_root(str(tmp_path / "decathlon"))
    preds = make_predictions(str(tmp_path / "preds"))
    return decathlon, preds, str(tmp_path / "out")


TWO_TASKS = ["Task04_Hippocampus", "Task05_Prostate"]


def find(problems, file_name, fault_part):
    return [p for p in problems if os.path.basename(p.where) == file_name and fault_part in p.fault]


def test_all_problems_reported_at_once_nothing_written_then_fixed_zip_is_byte_identical(roots):
    decathlon, preds, out = roots
    os.makedirs(out)
    hippo, prostate = os.path.join(preds, "Task04_Hippocampus"), os.path.join(preds, "Task05_Prostate")
    os.remove(os.path.join(hippo, "hippocampus_268.nii.gz"))                                   # missing case
    bad_labels = write_prediction(os.path.join(hippo, "hippocampus_269.nii.gz"),
                                  test_image=("Task04_Hippocampus", "hippocampus_269.nii.gz"))
    bad_labels[0, 0, :5] = 3                                                                   # 5 voxels of label 3
    write_image(os.path.join(hippo, "hippocampus_269.nii.gz"), bad_labels, *TEST_IMAGES["Task04_Hippocampus"]
                ["hippocampus_269.nii.gz"])
    write_prediction(os.path.join(prostate, "prostate_04.nii.gz"), spacing=(0.625, 0.625, 3.5),  # z spacing off
                     test_image=("Task05_Prostate", "prostate_04.nii.gz"))
    with open(os.path.join(hippo, "notes.txt"), "w") as f:                                     # extra file
        f.write("not a prediction")
    before = snapshot(preds)
    out_zip = os.path.join(out, "submission.zip")

    with pytest.raises(SubmissionError) as info:
        build_submission(preds, decathlon, out_zip, tasks=TWO_TASKS)

    problems, message = info.value.result.problems, str(info.value)
    assert find(problems, "hippocampus_268.nii.gz", "missing")
    assert find(problems, "hippocampus_269.nii.gz", "label value(s) 3 in 5 voxel(s)")
    assert find(problems, "prostate_04.nii.gz", "spacing")
    assert find(problems, "notes.txt", "not a test case")
    assert len(problems) == 4
    for name in ("hippocampus_268.nii.gz", "hippocampus_269.nii.gz", "prostate_04.nii.gz", "notes.txt"):
        assert name in message
    summary = {row.task: row for row in info.value.result.summary}
    assert (summary["Task04_Hippocampus"].expected, summary["Task04_Hippocampus"].found,
            summary["Task04_Hippocampus"].problems, summary["Task04_Hippocampus"].status) == (3, 2, 3, "invalid")
    assert (summary["Task05_Prostate"].found, summary["Task05_Prostate"].problems) == (2, 1)
    assert os.listdir(out) == []                      # no zip, no temporary file left behind
    assert snapshot(preds) == before

    # Fix every fault; now the zip holds exactly one entry per test image, byte-identical to its source.
    os.remove(os.path.join(hippo, "notes.txt"))
    for task in TEST_IMAGES:
        for name in TEST_IMAGES[task]:
            write_prediction(os.path.join(preds, task, name), test_image=(task, name))
    before = snapshot(preds)
    result = build_submission(preds, decathlon, out_zip, tasks=TWO_TASKS)
    assert result.ok and [row.status for row in result.summary] == ["ok", "ok"]
    with zipfile.ZipFile(out_zip) as archive:
        assert sorted(archive.namelist()) == expected_zip_names()
        for name in archive.namelist():
            assert archive.read(name) == before[name.replace("/", os.sep)]
            assert archive.getinfo(name).compress_type == zipfile.ZIP_STORED   # .nii.gz: already compressed
    assert snapshot(preds) == before
    assert os.listdir(out) == ["submission.zip"]


def test_nnunet_folder_names_are_accepted_and_both_names_are_ambiguous(tmp_path):
    decathlon = make_decathlon_root(str(tmp_path / "decathlon"))
    preds = make_predictions(str(tmp_path / "preds"), folder_names=NNUNET_NAMES)
    out_zip = str(tmp_path / "submission.zip")
    build_submission(preds, decathlon, out_zip, tasks=["Task004_Hippocampus", "5"])
    with zipfile.ZipFile(out_zip) as archive:
        assert sorted(archive.namelist()) == expected_zip_names()        # named as the Decathlon in the zip

    make_predictions(preds)                           # now Task04_Hippocampus exists beside Task004_Hippocampus
    result = validate_submission(preds, decathlon, tasks=TWO_TASKS)
    ambiguous = [p for p in result.problems if "ambiguous" in p.fault]
    assert len(ambiguous) == 2
    assert "Task004_Hippocampus" in str(ambiguous[0]) and "Task04_Hippocampus" in str(ambiguous[0])
    assert [row.status for row in result.summary] == ["invalid", "invalid"]      # present twice, not missing


V2_NAMES = {"Task04_Hippocampus": "Dataset004_Hippocampus", "Task05_Prostate": "Dataset005_Prostate"}
# what nnUNetv2_predict writes beside the predictions (nnunetv2/inference/predict_from_raw_data.py)
V2_BY_PRODUCTS = ("plans.json", "dataset.json", "predict_from_raw_data_args.json")


def test_nnunet_v2_prediction_folders_are_accepted_unchanged(tmp_path):
    decathlon = make_decathlon_root(str(tmp_path / "decathlon"))
    preds = make_predictions(str(tmp_path / "preds"), folder_names=V2_NAMES)
    for folder in V2_NAMES.values():
        for name in V2_BY_PRODUCTS:
            with open(os.path.join(preds, folder, name), "w") as f:
                f.write("{}")
    result = validate_submission(preds, decathlon, tasks=TWO_TASKS)
    assert result.problems == []
    by_products = sorted(os.path.basename(w.split(":")[0]) for w in result.warnings if "by-product" in w)
    assert by_products == sorted(V2_BY_PRODUCTS * 2)
    out_zip = str(tmp_path / "submission.zip")
    build_submission(preds, decathlon, out_zip, tasks=TWO_TASKS)
    with zipfile.ZipFile(out_zip) as archive:
        assert sorted(archive.namelist()) == expected_zip_names()        # named as the Decathlon in the zip

    make_predictions(preds, folder_names=NNUNET_NAMES)   # v1's Task004_Hippocampus beside v2's Dataset004_...
    ambiguous = [p for p in validate_submission(preds, decathlon, tasks=TWO_TASKS).problems if "ambiguous" in p.fault]
    assert len(ambiguous) == 2 and "Dataset004_Hippocampus" in ambiguous[0].fault \
        and "Task004_Hippocampus" in ambiguous[0].fault


def test_failed_write_leaves_existing_zip_and_no_temporary_file(roots, tmp_path, monkeypatch):
    decathlon, preds, out = roots
    os.makedirs(out)
    out_zip = os.path.join(out, "submission.zip")
    with open(out_zip, "wb") as f:
        f.write(b"an earlier submission")
    real_write, written = zipfile.ZipFile.write, []

    def write_then_fail(self, filename, arcname=None, *args, **kwargs):
        if written:                                    # the disk fills up on the second file
            raise OSError(28, "No space left on device")
        written.append(arcname)
        return real_write(self, filename, arcname, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "write", write_then_fail)
    with pytest.raises(OSError, match="No space left"):
        build_submission(preds, decathlon, out_zip, tasks=TWO_TASKS, overwrite=True)
    assert written                                     # the failure did happen mid-write
    assert os.listdir(out) == ["submission.zip"]
    with open(out_zip, "rb") as f:
        assert f.read() == b"an earlier submission"


def test_check_only_writes_nothing(roots, tmp_path):
    decathlon, preds, _ = roots
    before_tree = sorted(os.listdir(tmp_path))
    result = build_submission(preds, decathlon, str(tmp_path / "submission.zip"), tasks=TWO_TASKS, check_only=True)
    assert result.ok and len(result.files) == 5
    assert sorted(os.listdir(tmp_path)) == before_tree


def test_existing_zip_is_kept_without_overwrite(roots, tmp_path):
    decathlon, preds, _ = roots
    out_zip = str(tmp_path / "submission.zip")
    with open(out_zip, "wb") as f:
        f.write(b"an earlier submission")
    with pytest.raises(SubmissionError, match="already exists"):
        build_submission(preds, decathlon, out_zip, tasks=TWO_TASKS)
    with open(out_zip, "rb") as f:
        assert f.read() == b"an earlier submission"
    build_submission(preds, decathlon, out_zip, tasks=TWO_TASKS, overwrite=True)
    with zipfile.ZipFile(out_zip) as archive:
        assert sorted(archive.namelist()) == expected_zip_names()


def test_all_ten_tasks_expected_by_default_and_subset_warns(roots):
    decathlon, preds, _ = roots
    result = validate_submission(preds, decathlon)
    missing = [row.task for row in result.summary if row.status == "missing"]
    assert missing == ["Task01_BrainTumour", "Task02_Heart", "Task03_Liver", "Task06_Lung", "Task07_Pancreas",
                       "Task08_HepaticVessel", "Task09_Spleen", "Task10_Colon"]
    assert any(p.task == "Task01_BrainTumour" and "no prediction folder" in p.fault for p in result.problems)
    assert [row.status for row in result.summary if row.task in TWO_TASKS] == ["ok", "ok"]

    result = validate_submission(preds, decathlon, tasks=["Hippocampus"])
    assert result.ok and [row.task for row in result.summary] == ["Task04_Hippocampus"]
    assert len(result.warnings) == 1
    assert "score 0" in result.warnings[0] and "Task05_Prostate" in result.warnings[0]

    result = validate_submission(preds, decathlon, tasks=["Task04_Hippocampus", "Task42_Nothing"])
    assert [str(p) for p in result.problems if p.where == "--tasks"] and "Task42_Nothing" in str(result.problems[0])


def test_header_faults_missing_test_image_and_nnunet_by_products(roots):
    decathlon, preds, _ = roots
    hippo, prostate = os.path.join(preds, "Task04_Hippocampus"), os.path.join(preds, "Task05_Prostate")
    write_prediction(os.path.join(hippo, "hippocampus_267.nii.gz"), dtype=np.float32,
                     test_image=("Task04_Hippocampus", "hippocampus_267.nii.gz"))
    write_prediction(os.path.join(hippo, "hippocampus_268.nii.gz"), origin=(3.0, -7.0, 12.0),
                     direction=FLIP_X, test_image=("Task04_Hippocampus", "hippocampus_268.nii.gz"))
    # A 4-D prediction (e.g. softmax saved by mistake) on the right grid.
    write_image(os.path.join(prostate, "prostate_03.nii.gz"), np.zeros((2,) + SIZE[::-1], np.uint8),
                *TEST_IMAGES["Task05_Prostate"]["prostate_03.nii.gz"])
    os.remove(os.path.join(decathlon, "Task05_Prostate", "imagesTs", "prostate_04.nii.gz"))
    plain = sitk.ReadImage(os.path.join(hippo, "hippocampus_269.nii.gz"))    # plain NIfTI behind a .gz name
    sitk.WriteImage(plain, os.path.join(hippo, "plain.nii"))
    os.replace(os.path.join(hippo, "plain.nii"), os.path.join(hippo, "hippocampus_269.nii.gz"))
    for by_product in ("plans.pkl", "hippocampus_267.npz", "hippocampus_267.pkl"):       # nnUNet_predict leaves these
        with open(os.path.join(hippo, by_product), "wb") as f:
            f.write(b"nnU-Net")
    with open(os.path.join(hippo, "hippocampus_267.nii"), "wb") as f:                    # a misnamed copy
        f.write(b"x")

    result = validate_submission(preds, decathlon, tasks=TWO_TASKS)
    problems = result.problems

    assert find(problems, "hippocampus_267.nii.gz", "pixel type is 32-bit float")
    assert find(problems, "hippocampus_268.nii.gz", "origin (3, -7, 12) differs from the test image's (3, -7, 11)")
    assert find(problems, "hippocampus_268.nii.gz", "direction")
    assert find(problems, "hippocampus_269.nii.gz", "not gzip-compressed")
    assert find(problems, "prostate_03.nii.gz", "is 4-D")
    assert find(problems, "prostate_04.nii.gz", "test image listed in")      # the Decathlon image is missing
    assert find(problems, "hippocampus_267.nii", "another extension")
    assert not [p for p in problems if os.path.basename(p.where) in
                ("plans.pkl", "hippocampus_267.npz", "hippocampus_267.pkl")]
    assert len(problems) == 7                   # the seven faults asserted above (268 has two), nothing else
    by_product_warnings = [w for w in result.warnings if "by-product" in w]
    assert sorted(os.path.basename(w.split(":")[0]) for w in by_product_warnings) == \
        ["hippocampus_267.npz", "hippocampus_267.pkl", "plans.pkl"]
    assert "by-product" not in str(result.files) and len(result.files) == 5
    # The 4-D test image's first three dimensions are the grid: prostate_04's prediction is only
    # checked for what does not need the image, prostate_03 is only faulted for being 4-D.
    assert not find(problems, "prostate_03.nii.gz", "size")


def test_geometry_tolerance_and_4d_test_image(tmp_path):
    image = str(tmp_path / "image.nii.gz")
    spacing, origin, direction = (0.6, 0.6, 3.6), (80.0, -60.0, -40.0), FLIP_X
    write_image(image, np.zeros((2,) + SIZE[::-1], np.float32), spacing, origin, direction)
    header = read_header(image)
    assert header.dimension == 4 and header.size == SIZE + (2,)
    spatial = header.first_three_dimensions()
    assert spatial.size == SIZE and np.allclose(spatial.direction, FLIP_X) and np.allclose(spatial.origin, origin)

    prediction = str(tmp_path / "prediction.nii.gz")
    small = GEOMETRY_TOLERANCE / 10        # well inside the tolerance: an honest copy of the header
    write_prediction(prediction, spacing=(0.6 * (1 + small), 0.6, 3.6), origin=(80.0 + small, -60.0, -40.0),
                     direction=direction)
    assert check_geometry(prediction, image) == []
    write_prediction(prediction, spacing=(0.6, 0.6, 3.6 * 1.001), origin=origin, direction=direction)
    assert [f for f in check_geometry(prediction, image) if f.startswith("spacing")]
    write_prediction(prediction, spacing=spacing, origin=(80.0, -60.1, -40.0), direction=direction)
    assert [f for f in check_geometry(prediction, image) if f.startswith("origin")]
    write_prediction(prediction, spacing=(0.6, 0.6, 3.6), origin=origin, direction=IDENTITY)
    assert [f for f in check_geometry(prediction, image) if f.startswith("direction")]


def test_unreadable_prediction_is_reported_not_raised(tmp_path):
    garbage = str(tmp_path / "case.nii.gz")
    with open(garbage, "wb") as f:
        f.write(b"this is no image")
    faults = case_faults(garbage, None, [0, 1])
    assert len(faults) == 2
    assert "not gzip-compressed" in faults[0] and "cannot be read as an image" in faults[1]


def _bytes_read_by_this_process():
    """rchar of /proc/self/io: bytes this process got from read()/pread() calls, page cache or not."""
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise OSError("no rchar in /proc/self/io")


def test_geometry_check_reads_headers_not_voxel_data(tmp_path):
    """The geometry check must not read voxel data (a Liver test image is hundreds of MB).

    Counting bytes read: /proc/self/io ``rchar`` counts every byte handed to this process by read()
    calls, whether it came from disk or page cache, so it measures what the reader asks for. Two
    uncompressed 256x256x200 int16 NIfTI files (26 MB each): check_geometry on them must read less than
    a tenth of one file, while a full sitk.ReadImage of one file - the control, showing the counter
    sees this reader's reads at all - must read at least its size. (A file with truncated voxel data
    would not do: SimpleITK reads it without complaint, filling zeros.)
    """
    try:
        _bytes_read_by_this_process()
    except OSError:
        pytest.skip("/proc/self/io not available")
    paths = [str(tmp_path / name) for name in ("image.nii", "prediction.nii")]
    big = sitk.GetImageFromArray(np.ones((200, 256, 256), np.int16))
    for path in paths:
        sitk.WriteImage(big, path)
    file_size = os.path.getsize(paths[0])
    assert file_size > 256 * 256 * 200 * 2

    start = _bytes_read_by_this_process()
    assert check_geometry(paths[1], paths[0]) == []
    header_bytes = _bytes_read_by_this_process() - start

    start = _bytes_read_by_this_process()
    sitk.ReadImage(paths[0])
    full_bytes = _bytes_read_by_this_process() - start

    assert full_bytes >= file_size
    assert header_bytes < file_size / 10


def test_console_script_end_to_end(roots, tmp_path):
    decathlon, preds, _ = roots
    out_zip = str(tmp_path / "submission.zip")
    args = [SCRIPT, "-i", preds, "-d", decathlon, "-o", out_zip, "--tasks", "Task04_Hippocampus", "5"]

    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Task05_Prostate" in done.stdout and "ok" in done.stdout
    with zipfile.ZipFile(out_zip) as archive:
        assert sorted(archive.namelist()) == expected_zip_names()

    os.remove(out_zip)
    done = subprocess.run(args + ["--check_only"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not os.path.exists(out_zip)

    os.remove(os.path.join(preds, "Task05_Prostate", "prostate_03.nii.gz"))
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode != 0
    assert "prostate_03.nii.gz" in done.stderr and "missing" in done.stderr
    assert not os.path.exists(out_zip)
