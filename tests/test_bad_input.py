"""Issue #19 (items 4, 6-10 and "outputs never inside inputs"): bad input ends in one line, never in lost data.

Real NIfTI / MetaImage files, real nnU-Net (the session's planned Task901_FakeCT), the installed console
scripts. Write failures are made real with a file-size limit (RLIMIT_FSIZE, as ``ulimit -f``) in the child.
"""
import errno
import json
import os
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunet_genesis.io.atomic import WriteError
from tests.conftest import stock_command
from tests.test_integrity import file_bytes, hidden_files, labels_case, one_error_line, run, tree_bytes, \
    truncate_gzip_stream, write_labels
from tests.test_submission import SCRIPT as SUBMISSION, make_decathlon_root, make_predictions

EXIT_BAD_INPUT, EXIT_FILE_ERROR = 2, 4


# ------------------------------------------------------------------------------------------- output sets (item 6)

def test_an_output_set_is_replaced_whole_or_not_at_all(tmp_path):
    from nnunet_genesis.io.atomic import output_set
    for name, text in (("a.txt", "old a"), ("b.json", "\"old b\""), ("old.png", "old png")):
        (tmp_path / name).write_text(text)
    before = tree_bytes(tmp_path)
    with pytest.raises(RuntimeError):
        with output_set(str(tmp_path)) as files:
            files.write_text("a.txt", "new a")
            raise RuntimeError("the next file could not be computed")
    assert tree_bytes(tmp_path) == before and hidden_files(tmp_path) == []

    def full_disk(tmp):
        raise OSError(errno.ENOSPC, "No space left on device", tmp)
    with pytest.raises(WriteError, match="cannot write %s: No space left" % (tmp_path / "b.json")):
        with output_set(str(tmp_path)) as files:
            files.write_text("a.txt", "new a")
            files.write("b.json", full_disk)
    assert tree_bytes(tmp_path) == before and hidden_files(tmp_path) == []

    # committed: every member new, an earlier member not written again (stale) removed, nothing else touched
    (tmp_path / "notes.txt").write_text("the user's")
    with output_set(str(tmp_path), stale=["old.png"]) as files:
        files.write_text("a.txt", "new a")
        files.write_json("b.json", {"b": "new"})
    assert (tmp_path / "a.txt").read_text() == "new a" and json.loads((tmp_path / "b.json").read_text()) == {"b": "new"}
    assert not (tmp_path / "old.png").exists() and (tmp_path / "notes.txt").read_text() == "the user's"
    assert hidden_files(tmp_path) == []


def _evaluation_inputs(root):
    ref, pred_a, pred_b = root / "ref", root / "pred_a", root / "pred_b"
    for folder in (ref, pred_a, pred_b):
        folder.mkdir()
    for case in ("case_000", "case_001"):
        write_labels(labels_case(), ref / (case + ".nii.gz"))
        write_labels(labels_case(), pred_a / (case + ".nii.gz"))
        write_labels(labels_case(shift=1), pred_b / (case + ".nii.gz"))
    return ref, pred_a, pred_b


def test_evaluate_after_a_failed_write_keeps_the_earlier_set(tmp_path):
    ref, pred_a, pred_b = _evaluation_inputs(tmp_path)
    evaluate = stock_command("nnUNet_genesis_evaluate")
    out = tmp_path / "eval"
    assert run([evaluate, "-ref", ref, "-pred", pred_a, "-o", out, "-np", 1]).returncode == 0
    before = tree_bytes(out)
    # room for the new per_case.csv, not for the new summary.json
    limit = (len(before[str(out / "per_case.csv")]) + len(before[str(out / "summary.json")])) // 2
    assert len(before[str(out / "per_case.csv")]) + 200 < limit
    done = run([evaluate, "-ref", ref, "-pred", pred_b, "-o", out, "-np", 1], max_file_bytes=limit)
    assert done.returncode == EXIT_FILE_ERROR
    assert "summary.json" in one_error_line(done, "nnUNet_genesis_evaluate")
    assert tree_bytes(out) == before and hidden_files(out) == []   # all old: no new per_case.csv beside it


def test_compare_after_a_failed_write_keeps_the_earlier_set(tmp_path):
    ref, pred_a, pred_b = _evaluation_inputs(tmp_path)
    evaluate, compare = stock_command("nnUNet_genesis_evaluate"), stock_command("nnUNet_genesis_compare")
    for pred, out in ((pred_a, "eval_a"), (pred_b, "eval_b"), (pred_a, "eval_c")):
        assert run([evaluate, "-ref", ref, "-pred", pred, "-o", tmp_path / out, "-np", 1]).returncode == 0
    out = tmp_path / "cmp"
    assert run([compare, "-a", tmp_path / "eval_a", "-b", tmp_path / "eval_b", "-o", out]).returncode == 0
    before = tree_bytes(out)
    # room for compare.md, not for compare.png
    limit = 2 * len(before[str(out / "compare.md")]) + 500
    assert limit < len(before[str(out / "compare.png")]) / 2
    done = run([compare, "-a", tmp_path / "eval_a", "-b", tmp_path / "eval_c", "-o", out], max_file_bytes=limit)
    assert done.returncode == EXIT_FILE_ERROR and "compare.png" in one_error_line(done, "nnUNet_genesis_compare")
    assert tree_bytes(out) == before and hidden_files(out) == []


def test_restoration_report_after_a_failed_write_keeps_the_earlier_set(tmp_path, monkeypatch):
    from nnunet_genesis.pretraining import previews
    from nnunet_genesis.pretraining.validation import restoration_report
    rng = np.random.default_rng(0)
    cases = {"case_%d" % i: rng.normal(size=(1, 20, 20, 20)).astype(np.float32) for i in range(2)}

    def score(seed):
        torch.manual_seed(seed)
        return restoration_report(torch.nn.Conv3d(1, 1, 3, padding=1), cases, (12, 12, 12), str(tmp_path / "out"),
                                  max_previews=2)
    score(0)
    before = tree_bytes(tmp_path / "out")
    assert len([p for p in before if p.endswith(".png")]) >= 4
    drawn, real = [], previews.save_preview_grid

    def third_png_fails(columns, path, **kwargs):
        drawn.append(path)
        if len(drawn) == 3:
            raise OSError(errno.EFBIG, "File too large", path)
        return real(columns, path, **kwargs)
    monkeypatch.setattr(previews, "save_preview_grid", third_png_fails)
    with pytest.raises(WriteError, match="File too large"):
        score(1)
    assert tree_bytes(tmp_path / "out") == before and hidden_files(tmp_path / "out") == []


# ------------------------------------------------------------------------------ labels only predicted (item 9)

def test_evaluate_reports_and_scores_a_label_only_in_the_predictions(tmp_path):
    ref, pred, _ = _evaluation_inputs(tmp_path)
    extra = labels_case()
    extra[11:13, 2:5, 14:18] = 3                      # 2 x 3 x 4 = 24 voxels of a label no reference has
    write_labels(extra, pred / "case_001.nii.gz")
    evaluate = stock_command("nnUNet_genesis_evaluate")
    done = run([evaluate, "-ref", ref, "-pred", pred, "-o", tmp_path / "eval", "-np", 1])
    assert done.returncode == 0, done.stderr
    warning = [line for line in done.stderr.splitlines() if "label 3" in line]
    assert len(warning) == 1 and "case_001 (24 voxels)" in warning[0] and "false positives" in warning[0]
    with open(tmp_path / "eval" / "summary.json") as f:
        summary = json.load(f)
    assert summary["labels_only_in_predictions"] == {"3": {"case_001": 24}}
    assert "3" in summary["labels"]
    # label 3 scored: its false positives give Dice 0 in case_001 (case_000: neither has it, Dice 1)
    assert summary["statistics"]["3"]["dice"]["mean"] == pytest.approx(0.5)

    done = run([evaluate, "-ref", ref, "-pred", pred, "-o", tmp_path / "eval_l", "-np", 1, "-l", 1, 2])
    assert done.returncode == 0
    assert [line for line in done.stderr.splitlines() if "label 3" in line and "NOT scored" in line]


# ---------------------------------------------------------------------------- outputs inside inputs (item 4)

def test_submission_zip_inside_the_predictions_is_refused_and_no_prediction_is_replaced(tmp_path):
    decathlon = make_decathlon_root(str(tmp_path / "decathlon"))
    preds = make_predictions(str(tmp_path / "preds"))
    before = tree_bytes(preds)
    prediction = os.path.join(preds, "Task04_Hippocampus", "hippocampus_267.nii.gz")
    for out, extra in ((os.path.join(preds, "submission.zip"), []), (prediction, ["--overwrite"]),
                       (os.path.join(decathlon, "submission.zip"), [])):
        done = run([SUBMISSION, "-i", preds, "-d", decathlon, "-o", out, "--tasks", "4", "5"] + extra)
        assert done.returncode == EXIT_BAD_INPUT
        line = one_error_line(done, "nnUNet_genesis_submission")
        assert out in line and ("lies inside the input folder" in line or "is the input" in line)
    assert tree_bytes(preds) == before and not os.path.exists(os.path.join(decathlon, "submission.zip"))


def test_outputs_inside_inputs_are_refused_by_evaluate_and_compare(tmp_path):
    ref, pred, _ = _evaluation_inputs(tmp_path)
    evaluate, compare = stock_command("nnUNet_genesis_evaluate"), stock_command("nnUNet_genesis_compare")
    before = tree_bytes(tmp_path)
    for out in (pred, pred / "scores", ref / "sub" / "deeper"):
        done = run([evaluate, "-ref", ref, "-pred", pred, "-o", out])
        assert done.returncode == EXIT_BAD_INPUT and str(out) in one_error_line(done, "nnUNet_genesis_evaluate")
    assert tree_bytes(tmp_path) == before
    for run_dir in ("eval_a", "eval_b"):
        assert run([evaluate, "-ref", ref, "-pred", pred, "-o", tmp_path / run_dir]).returncode == 0
    before = tree_bytes(tmp_path / "eval_a")
    done = run([compare, "-a", tmp_path / "eval_a", "-b", tmp_path / "eval_b", "-o", tmp_path / "eval_a" / "cmp"])
    assert done.returncode == EXIT_BAD_INPUT and "(-a)" in one_error_line(done, "nnUNet_genesis_compare")
    assert tree_bytes(tmp_path / "eval_a") == before


def test_the_shared_check_resolves_links_and_names_both_paths(tmp_path):
    from nnunet_genesis.io.atomic import OutputInsideInputError, refuse_output_inside_inputs
    (tmp_path / "inputs").mkdir()
    os.symlink(str(tmp_path / "inputs"), str(tmp_path / "link"))
    with pytest.raises(OutputInsideInputError, match="lies inside the input folder .*inputs \\(-i\\)"):
        refuse_output_inside_inputs(str(tmp_path / "link" / "out"), {"-i": str(tmp_path / "inputs")})
    with pytest.raises(OutputInsideInputError, match="input .* lies inside the output"):
        refuse_output_inside_inputs(str(tmp_path), {"-i": [str(tmp_path / "inputs")]}, output_contains_inputs=True)
    refuse_output_inside_inputs(str(tmp_path / "elsewhere"), {"-i": [str(tmp_path / "inputs")], "-d": None})


# --------------------------------------------------------------- prepare, transfer, restoration (items 7, 8, 10)

def _stock(name, *args, env=None):
    return run([stock_command(name)] + list(args), env=env)


def test_a_task_that_does_not_exist_is_named_with_the_nearest_existing(ct_task, tmp_path):
    image = tmp_path / "scan.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 8, 8), np.int16)), str(image))
    typo = ct_task.task_name[:-1] + "X"                   # Task901_FakeCX beside Task901_FakeCT
    for command, args in (("nnUNet_genesis_prepare", ["-i", image, "-o", 979]),
                          ("nnUNet_genesis_transfer", ["-w", image]),
                          ("nnUNet_genesis_restoration", ["-w", image, "-o", tmp_path / "r"])):
        for asked in (typo, "Task071_Typo", "71"):
            flag = "-t"
            done = _stock(command, flag, asked, *args, env=ct_task.env)
            line = one_error_line(done, command)
            assert done.returncode in (1, 2) and "no such task" in line and "plan it first" not in line, line
            assert "nearest existing: " in line and ct_task.task_name in line.split("nearest existing: ")[1]
    assert not os.path.exists(tmp_path / "r")


def test_v2_dataset_that_does_not_exist_is_named_with_the_nearest_existing(tmp_path, monkeypatch):
    from nnunet_genesis.nnunet_v2 import layout as v2
    for variable in v2.FOLDER_VARIABLES:
        monkeypatch.setenv(variable, str(tmp_path / variable))
    os.makedirs(str(tmp_path / "nnUNet_raw" / "Dataset096_Bars"))
    os.makedirs(str(tmp_path / "nnUNet_preprocessed" / "Dataset004_Hippocampus"))
    with pytest.raises(v2.NoSuchDataset, match="no such dataset Dataset096_Barz .*nearest existing: Dataset096_Bars"):
        v2.resolve_dataset_name("Dataset096_Barz")
    with pytest.raises(v2.NoSuchDataset, match="no such dataset with id 5 .*nearest existing: Dataset004_Hippocampus"):
        v2.resolve_dataset_name(5)
    done = _stock("nnUNet_genesis_prepare", "--nnunet", "2", "-t", "Dataset096_Barz", "-i", tmp_path, "-o", 97,
                  env=dict(os.environ))
    assert done.returncode == 1 and "nearest existing: Dataset096_Bars" in one_error_line(done,
                                                                                          "nnUNet_genesis_prepare")


@pytest.fixture
def cut_plans_task(ct_task):
    """Task977_CutPlans: the CT task's preprocessed folder with its plans file cut in half."""
    folder = os.path.join(os.environ["nnUNet_preprocessed"], "Task977_CutPlans")
    shutil.copytree(ct_task.preprocessed_dir, folder)
    plans = ct_task.plans_3d_file.replace(ct_task.preprocessed_dir, folder)
    with open(plans, "r+b") as f:
        f.truncate(os.path.getsize(plans) // 2)
    yield folder, plans
    shutil.rmtree(folder)


def test_a_cut_plans_file_is_one_line_in_prepare_transfer_and_restoration(cut_plans_task, ct_task, tmp_path):
    folder, plans = cut_plans_task
    weights = tmp_path / "w.model"
    torch.save({"state_dict": {}}, str(weights))
    for command, args in (("nnUNet_genesis_prepare", ["-i", ct_task.decathlon_dir, "-o", 978]),
                          ("nnUNet_genesis_transfer", ["-w", weights]),
                          ("nnUNet_genesis_restoration", ["-w", weights, "-o", tmp_path / "r"])):
        done = _stock(command, "-t", "977", *args, env=ct_task.env)
        assert done.returncode == EXIT_BAD_INPUT, done.stderr
        line = one_error_line(done, command)
        assert plans in line and "cut short" in line, line
    assert not any(name.startswith("Task978_") for name in os.listdir(os.environ["nnUNet_preprocessed"]))


def test_restoration_output_inside_the_task_or_beside_weights_is_refused(ct_task, tmp_path):
    weights = tmp_path / "w.model"
    torch.save({"state_dict": {}}, str(weights))
    out = os.path.join(ct_task.preprocessed_dir, "scores")
    done = _stock("nnUNet_genesis_restoration", "-w", weights, "-t", ct_task.task_id, "-o", out, env=ct_task.env)
    assert done.returncode == EXIT_BAD_INPUT and out in one_error_line(done, "nnUNet_genesis_restoration")
    assert not os.path.exists(out)


def test_mhd_without_its_raw_names_the_raw_and_a_refused_prepare_leaves_no_task_folders(ct_task, tmp_path):
    source = tmp_path / "luna"
    source.mkdir()
    volume = sitk.GetImageFromArray(np.zeros((12, 16, 16), np.int16))
    sitk.WriteImage(volume, str(source / "lost.mhd"))
    sitk.WriteImage(volume, str(source / "cut.mhd"))
    os.remove(str(source / "lost.raw"))
    with open(str(source / "cut.raw"), "r+b") as f:
        f.truncate(100)
    # a header that reads and voxels that do not: found, then fails while it is prepared
    sitk.WriteImage(volume, str(source / "interrupted.nii.gz"))
    truncate_gzip_stream(str(source / "interrupted.nii.gz"))
    before = tree_bytes(source)
    done = _stock("nnUNet_genesis_prepare", "-t", ct_task.task_id, "-i", source, "-o", 976, env=ct_task.env)
    assert done.returncode == 1 and "nothing usable" in one_error_line(done, "nnUNet_genesis_prepare")
    assert "interrupted.nii.gz" in done.stdout
    assert "its data file %s is missing" % (source / "lost.raw") in done.stdout
    assert "its data file %s is cut short (100 of 6144 bytes)" % (source / "cut.raw") in done.stdout
    assert tree_bytes(source) == before
    base = os.environ["nnUNet_raw_data_base"]
    for parent in (os.path.join(base, "nnUNet_raw_data"), os.path.join(base, "nnUNet_cropped_data"),
                   os.environ["nnUNet_preprocessed"]):
        assert not [d for d in os.listdir(parent) if d.startswith("Task976_")], parent


def test_prepare_into_its_own_sources_is_refused(ct_task, tmp_path):
    raw_base = os.path.join(os.environ["nnUNet_raw_data_base"], "nnUNet_raw_data")
    before = sorted(os.listdir(raw_base))
    done = _stock("nnUNet_genesis_prepare", "-t", ct_task.task_id, "-i", raw_base, "-o", 975, env=ct_task.env)
    assert done.returncode == EXIT_BAD_INPUT
    assert "lies inside the input folder %s" % raw_base in one_error_line(done, "nnUNet_genesis_prepare")
    assert sorted(os.listdir(raw_base)) == before


def test_run_task_predictions_inside_the_decathlon_folder_are_refused(ct_task, tmp_path):
    before = tree_bytes(ct_task.decathlon_dir)
    pred_root = os.path.join(ct_task.decathlon_dir, "imagesTs")
    done = _stock("nnUNet_genesis_run_task", "-i", ct_task.decathlon_dir, "-t", 974, "--pred_root", pred_root,
                  "--dry_run", env=ct_task.env)
    assert done.returncode == EXIT_BAD_INPUT
    assert "(--pred_root) lies inside the input folder" in one_error_line(done, "nnUNet_genesis_run_task")
    assert tree_bytes(ct_task.decathlon_dir) == before


# ------------------------------------------------------------------------- found by trying bad inputs (beyond #19)

def test_evaluate_and_compare_refuse_what_they_used_to_take_silently(tmp_path):
    ref, pred, _ = _evaluation_inputs(tmp_path)
    evaluate, compare = stock_command("nnUNet_genesis_evaluate"), stock_command("nnUNet_genesis_compare")
    # a label value of 2,000,000,000: scored, not a 30 GiB table and a MemoryError traceback
    write_labels(labels_case().astype(np.uint32) * 1000000000, pred / "case_000.nii.gz", dtype=np.uint32)
    done = run([evaluate, "-ref", ref, "-pred", pred, "-o", tmp_path / "e1", "-np", 1])
    assert done.returncode == 0 and "label 2000000000 occurs only in the predictions" in done.stderr
    # a folder or a looping link named like a label map: named, not scored 0 as "missing"
    (pred / "case_000.nii.gz").unlink()
    os.symlink("case_000.nii.gz", str(pred / "case_000.nii.gz"))
    done = run([evaluate, "-ref", ref, "-pred", pred, "-o", tmp_path / "e2"])
    assert done.returncode == 1
    assert "case_000.nii.gz is named like a label map but is not a readable file" in one_error_line(
        done, "nnUNet_genesis_evaluate")
    # one run compared with itself, two runs with one name
    (pred / "case_000.nii.gz").unlink()
    write_labels(labels_case(), pred / "case_000.nii.gz")
    assert run([evaluate, "-ref", ref, "-pred", pred, "-o", tmp_path / "e3"]).returncode == 0
    assert run([evaluate, "-ref", ref, "-pred", ref, "-o", tmp_path / "e4"]).returncode == 0
    done = run([compare, "-a", tmp_path / "e3", "-b", str(tmp_path / "e3") + "/", "-o", tmp_path / "c"])
    assert done.returncode == 1 and "the same run" in one_error_line(done, "nnUNet_genesis_compare")
    done = run([compare, "-a", tmp_path / "e3", "-b", tmp_path / "e4", "--names", "X", "X", "-o", tmp_path / "c"])
    assert done.returncode == 1 and "both runs the name 'X'" in one_error_line(done, "nnUNet_genesis_compare")
    assert not (tmp_path / "c").exists()


def test_transfer_report_never_replaces_the_weights(ct_task, tmp_path):
    weights = tmp_path / "w.model"
    torch.save({"state_dict": {}}, str(weights))
    before = file_bytes(weights)
    done = _stock("nnUNet_genesis_transfer", "-w", weights, "-t", ct_task.task_id, "-o", weights, env=ct_task.env)
    assert done.returncode == EXIT_BAD_INPUT and "is the input" in one_error_line(done, "nnUNet_genesis_transfer")
    assert file_bytes(weights) == before


def test_prepare_refuses_bad_ids_and_implausible_spacings(ct_task, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    volume = sitk.GetImageFromArray(np.full((12, 16, 16), 100, np.int16))
    for id_ in ("0", "1000", "-5"):
        done = _stock("nnUNet_genesis_prepare", "-t", ct_task.task_id, "-i", source, "-o", id_, env=ct_task.env)
        assert done.returncode == 1 and "not a three-digit id" in one_error_line(done, "nnUNet_genesis_prepare")
    volume.SetSpacing((1e-6, 1e-6, 1e-6))    # at the target's ~1 mm: no voxel at all, an empty case
    sitk.WriteImage(volume, str(source / "tiny.nii.gz"))
    done = _stock("nnUNet_genesis_prepare", "-t", ct_task.task_id, "-i", source, "-o", 973, env=ct_task.env)
    assert done.returncode == 1 and "its spacing is implausible" in done.stdout
    assert not [d for d in os.listdir(os.environ["nnUNet_preprocessed"]) if d.startswith(("Task973_", "Task000_"))]


def test_restoration_cases_below_one_and_run_task_pred_root_a_file(ct_task, tmp_path):
    weights = tmp_path / "w.model"
    torch.save({"state_dict": {}}, str(weights))
    done = _stock("nnUNet_genesis_restoration", "-w", weights, "-t", ct_task.task_id, "-o", tmp_path / "r",
                  "--cases", "0", env=ct_task.env)
    assert done.returncode == 2 and "--cases 0" in one_error_line(done, "nnUNet_genesis_restoration")
    done = _stock("nnUNet_genesis_run_task", "-i", ct_task.decathlon_dir, "-t", 974, "--pred_root", weights,
                  "--dry_run", env=ct_task.env)
    assert done.returncode == 2 and "is not a folder" in one_error_line(done, "nnUNet_genesis_run_task")
