"""nnunet_genesis.nnunet_v1.layout names what nnU-Net v1's own code names: checked against nnU-Net's functions
on a task planned by the stock commands (the conftest's private workspace), not against copies of the strings."""
import os

import pytest

from nnunet_genesis.nnunet_v1 import layout


def test_defaults_are_nnunets():
    from nnunet import paths
    assert layout.DEFAULT_PLANS_IDENTIFIER == paths.default_plans_identifier
    assert layout.RESULTS_SUBFOLDER == paths.my_output_identifier


def test_folders_from_the_environment_are_the_folders_nnunet_reads():
    # the conftest set the three variables before nnunet.paths was imported: both readings must agree
    assert layout.missing_folder_variables() == []
    assert layout.folders_from_env(os.environ) == layout.process_folders()
    assert layout.missing_folder_variables({"nnUNet_raw_data_base": "/x", "RESULTS_FOLDER": ""}) == \
        ["nnUNet_preprocessed", "RESULTS_FOLDER"]
    assert layout.folders_from_env({}) == layout.NnUNetFolders(None, None, None, None)


def test_task_names_and_ids(ct_task):
    assert layout.task_name(ct_task.task_id, "FakeCT") == ct_task.task_name
    assert layout.task_id_of(ct_task.task_name) == ct_task.task_id
    assert layout.short_name_of("Task91_FakeCT") == layout.short_name_of(ct_task.task_name) == "FakeCT"
    # ids go through nnU-Net's own lookup, which finds the converted and planned task's folders
    assert layout.resolve_task_name(ct_task.task_id) == layout.resolve_task_name(str(ct_task.task_id)) == \
        ct_task.task_name
    assert layout.resolve_task_name(ct_task.task_name) == ct_task.task_name
    with pytest.raises(ValueError):
        layout.resolve_task_name("FakeCT")
    assert os.path.join(layout.process_folders().raw, ct_task.task_name) == ct_task.raw_dir
    assert any(os.path.basename(p) == ct_task.task_name for p in layout.process_folders().task_folders(ct_task.task_id))


def test_plans_stages_and_results_are_where_nnunet_puts_them(ct_task):
    from nnunet.run.default_configuration import get_default_configuration
    folders = layout.process_folders()
    plans = layout.load_plans(ct_task.plans_3d_file)
    networks = ["3d_fullres"] + (["3d_lowres"] if len(plans["plans_per_stage"]) > 1 else [])
    for network in networks:
        plans_file, output_folder, dataset_dir, _, stage, _ = get_default_configuration(
            network, ct_task.task_name, "nnUNetTrainerV2")
        assert plans_file == layout.plans_file(os.path.join(folders.preprocessed, ct_task.task_name),
                                               dims=layout.plans_dims(network))
        assert output_folder == layout.trainer_folder(folders.results, network, ct_task.task_name, "nnUNetTrainerV2")
        assert stage == layout.stage_for_network(plans, network)
    # nnU-Net's preprocessor wrote the last stage's cases where layout looks for them
    stage_dir = layout.stage_folder(ct_task.preprocessed_dir, plans, layout.last_stage(plans))
    assert any(f.endswith(".npz") for f in os.listdir(stage_dir))
    assert layout.fold_folder_name(0) == "fold_0" and layout.fold_folder_name("all") == "all"
    single = {"plans_per_stage": {0: {}}}
    with pytest.raises(ValueError):
        layout.stage_for_network(single, "3d_lowres")
    assert layout.stage_for_network({"plans_per_stage": {0: {}, 1: {}}}, "3d_lowres") == 0
    assert layout.stage_for_network({"plans_per_stage": {0: {}, 1: {}}}, "3d_fullres") == 1
