"""What a pretrained checkpoint's own pretraining record says: did the network learn to restore?

A pretraining trainer (v1 ``nnUNetTrainerV2_GenesisPretrain``, v2 ``nnUNetTrainer_GenesisPretrain``) writes
beside its checkpoint, in the fold folder:

* ``validation_restoration/summary.json`` when training ends (``pretraining.restoration_report``): the
  final network's per-distortion scores on validation cases, ``verdict`` (per judged distortion: does it beat
  its baseline) and ``collapse`` (the reasons it looks collapsed, [] if not);
* ``restoration_history.json`` every scored epoch (``pretraining.record_restoration``): ``[{"epoch",
  "scores", "collapse"}]``.

:func:`read_record` turns them into one verdict for the checkpoint:

* ``"not learned"``: the final state (the summary; without one, the last history entry) is collapsed, or
  below its baseline on any judged distortion (identity for local shuffling and in-painting, the mean for
  the non-linear map and out-painting; ``nnunet_genesis.pretraining.scores``);
* ``"learned"``: the final state beats every baseline and is not collapsed;
* ``"unknown"``: a record is there but cannot say (unreadable, no scores, or older than the checkpoint: the
  network was trained further after it was written);
* ``None`` (no record at all): e.g. the published Models Genesis weights, or weights from elsewhere.

``reasons`` has one line per finding (each judged distortion with its numbers, collapse warnings, earlier
collapse warnings in the history). The fine-tuning trainers print the verdict and refuse a ``"not learned"``
checkpoint unless ``nnUNet_genesis_allow_unlearned=1`` (``nnunet_genesis.transfer.finetuning``); the study reports it.
Framework-free: JSON files only.
"""
import json
import os
from typing import Dict, List, Optional

from nnunet_genesis.pretraining.scores import INFORMATION_DESTROYED, INFORMATION_KEPT, restoration_verdict

SUMMARY = os.path.join("validation_restoration", "summary.json")
HISTORY = "restoration_history.json"   # pretraining.HISTORY_FILE (not imported: that module needs torch)
LEARNED, NOT_LEARNED, UNKNOWN = "learned", "not learned", "unknown"
ALLOW_UNLEARNED_ENV = "nnUNet_genesis_allow_unlearned"


def _read_json(path: str):
    with open(path) as f:
        return json.load(f)


def _judged_lines(scores: Dict) -> List[str]:
    """One line per judged distortion: network against its baseline."""
    verdict = restoration_verdict(scores)
    lines = []
    for kind, beats in verdict.items():
        baseline = "identity" if kind in INFORMATION_KEPT else "mean"
        lines.append("%s: R^2 %.3f %s %s %.3f" % (kind, scores[kind]["network"], "beats" if beats else "below",
                                                  baseline, scores[kind][baseline]))
    return lines


def _history_collapses(history) -> Optional[str]:
    epochs = [int(h.get("epoch", -1)) for h in history if h.get("collapse")]
    if not epochs:
        return None
    return "COLLAPSE warnings during pretraining at %d of %d scored epochs (epochs %d-%d)" % (
        len(epochs), len(history), min(epochs), max(epochs))


def read_record(weights_path: str) -> Optional[Dict]:
    """``{"verdict": "learned" | "not learned" | "unknown", "reasons": [one line each], "source": path}`` from
    the pretraining record beside ``weights_path`` (see module doc); None when there is no record."""
    folder = os.path.dirname(os.path.abspath(weights_path))
    summary_path, history_path = os.path.join(folder, SUMMARY), os.path.join(folder, HISTORY)
    if not os.path.isfile(summary_path) and not os.path.isfile(history_path):
        return None
    source = summary_path if os.path.isfile(summary_path) else history_path
    try:
        summary = _read_json(summary_path) if os.path.isfile(summary_path) else None
        history = _read_json(history_path) if os.path.isfile(history_path) else []
        if summary is not None:
            scores, collapse, state = summary["scores"], summary.get("collapse", []), "end of training"
        else:
            if not history:
                return {"verdict": UNKNOWN, "reasons": ["%s holds no scored epoch" % history_path], "source": source}
            scores, collapse = history[-1]["scores"], history[-1].get("collapse", [])
            state = "last scored epoch (%s), no final summary" % history[-1].get("epoch")
        judged = restoration_verdict(scores)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return {"verdict": UNKNOWN, "reasons": ["cannot read the pretraining record: %s" % error], "source": source}
    if not judged:
        return {"verdict": UNKNOWN, "reasons": ["%s scores none of %s" % (
            source, ", ".join(INFORMATION_KEPT + INFORMATION_DESTROYED))], "source": source}
    reasons = ["%s: %s" % (state, line) for line in _judged_lines(scores)]
    reasons += ["%s: collapsed: %s" % (state, reason) for reason in collapse]
    earlier = _history_collapses(history)
    if earlier:
        reasons.append(earlier)
    if os.path.isfile(weights_path) and os.path.getmtime(source) + 1.0 < os.path.getmtime(weights_path):
        return {"verdict": UNKNOWN, "reasons": ["%s is older than %s (trained further after it was written)"
                                                % (source, weights_path)] + reasons, "source": source}
    verdict = NOT_LEARNED if collapse or not all(judged.values()) else LEARNED
    return {"verdict": verdict, "reasons": reasons, "source": source}


def describe(record: Optional[Dict], weights_path: str) -> str:
    """The line a fine-tuning run prints at its start."""
    if record is None:
        return ("Pretraining record: none beside %s (weights from elsewhere, e.g. the published Models Genesis "
                "ones): transferred without a check." % weights_path)
    return "Pretraining record (%s): %s -- %s" % (record["source"], record["verdict"].upper(),
                                                  "; ".join(record["reasons"]))


def allow_unlearned(environ=os.environ) -> bool:
    return environ.get(ALLOW_UNLEARNED_ENV, "").strip() not in ("", "0")


def refusal(record: Optional[Dict], weights_path: str, environ=os.environ) -> Optional[str]:
    """The one refusal line when ``record`` says the checkpoint did not learn and the user has not allowed it;
    None otherwise."""
    if record is None or record["verdict"] != NOT_LEARNED or allow_unlearned(environ):
        return None
    failed = [r for r in record["reasons"] if " below " in r or "collapsed" in r] or record["reasons"]
    return ("Pretrained weights %s REFUSED: their own pretraining record (%s) says they did not learn (%s); "
            "fine-tuning from them costs Dice (issue #18). Pretrain again (see the COLLAPSE advice in its log); "
            "or, since the record scores only the pretraining's own validation cases, score the weights on images "
            "like your task's (nnUNet_genesis_prepare them, then nnUNet_genesis_restoration -w ... -t <that task>) "
            "and, if they beat the baselines there, set %s=1 to fine-tune from them."
            % (weights_path, record["source"], "; ".join(failed), ALLOW_UNLEARNED_ENV))
