"""Issue 13 end to end: Models Genesis through the stock nnU-Net v2 console scripts only.

nnUNetv2_plan_and_preprocess (a small CT-like v2 raw dataset) -> nnUNet_genesis_prepare --nnunet 2
(the target's images, preprocessed with the target's plans) -> nnUNetv2_train <tiny GenesisPretrain> all
-> nnUNetv2_train <tiny Genesis> 0 -pretrained_weights checkpoint_final.pth (transfer report) ->
nnUNetv2_predict on imagesTs -> nnUNet_genesis_evaluate. The tiny trainers are user trainers found
through nnUNet_extTrainer, as a user's own would be. Plus: how the patched trainer search resolves
names, what stock v2 does with our trainer name when the hook is disabled, a refused transfer, and the
residual-encoder preset (nnUNetResEncUNetMPlans) pretrained and fine-tuned through the same commands.
Issue 21: the adaptation plan our pretraining writes, read as nnU-Net master reads it; an nnssl-format
ResEnc-L checkpoint fine-tuned and a Primus one refused through stock nnUNetv2_train; the restoration and
transfer commands with --nnunet 2.

Budget: the whole module runs in about 3 minutes on 2 cores (volumes 32 x 40 x 40, a 4-stage
PlainConvUNet, 2 epochs x 2 iterations, one validation case, no test-time mirroring at prediction;
measured alone: 170 s, of which 63 s the ResEnc test). The issue-21 tests add one fine-tuning (ResEnc M) and
a few command runs: 393 s of the module's 1503 s on 2 cores shared with four other jobs (load average 14;
2 December 2026, `pytest -q -x tests/test_v2_e2e.py`), i.e. about a quarter.
"""
import json
import os
import subprocess
import sys
import textwrap

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunet_genesis.distortions.composite import PUBLISHED_P_INPAINT
from nnunet_genesis.pretraining.recipes import RECIPES, learning_rate
from nnunet_genesis.transfer.shrink_perturb import DEFAULT_PRETRAINED_SHARE
from tests.conftest import run_stock, stock_command, subprocess_env
from tests.msd_fixtures import _save_nifti, make_ct_case
from tests.nnssl_format import (PRIMUS_KEYS, RESENC_KEYS, build_like_nnunet_master, load_like_nnunet_master,
                                nnssl_plan, primus_like_state_dict, read_like_nnunet_master, resenc_l_like,
                                save_nnssl_checkpoint, schema_faults)

TARGET_ID, PRETRAIN_ID = 961, 962
TARGET = "Dataset%d_TinyCT" % TARGET_ID
SPACING = (1.0, 1.0, 1.5)
SHAPE = (40, 40, 32)          # x, y, z: v2 plans a 32 x 40 x 40 patch and a 4-stage PlainConvUNet
NUM_TRAINING, NUM_TEST = 5, 2  # 5: the fewest cases for nnU-Net's 5-fold split (fold 0 validates on 1)
LABELS = {"background": 0, "organ": 1, "lesion": 2}

PRETRAIN_RECIPE = "adamw_identity_start"
# trained with another mix than the published one the scores use (nnunet_genesis.pretraining.validation), so that
# the tests below tell the training mix (recorded in the adaptation plan) from the scored one
TRAINING_P_INPAINT = 0.8
TINY_TRAINERS = '''
import torch
from nnunet_genesis.nnunet_v2.trainers import nnUNetTrainer_Genesis, nnUNetTrainer_GenesisPretrain, nnUNetTrainer_Seeded


class _TinyBudget:
    # v2 records the __init__ arguments by name (nnUNetTrainer.__init__): keep its exact signature
    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2
        self.num_iterations_per_epoch = 2
        self.num_val_iterations_per_epoch = 1


class GenesisPretrainV2_Tiny(_TinyBudget, nnUNetTrainer_GenesisPretrain):
    # a healthy run by construction (the residual output starts at the identity), as in the v1 test
    genesis_recipe = "%s"
    genesis_transform_kwargs = {"p_inpaint": %r}
    genesis_preview_every = 1
    genesis_diagnostic_cases = 1
    genesis_validation_cases = 2


class GenesisPretrainV2_TinyStops(GenesisPretrainV2_Tiny):
    # patience 0: early stopping ends the training after its first epoch (the rule of _Published, made certain)
    genesis_early_stopping_patience = 0
    genesis_validation_cases = 1


class GenesisV2_Tiny(_TinyBudget, nnUNetTrainer_Genesis):
    genesis_warmup_epochs = 1


class SeededV2_Tiny(_TinyBudget, nnUNetTrainer_Seeded):
    pass
''' % (PRETRAIN_RECIPE, TRAINING_P_INPAINT)


def write_v2_raw_dataset(raw_root):
    """nnUNet_raw/Dataset961_TinyCT (imagesTr/*_0000.nii.gz, labelsTr, imagesTs, dataset.json) and,
    beside it, labelsTs: the test cases' references for the evaluation (nnU-Net never reads them)."""
    folder = os.path.join(raw_root, TARGET)
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    rng = np.random.default_rng(13)
    for i in range(NUM_TRAINING + NUM_TEST):
        image, label = make_ct_case(rng, shape=SHAPE)
        name = "tinyct_%03d" % i
        images, labels = ("imagesTr", "labelsTr") if i < NUM_TRAINING else ("imagesTs", "labelsTs")
        _save_nifti(image, SPACING, os.path.join(folder, images, name + "_0000.nii.gz"), np.int16)
        _save_nifti(label, SPACING, os.path.join(folder, labels, name + ".nii.gz"), np.uint8)
    with open(os.path.join(folder, "dataset.json"), "w") as f:
        json.dump({"channel_names": {"0": "CT"}, "labels": LABELS, "numTraining": NUM_TRAINING,
                   "file_ending": ".nii.gz"}, f, indent=2)
    return folder


def fold_folder(results, dataset, trainer, fold):
    return os.path.join(results, dataset, "%s__nnUNetPlans__3d_fullres" % trainer, "fold_%s" % fold)


@pytest.fixture(scope="module")
def v2(module_tmp_path_factory):
    root = module_tmp_path_factory.mktemp("nnunet_v2")
    ext = root / "ext"
    ext.mkdir()
    (ext / "tiny_genesis_v2.py").write_text(TINY_TRAINERS)
    folders = {key: str(root / key) for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for path in folders.values():
        os.makedirs(path)
    raw = write_v2_raw_dataset(folders["nnUNet_raw"])
    # nnUNet_n_proc_DA=1: one augmentation worker (0 would break v2's planner: torch.set_num_threads(0));
    # nnUNet_def_n_proc=1: one process for preprocessing and segmentation export.
    env = subprocess_env(nnUNet_extTrainer=str(ext), nnUNet_n_proc_DA=1, nnUNet_def_n_proc=1, **folders)
    logs = {}
    logs["plan"] = run_stock([stock_command("nnUNetv2_plan_and_preprocess"), "-d", TARGET_ID, "-c", "3d_fullres",
                              "-np", 1], env=env)
    logs["prepare"] = run_stock([stock_command("nnUNet_genesis_prepare"), "--nnunet", 2, "-t", TARGET_ID,
                                 "-i", raw, "-o", PRETRAIN_ID, "-np", 1], env=env)
    prepared = [d for d in os.listdir(folders["nnUNet_preprocessed"]) if d.startswith("Dataset%d_" % PRETRAIN_ID)]
    assert len(prepared) == 1, prepared
    pretrain_dataset = prepared[0]
    logs["pretrain"] = run_stock([stock_command("nnUNetv2_train"), PRETRAIN_ID, "3d_fullres", "all",
                                  "-tr", "GenesisPretrainV2_Tiny", "-device", "cpu"], env=env)
    pretrain_fold = fold_folder(folders["nnUNet_results"], pretrain_dataset, "GenesisPretrainV2_Tiny", "all")
    weights = os.path.join(pretrain_fold, "checkpoint_final.pth")
    logs["finetune"] = run_stock([stock_command("nnUNetv2_train"), TARGET_ID, "3d_fullres", 0, "-tr", "GenesisV2_Tiny",
                                  "-device", "cpu", "-pretrained_weights", weights], env=env)
    predictions = str(root / "predictions")
    logs["predict"] = run_stock([stock_command("nnUNetv2_predict"), "-i", os.path.join(raw, "imagesTs"),
                                 "-o", predictions, "-d", TARGET_ID, "-c", "3d_fullres", "-f", 0,
                                 "-tr", "GenesisV2_Tiny", "-device", "cpu", "--disable_tta",
                                 "-npp", 1, "-nps", 1], env=env)
    evaluation = str(root / "evaluation")
    logs["evaluate"] = run_stock([stock_command("nnUNet_genesis_evaluate"), "-ref", os.path.join(raw, "labelsTs"),
                                  "-pred", predictions, "-l", 1, 2, "-o", evaluation, "-np", 1], env=env)
    return dict(root=root, env=env, raw=raw, logs=logs, folders=folders, weights=weights,
                pretrain_dataset=pretrain_dataset, pretrain_fold=pretrain_fold, predictions=predictions,
                evaluation=evaluation,
                finetune_fold=fold_folder(folders["nnUNet_results"], TARGET, "GenesisV2_Tiny", 0))


def test_pretraining_on_prepared_data_writes_checkpoint_and_restoration_scores(v2):
    assert v2["pretrain_dataset"].startswith("Dataset%d_Genesis" % PRETRAIN_ID)
    fold = v2["pretrain_fold"]
    for name in ("checkpoint_final.pth", "progress.png", "restoration_preview.png", "restoration_progress.png",
                 "restoration_history.json"):
        assert os.path.isfile(os.path.join(fold, name)), name
    checkpoint = torch.load(os.path.join(fold, "checkpoint_final.pth"), map_location="cpu", weights_only=False)
    weights = checkpoint["network_weights"]
    assert checkpoint["trainer_name"] == "GenesisPretrainV2_Tiny" and checkpoint["current_epoch"] == 2
    # the plans' PlainConvUNet, restoring its one input channel, without deep-supervision heads in use
    assert weights["encoder.stages.0.0.convs.0.conv.weight"].shape[1] == 1
    assert weights["decoder.seg_layers.2.weight"].shape[0] == 1
    assert all(bool(torch.isfinite(v).all()) for v in weights.values() if v.is_floating_point())
    # the recipe's optimiser and schedule, the rate set before every iteration: the last of the 4
    # iterations (epoch 1, iteration 1) ran at progress (1 + 1/2) / 2
    recipe = RECIPES[PRETRAIN_RECIPE]
    group = checkpoint["optimizer_state"]["param_groups"][0]
    assert "amsgrad" in group and group["weight_decay"] == recipe.weight_decay  # AdamW
    assert group["lr"] == pytest.approx(learning_rate(recipe, 1.5 / 2))
    for epoch in (0, 1):
        assert "Current learning rate: %s" % np.round(learning_rate(recipe, epoch / 2), 5) in v2["logs"]["pretrain"]

    with open(os.path.join(fold, "validation_restoration", "summary.json")) as f:
        summary = json.load(f)
    assert len(summary["cases"]) == 2 and summary["patch_size"] == [32, 40, 40]
    for kind in ("local_shuffle", "non_linear", "in_painting", "out_painting", "composite"):
        scores = summary["scores"][kind]
        assert all(np.isfinite(scores[k]) for k in ("network", "identity", "mean", "variance_ratio")), kind
        assert os.path.isfile(os.path.join(fold, "validation_restoration", kind + ".png"))
    assert summary["collapse"] == []  # 4 iterations: too early to judge, and healthy by construction
    with open(os.path.join(fold, "restoration_history.json")) as f:
        assert [h["epoch"] for h in json.load(f)] == [0, 1]  # every epoch scored per distortion
    log = v2["logs"]["pretrain"]
    assert log.count("restoration per distortion") == 2 and "identity" in log and "local_shuffle" in log
    assert "validation restoration: MSE" in log and "COLLAPSED" not in log
    assert not os.path.isdir(os.path.join(fold, "validation"))  # no segmentation export


def test_early_stopping_ends_a_v2_pretraining_as_a_finished_one(v2):
    # nnUNetTrainer.run_training has no exit from its epoch loop: the patience ends it and on_train_end still runs
    log = run_stock([stock_command("nnUNetv2_train"), PRETRAIN_ID, "3d_fullres", "all", "-tr",
                     "GenesisPretrainV2_TinyStops", "-device", "cpu"], env=v2["env"])
    fold = fold_folder(v2["folders"]["nnUNet_results"], v2["pretrain_dataset"], "GenesisPretrainV2_TinyStops", "all")
    assert "early stopping: the validation loss has not improved for 0 epochs" in log
    checkpoint = torch.load(os.path.join(fold, "checkpoint_final.pth"), map_location="cpu", weights_only=False)
    assert checkpoint["current_epoch"] == 1    # 1 of its 2 epochs
    with open(os.path.join(fold, "restoration_history.json")) as f:
        assert [h["epoch"] for h in json.load(f)] == [0]   # its last epoch was scored
    with open(os.path.join(fold, "validation_restoration", "summary.json")) as f:
        assert len(json.load(f)["cases"]) == 1             # the final report was written


def test_finetuning_transfers_the_pretrained_encoder_and_reports_it(v2):
    fold = v2["finetune_fold"]
    with open(os.path.join(fold, "transfer_report.json")) as f:
        report = json.load(f)
    assert report["source"] == v2["weights"] and report["mode"] == "encoder"
    assert report["encoder_fraction"] == 1.0  # same plans: every encoder tensor loaded as is
    assert report["counts"]["loaded"] > 0 and report["counts"]["skipped"] == 0
    # the segmentation heads (3 classes here, 1 restoration channel there) and the decoder start fresh
    assert any(name.startswith("decoder.seg_layers.") for name in report["fresh_parameter_names"])
    log = v2["logs"]["finetune"]
    assert "Pretrained weights: %s" % v2["weights"] in log and "Warm-up: 1 epochs" in log
    assert "transferred parameters: learning rate 0" in log  # frozen during the warm-up epoch
    # the default shrink and perturb, shared with v1 (transfer/finetuning.py): convolution weights only
    mixed = report["shrink_and_perturb"]["mixed_parameter_names"]
    assert report["shrink_and_perturb"]["pretrained_share"] == DEFAULT_PRETRAINED_SHARE and mixed
    assert not set(mixed) & set(report["fresh_parameter_names"])
    assert all(name.endswith(".weight") and ".norm." not in name for name in mixed)
    assert "Shrink and perturb: %d transferred convolution weights" % len(mixed) in log
    assert "got no -pretrained_weights" not in log
    # our checkpoint carries its plan: the report names where it comes from
    assert report["source_plan"]["genesis_recipe"] == PRETRAIN_RECIPE
    assert report["source_plan"]["trainer_name"] == "GenesisPretrainV2_Tiny"
    assert "source plan: nnssl adaptation plan: PlainConvUNet, 1 input channel(s), pretrained on 32x40x40" in log
    for name in ("checkpoint_final.pth", os.path.join("validation", "summary.json")):  # stock validation
        assert os.path.isfile(os.path.join(fold, name)), name
    checkpoint = torch.load(os.path.join(fold, "checkpoint_final.pth"), map_location="cpu", weights_only=False)
    roles = [g.get("genesis_role") for g in checkpoint["optimizer_state"]["param_groups"]]
    assert roles == ["fresh", "transferred"]


def test_predictions_have_the_images_geometry_and_are_evaluated(v2):
    images = sorted(os.listdir(os.path.join(v2["raw"], "imagesTs")))
    predicted = sorted(f for f in os.listdir(v2["predictions"]) if f.endswith(".nii.gz"))
    assert predicted == [f.replace("_0000.nii.gz", ".nii.gz") for f in images]
    for image_file, prediction_file in zip(images, predicted):
        image = sitk.ReadImage(os.path.join(v2["raw"], "imagesTs", image_file))
        prediction = sitk.ReadImage(os.path.join(v2["predictions"], prediction_file))
        assert prediction.GetSize() == image.GetSize() == SHAPE
        np.testing.assert_allclose(prediction.GetSpacing(), image.GetSpacing(), atol=1e-5)
        np.testing.assert_allclose(prediction.GetOrigin(), image.GetOrigin(), atol=1e-5)
        np.testing.assert_allclose(prediction.GetDirection(), image.GetDirection(), atol=1e-6)
        values = np.unique(np.asanyarray(nib.load(os.path.join(v2["predictions"], prediction_file)).dataobj))
        assert set(values.tolist()) <= set(LABELS.values())
    with open(os.path.join(v2["evaluation"], "summary.json")) as f:
        summary = json.load(f)
    assert summary["num_cases"] == NUM_TEST and summary["cases_missing_prediction"] == []
    assert sorted(summary["labels"]) == ["1", "2"]
    assert os.path.isfile(os.path.join(v2["evaluation"], "per_case.csv"))
    for label in ("1", "2"):
        dice = summary["statistics"][label]["dice"]["mean"]
        assert 0.0 <= dice <= 1.0, (label, dice)


FIND = """
    import sys
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find
    for name in ("nnUNetTrainer_GenesisPretrain", "nnUNetTrainer_Genesis", "GenesisV2_Tiny", "nnUNetTrainer"):
        cls = find(name)
        print("FOUND", name, cls.__module__)
    print("TORCHVISION_IMPORTED", "torchvision" in sys.modules)
"""


def test_trainer_search_order_ours_then_ext_then_stock(v2):
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(FIND)], env=v2["env"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:]
    assert "FOUND nnUNetTrainer_GenesisPretrain nnunet_genesis.nnunet_v2.trainers" in out.stdout
    assert "FOUND nnUNetTrainer_Genesis nnunet_genesis.nnunet_v2.trainers" in out.stdout
    assert "FOUND GenesisV2_Tiny nnunet_genesis_ext_" in out.stdout            # the nnUNet_extTrainer folder
    assert "FOUND nnUNetTrainer nnunetv2.training.nnUNetTrainer.nnUNetTrainer" in out.stdout  # stock
    # neither ours nor the user's trainers walked nnU-Net's package (primus -> timm -> torchvision)
    assert "TORCHVISION_IMPORTED False" in out.stdout


def test_without_the_hook_stock_v2_cannot_use_our_trainer(v2):
    env = dict(v2["env"], NNUNET_GENESIS_DISABLE_HOOK="1")
    out = subprocess.run([stock_command("nnUNetv2_train"), str(TARGET_ID), "3d_fullres", "0",
                          "-tr", "nnUNetTrainer_Genesis", "-device", "cpu"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert out.returncode != 0
    # stock v2 searches only its own package (and nnUNet_extTrainer): with a working torchvision it says
    # it cannot find the trainer; where torchvision is broken, its walk through nnU-Net's package dies
    # importing primus first. Either way it fails in the stock trainer search, before any training.
    assert "recursive_find_trainer_class_by_name" in out.stdout
    assert ("Could not find requested nnunet trainer nnUNetTrainer_Genesis" in out.stdout
            or "torchvision" in out.stdout), out.stdout[-3000:]
    assert not os.path.isdir(fold_folder(v2["folders"]["nnUNet_results"], TARGET, "nnUNetTrainer_Genesis", 0))


def test_a_transfer_that_leaves_most_of_the_encoder_untrained_is_refused(v2, tmp_path):
    # the pretrained checkpoint cut down to its first encoder stage: far below half of the encoder
    checkpoint = torch.load(v2["weights"], map_location="cpu", weights_only=False)
    first_stage = {k: v for k, v in checkpoint["network_weights"].items() if k.startswith("encoder.stages.0.")}
    assert first_stage
    weights = str(tmp_path / "first_stage_only.pth")
    torch.save({"network_weights": first_stage}, weights)
    out = subprocess.run([stock_command("nnUNetv2_train"), str(TARGET_ID), "3d_fullres", "1", "-tr", "GenesisV2_Tiny",
                          "-device", "cpu", "-pretrained_weights", weights], env=v2["env"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert out.returncode != 0
    refused = [line for line in out.stdout.splitlines() if "REFUSED" in line]
    assert len(refused) == 1 and weights in refused[0] and "transfer_report.json" in refused[0], out.stdout[-3000:]
    fold = fold_folder(v2["folders"]["nnUNet_results"], TARGET, "GenesisV2_Tiny", 1)
    with open(os.path.join(fold, "transfer_report.json")) as f:
        assert json.load(f)["encoder_fraction"] < 0.5
    assert not os.path.isfile(os.path.join(fold, "checkpoint_final.pth"))  # no training from a refused transfer


RESENC_PLANS = "nnUNetResEncUNetMPlans"


@pytest.fixture(scope="module")
def resenc_plans(v2):
    """The ResEnc M preset planned for the target by the stock planner (4 stages: 32 ... 256 features, 1, 3, 4, 6
    residual blocks, 3x3x3 kernels: the first four stages of nnssl's ResEnc-L)."""
    run_stock([stock_command("nnUNetv2_plan_experiment"), "-d", TARGET_ID, "-pl", "nnUNetPlannerResEncM"], env=v2["env"])
    return RESENC_PLANS


def test_residual_encoder_preset_pretrains_and_fine_tunes_with_its_own_plans(v2, resenc_plans):
    """The ResEnc M preset end to end: planned by the stock planner, prepared with its plans (the
    cases of the default plans' data folder are reused: same preprocessing), pretrained and fine-tuned
    with -p; the ResidualEncoderUNet's encoder, stem and residual blocks, transfers whole."""
    env, results = v2["env"], v2["folders"]["nnUNet_results"]
    prepare_log = run_stock([stock_command("nnUNet_genesis_prepare"), "--nnunet", 2, "-t", TARGET_ID, "-i", v2["raw"],
                             "-o", PRETRAIN_ID, "-np", 1, "-p", RESENC_PLANS], env=env)
    assert "-p %s" % RESENC_PLANS in prepare_log  # the next command it prints names the plans
    run_stock([stock_command("nnUNetv2_train"), PRETRAIN_ID, "3d_fullres", "all", "-tr", "GenesisPretrainV2_Tiny",
               "-p", RESENC_PLANS, "-device", "cpu"], env=env)
    pretrain_fold = os.path.join(results, v2["pretrain_dataset"],
                                 "GenesisPretrainV2_Tiny__%s__3d_fullres" % RESENC_PLANS, "fold_all")
    weights = os.path.join(pretrain_fold, "checkpoint_final.pth")
    pretrained = torch.load(weights, map_location="cpu", weights_only=False)["network_weights"]
    assert "encoder.stem.convs.0.conv.weight" in pretrained                        # a ResidualEncoderUNet
    assert any(".blocks.0.conv1." in key for key in pretrained)
    with open(os.path.join(pretrain_fold, "validation_restoration", "summary.json")) as f:
        scores = json.load(f)["scores"]
    assert all(np.isfinite(scores[kind]["network"]) for kind in scores)

    log = run_stock([stock_command("nnUNetv2_train"), TARGET_ID, "3d_fullres", 0, "-tr", "GenesisV2_Tiny",
                     "-p", RESENC_PLANS, "-device", "cpu", "-pretrained_weights", weights], env=env)
    fold = os.path.join(results, TARGET, "GenesisV2_Tiny__%s__3d_fullres" % RESENC_PLANS, "fold_0")
    with open(os.path.join(fold, "transfer_report.json")) as f:
        report = json.load(f)
    assert report["encoder_fraction"] == 1.0 and report["decoder_fraction"] == 0.0 and report["mode"] == "encoder"
    loaded = {e["key"] for e in report["entries"] if e["status"] == "loaded"}
    assert "encoder.stem.convs.0.conv.weight" in loaded and any(".blocks.0.conv1." in k for k in loaded)
    assert "Pretrained weights: %s" % weights in log
    assert os.path.isfile(os.path.join(fold, "checkpoint_final.pth"))

    # our comparison takes the two v2 fold folders as they are (validation/ scored against nnUNet_raw's labelsTr)
    out = v2["root"] / "compare_plain_resenc"
    run_stock([stock_command("nnUNet_genesis_compare"), "-a", v2["finetune_fold"], "-b", fold, "-o", out,
               "-np", 1], env=env)
    rows = (out / "eval_A" / "per_case.csv").read_text().splitlines()
    validated = sorted(f for f in os.listdir(os.path.join(fold, "validation")) if f.endswith(".nii.gz"))
    assert len(validated) == 1 and validated[0][:-len(".nii.gz")] in rows[1]   # fold 0 validates one case
    assert (out / "compare.md").is_file() and (out / "compare.png").stat().st_size > 0


def test_stock_find_best_configuration_takes_our_trainer(v2):
    run_stock([stock_command("nnUNetv2_find_best_configuration"), TARGET_ID, "-c", "3d_fullres", "-tr", "GenesisV2_Tiny",
               "-f", 0, "-np", 1], env=v2["env"])
    with open(os.path.join(v2["folders"]["nnUNet_results"], TARGET, "inference_information.json")) as f:
        best = json.load(f)["best_model_or_ensemble"]
    assert best["selected_model_or_models"][0]["trainer"] == "GenesisV2_Tiny"


# ----------------------------------------------------------------------------------------------------------------
# #21: checkpoints that carry nnssl's adaptation plan, both ways; restoration and transfer commands on v2
# ----------------------------------------------------------------------------------------------------------------

WEIGHTS_ONLY = "import sys, torch; c = torch.load(sys.argv[1], weights_only=True, map_location='cpu'); print(sorted(c))"


def weights_only_load(path, env):
    """torch.load(weights_only=True) in a fresh interpreter with our import hook off: nothing allow-listed,
    as nnU-Net master's like_nnssl.py / pretrainedTrainer.py read a checkpoint."""
    return subprocess.run([sys.executable, "-c", WEIGHTS_ONLY, path], env=dict(env, NNUNET_GENESIS_DISABLE_HOOK="1"),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)


def test_pretraining_checkpoint_carries_an_adaptation_plan_nnunet_master_reads(v2):
    opened = weights_only_load(v2["weights"], v2["env"])
    assert opened.returncode == 0 and "'nnssl_adaptation_plan'" in opened.stdout, opened.stdout[-2000:]
    # a stock nnUNetTrainer checkpoint (numpy scalars in its logging) is what weights-only refuses
    stock = os.path.join(v2["finetune_fold"], "checkpoint_final.pth")
    assert weights_only_load(stock, v2["env"]).returncode != 0

    checkpoint, architecture, info = read_like_nnunet_master(v2["weights"])
    plan = checkpoint["nnssl_adaptation_plan"]
    # nnssl's schema, but for the one field PlainConvUNet names otherwise (tests/test_adaptation_plan.py)
    assert schema_faults(plan) == [
        "plan.architecture_plans.arch_kwargs: no n_blocks_per_stage (DynamicArchitecturePlans)",
        "plan.architecture_plans.arch_kwargs: key 'n_conv_per_stage' is not a field of DynamicArchitecturePlans"]
    with open(os.path.join(v2["pretrain_fold"], "adaptation_plan.json")) as f:
        assert json.load(f) == dict(json.loads(json.dumps(plan)), trainer_name="GenesisPretrainV2_Tiny")
    assert info["pt_num_in_channels"] == 1 and info["pt_used_patchsize"] == [32, 40, 40]
    assert info["pt_spacing"] == [SPACING[2], SPACING[1], SPACING[0]]   # nnU-Net's axis order (z, y, x)
    genesis = plan["nnunet_genesis"]
    assert genesis["recipe"]["name"] == PRETRAIN_RECIPE and genesis["target_dataset"] == TARGET
    assert genesis["distortion_mix"]["p_inpaint"] == TRAINING_P_INPAINT    # what it trained with
    # nnU-Net master's fine-tuning: the network from the plan (3 classes here), encoder and stem loaded
    downstream = build_like_nnunet_master(architecture, 1, len(LABELS))
    load_like_nnunet_master(downstream, checkpoint, info)
    for key, value in downstream.state_dict().items():
        if key.startswith("encoder."):
            assert torch.equal(value, checkpoint["network_weights"][key]), key
    # everything a stock v2 checkpoint holds, plus the plan and the citations
    stock_keys = set(torch.load(stock, map_location="cpu", weights_only=False))
    assert set(checkpoint) == stock_keys | {"nnssl_adaptation_plan", "citations"}


def test_an_nnssl_checkpoint_fine_tunes_through_our_trainer_with_the_report(v2, resenc_plans, tmp_path):
    """A ResEnc-L checkpoint in nnssl's released format (its first four stages: the target's ResEnc M plans)
    into stock nnUNetv2_train -tr <our fine-tuning trainer> -pretrained_weights."""
    weights = str(tmp_path / "ResEncL_OpenMind_MAE.pth")
    source = resenc_l_like(n_stages=4)
    save_nnssl_checkpoint(weights, source.state_dict(), nnssl_plan("ResEncL", **RESENC_KEYS))
    log = run_stock([stock_command("nnUNetv2_train"), TARGET_ID, "3d_fullres", 2, "-tr", "GenesisV2_Tiny",
                     "-p", resenc_plans, "-device", "cpu", "-pretrained_weights", weights], env=v2["env"])
    fold = os.path.join(v2["folders"]["nnUNet_results"], TARGET, "GenesisV2_Tiny__%s__3d_fullres" % resenc_plans,
                        "fold_2")
    with open(os.path.join(fold, "transfer_report.json")) as f:
        report = json.load(f)
    assert report["source"] == weights and report["encoder_fraction"] == 1.0 and report["counts"]["skipped"] == 0
    assert report["source_plan"]["architecture"] == "ResEncL"
    assert report["source_plan"]["pretrain_spacing"] == [1, 1, 1]
    assert "Pretrained weights: %s" % weights in log
    assert "source plan: nnssl adaptation plan: ResEncL, 1 input channel(s), pretrained on 160x160x160" in log
    assert "please cite: BaseMAETrainer" in log
    assert os.path.isfile(os.path.join(fold, "checkpoint_final.pth"))


def test_an_nnssl_transformer_checkpoint_is_refused_by_the_trainer_in_one_line(v2, tmp_path):
    weights = str(tmp_path / "PrimusM_OpenMind.pth")
    save_nnssl_checkpoint(weights, primus_like_state_dict(), nnssl_plan("PrimusM", **PRIMUS_KEYS),
                          trainer_name="BaseEvaMAETrainer")
    out = subprocess.run([stock_command("nnUNetv2_train"), str(TARGET_ID), "3d_fullres", "3", "-tr", "GenesisV2_Tiny",
                          "-device", "cpu", "-pretrained_weights", weights], env=v2["env"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert out.returncode != 0
    refused = [line for line in out.stdout.splitlines() if "REFUSED" in line]
    assert len(refused) == 1 and weights in refused[0], out.stdout[-3000:]
    assert "PrimusM, a transformer" in refused[0] and "none of its weights corresponds" in refused[0]
    fold = fold_folder(v2["folders"]["nnUNet_results"], TARGET, "GenesisV2_Tiny", 3)
    assert not os.path.isfile(os.path.join(fold, "checkpoint_final.pth"))


def genesis_command(name, *args, env):
    return subprocess.run([stock_command(name), *map(str, args)], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=600)


def test_restoration_command_scores_a_v2_checkpoint_as_the_trainer_did(v2, tmp_path):
    with open(os.path.join(v2["pretrain_fold"], "validation_restoration", "summary.json")) as f:
        trained = json.load(f)
    done = genesis_command("nnUNet_genesis_restoration", "--nnunet", 2, "-w", v2["weights"], "-t", PRETRAIN_ID,
                           "--cases", len(trained["cases"]), "-o", tmp_path / "scores", env=v2["env"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "residual output (recorded in its adaptation plan)" in done.stdout and "identity" in done.stdout
    with open(tmp_path / "scores" / "summary.json") as f:
        rescored = json.load(f)
    assert rescored["task"] == v2["pretrain_dataset"] and rescored["cases"] == trained["cases"]
    # one meaning for the scores: the trainer and the command both score the published distortions and mix
    # (nnunet_genesis.pretraining.validation.scoring_transform), whatever mix the checkpoint trained with (here
    # 80 % in-painting), so the command reproduces the trainer's whole table, the composite included
    assert trained["scored_composite"] == rescored["scored_composite"] == {"p_paint": 0.9,
                                                                           "p_inpaint": PUBLISHED_P_INPAINT}
    assert TRAINING_P_INPAINT != PUBLISHED_P_INPAINT
    for kind, scores in trained["scores"].items():
        for answer in ("network", "identity", "mean"):
            assert rescored["scores"][kind][answer] == pytest.approx(scores[answer], abs=1e-4), (kind, answer)
    assert (tmp_path / "scores" / "in_painting.png").stat().st_size > 0
    # bad input: one line, exit 2
    for args, fault in ((("-t", 999), "no such dataset with id 999"),
                        (("-t", PRETRAIN_ID, "-c", "3d_lowres"), "configuration 3d_lowres is not in the plans")):
        bad = genesis_command("nnUNet_genesis_restoration", "--nnunet", 2, "-w", v2["weights"], *args,
                              "-o", tmp_path / "bad", env=v2["env"])
        assert bad.returncode == 2 and fault in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_transfer_command_dry_runs_into_a_v2_dataset_as_the_trainer_transfers(v2, tmp_path):
    done = genesis_command("nnUNet_genesis_transfer", "--nnunet", 2, "-w", v2["weights"], "-t", TARGET,
                           "-o", tmp_path / "report.json", env=v2["env"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "source plan: nnssl adaptation plan: PlainConvUNet" in done.stdout
    with open(tmp_path / "report.json") as f:
        dry = json.load(f)
    with open(os.path.join(v2["finetune_fold"], "transfer_report.json")) as f:
        trained = json.load(f)
    assert dry["entries"] == trained["entries"] and dry["encoder_fraction"] == 1.0
    # a transformer: refused, exit 1, the first line says why
    primus = str(tmp_path / "primus.pth")
    save_nnssl_checkpoint(primus, primus_like_state_dict(), nnssl_plan("PrimusM", **PRIMUS_KEYS))
    refused = genesis_command("nnUNet_genesis_transfer", "--nnunet", 2, "-w", primus, "-t", TARGET_ID, env=v2["env"])
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[0].startswith(
        "pretrained weight transfer refused: its nnssl adaptation plan names PrimusM, a transformer")
    bad = genesis_command("nnUNet_genesis_transfer", "--nnunet", 2, "-w", v2["weights"], "-t", TARGET_ID,
                          "-c", "3d_lowres", env=v2["env"])
    assert bad.returncode == 2 and "configuration 3d_lowres is not in the plans" in bad.stderr
    mixed = genesis_command("nnUNet_genesis_transfer", "-w", v2["weights"], "-t", TARGET_ID, "-c", "3d_fullres",
                            env=v2["env"])
    assert mixed.returncode == 2 and "-c/--configuration is for --nnunet 2" in mixed.stderr


@pytest.mark.parametrize("trainer", ["SeededV2_Tiny", "GenesisPretrainV2_Tiny"])
def test_nnunetv2_train_twice_with_one_seed_gives_identical_weights(v2, tmp_path, trainer):
    """Common random numbers in v2 (nnunet_genesis/nnunet_v2/trainers/seeded.py): the stock nnUNetv2_train, two
    augmentation workers, the same seed twice -> bit-identical final weights; another seed -> other weights. For
    the pretraining too, whose distortions draw from their own Generators in each worker (a worker's process id
    would make every run's draws its own: nnunet_genesis/distortions/random_state.py)."""
    from nnunet_genesis.training_seed import VARIABLE, seed_line
    dataset_id, dataset, fold = (TARGET_ID, TARGET, 0) if trainer == "SeededV2_Tiny" else \
        (PRETRAIN_ID, v2["pretrain_dataset"], "all")
    weights = {}
    for name, seed in (("first", 5), ("again", 5), ("other", 6)):
        results = str(tmp_path / name)
        env = dict(v2["env"], nnUNet_results=results, nnUNet_n_proc_DA="2", **{VARIABLE: str(seed)})
        log = run_stock([stock_command("nnUNetv2_train"), dataset_id, "3d_fullres", fold, "-tr", trainer,
                         "-device", "cpu"], env=env)
        assert seed_line(seed) in log
        checkpoint = torch.load(os.path.join(fold_folder(results, dataset, trainer, fold), "checkpoint_final.pth"),
                                map_location="cpu", weights_only=False)
        weights[name] = checkpoint["network_weights"]
    assert all(torch.equal(weights["first"][k], weights["again"][k]) for k in weights["first"])
    assert not all(torch.equal(weights["first"][k], weights["other"][k]) for k in weights["first"])
