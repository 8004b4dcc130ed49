"""One Decathlon task end to end with the stock nnU-Net v1 commands: ``nnUNet_genesis_run_task``.

The pipeline only *runs commands a user could type*: every step is a stock console script (the scripts
installed beside the running Python), started as a subprocess that inherits the environment, and every
command is printed (``shlex.join``, copy-pasteable) before it runs.  Nothing here trains, converts or
predicts by itself, so a step that fails can be rerun, changed or continued by hand from the printed
line.  The six steps (convert, plan, prepare, pretrain, finetune, predict), what each runs and when it
counts as done, are described in :mod:`competition.pipeline_steps`.

The parts, each in a module of its own:

* :mod:`competition.pipeline_config`: the user's choices (:class:`PipelineOptions`) checked and turned into
  every name, id and folder (:class:`PipelineConfig`, :func:`make_config`);
* :mod:`competition.pipeline_checks`: the done-checks, read from the disk;
* :mod:`competition.pipeline_steps`: the six steps, their commands and resume rules (:func:`plan_steps`);
* here: running them (:func:`run_task`, :func:`run_config`), printing every command first.

Every name this module offered before the split is still importable from it.
"""
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import List

from competition.pipeline_checks import (FINAL_CHECKPOINT, PREPARE_REPORT, RESUMABLE_CHECKPOINTS,  # noqa: F401
                                         VALIDATION_SUMMARY, convert_status, plan_status, prepare_status)
from competition.pipeline_config import (DEFAULT_FOLDS, DEFAULT_PLANS_IDENTIFIER, DEFAULT_PRED_ROOT,  # noqa: F401
                                         DEFAULT_PRETRAINER, DEFAULT_TRAINER, FIVE_FOLDS, NETWORK, PRETRAIN_ID_OFFSET,
                                         PipelineConfig, PipelineConfigError, PipelineError, PipelineOptions,
                                         default_pretrain_task_id, make_config, read_decathlon_task)
from competition.pipeline_steps import (STEP_NAMES, STEP_PLANNERS, STEP_TITLES, Part, Step,  # noqa: F401
                                        _steps_until, plan_step, plan_steps)
from evaluation.tasks import MSD_TASKS


@dataclass
class StepResult:
    name: str
    commands: List[List[str]]        # what ran (or, in a dry run, would run); [] when skipped
    status: str                      # "ran", "skipped" or "dry_run"
    seconds: float


# ----------------------------------------------------------------------------------------------------------------
# running
# ----------------------------------------------------------------------------------------------------------------

def format_command(command, env=None):
    """The copy-pasteable line for ``command``: the script by name when the PATH finds that very script,
    by absolute path otherwise."""
    env = os.environ if env is None else env
    script = command[0]
    name = os.path.basename(script)
    found = shutil.which(name, path=env.get("PATH", ""))
    shown = name if found and os.path.realpath(found) == os.path.realpath(script) else script
    return shlex.join([shown] + [str(a) for a in command[1:]])


def format_seconds(seconds):
    """'12.3 s' below a minute, 'H:MM:SS' above."""
    if seconds < 60:
        return "%.1f s" % seconds
    seconds = int(round(seconds))
    return "%d:%02d:%02d" % (seconds // 3600, seconds // 60 % 60, seconds % 60)


def _run_command(step, command, env):
    line = format_command(command, env)
    sys.stdout.flush()
    sys.stderr.flush()
    if not os.path.isfile(command[0]):
        raise PipelineError("step %s: %s not found: is nnU-Net installed in this Python environment (%s)?"
                            % (step.name, command[0], sys.executable), step=step.name, command=line)
    try:
        returncode = subprocess.run(command, env=env).returncode
    except OSError as err:
        raise PipelineError("step %s: cannot start %s (%s)" % (step.name, line, err), step=step.name,
                            command=line) from None
    if returncode != 0:
        raise PipelineError("step %d/%d %s failed (exit status %d) running:\n  %s\nFix the cause (see the output "
                            "above) and run the same nnUNet_genesis_run_task command again: finished steps are "
                            "skipped." % (step.number, len(STEP_NAMES), step.name, returncode, line),
                            step=step.name, command=line, returncode=returncode)


def run_task(decathlon_dir, stop_after=None, dry_run=False, env=None, log=print, options=None,
             **choices) -> List[StepResult]:
    """Run a Decathlon task end to end with the stock commands (see :mod:`competition.pipeline_steps`).

    ``options`` / ``choices``: the user's choices, as for :func:`~competition.pipeline_config.make_config`
    (``run_task(d, folds=(0,), pred_root=...)``).  Raises PipelineConfigError on bad input (before anything
    runs) and PipelineError when a command fails or a step leaves its output incomplete.
    """
    env = dict(os.environ if env is None else env)
    return run_config(make_config(decathlon_dir, options, env=env, **choices), stop_after, dry_run, env, log)


def run_config(config: PipelineConfig, stop_after=None, dry_run=False, env=None, log=print) -> List[StepResult]:
    """Run the steps of a checked configuration up to ``stop_after``.

    Prints (through ``log``) a header per step, every command before it runs and the time each step took;
    finished steps print ``[skip] <step>: <why>``.  ``dry_run`` prints the commands the current disk state
    calls for and runs nothing.
    """
    env = dict(os.environ if env is None else env)
    names = _steps_until(stop_after)
    log("%s -> %s (pretraining task %s), folds %s%s" % (config.decathlon_name, config.task_name,
                                                         config.pretrain_task_name, " ".join(config.folds),
                                                         " [dry run: nothing is run]" if dry_run else ""))
    results = []
    total_start = time.time()
    for name in names:
        start = time.time()
        step = plan_step(name, config)       # planned now: the earlier steps have just changed the disk
        log("[%d/%d] %s: %s" % (step.number, len(STEP_NAMES), name, step.title))
        if step.done:
            log("[skip] %s: %s" % (name, "; ".join(step.skip_reasons)))
            results.append(StepResult(name, [], "skipped", time.time() - start))
            continue
        for reason in step.skip_reasons:
            log("[skip] %s %s" % (name, reason))
        for part in step.parts:
            if part.done is not None:
                continue
            if part.note:
                log("  (%s)" % part.note)
            log("%s %s" % ("[dry run]" if dry_run else "$", format_command(part.command, env)))
            if not dry_run:
                _run_command(step, part.command, env)
        if not dry_run:
            after = plan_step(name, config)
            if not after.done:
                raise PipelineError("step %d/%d %s: its command(s) succeeded but its output is incomplete: %s"
                                    % (step.number, len(STEP_NAMES), name, "; ".join(after.pending)), step=name)
        seconds = time.time() - start
        results.append(StepResult(name, step.commands, "dry_run" if dry_run else "ran", seconds))
        if not dry_run:
            log("[%d/%d] %s finished in %s" % (step.number, len(STEP_NAMES), name, format_seconds(seconds)))
    if stop_after is not None and stop_after != STEP_NAMES[-1]:
        log("stopped after %s (as asked: stop_after)" % stop_after)
    elif not dry_run:
        log("predictions: %s" % config.prediction_dir)
        if config.decathlon_name in MSD_TASKS:
            log("next, check them for the leaderboard (and pack all ten tasks with -o submission.zip):\n  %s"
                % shlex.join(["nnUNet_genesis_submission", "-i", config.pred_root, "-d",
                              os.path.dirname(config.decathlon_dir), "--tasks", config.decathlon_name,
                              "--check_only"]))
    if not dry_run:
        log("total time %s" % format_seconds(time.time() - total_start))
    return results
