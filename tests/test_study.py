"""The benefit study's plain parts: subsets, the study's own splits beside the user's untouched ones, the
statistics over seeds on hand-computed cases, the records and what a resume does with them, the report
written as one set, the pretraining-record field. The checks before training are in
tests/test_study_checks.py, the study through stock nnUNet_train / nnUNet_predict in
tests/test_study_resume.py."""
import hashlib
import json
import math
import os
import pickle

import numpy as np
import pytest

from competition.output_set import replace_folder, set_problems, write_output_set
from competition.study import ALL, ARMS, StudyError, draw_subset, plan_runs, summarise_study
from competition.study_inputs import check_counts, check_seeds
from competition.study_nnunet_v1 import NnUNetV1, nnunet_default_splits
from competition.study_records import RECOMPUTE, REFUSE, POLICY, changes, decide
from competition.study_report import (MANIFEST, NO_RECORD, draw_study, format_study_markdown, pretraining_verdict,
                                      write_study_outputs)
from competition.study_stats import paired_over_seeds, signed_rank_exact, t_interval
from nnunet_genesis.io.atomic import WriteError

CASES = ["case_%02d" % i for i in range(10)]


def test_subsets_are_seeded_sorted_and_nested_in_the_fold():
    a = draw_subset(CASES, "4", 0)
    assert a == draw_subset(list(reversed(CASES)), "4", 0)          # order of the input does not matter
    assert len(a) == 4 and list(a) == sorted(a) and set(a) <= set(CASES)
    assert draw_subset(CASES, "4", 1) != a                           # another seed, other cases
    assert draw_subset(CASES, ALL, 5) == tuple(CASES)
    with pytest.raises(StudyError, match="cannot draw 11"):
        draw_subset(CASES, "11", 0)


def test_both_arms_of_a_count_and_seed_share_cases():
    runs = plan_runs(CASES, ["2", ALL], [0, 1])
    assert len(runs) == 8
    for i in range(0, 8, 2):
        scratch, genesis = runs[i], runs[i + 1]
        assert (scratch.arm, genesis.arm) == ARMS
        assert scratch.train_cases == genesis.train_cases
    assert len({r.name for r in runs}) == 8


def test_seeds_and_counts_are_refused_when_duplicated_or_negative():
    assert check_seeds(["0", "3", 7]) == [0, 3, 7]
    with pytest.raises(StudyError, match="seed -1 is negative"):
        check_seeds(["0", "-1"])
    with pytest.raises(StudyError, match=r"seed\(s\) 1 given twice"):
        check_seeds([1, 2, 1])
    with pytest.raises(StudyError, match="'x' is not an integer"):
        check_seeds(["x"])
    assert check_counts(["02", "ALL", "4"]) == ["2", ALL, "4"]
    with pytest.raises(StudyError, match=r"count\(s\) 2 given twice"):
        check_counts(["2", "02"])
    with pytest.raises(StudyError, match="'0' is neither"):
        check_counts(["0"])


def test_default_split_is_nnunets():
    splits = nnunet_default_splits(CASES)
    assert len(splits) == 5
    assert sorted(np.concatenate([s["val"] for s in splits])) == CASES


def _user_task(tmp_path, cases=CASES, splits=True):
    task = tmp_path / "nnUNet_preprocessed" / "Task901_X"
    (task / "data").mkdir(parents=True)
    (task / "nnUNetPlansv2.1_plans_3D.pkl").write_bytes(b"plans")
    (task / "dataset.json").write_text(json.dumps({"training": [{"image": "./imagesTr/%s.nii.gz" % c} for c in cases],
                                                   "labels": {"0": "bg", "1": "organ"}, "modality": {"0": "CT"}}))
    if splits:
        with open(task / "splits_final.pkl", "wb") as f:
            pickle.dump([{"train": np.array(cases[:8]), "val": np.array(cases[8:])}], f)
    return task


def test_study_workspace_leaves_the_users_splits_alone(tmp_path):
    task = _user_task(tmp_path)
    nn = NnUNetV1({"nnUNet_preprocessed": str(tmp_path / "nnUNet_preprocessed")}, str(tmp_path / "study"))
    before = hashlib.sha256((task / "splits_final.pkl").read_bytes()).hexdigest()
    train, val, source = nn.user_fold(str(task), 0)
    assert train == CASES[:8] and val == CASES[8:] and source.endswith("splits_final.pkl")
    runs = nn.build_workspace(str(task), plan_runs(train, ["2", ALL], [0]), val)
    assert [r.fold_index for r in runs] == [0, 0, 1, 1]
    study_task = str(tmp_path / "study" / "nnUNet_preprocessed" / "Task901_X")
    assert hashlib.sha256((task / "splits_final.pkl").read_bytes()).hexdigest() == before
    assert os.path.islink(os.path.join(study_task, "data"))
    assert not os.path.islink(os.path.join(study_task, "splits_final.pkl"))
    with open(os.path.join(study_task, "splits_final.pkl"), "rb") as f:
        splits = pickle.load(f)
    assert [list(s["train"]) for s in splits] == [list(runs[0].train_cases), CASES[:8]]
    grown = nn.build_workspace(str(task), plan_runs(train, ["2", "3", ALL], [0, 1]), val)
    by_name = {r.name: r.fold_index for r in grown}
    assert by_name["scratch_n2_s0"] == by_name["genesis_n2_s0"] == 0 and by_name["genesis_nall_s0"] == 1
    assert sorted(set(by_name.values())) == list(range(6))
    with pytest.raises(StudyError, match="validates on other cases"):
        nn.build_workspace(str(task), plan_runs(train, ["3"], [0]), val[:1])
    with pytest.raises(StudyError, match="fold 4 does not exist"):
        nn.user_fold(str(task), 4)


def test_a_task_with_fewer_than_5_cases_and_no_splits_is_refused_in_one_line(tmp_path):
    """#19 item 3: nnU-Net's KFold(5) raised a ValueError traceback."""
    task = _user_task(tmp_path, cases=CASES[:4], splits=False)
    nn = NnUNetV1({"nnUNet_preprocessed": str(tmp_path / "nnUNet_preprocessed")}, str(tmp_path / "study"))
    with pytest.raises(StudyError) as refused:
        nn.user_fold(str(task), 0)
    message = str(refused.value)
    assert "4 training case(s) and no splits_final.pkl" in message and "write a splits_final.pkl" in message
    assert "\n" not in message


# ------------------------------------------------------------------------------------------ statistics
def test_three_seeds_with_known_differences():
    """d = 0.1, 0.2, 0.3: mean 0.2, sd 0.1, t(0.975, 2) = 4.302653 -> 0.2 -/+ 0.248414; exact Wilcoxon:
    all three positive, T+ = 6 of 0..6, P(T+ >= 6) = 1/8, p = 2/8 = 0.25."""
    stats = paired_over_seeds({0: 0.5, 1: 0.4, 2: 0.6}, {0: 0.6, 1: 0.6, 2: 0.9})
    assert stats["seed_differences"] == pytest.approx([0.1, 0.2, 0.3])
    assert stats["mean_difference"] == pytest.approx(0.2) and stats["sd_difference"] == pytest.approx(0.1)
    assert stats["ci95"] == pytest.approx([0.2 - 0.248414, 0.2 + 0.248414], abs=1e-6)
    assert stats["p_value"] == pytest.approx(0.25)
    assert (stats["genesis_better_seeds"], stats["scratch_better_seeds"], stats["num_seeds"]) == (3, 0, 3)
    assert "cannot fall below 0.25" in stats["note"]


def test_exact_signed_rank_by_hand_and_against_scipy():
    # d = -0.1, 0.2, 0.3, 0.4: ranks 1..4, T+ = 9 of 0..10; P(T+ >= 9) = #{9, 10}/16 = 2/16 -> p = 0.25
    assert signed_rank_exact([-0.1, 0.2, 0.3, 0.4]) == (pytest.approx(0.25), 4)
    # zeros are dropped (Wilcoxon's rule), all zero -> no evidence
    assert signed_rank_exact([0.0, 0.1, 0.2]) == (pytest.approx(0.5), 2)
    assert signed_rank_exact([0.0, 0.0]) == (1.0, 0)
    # ties: |d| = 0.1, 0.1, 0.2 -> ranks 1.5, 1.5, 3; T+ = 1.5 + 3 = 4.5; the 8 sign patterns give T+ in
    # {0, 1.5, 1.5, 3, 3, 4.5, 4.5, 6}: P(T+ >= 4.5) = 3/8 -> p = 0.75
    assert signed_rank_exact([0.1, -0.1, 0.2])[0] == pytest.approx(0.75)
    from scipy.stats import wilcoxon
    rng = np.random.default_rng(0)
    for n in (5, 6, 8, 11):
        d = rng.normal(0.02, 0.05, n)
        assert signed_rank_exact(d)[0] == pytest.approx(wilcoxon(d, method="exact").pvalue)


def test_t_interval_and_one_seed():
    assert all(math.isnan(v) for v in t_interval([0.3]))
    one = paired_over_seeds({0: 0.5}, {0: 0.7})
    assert one["mean_difference"] == pytest.approx(0.2) and math.isnan(one["p_value"])
    assert math.isnan(one["ci95"][0]) and "fewer than 2 seeds" in one["note"]


def _result(arm, count, seed, dice):
    return {"arm": arm, "count": count, "seed": seed, "num_labelled": 2 if count == "2" else 8,
            "per_case_dice": {"a": dice[0], "b": dice[1]}, "mean_dice": float(np.mean(dice))}


def _hand_made_summary():
    results = [_result("scratch", "2", 0, [0.5, 0.7]), _result("genesis", "2", 0, [0.6, 0.9]),
               _result("scratch", "2", 1, [0.4, 0.6]), _result("genesis", "2", 1, [0.5, 0.6]),
               _result("scratch", "2", 2, [0.7, 0.7]), _result("genesis", "2", 2, [0.8, 1.0]),
               _result("scratch", ALL, 0, [0.8, 0.8]), _result("genesis", ALL, 0, [0.8, 0.8])]
    return summarise_study(results, ["2", ALL])


def _config(**extra):
    return dict({"task": "Task901_X", "fold": 0, "seeds": [0, 1, 2], "test_cases": ["a", "b"], "labels": [1],
                 "tolerance_mm": 2.0, "scratch_trainer": "S", "genesis_trainer": "G", "weights": "w.model",
                 "weights_sha256": "ab" * 32, "pretraining_record": pretraining_verdict("w.model", lambda p: None)},
                **extra)


def test_summary_pairs_seeds_not_cases():
    two, everything = _hand_made_summary()
    # seed means: scratch 0.6, 0.5, 0.7; Genesis 0.75, 0.55, 0.9 -> d = 0.15, 0.05, 0.2
    assert two["scratch"]["mean"] == pytest.approx(0.6) and two["scratch"]["sd"] == pytest.approx(0.1)
    assert two["seed_differences"] == pytest.approx([0.15, 0.05, 0.2])
    assert two["mean_difference"] == pytest.approx(0.4 / 3)
    half = 4.302653 * np.std([0.15, 0.05, 0.2], ddof=1) / math.sqrt(3)
    assert two["ci95"] == pytest.approx([0.4 / 3 - half, 0.4 / 3 + half], abs=1e-6)
    assert two["p_value"] == pytest.approx(0.25) and two["num_seeds"] == 3
    assert two["case_differences"]["0"] == pytest.approx({"a": 0.1, "b": 0.2})     # kept for the record
    assert everything["num_seeds"] == 1 and math.isnan(everything["p_value"])
    table = format_study_markdown([two, everything], _config())
    assert "| 2 (2) | 3 | 0.6000 ± 0.1000 | 0.7333 ± 0.1756 | +0.1333 | [%+.4f, %+.4f] | 3 / 0 | 0.2500 |" % (
        two["ci95"][0], two["ci95"][1]) in table
    assert "| all (8) | 1 |" in table and "| n/a | 0 / 0 | n/a |" in table
    assert "Pretraining record of the weights: %s" % NO_RECORD in table
    assert "Test cases scored: a, b." in table


def test_pretraining_record_field():
    assert pretraining_verdict("w", lambda p: None)["text"] == NO_RECORD
    bad = pretraining_verdict("w", lambda p: {"verdict": "not learned", "reasons": ["collapse at 300"]})
    assert bad["verdict"] == "not learned" and "NOT LEARNED: collapse at 300" in bad["text"]
    assert pretraining_verdict("w", lambda p: {"verdict": "learned", "reasons": []})["text"] == "learned"
    # the default reader: the module of another branch, or "unknown (no pretraining record)"
    assert pretraining_verdict(os.devnull)["verdict"] in ("learned", "not learned", "unknown")


def test_plot_has_the_per_seed_panel(tmp_path):
    figure = draw_study(_hand_made_summary(), "test")
    right = figure.axes[1]
    assert "per seed" in right.get_ylabel()
    assert sum(len(c.get_offsets()) for c in right.collections if hasattr(c, "get_offsets")) >= 4  # 3 + 1 seeds


# ------------------------------------------------------------------------------------------ records
def test_records_recompute_or_refuse_per_input():
    recorded = {"plans_sha256": "a" * 64, "weights_sha256": "b" * 64, "labels": [1, 2], "tolerance_mm": 2.0,
                "test_labels": {"x.nii.gz": "1" * 64}}
    assert decide(None, recorded, "r", "fresh") == [] and decide(recorded, dict(recorded), "r", "fresh") == []
    assert POLICY["weights_sha256"] == RECOMPUTE and POLICY["plans_sha256"] == REFUSE
    changed = decide(recorded, dict(recorded, labels=[1], weights_sha256="c" * 64), "r", "fresh")
    assert any("-l" in c and "[1, 2] -> [1]" in c for c in changed)
    assert any("pretrained weights (sha256 bbbbbbbbbbbb -> cccccccccccc)" in c for c in changed)
    with pytest.raises(StudyError) as refused:
        decide(recorded, dict(recorded, plans_sha256="d" * 64), "OUT/study_record.json", "start afresh with a new -o")
    assert str(refused.value) == ("OUT/study_record.json: the task's plans file (sha256 aaaaaaaaaaaa -> dddddddddddd) "
                                  "changed since this study recorded it; start afresh with a new -o")
    text = changes(recorded, dict(recorded, test_labels={"x.nii.gz": "2" * 64, "y.nii.gz": "3" * 64}))["test_labels"]
    assert "1 changed (x.nii.gz)" in text and "1 new (y.nii.gz)" in text


# ------------------------------------------------------------------------------------------ one output set
def _study(value):
    summary = _hand_made_summary()
    return {"config": _config(note=value), "runs": [], "summary": summary}


def test_report_is_written_as_one_set(tmp_path):
    write_study_outputs(_study("old"), str(tmp_path), "old")
    before = {n: (tmp_path / n).read_bytes() for n in ("study.json", "study.md", "study.png", MANIFEST)}
    assert set_problems(str(tmp_path), MANIFEST) == []

    def broken_png(tmp):
        raise OSError(27, "File too large", tmp)            # what ulimit -f gives, on the last member
    with pytest.raises(WriteError, match="study.png: File too large"):
        write_output_set(str(tmp_path), {"study.json": lambda tmp: open(tmp, "w").write("{}"),
                                         "study.md": lambda tmp: open(tmp, "w").write("new"),
                                         "study.png": broken_png}, MANIFEST)
    assert {n: (tmp_path / n).read_bytes() for n in before} == before       # all old
    assert sorted(os.listdir(tmp_path)) == sorted(before)                    # no temporary left
    write_study_outputs(_study("new"), str(tmp_path), "new")
    assert json.loads((tmp_path / "study.json").read_text())["config"]["note"] == "new"
    assert set_problems(str(tmp_path), MANIFEST) == []
    (tmp_path / "study.md").write_text("edited")                            # a mixed set is detected
    assert set_problems(str(tmp_path), MANIFEST) == ["%s is not the one %s lists" % (tmp_path / "study.md", MANIFEST)]


def test_report_set_under_a_file_size_limit(tmp_path):
    """#19 item 6 for the study: after a failed write (ulimit -f) the old study.json/.md/.png stay together."""
    import subprocess
    import sys
    write_study_outputs(_study("old"), str(tmp_path), "old")
    before = {n: (tmp_path / n).read_bytes() for n in ("study.json", "study.md", "study.png")}
    script = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
              "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000)); "
              "from tests.test_study import _study; from competition.study_report import write_study_outputs; "
              "write_study_outputs(_study('new' * 3000), sys.argv[1], 'new')")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert done.returncode != 0 and "File too large" in done.stdout
    assert {n: (tmp_path / n).read_bytes() for n in before} == before
    assert set_problems(str(tmp_path), MANIFEST) == []


def test_replace_folder_swaps_a_whole_step(tmp_path):
    (tmp_path / "step").mkdir()
    (tmp_path / "step" / "old.txt").write_text("old")
    (tmp_path / "step.new").mkdir()
    (tmp_path / "step.new" / "new.txt").write_text("new")
    replace_folder(str(tmp_path / "step.new"), str(tmp_path / "step"))
    assert os.listdir(tmp_path / "step") == ["new.txt"] and sorted(os.listdir(tmp_path)) == ["step"]
