"""The benefit study's plain parts (competition/study.py): subsets, the study's own splits beside the
user's untouched ones, the statistics on hand-made results, the table and plot, and the command's
refusals. The study's runs through stock nnUNet_train / nnUNet_predict are exercised by the demo's
end-to-end test (tests/test_demo.py)."""
import hashlib
import os
import pickle
import subprocess

import numpy as np
import pytest

from competition.study import (ALL, ARMS, StudyError, build_study_workspace, check_same_weights, draw_subset,
                               format_study_markdown, nnunet_default_splits, plan_runs, plot_study, summarise_study, user_fold)
from tests.conftest import stock_command, subprocess_env

CASES = ["case_%02d" % i for i in range(10)]


def test_subsets_are_seeded_sorted_and_nested_in_the_fold():
    a = draw_subset(CASES, "4", 0)
    assert a == draw_subset(list(reversed(CASES)), "4", 0)          # order of the input does not matter
    assert len(a) == 4 and list(a) == sorted(a) and set(a) <= set(CASES)
    assert draw_subset(CASES, "4", 1) != a                           # another seed, other cases
    assert draw_subset(CASES, ALL, 5) == tuple(CASES)
    with pytest.raises(StudyError, match="cannot draw 11"):
        draw_subset(CASES, "11", 0)


def test_both_arms_of_a_count_and_seed_share_cases_and_fold():
    runs = plan_runs(CASES, ["2", ALL], [0, 1])
    assert len(runs) == 8
    for i in range(0, 8, 2):
        scratch, genesis = runs[i], runs[i + 1]
        assert (scratch.arm, genesis.arm) == ARMS
        assert scratch.train_cases == genesis.train_cases and scratch.fold_index == genesis.fold_index
    assert len({r.name for r in runs}) == 8


def test_default_split_is_nnunets(tmp_path):
    splits = nnunet_default_splits(CASES)
    assert len(splits) == 5
    assert sorted(np.concatenate([s["val"] for s in splits])) == CASES


def _user_task(tmp_path):
    task = tmp_path / "nnUNet_preprocessed" / "Task901_X"
    (task / "data").mkdir(parents=True)
    (task / "nnUNetPlansv2.1_plans_3D.pkl").write_bytes(b"plans")
    with open(task / "splits_final.pkl", "wb") as f:
        pickle.dump([{"train": np.array(CASES[:8]), "val": np.array(CASES[8:])}], f)
    return task


def test_study_workspace_leaves_the_users_splits_alone(tmp_path):
    task = _user_task(tmp_path)
    before = hashlib.sha256((task / "splits_final.pkl").read_bytes()).hexdigest()
    train, val, source = user_fold(str(task), 0)
    assert train == CASES[:8] and val == CASES[8:] and source.endswith("splits_final.pkl")
    runs = build_study_workspace(str(task), str(tmp_path / "study"), plan_runs(train, ["2", ALL], [0]), val)
    assert [r.fold_index for r in runs] == [0, 0, 1, 1]
    study_task = str(tmp_path / "study" / "nnUNet_preprocessed" / "Task901_X")
    assert hashlib.sha256((task / "splits_final.pkl").read_bytes()).hexdigest() == before
    assert os.path.islink(os.path.join(study_task, "data")) and os.path.islink(
        os.path.join(study_task, "nnUNetPlansv2.1_plans_3D.pkl"))
    assert not os.path.islink(os.path.join(study_task, "splits_final.pkl"))
    with open(os.path.join(study_task, "splits_final.pkl"), "rb") as f:
        splits = pickle.load(f)
    assert [list(s["train"]) for s in splits] == [list(runs[0].train_cases), CASES[:8]]
    assert all(list(s["val"]) == CASES[8:] for s in splits)
    # a larger study in the same folder keeps the folds it has and appends the new subsets
    grown = build_study_workspace(str(task), str(tmp_path / "study"), plan_runs(train, ["2", "3", ALL], [0, 1]), val)
    by_name = {r.name: r.fold_index for r in grown}
    assert by_name["scratch_n2_s0"] == by_name["genesis_n2_s0"] == 0 and by_name["genesis_nall_s0"] == 1
    assert by_name["genesis_nall_s1"] not in (0, 1)        # same cases as seed 0, but a training of its own
    assert sorted(set(by_name.values())) == list(range(6))
    with open(os.path.join(study_task, "splits_final.pkl"), "rb") as f:
        assert [list(s["train"]) for s in pickle.load(f)][:2] == [list(runs[0].train_cases), CASES[:8]]
    with pytest.raises(StudyError, match="validates on other cases"):
        build_study_workspace(str(task), str(tmp_path / "study"), plan_runs(train, ["3"], [0]), val[:1])
    with pytest.raises(StudyError, match="fold 4 does not exist"):
        user_fold(str(task), 4)


def _result(arm, count, seed, dice):
    return {"arm": arm, "count": count, "seed": seed, "num_labelled": 2 if count == "2" else 8,
            "per_case_dice": {"a": dice[0], "b": dice[1]}, "mean_dice": float(np.mean(dice))}


def _hand_made_summary():
    results = [_result("scratch", "2", 0, [0.5, 0.7]), _result("genesis", "2", 0, [0.6, 0.9]),
               _result("scratch", "2", 1, [0.4, 0.6]), _result("genesis", "2", 1, [0.5, 0.6]),
               _result("scratch", ALL, 0, [0.8, 0.8]), _result("genesis", ALL, 0, [0.8, 0.8])]
    return summarise_study(results, ["2", ALL])


def test_summary_by_hand():
    summary = _hand_made_summary()
    two, everything = summary
    assert two["scratch"]["mean"] == pytest.approx((0.6 + 0.5) / 2)
    assert two["genesis"]["mean"] == pytest.approx((0.75 + 0.55) / 2)
    assert two["scratch"]["sd"] == pytest.approx(np.std([0.6, 0.5], ddof=1))
    # paired over (seed, case): differences 0.1, 0.2, 0.1, 0.0
    assert two["pairs"] == 4 and two["mean_difference"] == pytest.approx(0.1)
    assert sorted(two["differences"]) == pytest.approx([0.0, 0.1, 0.1, 0.2])
    assert (two["genesis_better"], two["scratch_better"]) == (3, 0)
    assert 0 < two["wilcoxon_p"] <= 1
    assert everything["wilcoxon_p"] == 1.0 and np.isnan(everything["scratch"]["sd"])
    config = {"task": "Task901_X", "fold": 0, "seeds": [0, 1], "num_test_cases": 2, "labels": [1],
              "scratch_trainer": "S", "genesis_trainer": "G", "weights": "w.model"}
    table = format_study_markdown(summary, config)
    assert "| 2 (2) | 0.5500 ± 0.0707 | 0.6500 ± 0.1414 | +0.1000 | 3 / 0 |" in table


def test_a_genesis_run_from_other_weights_is_not_reused(tmp_path):
    """The study keeps runs by trainer and fold: resuming with another checkpoint must not mix them."""
    import json
    fold = tmp_path / "fold_3"
    fold.mkdir()
    first, second = tmp_path / "first.model", tmp_path / "second.model"
    check_same_weights(str(fold), str(second), "genesis_n2_s0")  # no report yet: a new run, fine
    (fold / "transfer_report.json").write_text(json.dumps({"source": str(first), "entries": []}))
    check_same_weights(str(fold), str(first), "genesis_n2_s0")   # the same weights: resume
    with pytest.raises(StudyError) as refused:
        check_same_weights(str(fold), str(second), "genesis_n2_s0")
    message = str(refused.value)
    assert "genesis_n2_s0" in message and str(first) in message and str(second) in message


def test_learning_curve_plot(tmp_path):
    summary = _hand_made_summary()
    path = plot_study(summary, str(tmp_path / "study.png"), "test")
    assert os.path.getsize(path) > 10_000 and os.listdir(tmp_path) == ["study.png"]


def test_study_command_refuses_bad_input_in_one_line(tmp_path):
    env = subprocess_env(nnUNet_preprocessed=str(tmp_path))
    done = subprocess.run([stock_command("nnUNet_genesis_study"), "-t", "Task901_X", "-w", str(tmp_path / "none.model"),
                           "-o", str(tmp_path / "out"), "--test_labels", str(tmp_path)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert done.returncode == 2 and "none.model" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    weights = tmp_path / "w.model"
    import torch
    torch.save({"w": torch.ones(1)}, str(weights))   # readable weights: the study checks them up front
    done = subprocess.run([stock_command("nnUNet_genesis_study"), "-t", "Task901_X", "-w", str(weights),
                           "-o", str(tmp_path / "out"), "--test_labels", str(tmp_path), "--counts", "two"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert done.returncode == 2 and "'two'" in done.stderr
    assert not (tmp_path / "out").exists()
