"""The v1 and v2 trainer families are one family (issue #20), checked without training:

* the same variants on both sides (``nnUNetTrainerV2_X`` in v1, ``nnUNetTrainer_X`` in v2), except those
  ``nnunet_genesis.nnunet_v2.trainers.V1_ONLY`` names with a written reason;
* each pair has the same ``genesis_*`` settings (recipe, transfer mode, warm-up, early stopping, ...);
* the hook bodies are the core's (``PretrainHooks``, ``FineTuneHooks``), not rewritten in an adapter, so a change
  to, e.g., the warm-up is made in one place.
"""
import inspect

import pytest

import nnunet_genesis.nnunet_v1.trainers as v1
import nnunet_genesis.nnunet_v2.trainers as v2
from nnunet_genesis.pretraining.trainer_hooks import VALIDATION_SEED, PretrainHooks, epochs_without_improvement
from nnunet_genesis.transfer.finetuning import FineTuneHooks

V1_PREFIX, V2_PREFIX = "nnUNetTrainerV2", "nnUNetTrainer"
SCRATCH = {"_Seeded"}   # the stock trainer with common random numbers: no Genesis settings of its own


def family(module, prefix):
    """{suffix X: class} of a family's exported trainers."""
    return {name[len(prefix):]: getattr(module, name) for name in module.__all__ if name.startswith(prefix + "_")}


def v1_only_reason(suffix):
    return next((reason for key, reason in v2.V1_ONLY.items() if suffix.endswith(key)), None)


def genesis_settings(cls):
    """The class attributes a variant sets (``genesis_*``, methods and properties aside)."""
    return {name: getattr(cls, name) for name in dir(cls)
            if name.startswith("genesis_") and not callable(getattr(cls, name))
            and not isinstance(inspect.getattr_static(cls, name), property)}


V1, V2 = family(v1, V1_PREFIX), family(v2, V2_PREFIX)


def test_both_families_expose_the_same_variants_or_say_why_not():
    assert V1 and V2 and set(v1.__all__) == {V1_PREFIX + s for s in V1}   # every export is a family member
    shared = {s for s in V1 if v1_only_reason(s) is None}
    assert shared == set(V2), "v1 only: %s; v2 only: %s" % (sorted(shared - set(V2)), sorted(set(V2) - shared))
    for key, reason in v2.V1_ONLY.items():
        assert isinstance(reason, str) and len(reason) > 40, key          # a reason, not a placeholder
        assert any(s.endswith(key) for s in V1), "V1_ONLY names %s, which v1 no longer has" % key


@pytest.mark.parametrize("suffix", sorted(V2))
def test_each_pair_has_the_same_genesis_settings(suffix):
    settings_v1, settings_v2 = genesis_settings(V1[suffix]), genesis_settings(V2[suffix])
    assert "genesis_warmup_epochs" in settings_v1 or "genesis_recipe" in settings_v1 or suffix in SCRATCH
    assert settings_v1 == settings_v2


def test_a_v1_only_variant_has_the_settings_of_its_v2_counterpart():
    for suffix, cls in V1.items():
        key = next((k for k in v2.V1_ONLY if suffix.endswith(k)), None)
        if key is not None:
            assert genesis_settings(cls) == genesis_settings(V2[suffix[:-len(key)]]), suffix


def test_the_published_variant_is_the_published_recipe_with_early_stopping_on_both_sides():
    for cls in (v1.nnUNetTrainerV2_GenesisPretrain_Published, v2.nnUNetTrainer_GenesisPretrain_Published):
        assert cls.genesis_recipe == "published_sgd" and cls.genesis_early_stopping_patience == 20
    assert v1.nnUNetTrainerV2_GenesisPretrain.genesis_early_stopping_patience is None


SHARED_PRETRAIN = ("set_recipe_lr", "genesis_lr_before_iteration", "genesis_validation_r2", "restoration_history",
                   "score_restoration_now", "write_restoration_preview", "genesis_patience_ended",
                   "genesis_final_report", "make_genesis_transform", "make_validation_transform")
SHARED_FINETUNE = ("load_pretrained_weights", "genesis_regroup", "genesis_resume_groups", "genesis_apply_warmup",
                   "genesis_warn_if_scratch")
PRETRAIN_ACCESSORS = ("genesis_epoch", "genesis_num_epochs", "genesis_iterations_per_epoch", "genesis_patch_size",
                      "genesis_validation_losses", "_validation_volumes")
FINETUNE_ACCESSORS = ("genesis_epoch", "genesis_rebuild_optimizer")


@pytest.mark.parametrize("cls", sorted([c for f in (V1, V2) for s, c in f.items() if s not in SCRATCH],
                                       key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_the_hook_bodies_are_the_cores_and_the_adapter_answers_its_accessors(cls):
    hooks, shared, accessors = ((PretrainHooks, SHARED_PRETRAIN, PRETRAIN_ACCESSORS) if "Pretrain" in cls.__name__
                                else (FineTuneHooks, SHARED_FINETUNE, FINETUNE_ACCESSORS))
    assert issubclass(cls, hooks)
    for name in shared:   # not rewritten by the adapter: one body for v1 and v2
        assert getattr(cls, name) is getattr(hooks, name), "%s.%s overrides the core's hook body" % (cls.__name__, name)
    for name in accessors:   # defined by the adapter, below the core in the method resolution order
        owner = next(k for k in cls.__mro__ if name in vars(k))
        assert not issubclass(hooks, owner) and owner.__module__.startswith("nnunet_genesis.nnunet_v"), (name, owner)


def test_the_scratch_arm_and_every_fine_tuning_trainer_are_seeded_on_both_sides():
    from nnunet_genesis.nnunet_v1.trainers.seeded import SeededTraining as SeededV1
    from nnunet_genesis.nnunet_v2.trainers.seeded import SeededTraining as SeededV2
    for family_, seeded in ((V1, SeededV1), (V2, SeededV2)):
        for suffix, cls in family_.items():
            if suffix in SCRATCH or issubclass(cls, FineTuneHooks):
                assert issubclass(cls, seeded), cls.__name__


def test_the_validation_transform_has_the_one_validation_seed_on_both_sides():
    for cls in (v1.nnUNetTrainerV2_GenesisPretrain, v2.nnUNetTrainer_GenesisPretrain):
        trainer = object.__new__(cls)   # settings only: no plans, nothing of nnU-Net's set up
        transform = trainer.make_validation_transform()
        assert transform.seed == VALIDATION_SEED
        assert transform.p_inpaint == trainer.recipe.p_inpaint   # the training mix, seeded


class _Settings(PretrainHooks):
    """The early-stopping hook on recorded losses (PretrainHooks reads only its accessors)."""

    def __init__(self, losses, patience):
        self.losses, self.genesis_early_stopping_patience, self.lines = losses, patience, []

    def genesis_validation_losses(self):
        return self.losses

    def print_to_log_file(self, *args):
        self.lines.append(" ".join(map(str, args)))


def test_early_stopping_after_patience_epochs_without_a_lower_validation_loss():
    assert epochs_without_improvement([]) == 0
    assert epochs_without_improvement([3.0, 2.0, 2.5, float("nan"), 2.1]) == 3
    assert epochs_without_improvement([3.0, 2.0, 1.0]) == 0
    improving = [1.0 / (e + 1) for e in range(30)]
    stalled = [1.0, 0.5] + [0.6] * 20          # best at epoch 1, then 20 epochs without a lower loss
    assert not _Settings(improving, 20).genesis_patience_ended()
    assert not _Settings(stalled[:-1], 20).genesis_patience_ended()   # 19 epochs: not yet
    ended = _Settings(stalled, 20)
    assert ended.genesis_patience_ended()
    assert "not improved for 20 epochs (best 0.50000 at epoch 1" in ended.lines[0]
    assert not _Settings(stalled, None).genesis_patience_ended()      # no patience: all epochs
