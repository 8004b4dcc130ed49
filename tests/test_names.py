"""The one owners of the raw folder's names (nnunet_genesis.io.raw_dataset) and of nnU-Net's names that need no
lookup (nnunet_v1/names.py, nnunet_v2/names.py): the rules, and that the layouts and evaluation ask them."""
from nnunet_genesis.io import raw_dataset
from nnunet_genesis.nnunet_v1 import layout as v1_layout
from nnunet_genesis.nnunet_v1 import names as v1_names
from nnunet_genesis.nnunet_v2 import layout as v2_layout
from nnunet_genesis.nnunet_v2 import names as v2_names


def test_the_channel_suffix_rule_round_trips():
    assert raw_dataset.channel_file_name("liver_3", 0) == "liver_3_0000.nii.gz"
    assert raw_dataset.channel_file_name("CASE", 12, ending="") == "CASE_0012"
    assert raw_dataset.split_channel_file_name("liver_3_0001.nii.gz") == ("liver_3", 1)
    for not_a_channel_file in ("liver_3.nii.gz", "liver_3_001.nii.gz", "liver_3_0001.nii", "_0001.nii.gz"):
        assert raw_dataset.split_channel_file_name(not_a_channel_file) is None


def test_the_raw_folder_names():
    assert raw_dataset.TASK_SUBFOLDERS == ("imagesTr", "labelsTr", "imagesTs")
    assert raw_dataset.dataset_json("/d/Task03_Liver") == "/d/Task03_Liver/dataset.json"
    assert raw_dataset.images_ts("/d/T") == "/d/T/imagesTs" and raw_dataset.labels_tr("/d/T") == "/d/T/labelsTr"
    assert raw_dataset.listed_path(raw_dataset.IMAGES_TR, "a.nii.gz") == "./imagesTr/a.nii.gz"
    assert v2_layout.DATASET_JSON is raw_dataset.DATASET_JSON


def test_each_layout_re_exports_its_names_unchanged():
    for names, layout in ((v1_names, v1_layout), (v2_names, v2_layout)):
        public = [n for n in vars(names) if n.isupper() or (not n.startswith("_") and callable(getattr(names, n)))]
        assert public and all(getattr(layout, n) is getattr(names, n) for n in public), names.__name__
    assert v1_layout.RESUMABLE_CHECKPOINTS == ("model_latest.model", "model_best.model")
    assert v1_layout.VALIDATION_SUMMARY == "validation_raw/summary.json"
    assert v2_layout.FINAL_CHECKPOINT == "checkpoint_final.pth" and v2_layout.VALIDATION_FOLDER == "validation"
    assert v1_names.task_name(7, "Pancreas") == "Task007_Pancreas"
    assert v2_names.dataset_name(7, "Pancreas") == "Dataset007_Pancreas"


def test_evaluation_reads_the_fold_folders_by_the_layouts_names():
    from evaluation.compare import FOLD_PREDICTIONS
    from evaluation.tasks import find_msd_task
    assert FOLD_PREDICTIONS == (v1_layout.VALIDATION_FOLDER, v2_layout.VALIDATION_FOLDER)
    assert find_msd_task(7).folder_names == ("Task07_Pancreas", "Task007_Pancreas", "Dataset007_Pancreas")
