"""Shared pytest set-up: a private nnU-Net workspace and small Decathlon-format tasks planned by stock nnU-Net.

nnU-Net v1 reads its three folders from the environment once, when ``nnunet.paths`` is first imported, so
they are set here at import time -- before any test module imports nnunet -- to a fresh temporary
directory.  A user's real nnU-Net folders are never touched.
"""
import atexit
import dataclasses
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile

_WORKSPACE = tempfile.mkdtemp(prefix="nnunet_genesis_tests_")
os.environ["nnUNet_raw_data_base"] = os.path.join(_WORKSPACE, "nnUNet_raw_data_base")
os.environ["nnUNet_preprocessed"] = os.path.join(_WORKSPACE, "nnUNet_preprocessed")
os.environ["RESULTS_FOLDER"] = os.path.join(_WORKSPACE, "nnUNet_results")
# nnU-Net's training data augmentation starts this many worker processes (default: 12); we have two cores.
os.environ["nnUNet_n_proc_DA"] = "2"
# The end-to-end tests pretrain for a few iterations, which cannot learn, and then fine-tune from the result:
# let the fine-tuning trainers take such checkpoints (they still print the record's verdict). The refusal
# itself is tested with this variable removed (tests/test_pretraining_record.py).
os.environ["nnUNet_genesis_allow_unlearned"] = "1"
for _key in ("nnUNet_raw_data_base", "nnUNet_preprocessed", "RESULTS_FOLDER"):
    os.makedirs(os.environ[_key], exist_ok=True)
atexit.register(shutil.rmtree, _WORKSPACE, ignore_errors=True)

import pytest  # noqa: E402  (after the environment is set, on purpose)

from tests.msd_fixtures import write_ct_task, write_mri_task  # noqa: E402

NNUNET_WORKSPACE = _WORKSPACE
pytest_plugins = ["pytester"]   # tests/test_test_folders.py runs small inner sessions


def stock_command(name):
    """Path of a console script installed beside the running Python (the venv's bin folder)."""
    return os.path.join(os.path.dirname(sys.executable), name)


def subprocess_env(**extra):
    """Environment for child processes: ours (with the nnU-Net folders) plus ``extra``.

    Numerical libraries are held to one thread per process because the stock commands already start one
    worker process per core; more threads would only oversubscribe the two cores.
    """
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_stock(args, env=None, timeout=900, cwd=None):
    """Run a command, capturing stdout and stderr together; return its output.

    On a non-zero exit (or a timeout) raise AssertionError showing the command and the last 4000
    characters of its output, so that a failing stock step explains itself in the pytest report.
    """
    args = [str(a) for a in args]
    try:
        done = subprocess.run(args, env=env if env is not None else subprocess_env(), cwd=cwd,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        output = err.output.decode(errors="replace") if isinstance(err.output, bytes) else (err.output or "")
        raise AssertionError("command timed out after %ss: %s\n--- last output ---\n%s"
                             % (timeout, " ".join(args), output[-4000:])) from None
    if done.returncode != 0:
        raise AssertionError("command failed (exit %d): %s\n--- last output ---\n%s"
                             % (done.returncode, " ".join(args), done.stdout[-4000:]))
    return done.stdout


@dataclasses.dataclass(frozen=True)
class PlannedTask:
    """A Decathlon-format task converted and planned (3D only) by stock nnU-Net."""
    decathlon_dir: str      # the TaskXX_Name folder as the Decathlon ships it
    task_id: int            # nnU-Net task id, e.g. 901
    task_name: str          # e.g. "Task901_FakeCT"
    raw_dir: str            # $nnUNet_raw_data_base/nnUNet_raw_data/<task_name>
    preprocessed_dir: str   # $nnUNet_preprocessed/<task_name>
    num_modalities: int
    env: dict               # environment for subprocesses (nnU-Net folders set)

    @property
    def plans_3d_file(self):
        return os.path.join(self.preprocessed_dir, "nnUNetPlansv2.1_plans_3D.pkl")

    def load_plans_3d(self):
        with open(self.plans_3d_file, "rb") as f:
            return pickle.load(f)


def _describe_plans(plans):
    """One line per 3D stage: patch size, spacing, pooling and convolution kernels."""
    lines = ["normalization=%s base_features=%s modalities=%s classes=%s"
             % (plans["normalization_schemes"], plans["base_num_features"], plans["num_modalities"],
                plans["num_classes"])]
    for stage, p in plans["plans_per_stage"].items():
        lines.append("  stage %s: patch %s spacing %s batch %s pools %s convs %s"
                     % (stage, [int(v) for v in p["patch_size"]], [float(v) for v in p["current_spacing"]], p["batch_size"],
                        p["pool_op_kernel_sizes"], p["conv_kernel_sizes"]))
    return "\n".join(lines)


def plan_decathlon_task(decathlon_dir, task_id):
    """Convert with nnUNet_convert_decathlon_task, then plan and preprocess (3D only) with the stock command."""
    env = subprocess_env()
    run_stock([stock_command("nnUNet_convert_decathlon_task"), "-i", decathlon_dir,
               "-output_task_id", task_id, "-p", 2], env=env)
    task_name = "Task%03d_%s" % (task_id, os.path.basename(decathlon_dir.rstrip("/")).split("_", 1)[1])
    run_stock([stock_command("nnUNet_plan_and_preprocess"), "-t", task_id, "-pl2d", "None",
               "-tl", 2, "-tf", 2], env=env)
    with open(os.path.join(decathlon_dir, "dataset.json")) as f:
        num_modalities = len(json.load(f)["modality"])
    task = PlannedTask(
        decathlon_dir=decathlon_dir, task_id=task_id, task_name=task_name,
        raw_dir=os.path.join(os.environ["nnUNet_raw_data_base"], "nnUNet_raw_data", task_name),
        preprocessed_dir=os.path.join(os.environ["nnUNet_preprocessed"], task_name),
        num_modalities=num_modalities, env=env)
    print("\n%s plans (3D):\n%s" % (task_name, _describe_plans(task.load_plans_3d())))
    return task


@pytest.fixture(scope="session")
def ct_task(tmp_path_factory):
    """Task901_FakeCT: 1-channel CT-like task, 8 training + 3 test cases, planned and preprocessed in 3D."""
    root = str(tmp_path_factory.mktemp("decathlon_ct"))
    return plan_decathlon_task(write_ct_task(root, "Task91_FakeCT"), 901)


@pytest.fixture(scope="session")
def mri_task(tmp_path_factory):
    """Task902_FakeMRI: 2-channel (T2, ADC) MRI-like task, 8 training + 2 test cases, planned in 3D."""
    root = str(tmp_path_factory.mktemp("decathlon_mri"))
    return plan_decathlon_task(write_mri_task(root, "Task92_FakeMRI"), 902)


# ------------------------------------------------------------------------------------------------------------
# Two tiers: the end-to-end tier runs nnU-Net's stock console scripts (planning, training, prediction) or our
# own commands as processes; the fast tier is everything else. ``-m "not e2e"`` runs the fast tier alone.
# A test is end-to-end when its own body or any fixture it uses (at any depth) starts a process.
# ------------------------------------------------------------------------------------------------------------
_STARTS_A_PROCESS = ("run_stock(", "stock_command(", "subprocess.", "plan_decathlon_task(")


def _starts_a_process(function, seen=None) -> bool:
    """Whether ``function``'s source starts a process, directly or through a helper of its own module that it
    calls by name (followed to any depth)."""
    import inspect
    seen = set() if seen is None else seen
    if function in seen:
        return False
    seen.add(function)
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return False
    if any(call in source for call in _STARTS_A_PROCESS):
        return True
    module = inspect.getmodule(function)
    helpers = [v for k, v in vars(module).items() if inspect.isfunction(v) and k + "(" in source] if module else []
    return any(_starts_a_process(h, seen) for h in helpers)


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: runs stock nnU-Net or our console scripts as processes (slow tier)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("e2e"):
            continue
        functions = [getattr(item, "function", None)]
        for name in item.fixturenames:
            for fixturedef in item._fixtureinfo.name2fixturedefs.get(name, ()):
                functions.append(fixturedef.func)
        if any(f is not None and _starts_a_process(f) for f in functions):
            item.add_marker(pytest.mark.e2e)


# ------------------------------------------------------------------------------------------------------------
# Disk. A full run writes several GB (many tests copy a ~100 MB checkpoint into their folder) and a CI run once
# ran out of space (2026-12-05). pytest.ini's tmp_path_retention_policy = failed removes a passing test's tmp_path
# when the test ends and a passing run's whole base folder at its end; module_tmp_path_factory gives a module's
# shared fixtures the same rule, at the end of the module.
# ------------------------------------------------------------------------------------------------------------
_MODULES_WITH_FAILURES = set()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:   # in set-up, call or teardown
        _MODULES_WITH_FAILURES.add(item.nodeid.split("::", 1)[0])
    return report


class ModuleTempFolders:
    """``mktemp(name)``: a new folder ``name`` in one test module's folder (a name once per module)."""

    def __init__(self, root):
        self.root = root

    def mktemp(self, name):
        path = self.root / name
        path.mkdir()
        return path


@pytest.fixture(scope="module")
def module_tmp_path_factory(request, tmp_path_factory):
    """Folders for a test module's module-scoped fixtures, all in one folder of the module's own.

    That folder is removed when the module's last test has ended, under the rule pytest.ini sets for a test's
    tmp_path (``tmp_path_retention_policy``): kept with ``all``; with ``failed``, kept when a test of the module
    failed or errored (for a look), removed otherwise; removed with ``none``.
    """
    root = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    yield ModuleTempFolders(root)
    policy = request.config.getini("tmp_path_retention_policy")
    if policy == "all" or (policy == "failed" and request.node.nodeid in _MODULES_WITH_FAILURES):
        return
    shutil.rmtree(root, ignore_errors=True)
