"""The rules of a Medical Segmentation Decathlon submission, checked per task and per case (the account of
``nnUNet_genesis_submission``; competition/submission.py gives the whole picture and writes the zip).

Every rule is checked and every problem collected before anything is written, so one run lists all
faults. A problem names the file (or folder) and the fault. The rules, per selected task:

* the prediction folder exists (a task without predictions scores 0 on the leaderboard; without
  ``tasks`` all ten are expected, with ``tasks`` only those, and a warning names the rest);
* the Decathlon ``dataset.json`` is readable and lists its test images, and each of them exists in
  ``imagesTs`` (the geometry reference);
* one prediction per test image, named exactly like it; no other file or folder in the prediction
  folder (an extra is an error: a misnamed case is easier to spot that way). Tolerated, with a
  warning, are the by-products ``nnUNet_predict`` itself writes there: ``plans.pkl``,
  ``prediction_time.txt``, ``postprocessing.json`` and, with
  ``--save_npz``, ``<case>.npz`` / ``<case>.pkl`` of a test case. They never go into the zip;
* each prediction passes the label-map validator shared with ``nnUNet_genesis_evaluate``
  (``evaluation.labelmaps``, which documents the dtype and tolerance policy):
  - integrity: a ``.gz`` prediction really is gzip-compressed (SimpleITK reads a mislabelled plain
    file, nibabel and gzip do not), and the file is complete -- its gzip stream ends properly and it
    holds every voxel byte its header announces (SimpleITK zero-fills a truncated file, which would
    otherwise be zipped as a corrupt case);
  - header: a 3-D scalar image with an integer pixel type (float label maps are refused even when
    all their values are integral), on the grid of the test image: same size, and spacing, origin and
    direction equal within ``GEOMETRY_TOLERANCE_MM`` / ``DIRECTION_TOLERANCE``. Test images of
    BrainTumour and Prostate are 4-D (x, y, z, modality): the prediction is compared with their first
    three dimensions;
  - voxel check: every label value is in the task's label set (``evaluation.tasks``).
"""
import json
import os
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Sequence, Tuple

from tqdm import tqdm

from evaluation.tasks import MSD_TASKS, MSDTask, find_msd_task
from evaluation.labelmaps import (GEOMETRY_TOLERANCE_MM, PREDICTION, first_line, geometry_faults, header_faults,
                                  read_header, validate_label_map)
from nnunet_genesis.io import raw_dataset

# One validator and one tolerance policy for label maps, shared with nnUNet_genesis_evaluate
# (evaluation/labelmaps.py documents the policy): spacing and origin within GEOMETRY_TOLERANCE_MM
# (absolute, mm), direction cosines within DIRECTION_TOLERANCE.
GEOMETRY_TOLERANCE = GEOMETRY_TOLERANCE_MM

# What nnUNet_predict leaves in its output folder besides the label maps (see module docstring):
# plans.pkl (predict.py), prediction_time.txt (predict_simple.py), postprocessing.json (predict.py,
# when the model folder has one, e.g. after five folds).
# What nnUNet_predict (v1: plans.pkl, ...) and nnUNetv2_predict (plans.json, dataset.json,
# predict_from_raw_data_args.json; nnunetv2/inference/predict_from_raw_data.py) leave beside the predictions.
NNUNET_BY_PRODUCT_FILES = ("plans.pkl", "prediction_time.txt", "postprocessing.json",
                           "plans.json", raw_dataset.DATASET_JSON, "predict_from_raw_data_args.json")
NNUNET_SOFTMAX_SUFFIXES = (".npz", ".pkl")


class SubmissionError(Exception):
    """The submission is invalid; ``.result`` holds every problem and the per-task summary."""

    def __init__(self, result: "ValidationResult"):
        self.result = result
        super().__init__(result.format_problems())


@dataclass(frozen=True)
class Problem:
    """One fault of the submission: ``where`` is the file or folder (or option) at fault."""
    where: str
    fault: str
    task: Optional[str] = None     # the Decathlon task name, None for problems of the whole run

    def __str__(self):
        return "%s: %s" % (self.where, self.fault)


@dataclass
class TaskSummary:
    """One row of the summary table. ``expected`` is None when the test list could not be read."""
    task: str
    expected: Optional[int]
    found: int
    problems: int
    status: str                    # "ok", "invalid", "missing" (no prediction folder) or "not checked"


@dataclass
class ValidationResult:
    """Outcome of a validation: valid when ``problems`` is empty; ``files`` is the zip's content plan."""
    problems: List[Problem] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    summary: List[TaskSummary] = field(default_factory=list)
    files: List[Tuple[str, str]] = field(default_factory=list)   # (name in the zip, prediction file)

    @property
    def ok(self) -> bool:
        return not self.problems

    def format_problems(self) -> str:
        if not self.problems:
            return "The submission is valid."
        lines = ["The submission is invalid: %d problem(s):" % len(self.problems)]
        lines += ["  - %s" % problem for problem in self.problems]
        return "\n".join(lines)

    def format_table(self) -> str:
        header = ("task", "expected", "found", "problems", "status")
        rows = [(row.task, "?" if row.expected is None else str(row.expected), str(row.found),
                 str(row.problems), row.status) for row in self.summary]
        widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
        lines = []
        for r in [header] + rows:
            # Task names left-aligned, numbers right-aligned, status left-aligned.
            lines.append("  ".join([r[0].ljust(widths[0])] + [r[i].rjust(widths[i]) for i in (1, 2, 3)]
                                   + [r[4]]))
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Headers and the per-case checks
# ----------------------------------------------------------------------------------------------

def check_geometry(prediction_path: str, image_path: str) -> List[str]:
    """Header-only check that a prediction lies on its test image's grid and is a 3-D integer label map.
    Returns the faults (empty when fine); reads the two file headers, never voxel data."""
    prediction = read_header(prediction_path)
    return header_faults(prediction, PREDICTION) + geometry_faults(prediction, read_header(image_path),
                                                                   "the test image")


def case_faults(prediction_path: str, image_path: Optional[str], allowed_labels: Iterable[int]) -> List[str]:
    """All checks of one prediction (evaluation.labelmaps.validate_label_map: integrity, header, geometry
    against the test image, label values). ``image_path`` None: the test image is missing (reported
    elsewhere), so only the checks that do not need it are done."""
    grid, faults = None, []
    if image_path is not None:
        try:
            grid = read_header(image_path)
        except RuntimeError as error:
            faults.append("its test image %s cannot be read (%s)" % (image_path, first_line(error)))
    found, _, _ = validate_label_map(prediction_path, role=PREDICTION, grid=grid, grid_name="the test image",
                                     allowed_labels=allowed_labels)
    return found + faults


# ----------------------------------------------------------------------------------------------
# Tasks, test lists and prediction folders
# ----------------------------------------------------------------------------------------------

def resolve_tasks(tasks: Optional[Iterable]) -> Tuple[List[MSDTask], List[Problem]]:
    """Tasks to submit, ordered by number: all ten when ``tasks`` is None, else those named (Decathlon
    name, nnU-Net name, short name or number) or given as MSDTask objects (see
    ``evaluation.tasks.task_from_dataset_json`` for tasks outside the ten). Unknown names become problems."""
    if tasks is None:
        return sorted(MSD_TASKS.values(), key=lambda t: t.number), []
    tasks = list(tasks)
    found, problems = {}, []
    for key in tasks:
        try:
            # an MSDTask object: a Decathlon-format task of one's own (e.g. the demo's), same rules
            task = key if isinstance(key, MSDTask) else find_msd_task(key)
        except KeyError as error:
            problems.append(Problem("--tasks", error.args[0]))
            continue
        found[task.name] = task
    if not tasks:
        problems.append(Problem("--tasks", "no task selected"))
    return sorted(found.values(), key=lambda t: t.number), problems


def read_test_cases(dataset_json: str) -> Tuple[List[str], List[str]]:
    """File names of the test images listed in a Decathlon dataset.json ("test": ["./imagesTs/x.nii.gz", ...]).
    Returns (names, faults of the dataset.json)."""
    if not os.path.isfile(dataset_json):
        return [], ["does not exist (expected the Decathlon task folder with its dataset.json)"]
    try:
        with open(dataset_json) as f:
            dataset = json.load(f)
    except (OSError, ValueError) as error:
        return [], ["cannot be read as JSON (%s)" % error]
    test = dataset.get("test") if isinstance(dataset, dict) else None
    if not isinstance(test, list) or not test:
        return [], ["has no non-empty 'test' list of test images"]
    names, faults = [], []
    for entry in test:
        if not isinstance(entry, str) or not os.path.basename(entry):
            faults.append("'test' entry %r is not an image path" % (entry,))
            continue
        name = os.path.basename(entry)
        if name in names:
            faults.append("lists test image %s twice" % name)
            continue
        names.append(name)
    if isinstance(dataset.get("numTest"), int) and dataset["numTest"] != len(test):
        faults.append("numTest is %d but the 'test' list has %d entries" % (dataset["numTest"], len(test)))
    return names, faults


def find_prediction_folder(pred_root: str, task: MSDTask) -> Tuple[Optional[str], Optional[str]]:
    """(folder, fault): the task's prediction folder under ``pred_root``, named as the Decathlon
    (Task04_Hippocampus), nnU-Net v1 (Task004_Hippocampus) or nnU-Net v2 (Dataset004_Hippocampus) names it."""
    candidates = [os.path.join(pred_root, name) for name in task.folder_names]
    existing = [path for path in candidates if os.path.lexists(path)]
    if len(existing) > 1:
        return None, ("%s exist; which predictions to submit is ambiguous, keep one"
                      % " and ".join(os.path.basename(p) for p in existing))
    if not existing:
        return None, ("no prediction folder %s (or %s); a task without predictions scores 0 on the "
                      "leaderboard, select the tasks you submit with --tasks"
                      % (task.name, " or ".join(task.folder_names[1:])))
    if not os.path.isdir(existing[0]):
        return None, "%s is not a folder" % existing[0]
    return existing[0], None


def _extra_fault(name: str, expected: Sequence[str]) -> str:
    stem = name.split(".", 1)[0]
    alike = [case for case in expected if case.split(".", 1)[0] == stem]
    hint = " (named like test case %s but with another extension)" % alike[0] if alike else ""
    return "is not a test case of this task; remove it from the prediction folder%s" % hint


def _is_nnunet_by_product(name: str, expected_cases: Sequence[str]) -> bool:
    if name in NNUNET_BY_PRODUCT_FILES:
        return True
    stems = {case[:-len(".nii.gz")] for case in expected_cases if case.endswith(".nii.gz")}
    return any(name.endswith(suffix) and name[:-len(suffix)] in stems for suffix in NNUNET_SOFTMAX_SUFFIXES)


# ----------------------------------------------------------------------------------------------
# The whole validation
# ----------------------------------------------------------------------------------------------

@dataclass
class _TaskPlan:
    """What the cheap, listing-only pass found for one task."""
    problems: List[Problem] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    cases: List[Tuple[str, Optional[str]]] = field(default_factory=list)  # (prediction, test image or None)
    files: List[Tuple[str, str]] = field(default_factory=list)            # (name in the zip, prediction)
    expected: Optional[int] = None
    folder_missing: bool = False


def _plan_task(task: MSDTask, pred_root: str, decathlon_root: str) -> _TaskPlan:
    """Test list, test images and prediction folder listing of one task; no image is opened."""
    plan = _TaskPlan()

    def problem(where, fault):
        plan.problems.append(Problem(where, fault, task.name))

    # The prediction folder first: when it is missing, that is the problem to read first.
    folder, folder_fault = find_prediction_folder(pred_root, task)
    if folder_fault is not None:
        problem(os.path.join(pred_root, task.name), folder_fault)
        plan.folder_missing = not any(os.path.lexists(os.path.join(pred_root, name))
                                      for name in task.folder_names)

    task_dir = os.path.join(decathlon_root, task.name)
    dataset_json = raw_dataset.dataset_json(task_dir)
    expected, json_faults = read_test_cases(dataset_json)
    for fault in json_faults:
        problem(dataset_json, fault)
    plan.expected = len(expected) if expected else None
    images = {}
    for name in expected:
        image = os.path.join(raw_dataset.images_ts(task_dir), name)
        if os.path.isfile(image):
            images[name] = image
        else:
            problem(image, "test image listed in %s is missing from the Decathlon folder" % dataset_json)
            images[name] = None
    if folder is None:
        return plan

    present = set(os.listdir(folder))
    for name in expected:
        path = os.path.join(folder, name)
        if name not in present:
            problem(path, "missing: no prediction for test image %s (a missing case scores 0)" % name)
        elif not os.path.isfile(path):
            problem(path, "is not a file")
        else:
            plan.cases.append((path, images[name]))
            plan.files.append(("%s/%s" % (task.name, name), path))
    if not expected:
        return plan      # without a test list every file would look extra; the dataset.json fault says it all
    for name in sorted(present - set(expected)):
        path = os.path.join(folder, name)
        if _is_nnunet_by_product(name, expected) and os.path.isfile(path):
            plan.warnings.append("%s: nnU-Net by-product, ignored (not put into the zip)" % path)
        else:
            problem(path, _extra_fault(name, expected))
    return plan


def validate_submission(pred_root: str, decathlon_root: str, tasks: Optional[Iterable] = None,
                        progress: bool = True) -> ValidationResult:
    """Check the predictions of the selected tasks (all ten when ``tasks`` is None) against the
    Decathlon test lists and test images. Never raises for a bad submission: look at ``.problems``."""
    selected, problems = resolve_tasks(tasks)
    result = ValidationResult(problems=problems)
    if tasks is not None and selected:
        left_out = [name for name in MSD_TASKS if name not in {t.name for t in selected}]
        if left_out:
            result.warnings.append("only %d of %d tasks selected; tasks not submitted score 0 on the "
                                   "leaderboard: %s" % (len(selected), len(MSD_TASKS), ", ".join(left_out)))
    roots_ok = True
    for option, root in (("-i PRED_ROOT", pred_root), ("-d DECATHLON_ROOT", decathlon_root)):
        if not os.path.isdir(root):
            result.problems.append(Problem(root, "is not a folder (%s)" % option))
            roots_ok = False
    if not roots_ok:
        result.summary = [TaskSummary(task.name, None, 0, 0, "not checked") for task in selected]
        return result

    # The cheap listing pass for every task first, so that the voxel pass shows one progress bar.
    plans = {task.name: _plan_task(task, pred_root, decathlon_root) for task in selected}
    case_problems = {task.name: [] for task in selected}
    cases = [(task, prediction, image) for task in selected for prediction, image in plans[task.name].cases]
    for task, prediction, image in tqdm(cases, desc="checking predictions", unit="case",
                                        disable=not progress or not cases):
        case_problems[task.name] += [Problem(prediction, fault, task.name)
                                     for fault in case_faults(prediction, image, task.labels.keys())]

    for task in selected:
        plan = plans[task.name]
        task_problems = plan.problems + case_problems[task.name]
        result.problems += task_problems
        result.warnings += plan.warnings
        result.files += plan.files
        status = "missing" if plan.folder_missing else ("invalid" if task_problems else "ok")
        result.summary.append(TaskSummary(task.name, plan.expected, len(plan.cases), len(task_problems), status))
    return result
