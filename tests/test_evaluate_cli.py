"""End to end: the installed nnUNet_genesis_evaluate / nnUNet_genesis_compare console scripts on
NIfTI files written here, with expected numbers worked out by hand from the boxes drawn."""
import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

SPACING_XYZ = (0.8, 0.8, 2.5)     # SimpleITK order; the array is (z, y, x): z spacing 2.5 mm
SHAPE_ZYX = (14, 20, 20)


def script(name):
    path = os.path.join(os.path.dirname(sys.executable), name)
    if not os.path.exists(path):
        pytest.fail("console script %s is not installed next to %s (pip install -e .)" % (name, sys.executable))
    return path


def run(name, *args, env=None):
    return subprocess.run([script(name), *map(str, args)], capture_output=True, text=True, env=env, timeout=300)


def write_labels(array, path, spacing=SPACING_XYZ):
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(spacing)
    image.SetOrigin((-10.0, 5.0, 3.0))
    sitk.WriteImage(image, str(path))


def reference_case(with_label_2=True):
    labels = np.zeros(SHAPE_ZYX, np.uint8)
    labels[2:6, 3:9, 3:11] = 1            # label 1: 4 slices of 6 × 8 = 192 voxels
    if with_label_2:
        labels[8:11, 12:18, 4:10] = 2     # label 2: 3 slices of 6 × 6 = 108 voxels
    return labels


@pytest.fixture(scope="module")
def data(module_tmp_path_factory):
    """labels/: case_000, case_001 (labels 1, 2), case_002 (label 1 only).
    pred_scratch/: case_000 exact; case_001 label 1 shifted one slice (2.5 mm) along z, label 2
    left out; case_002 missing. pred_genesis/: every case exact."""
    root = module_tmp_path_factory.mktemp("evaluation")
    folders = {name: root / name for name in ("labels", "pred_scratch", "pred_genesis")}
    for folder in folders.values():
        folder.mkdir()
    references = {"case_000": reference_case(), "case_001": reference_case(), "case_002": reference_case(False)}
    for case, labels in references.items():
        write_labels(labels, folders["labels"] / (case + ".nii.gz"))
        write_labels(labels, folders["pred_genesis"] / (case + ".nii.gz"))
    write_labels(references["case_000"], folders["pred_scratch"] / "case_000.nii.gz")
    shifted = np.zeros(SHAPE_ZYX, np.uint8)
    shifted[3:7, 3:9, 3:11] = 1
    write_labels(shifted, folders["pred_scratch"] / "case_001.nii.gz")
    return root, folders


def read_rows(path):
    with open(path, newline="") as handle:
        return {(row["case"], int(row["label"])): row for row in csv.DictReader(handle)}


# Expected scores of pred_scratch at τ = 3 mm, by hand:
#   case_000: exact → Dice 1, NSD 1, HD95 0 for both labels.
#   case_001 label 1: 3 of 4 slices overlap → Dice 2·3·48 / (2·4·48) = 0.75. Every surfel of either
#     box lies on the other box's surface or 2.5 mm from it (the bottom/top face), or 0.8-2.4 mm
#     (the top/bottom face interior, to the side faces) → NSD = 1 at τ = 3 mm. The bottom face holds
#     more than 5 % of the area (6·8·0.64 = 30.7 mm² of about 280 mm²), so HD95 = 2.5 mm.
#   case_001 label 2: not predicted → Dice 0, NSD 0, HD95 undefined (NaN).
#   case_002: no prediction → 0 on both labels.
SCRATCH = {("case_000", 1): (1.0, 1.0, 0.0), ("case_000", 2): (1.0, 1.0, 0.0),
           ("case_001", 1): (0.75, 1.0, 2.5), ("case_001", 2): (0.0, 0.0, math.nan),
           ("case_002", 1): (0.0, 0.0, math.nan), ("case_002", 2): (0.0, 0.0, math.nan)}


@pytest.fixture(scope="module")
def evaluated(data):
    root, folders = data
    scratch = run("nnUNet_genesis_evaluate", "-ref", folders["labels"], "-pred", folders["pred_scratch"],
                  "--tolerance", 3, "-o", root / "eval_scratch", "-np", 2)
    genesis = run("nnUNet_genesis_evaluate", "-ref", folders["labels"], "-pred", folders["pred_genesis"],
                  "-t", "Task07_Pancreas", "--tolerance", 3, "-o", root / "eval_genesis", "-np", 1)
    assert scratch.returncode == 0, scratch.stderr
    assert genesis.returncode == 0, genesis.stderr
    return root, scratch, genesis


def test_evaluate_per_case_values(evaluated):
    root, scratch, _ = evaluated
    rows = read_rows(root / "eval_scratch" / "per_case.csv")
    assert set(rows) == set(SCRATCH)   # labels default to those found in the references: 1, 2
    for key, (dice, nsd, hd95) in SCRATCH.items():
        row = rows[key]
        assert float(row["dice"]) == pytest.approx(dice), key
        assert float(row["nsd"]) == pytest.approx(nsd), key
        if math.isnan(hd95):
            assert math.isnan(float(row["hd95"])), key
        else:
            assert float(row["hd95"]) == pytest.approx(hd95), key
    assert rows[("case_002", 1)]["status"] == "missing"
    assert rows[("case_001", 2)]["status"] == "prediction_empty"
    assert int(rows[("case_001", 1)]["reference_voxels"]) == 192
    assert "case_002" in scratch.stderr and "score 0" in scratch.stderr   # the missing case is reported
    assert "NSD" in scratch.stdout                                        # the printed table


def test_evaluate_summary(evaluated):
    root, _, _ = evaluated
    summary = json.loads((root / "eval_scratch" / "summary.json").read_text())
    assert summary["tolerance_mm"] == 3.0 and summary["tolerance_source"] == "--tolerance"
    assert summary["cases_missing_prediction"] == ["case_002"]
    for label in (1, 2):
        for index, metric in enumerate(("dice", "nsd", "hd95")):
            values = np.array([SCRATCH[(case, label)][index] for case in ("case_000", "case_001", "case_002")])
            values = values[np.isfinite(values)]
            stats = summary["statistics"][str(label)][metric]
            assert stats["n"] == len(values)
            assert stats["mean"] == pytest.approx(values.mean())
            assert stats["median"] == pytest.approx(np.median(values))
            if len(values) > 1:
                assert stats["std"] == pytest.approx(values.std(ddof=1))
    # label 1 Dice: (1 + 0.75 + 0) / 3
    assert summary["mean"]["1"]["dice"] == pytest.approx(1.75 / 3)


def test_evaluate_with_msd_task(evaluated):
    root, _, _ = evaluated
    summary = json.loads((root / "eval_genesis" / "summary.json").read_text())
    assert summary["labels"] == {"1": "pancreas", "2": "cancer"}    # from evaluation/tasks.py
    rows = read_rows(root / "eval_genesis" / "per_case.csv")
    # case_002 has no label 2 in reference or prediction: both empty counts as a perfect 1
    assert rows[("case_002", 2)]["status"] == "both_empty"
    assert float(rows[("case_002", 2)]["dice"]) == 1.0 and float(rows[("case_002", 2)]["nsd"]) == 1.0
    assert all(float(row["dice"]) == 1.0 for row in rows.values())


def test_task_tolerance_is_used_without_override(data):
    root, folders = data
    from evaluation.evaluate import evaluate_folders
    summary = evaluate_folders(str(folders["labels"]), str(folders["pred_genesis"]), task="Task07_Pancreas",
                               out_dir=None, num_processes=1, verbose=False)
    assert summary["tolerance_mm"] == 5.0   # the Pancreas value in evaluation/tasks.py


def test_geometry_mismatch_is_refused(data, tmp_path):
    _, folders = data
    predictions = tmp_path / "pred"
    predictions.mkdir()
    write_labels(reference_case(), predictions / "case_000.nii.gz")
    write_labels(reference_case(), predictions / "case_001.nii.gz", spacing=(0.8, 0.8, 3.0))
    result = run("nnUNet_genesis_evaluate", "-ref", folders["labels"], "-pred", predictions, "-o", tmp_path / "out")
    assert result.returncode != 0
    assert os.path.join(str(folders["labels"]), "case_001.nii.gz") in result.stderr
    assert os.path.join(str(predictions), "case_001.nii.gz") in result.stderr
    assert "spacing" in result.stderr
    assert not (tmp_path / "out" / "summary.json").exists()


def test_compare_evaluation_folders(evaluated):
    from scipy.stats import wilcoxon
    root, _, _ = evaluated
    out = root / "compare"
    result = run("nnUNet_genesis_compare", "-a", root / "eval_scratch", "-b", root / "eval_genesis",
                 "--names", "scratch", "genesis", "-o", out)
    assert result.returncode == 0, result.stderr
    assert (out / "compare.png").stat().st_size > 1000
    markdown = (out / "compare.md").read_text()
    assert "scratch" in markdown and "genesis" in markdown and "Wilcoxon" in markdown
    comparison = json.loads((out / "compare.json").read_text())
    row = {(r["label"], r["metric"]): r for r in comparison["results"]}
    # label 1 Dice: scratch (1, 0.75, 0), genesis (1, 1, 1): differences (0, 0.25, 1)
    dice_1 = row[(1, "dice")]
    assert dice_1["n_pairs"] == 3
    assert dice_1["mean_a"] == pytest.approx(1.75 / 3) and dice_1["mean_b"] == pytest.approx(1.0)
    assert dice_1["mean_difference"] == pytest.approx(1.25 / 3)
    assert dice_1["p_value"] == pytest.approx(wilcoxon([0.0, 0.25, 1.0]).pvalue)
    assert dice_1["b_better_cases"] == 2 and dice_1["a_better_cases"] == 0
    assert "| 1 pancreas | Dice | 3 | 0.5833 | 1.0000 | +0.4167 |" in markdown
    # label 2 Dice: scratch (1, 0, 0), genesis (1, 1, 1 [both empty])
    assert row[(2, "dice")]["mean_a"] == pytest.approx(1 / 3)
    # HD95 is compared only where both runs have one: case_000 and case_001 for label 1
    assert row[(1, "hd95")]["n_pairs"] == 2 and row[(1, "hd95")]["mean_difference"] == pytest.approx(-1.25)


def test_compare_nnunet_fold_folders(data, tmp_path):
    """Two nnU-Net fold folders: the task comes from the path, labels from $nnUNet_raw_data_base,
    and only the fold's validation cases are scored."""
    import shutil
    _, folders = data
    labels_tr = tmp_path / "raw" / "nnUNet_raw_data" / "Task007_Pancreas" / "labelsTr"
    shutil.copytree(folders["labels"], labels_tr)
    task_dir = tmp_path / "results" / "nnUNet" / "3d_fullres" / "Task007_Pancreas"
    folds = {}
    for trainer, source in (("nnUNetTrainerV2", "pred_scratch"), ("GenesisTrainer", "pred_genesis")):
        validation = task_dir / (trainer + "__nnUNetPlansv2.1") / "fold_0" / "validation_raw"
        validation.mkdir(parents=True)
        for case in ("case_000", "case_001"):
            shutil.copy(folders[source] / (case + ".nii.gz"), validation)
        (validation / "summary.json").write_text('{"nnunet": "own file"}')
        folds[trainer] = validation.parent
    env = dict(os.environ, nnUNet_raw_data_base=str(tmp_path / "raw"))
    env.pop("nnUNet_preprocessed", None)
    out = tmp_path / "out"
    result = run("nnUNet_genesis_compare", "-a", folds["nnUNetTrainerV2"], "-b", folds["GenesisTrainer"],
                 "-o", out, "-np", 1, env=env)
    assert result.returncode == 0, result.stderr
    rows = read_rows(out / "eval_A" / "per_case.csv")
    assert {case for case, _ in rows} == {"case_000", "case_001"}   # case_002 is not in this fold
    summary = json.loads((out / "eval_A" / "summary.json").read_text())
    assert summary["tolerance_mm"] == 5.0 and summary["task"] == "Task07_Pancreas"
    comparison = json.loads((out / "compare.json").read_text())
    assert comparison["names"] == ["nnUNetTrainerV2__nnUNetPlansv2.1/fold_0", "GenesisTrainer__nnUNetPlansv2.1/fold_0"]
    dice_1 = {(r["label"], r["metric"]): r for r in comparison["results"]}[(1, "dice")]
    assert dice_1["mean_a"] == pytest.approx(0.875) and dice_1["mean_b"] == pytest.approx(1.0)
    # nnU-Net's own summary.json in validation_raw is untouched
    assert json.loads((folds["GenesisTrainer"] / "validation_raw" / "summary.json").read_text()) == {"nnunet": "own file"}
    assert (out / "compare.md").exists() and (out / "compare.png").exists()


def test_compare_fold_folder_without_labels_is_refused(tmp_path):
    fold, other = tmp_path / "Task500_Toy" / "T__P" / "fold_0", tmp_path / "Task500_Toy" / "T2__P" / "fold_0"
    for folder in (fold, other):
        (folder / "validation_raw").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in ("nnUNet_raw_data_base", "nnUNet_preprocessed")}
    result = run("nnUNet_genesis_compare", "-a", fold, "-b", other, "-o", tmp_path / "out", env=env)
    assert result.returncode != 0 and "--ref" in result.stderr


def test_wilcoxon_edge_cases():
    from evaluation.compare import wilcoxon_signed_rank
    p_value, note = wilcoxon_signed_rank([0.3])
    assert math.isnan(p_value) and "fewer than 2" in note
    p_value, note = wilcoxon_signed_rank([0.0, 0.0, 0.0])
    assert p_value == 1.0 and "zero" in note
    p_value, _ = wilcoxon_signed_rank([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    assert p_value == pytest.approx(2 / 2 ** 7)   # exact two-sided p: all 7 signs positive
