"""The six steps of ``nnUNet_genesis_run_task``: their commands, planned from the configuration and the disk.

The pipeline only *runs commands a user could type*: every step is a stock console script (the scripts
installed beside the running Python), started as a subprocess that inherits the environment, and every
command is printed (``shlex.join``, copy-pasteable) before it runs.  Nothing here trains, converts or
predicts by itself, so a step that fails can be rerun, changed or continued by hand from the printed
line.  The six steps, for a Decathlon folder ``TaskXX_Name`` and ``TASK_ID`` (default XX), giving
``TaskNNN_Name`` with NNN = TASK_ID, and ``PRETRAIN_ID`` (default TASK_ID + 500, or TASK_ID - 500 when
TASK_ID > 500) giving ``TaskMMM_Genesis<Name>``:

1. convert   ``nnUNet_convert_decathlon_task -i TaskXX_Name -output_task_id NNN -p NP``
             done when ``$nnUNet_raw_data_base/nnUNet_raw_data/TaskNNN_Name/dataset.json`` exists (the
             converter copies it last, after every image was split).
2. plan      ``nnUNet_plan_and_preprocess -t NNN -pl2d None -tl NP -tf NP``
             done when the 3D plans ``<PLANS>_plans_3D.pkl`` exist and the last (full-resolution) stage
             folder holds ``.npz`` + ``.pkl`` for every training case of the raw dataset.json
             (with ``--plan_2d`` the 2D plans and their data too).
3. prepare   ``nnUNet_genesis_prepare -t NNN -i TaskXX_Name [EXTRA ...] -o MMM -np NP``
             done when ``prepare_report.json`` of TaskMMM lists exactly these sources, this target and
             plans identifier, and every case it lists has its ``.npz`` + ``.pkl``.  Otherwise the command
             runs again; it is incremental itself (finished cases are kept), so adding ``--unlabeled``
             sources later only prepares the new cases.  Also done once the pretraining is finished (its
             only reader), so its data may be deleted after pretraining to save space.
4. pretrain  ``nnUNet_train 3d_fullres PRETRAINER TaskMMM_Genesis<Name> all``
             done when ``model_final_checkpoint.model`` exists in its ``all`` folder; a started run
             (``model_latest.model`` or ``model_best.model`` there) is continued with ``-c``.
5. finetune  per fold ``nnUNet_train 3d_fullres TRAINER TaskNNN_Name FOLD -pretrained_weights W`` with W =
             ``$RESULTS_FOLDER/nnUNet/3d_fullres/TaskMMM_Genesis<Name>/PRETRAINER__PLANS/all/``
             ``model_final_checkpoint.model``;
             done per fold when ``fold_F/model_final_checkpoint.model`` and ``fold_F/validation_raw/
             summary.json`` exist.  A started fold is continued with ``-c`` instead (nnU-Net ignores
             ``-pretrained_weights`` with ``-c``: the weights are in the checkpoint already); a trained fold
             whose validation did not finish gets ``-val`` (validation only).
             With all five folds, then ``nnUNet_determine_postprocessing -m 3d_fullres -t NNN -tr TRAINER``:
             nnU-Net's postprocessing choice from the cross-validation (``postprocessing.json``, applied by
             nnUNet_predict); done when that file is newer than the five final checkpoints.
6. predict   ``nnUNet_predict -i .../TaskNNN_Name/imagesTs -o PRED_ROOT/TaskXX_Name -t NNN -m 3d_fullres
             -tr TRAINER -f FOLDS ...``
             done when a prediction exists for every test image listed in the Decathlon dataset.json and
             none is older than the model (a fold's final checkpoint, postprocessing.json).  Missing cases
             only: nnUNet_predict predicts just those.  Older predictions (the model was retrained) are redone
             with ``--overwrite_existing``.  The output folder is named as the Decathlon names the task, the
             layout ``nnUNet_genesis_submission -i PRED_ROOT`` reads.

``-p PLANS`` is passed to the training, preparation and prediction commands only when it differs from
nnU-Net's default, so the printed commands read like nnU-Net's documentation.

Resume rules: every step is checked against the files on disk just before it would run; a finished step
prints ``[skip] <step>: <why>`` and costs nothing, so rerunning the same command after an interruption
continues where it stopped.  Each step is checked on its own outputs, not on how its inputs were made: a
finished pretraining is not redone because prepare would now add cases, nor a finished fold because the
pretraining changed (delete the output folder, or pick another ``--pretrain_task_id`` / trainer, to redo one).
After a step's commands succeed, its check must pass, otherwise the pipeline stops and says what is
missing.  A failing command stops the pipeline with the step, the command and its exit status.

Two choices where nnU-Net leaves one open:

* ``--verify_dataset_integrity`` is *not* passed by default.  The Decathlon data are those nnU-Net was
  built and benchmarked on; the check reads every image again, starts ``nnUNet_def_n_proc`` (default 8)
  processes whatever ``-np`` says, and turns small header differences into an exception that stops
  planning even where nnU-Net's author advises ignoring it (LiTS, i.e. the Liver data:
  MIC-DKFZ/nnUNet#850).  Ask for it with ``--verify_dataset_integrity`` (then the flag is passed).
* The 2D configuration is not planned (``-pl2d None``): this pipeline trains ``3d_fullres`` only, and 2D
  preprocessing writes another full-resolution copy of the data set.  ``--plan_2d`` plans it too.

The stock converter deletes hidden files (names starting with '.', e.g. macOS ``._*`` metadata) from the
Decathlon folder's ``imagesTr``, ``labelsTr`` and ``imagesTs``; nothing else there is touched.
"""
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from competition.pipeline_checks import (FINAL_CHECKPOINT, VALIDATION_SUMMARY, _predictions_state, _training_status,
                                         convert_status, plan_status, prepare_status)
from competition.pipeline_config import (DEFAULT_PLANS_IDENTIFIER, FIVE_FOLDS, NETWORK, PipelineConfig,
                                         PipelineConfigError, make_config)
from nnunet_genesis.io import raw_dataset

STEP_NAMES = ("convert", "plan", "prepare", "pretrain", "finetune", "predict")
STEP_TITLES = {
    "convert": "Decathlon folder -> nnU-Net raw task",
    "plan": "experiment planning and preprocessing",
    "prepare": "unlabeled volumes -> pretraining task with the target's plans",
    "pretrain": "Models Genesis pretraining",
    "finetune": "fine-tuning from the pretrained weights",
    "predict": "test-set prediction",
}


@dataclass
class Part:
    """One command of a step: ``done`` says why it need not run (None: it must run), ``note`` why/how it runs."""
    command: List[str]
    done: Optional[str] = None
    note: Optional[str] = None


@dataclass
class Step:
    """A pipeline step as planned from the files on disk (see :func:`plan_steps`)."""
    number: int
    name: str
    title: str
    parts: List[Part] = field(default_factory=list)

    @property
    def commands(self) -> List[List[str]]:
        """The commands still to run (argv lists, the script as an absolute path)."""
        return [p.command for p in self.parts if p.done is None]

    @property
    def done(self) -> bool:
        return not self.commands

    @property
    def skip_reasons(self) -> List[str]:
        return [p.done for p in self.parts if p.done is not None]

    @property
    def pending(self) -> List[str]:
        """Why the commands still to run are needed."""
        return [p.note for p in self.parts if p.done is None and p.note]


# --- the six step planners -------------------------------------------------------------------------------------

def _part(command, done, why):
    """A single-command step's part: ``why`` explains the done state either way."""
    return Part(command, why if done else None, None if done else why)


def plan_convert(config: PipelineConfig) -> List[Part]:
    done, why = convert_status(config)
    command = [config.script("nnUNet_convert_decathlon_task"), "-i", config.decathlon_dir,
               "-output_task_id", str(config.task_id), "-p", str(config.num_processes)]
    return [_part(command, done, why)]


def plan_plan(config: PipelineConfig) -> List[Part]:
    done, why = plan_status(config)
    command = [config.script("nnUNet_plan_and_preprocess"), "-t", str(config.task_id)]
    if not config.plan_2d:
        command += ["-pl2d", "None"]
    command += ["-tl", str(config.num_processes), "-tf", str(config.num_processes)]
    if config.verify_dataset_integrity:
        command.append("--verify_dataset_integrity")
    return [_part(command, done, why)]


def plan_prepare(config: PipelineConfig) -> List[Part]:
    done, why = prepare_status(config)
    if not done and os.path.isfile(config.pretrained_weights):
        # only the pretraining reads these data; once it is finished they may have been deleted to save space
        done, why = True, "the pretraining is finished (%s exists), its data are not needed again" % \
            config.pretrained_weights
    command = [config.script("nnUNet_genesis_prepare"), "-t", str(config.task_id), "-i"] + \
        list(config.prepare_sources) + ["-o", str(config.pretrain_task_id), "-np", str(config.num_processes)] + \
        config.plans_option()
    return [_part(command, done, why)]


def plan_pretrain(config: PipelineConfig) -> List[Part]:
    state, checkpoint = _training_status(config.pretrain_output_dir)
    command = [config.script("nnUNet_train"), NETWORK, config.pretrainer, config.pretrain_task_name, "all"] + \
        config.plans_option()
    if state == "done":
        return [Part(command, "%s exists" % checkpoint)]
    if state == "started":
        return [Part(command + ["-c"], None, "continuing the started pretraining from %s (-c)" % checkpoint)]
    return [Part(command, None, "no %s" % os.path.join(config.pretrain_output_dir, FINAL_CHECKPOINT))]


def plan_finetune(config: PipelineConfig) -> List[Part]:
    parts = []
    for fold in config.folds:
        state, checkpoint = _training_status(config.fold_dir(fold))
        command = [config.script("nnUNet_train"), NETWORK, config.trainer, config.task_name, fold] + \
            config.plans_option()
        summary = os.path.join(config.fold_dir(fold), VALIDATION_SUMMARY)
        if state == "done" and os.path.isfile(summary):
            parts.append(Part(command, "fold %s: %s and %s exist" % (fold, FINAL_CHECKPOINT, VALIDATION_SUMMARY)))
        elif state == "done":
            # trained, but the validation that nnUNet_train runs afterwards did not finish
            parts.append(Part(command + ["-val"], None, "fold %s: trained, no %s: validation only (-val)"
                              % (fold, summary)))
        elif state == "started":
            # nnU-Net ignores -pretrained_weights with -c: the transferred weights are in the checkpoint
            parts.append(Part(command + ["-c"], None, "fold %s: continuing from %s (-c)" % (fold, checkpoint)))
        else:
            parts.append(Part(command + ["-pretrained_weights", config.pretrained_weights], None,
                              "fold %s: new, from the pretrained weights" % fold))
    if config.all_five_folds:
        parts.append(_postprocessing_part(config))
    return parts


def _postprocessing_part(config: PipelineConfig) -> Part:
    """nnU-Net's postprocessing choice (keep only the largest component per class where that helped in the
    cross-validation), made once all five folds are validated; nnUNet_predict applies it when present."""
    command = [config.script("nnUNet_determine_postprocessing"), "-m", NETWORK, "-t", str(config.task_id),
               "-tr", config.trainer]
    if config.plans_identifier != DEFAULT_PLANS_IDENTIFIER:
        command += ["-pl", config.plans_identifier]
    pp_file = config.postprocessing_file
    checkpoints = [os.path.join(config.fold_dir(f), FINAL_CHECKPOINT) for f in FIVE_FOLDS]
    if os.path.isfile(pp_file) and all(os.path.isfile(c) for c in checkpoints) and \
            os.stat(pp_file).st_mtime_ns >= max(os.stat(c).st_mtime_ns for c in checkpoints):
        return Part(command, "%s exists, newer than the five folds' checkpoints" % pp_file)
    return Part(command, None, "postprocessing from the five folds' validation: no up-to-date %s" % pp_file)


def plan_predict(config: PipelineConfig) -> List[Part]:
    command = [config.script("nnUNet_predict"), "-i", raw_dataset.images_ts(config.raw_task_dir),
               "-o", config.prediction_dir, "-t", str(config.task_id), "-m", NETWORK, "-tr", config.trainer,
               "-f"] + list(config.folds) + config.plans_option() + \
        ["--num_threads_preprocessing", str(config.num_processes),
         "--num_threads_nifti_save", str(config.num_processes)]
    if not config.test_images:
        return [Part(command, "%s/dataset.json lists no test images" % config.decathlon_dir)]
    missing, stale, why_stale = _predictions_state(config)
    if not missing and not stale:
        return [Part(command, "a prediction for each of the %d test image(s) in %s, newer than the model"
                     % (len(config.test_images), config.prediction_dir))]
    if stale:
        return [Part(command + ["--overwrite_existing"], None, why_stale + ": predicting every case again")]
    return [Part(command, None, "%d of %d test image(s) without a prediction in %s"
                 % (len(missing), len(config.test_images), config.prediction_dir))]


STEP_PLANNERS: Dict[str, Callable[[PipelineConfig], List[Part]]] = {
    "convert": plan_convert, "plan": plan_plan, "prepare": plan_prepare,
    "pretrain": plan_pretrain, "finetune": plan_finetune, "predict": plan_predict,
}


def plan_step(name, config: PipelineConfig) -> Step:
    """One step as the files on disk stand now."""
    return Step(STEP_NAMES.index(name) + 1, name, STEP_TITLES[name], STEP_PLANNERS[name](config))


def _steps_until(stop_after):
    if stop_after is None:
        return STEP_NAMES
    if stop_after not in STEP_NAMES:
        raise PipelineConfigError("--stop_after %r is not one of %s" % (stop_after, ", ".join(STEP_NAMES)))
    return STEP_NAMES[:STEP_NAMES.index(stop_after) + 1]


def plan_steps(decathlon_dir, stop_after=None, env=None, bin_dir=None, options=None, **choices) -> List[Step]:
    """The steps up to ``stop_after`` with their commands, each checked against the files on disk now.

    ``options`` / ``choices``: the user's choices, as for :func:`~competition.pipeline_config.make_config`.
    Pure apart from reading the disk: nothing is run or written.  A step whose ``commands`` is empty is done.
    (Run for real, each step is planned again just before it runs, since earlier steps change the disk.)
    """
    config = make_config(decathlon_dir, options, env=env, bin_dir=bin_dir, **choices)
    return [plan_step(name, config) for name in _steps_until(stop_after)]
