"""What produced each of the study's results, and what a resume does when it differs.

Every step writes a record beside its output (JSON, atomically):

* the study (``OUT/study_record.json``): nnU-Net version, task, fold, the SHA-256 of the plans file;
* a training (``FOLD_DIR/study_training.json``, written before ``nnUNet_train`` starts): arm, trainer,
  count, seed, its training and validation cases, the plans' SHA-256 and, for the Genesis arm, the
  weights' SHA-256 (and path);
* a prediction (``PRED_DIR/study_prediction.json``): the SHA-256 of the checkpoint it was predicted with
  and every test image's name and SHA-256;
* an evaluation (``EVAL_DIR/study_evaluation.json``): every prediction's and every test label map's
  name and SHA-256, the labels scored and the NSD tolerance.

A step is reused only when its record equals what the current inputs would record (:func:`changes`);
what follows from a difference is :data:`POLICY` (the module docstring of ``competition/study.py`` lists
it per input). Because a prediction records its checkpoint and an evaluation its predictions, a step
redone invalidates exactly the steps that depend on it, and nothing else.
"""
import json
import os
from typing import Dict, List, Optional

from competition.study_inputs import StudyError
from nnunet_genesis.io.atomic import write_json_atomic
from nnunet_genesis.io.fingerprint import short

STUDY_RECORD = "study_record.json"
TRAINING_RECORD = "study_training.json"
PREDICTION_RECORD = "study_prediction.json"
EVALUATION_RECORD = "study_evaluation.json"

RECOMPUTE, REFUSE = "recompute", "refuse"
#: per recorded key: recompute the step (and what depends on it) or refuse to resume
POLICY = {
    # the study
    "backend": REFUSE, "task": REFUSE, "fold": REFUSE, "plans_sha256": REFUSE, "validation_cases": REFUSE,
    # a training
    "arm": REFUSE, "trainer": REFUSE, "count": REFUSE, "seed": REFUSE, "train_cases": REFUSE,
    "weights_sha256": RECOMPUTE,
    # a prediction
    "checkpoint_sha256": RECOMPUTE, "test_images": RECOMPUTE,
    # an evaluation
    "predictions": RECOMPUTE, "test_labels": RECOMPUTE, "labels": RECOMPUTE, "tolerance_mm": RECOMPUTE,
}
WHAT = {"plans_sha256": "the task's plans file", "weights_sha256": "the pretrained weights",
        "checkpoint_sha256": "the run's checkpoint", "test_images": "the test images", "predictions": "the predictions",
        "test_labels": "the test label maps", "labels": "the labels scored (-l)", "tolerance_mm": "the NSD tolerance",
        "train_cases": "the run's training cases", "validation_cases": "the fold's validation cases"}


def read_record(path: str, hint: str = "move its folder away to redo that step") -> Optional[dict]:
    """The record at ``path``; None when there is none. StudyError (ending in ``hint``) for a damaged one."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError) as error:
        raise StudyError("%s is damaged (%s): %s" % (path, error, hint)) from None
    if not isinstance(record, dict):
        raise StudyError("%s is damaged (not a JSON object): %s" % (path, hint))
    return record


def write_record(record: dict, path: str) -> None:
    write_json_atomic(record, path)


def _describe(key: str, old, new) -> str:
    what = WHAT.get(key, key)
    if isinstance(old, str) and isinstance(new, str) and len(old) == 64 and len(new) == 64:
        return "%s (sha256 %s -> %s)" % (what, short(old), short(new))
    if isinstance(old, dict) and isinstance(new, dict):
        gone, added = sorted(set(old) - set(new)), sorted(set(new) - set(old))
        edited = sorted(k for k in set(old) & set(new) if old[k] != new[k])
        parts = [("%d changed (%s)" % (len(edited), ", ".join(edited[:3]))) if edited else "",
                 ("%d gone (%s)" % (len(gone), ", ".join(gone[:3]))) if gone else "",
                 ("%d new (%s)" % (len(added), ", ".join(added[:3]))) if added else ""]
        return "%s: %s" % (what, "; ".join(p for p in parts if p))
    return "%s (%s -> %s)" % (what, json.dumps(old), json.dumps(new))


def changes(recorded: dict, current: dict) -> Dict[str, str]:
    """{key: description} of every key of ``current`` whose recorded value differs."""
    return {key: _describe(key, recorded.get(key), value) for key, value in current.items()
            if recorded.get(key) != value}


def decide(recorded: Optional[dict], current: dict, where: str, fresh_hint: str) -> List[str]:
    """What changed since ``recorded`` (empty: reuse). StudyError (one line) when a changed key's policy
    is to refuse: it names the file, what changed and ``fresh_hint`` (how to start afresh)."""
    if recorded is None:
        return []
    found = changes(recorded, current)
    refused = [text for key, text in found.items() if POLICY.get(key, REFUSE) == REFUSE]
    if refused:
        raise StudyError("%s: %s changed since this study recorded it; %s" % (where, "; ".join(refused), fresh_hint))
    return list(found.values())


def check_study_record(out_dir: str, current: dict, write: bool = True) -> None:
    """The study folder belongs to this backend, task, fold and plans (refused otherwise); recorded now if new."""
    path = os.path.join(out_dir, STUDY_RECORD)
    recorded = read_record(path, "start afresh with a new -o")
    decide(recorded, current, path, "start afresh with a new -o (the runs in %s were made from the recorded inputs)"
           % out_dir)
    if write and recorded is None:
        write_record(current, path)
