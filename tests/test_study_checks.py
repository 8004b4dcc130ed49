"""nnUNet_genesis_study checks everything it can before the first training (#19 items 2 and 3): each bad
input below is refused with one line naming the file or option and the fault, exit status 2, and nothing
is trained. On the stock-planned Task901_FakeCT (8 training cases, 3 test images); the test label maps are
the fixture's own (regenerated from its seed)."""
import json
import os
import pickle
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pytest
import torch

from competition.cli import study_main
from tests.conftest import stock_command, subprocess_env
from tests.msd_fixtures import make_ct_case

CT_SPACING = (1.0, 1.0, 2.0)


def write_ct_test_labels(ct_task, folder, num_training=8, num_test=3, seed=0):
    """The true label maps of Task901_FakeCT's test images (tests/msd_fixtures.write_ct_task draws every case
    from one generator in order; the Decathlon layout ships no test labels), named CASE.nii.gz."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(num_training + num_test):
        _, label = make_ct_case(rng)
        if i >= num_training:
            reference = nib.load(os.path.join(ct_task.raw_dir, "imagesTs", "fakect_%03d_0000.nii.gz" % i))
            nib.save(nib.Nifti1Image(label.astype(np.uint8), reference.affine, reference.header),
                     os.path.join(folder, "fakect_%03d.nii.gz" % i))
    return str(folder)


@pytest.fixture(scope="module")
def study_inputs(ct_task, module_tmp_path_factory):
    root = module_tmp_path_factory.mktemp("study_checks")
    labels = write_ct_test_labels(ct_task, str(root / "labels"))
    weights = str(root / "w.model")
    torch.save({"w": torch.ones(1)}, weights)     # readable weights: never used, nothing trains here
    return {"root": root, "labels": labels, "images": os.path.join(ct_task.raw_dir, "imagesTs"), "weights": weights,
            "task": ct_task.task_name}


def _copy(folder, to):
    shutil.copytree(folder, to)
    return str(to)


def _save(array, like, path, dtype=np.uint8, spacing=None):
    affine = nib.load(like).affine.copy()
    if spacing:
        affine[:3, :3] = np.diag(spacing)
    nib.save(nib.Nifti1Image(np.asarray(array).astype(dtype), affine), path)


def _label_array(path):
    return np.asarray(nib.load(path).dataobj)


def bad_inputs(s, tmp):
    """{name: (extra arguments, labels folder, images folder, expected text)}: each made in ``tmp``."""
    L, I = s["labels"], s["images"]
    first = os.path.join(L, "fakect_008.nii.gz")
    cases = {}

    missing = _copy(L, tmp / "missing")
    os.remove(os.path.join(missing, "fakect_009.nii.gz"))
    cases["a label map missing"] = ([], missing, I, "no label map for 1 test image case(s)")
    extra = _copy(L, tmp / "extra")
    shutil.copy(first, os.path.join(extra, "fakect_099.nii.gz"))
    cases["an extra label map"] = ([], extra, I, "1 label map(s) have no test image")
    renamed = tmp / "renamed"
    renamed.mkdir()
    for name in os.listdir(L):
        shutil.copy(os.path.join(L, name), renamed / name.replace("fakect", "case"))
    cases["names that match no image"] = ([], str(renamed), I, "no label map for 3 test image case(s)")
    geometry = _copy(L, tmp / "geometry")
    _save(_label_array(first), first, os.path.join(geometry, "fakect_008.nii.gz"), spacing=(1.0, 1.0, 3.0))
    cases["a label map on another grid"] = ([], geometry, I, "spacing (1, 1, 3) differs from its test image")
    floats = _copy(L, tmp / "floats")
    _save(_label_array(first) * 0.5, first, os.path.join(floats, "fakect_008.nii.gz"), dtype=np.float32)
    cases["float labels"] = ([], floats, I, "non-integer or non-finite value(s)")
    outside = _copy(L, tmp / "outside")
    _save(_label_array(first) * 3, first, os.path.join(outside, "fakect_008.nii.gz"))
    cases["a label outside the task's"] = ([], outside, I, "label value(s) 3, 6")
    empty = tmp / "empty"
    empty.mkdir()
    cases["an empty labels folder"] = ([], str(empty), I, "no test label maps")
    cut = _copy(L, tmp / "cut")
    data = open(first, "rb").read()
    open(os.path.join(cut, "fakect_008.nii.gz"), "wb").write(data[:len(data) // 2])
    cases["a truncated label map"] = ([], cut, I, "truncated")
    cases["no labels folder"] = ([], str(tmp / "nowhere"), I, "test label folder does not exist")
    cut_images = _copy(I, tmp / "cut_images")
    image = os.path.join(cut_images, "fakect_009_0000.nii.gz")
    data = open(image, "rb").read()
    open(image, "wb").write(data[:len(data) // 2])
    cases["a truncated test image"] = ([], L, cut_images, "test image %s: truncated" % image)
    stray = _copy(I, tmp / "stray")
    shutil.copy(os.path.join(I, "fakect_008_0000.nii.gz"), os.path.join(stray, "notes.nii.gz"))
    cases["a stray image file"] = ([], L, stray, "are not nnU-Net test images of this 1-modality task")
    second = _copy(I, tmp / "second_modality")
    shutil.copy(os.path.join(I, "fakect_008_0000.nii.gz"), os.path.join(second, "fakect_008_0001.nii.gz"))
    cases["a second modality for a 1-modality task"] = ([], L, second, "fakect_008_0001.nii.gz")
    leaked_images, leaked_labels = _copy(I, tmp / "leaked_images"), _copy(L, tmp / "leaked_labels")
    shutil.copy(os.path.join(I, "fakect_008_0000.nii.gz"), os.path.join(leaked_images, "fakect_000_0000.nii.gz"))
    shutil.copy(first, os.path.join(leaked_labels, "fakect_000.nii.gz"))
    cases["a training case among the test cases"] = ([], leaked_labels, leaked_images,
                                                      "fakect_000 are training cases of the task")
    cases["no images folder"] = ([], L, str(tmp / "no_images"), "test image folder does not exist")
    cases["a negative seed"] = (["--seeds", "0", "-1"], L, I, "seed -1 is negative")
    cases["a seed given twice"] = (["--seeds", "1", "2", "1"], L, I, "seed(s) 1 given twice")
    cases["a seed that is no integer"] = (["--seeds", "1.5"], L, I, "seed '1.5' is not an integer")
    cases["a count given twice"] = (["--counts", "2", "02"], L, I, "count(s) 2 given twice")
    cases["count 0"] = (["--counts", "0"], L, I, "count '0' is neither a positive number nor 'all'")
    cases["more cases than the fold has"] = (["--counts", "9"], L, I, "count 9 is more than the 6 training cases")
    cases["'all' under two names"] = (["--counts", "6", "all"], L, I, "counts 6 and 'all' are the same 6 cases")
    cases["-l of a label the task lacks"] = (["-l", "1", "3"], L, I, "-l: label 3 is not one of Task901_FakeCT's labels")
    cases["-l 0"] = (["-l", "0"], L, I, "-l: label 0 is not a foreground label")
    cases["-l twice the same"] = (["-l", "1", "1"], L, I, "-l: label(s) 1 given twice")
    cases["a negative tolerance"] = (["--tolerance", "-1"], L, I, "--tolerance must be a non-negative number")
    cases["the same trainer for both arms"] = (["--genesis_trainer", "nnUNetTrainerV2"], L, I,
                                               "both nnUNetTrainerV2: the two arms need different trainers")
    cases["a fold that does not exist"] = (["-f", "7"], L, I, "fold 7 does not exist (5 folds)")
    cases["a task that is not planned"] = (["-t", "977"], L, I, "no such planned task with id 977 (looked in ")
    cases["a task name with a typo"] = (["-t", "Task901_FakeCt"], L, I,
                                        "nearest existing: Task901_FakeCT")
    return cases


def _study(s, out, labels, images, *extra):
    return ["-t", s["task"], "-w", s["weights"], "-o", str(out), "--test_labels", labels, "--test_images", images,
            "--scratch_trainer", "nnUNetTrainerV2", *extra]


def test_bad_inputs_are_refused_before_training_in_one_line(study_inputs, tmp_path, capsys):
    messages = {}
    for name, (extra, labels, images, expected) in bad_inputs(study_inputs, tmp_path).items():
        out = tmp_path / ("out_" + name.replace(" ", "_").replace("'", "").replace("/", ""))
        status = study_main(_study(study_inputs, out, labels, images, *extra))
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        messages[name] = captured.err.strip()
        assert status == 2, (name, captured.err)
        assert len(lines) == 1 and expected in lines[0], (name, captured.err)
        assert not os.path.exists(out / "nnUNet_results" / "nnUNet"), name          # nothing trained
    print("\n".join("%s -> %s" % kv for kv in messages.items()))


def test_output_folders_that_are_not_the_studys(study_inputs, tmp_path, capsys):
    s = study_inputs
    inside = _copy(s["labels"], tmp_path / "labels")
    assert study_main(_study(s, os.path.join(inside, "study"), inside, s["images"])) == 2
    assert "lies inside the test label folder" in capsys.readouterr().err
    assert sorted(os.listdir(inside)) == sorted(os.listdir(s["labels"]))     # nothing written into the input
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep")
    assert study_main(_study(s, foreign, s["labels"], s["images"])) == 2
    assert "is not empty and holds no study_record.json" in capsys.readouterr().err
    assert os.listdir(foreign) == ["precious.txt"]
    inside_images = _copy(s["images"], tmp_path / "images")
    assert study_main(_study(s, os.path.join(inside_images, "study"), s["labels"], inside_images)) == 2
    assert "lies inside the test image folder" in capsys.readouterr().err
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "study_record.json").write_text("{not json")
    assert study_main(_study(s, damaged, s["labels"], s["images"])) == 2
    err = capsys.readouterr().err
    assert "study_record.json is damaged" in err and "start afresh with a new -o" in err
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert study_main(_study(s, a_file, s["labels"], s["images"])) == 2
    assert "exists and is not a folder" in capsys.readouterr().err


def test_a_task_with_fewer_than_5_cases_and_no_splits_file(tmp_path):
    """#19 item 3, through the console script: one line saying what to do, no traceback."""
    task = tmp_path / "preprocessed" / "Task903_Four"
    task.mkdir(parents=True)
    (task / "nnUNetPlansv2.1_plans_3D.pkl").write_bytes(pickle.dumps({"plans_per_stage": {}}))
    (task / "dataset.json").write_text(json.dumps({
        "training": [{"image": "./imagesTr/c%d.nii.gz" % i, "label": "./labelsTr/c%d.nii.gz" % i} for i in range(4)],
        "labels": {"0": "background", "1": "organ"}, "modality": {"0": "CT"}}))
    weights = tmp_path / "w.model"
    torch.save({"w": torch.ones(1)}, str(weights))
    (tmp_path / "labels").mkdir()
    done = subprocess.run([stock_command("nnUNet_genesis_study"), "-t", "903", "-w", str(weights), "-o",
                           str(tmp_path / "out"), "--test_labels", str(tmp_path / "labels")],
                          env=subprocess_env(nnUNet_preprocessed=str(tmp_path / "preprocessed")),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "4 training case(s) and no splits_final.pkl" in done.stderr and "write a splits_final.pkl" in done.stderr
    assert not (tmp_path / "out").exists()


def test_unreadable_weights_are_refused_first(tmp_path):
    env = subprocess_env(nnUNet_preprocessed=str(tmp_path))
    for weights in (tmp_path / "none.model", tmp_path):
        done = subprocess.run([stock_command("nnUNet_genesis_study"), "-t", "Task901_X", "-w", str(weights),
                               "-o", str(tmp_path / "out"), "--test_labels", str(tmp_path)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert done.returncode == 2 and str(weights) in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
