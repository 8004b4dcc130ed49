"""A pretraining reproduction task whose cases are smaller than nnU-Net's patch (issue #18).

    python benchmarks/pretrain_small_cases.py OUT [--cases 24] [--test 4] [--spacing 2]

Builds ``OUT/decathlon/Task12_SmallCrops``: the demo's MNI-based brain cases (``competition/demo_data.py``) at
``--spacing`` mm, each cropped to a box of about 36 x 50 x 35 voxels (+-3 per axis, seeded) inside the brain,
the size of Task04_Hippocampus's cases, labels cropped alike; then runs ``nnUNet_genesis_run_task``'s steps up to
``prepare`` (convert, plan, preprocess, the unlabeled pretraining task 612 from the training images only) with
the folders under ``OUT``. nnU-Net's plans then give a patch larger than every case, so every training patch
carries padding (and nnU-Net's enlarged spatial-augmentation crop more of it): the situation in which the
default recipe collapsed on the held-out task. Prints the environment to train with, e.g.::

    nnUNet_train 3d_fullres nnUNetTrainerV2_GenesisPretrain_Small 612 0
"""
import argparse
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

TASK = "Task12_SmallCrops"
TASK_ID, PRETRAIN_TASK_ID = 12, 612
CROP = (36, 50, 35)
JITTER = 3


def crop_box(shape, size, rng):
    """A window of ``size`` (+- JITTER per axis, never larger than ``shape``) near the centre of ``shape``."""
    window = []
    for dim, side in zip(shape, size):
        side = min(dim, side + int(rng.integers(-JITTER, JITTER + 1)))
        slack = dim - side
        start = slack // 2 + int(rng.integers(-slack // 4, slack // 4 + 1)) if slack > 0 else 0
        window.append(slice(start, start + side))
    return tuple(window)


def write_small_task(root, cases, test, spacing, seed=0):
    """The Decathlon folder ``root/TASK`` (see module doc); returns its path."""
    import nibabel as nib
    from competition.demo_data import demo_test_labels_dir, write_mni_demo_task
    from nnunet_genesis.io import raw_dataset
    from nnunet_genesis.io.atomic import write_json_atomic
    task_dir = os.path.join(root, TASK)
    if os.path.isfile(raw_dataset.dataset_json(task_dir)):
        return task_dir
    write_mni_demo_task(root, name=TASK, num_training=cases, num_test=test, seed=seed, spacing_mm=spacing,
                        overwrite=True)
    rng = np.random.default_rng([seed, 18])
    folders = [(raw_dataset.IMAGES_TR, raw_dataset.LABELS_TR), (raw_dataset.IMAGES_TS, demo_test_labels_dir(task_dir))]
    for images, labels in folders:
        labels = labels if os.path.isabs(labels) else os.path.join(task_dir, labels)
        for name in sorted(os.listdir(os.path.join(task_dir, images))):
            image_path, label_path = os.path.join(task_dir, images, name), os.path.join(labels, name)
            image, label = nib.load(image_path), nib.load(label_path)
            window = crop_box(image.shape, CROP, rng)
            for img, path, dtype in ((image, image_path, np.float32), (label, label_path, np.uint8)):
                affine = img.affine.copy()
                affine[:3, 3] = img.affine[:3, :3] @ np.array([w.start for w in window]) + img.affine[:3, 3]
                out = nib.Nifti1Image(np.asarray(img.dataobj)[window].astype(dtype), affine)
                out.set_qform(affine, code=1)
                out.set_sform(affine, code=1)
                nib.save(out, path)
    with open(raw_dataset.dataset_json(task_dir)) as f:
        import json
        dataset = json.load(f)
    dataset["description"] = ("issue #18 reproduction: demo brain cases at %g mm cropped to about %s voxels "
                              "(smaller than nnU-Net's patch)" % (spacing, "x".join(map(str, CROP))))
    write_json_atomic(dataset, raw_dataset.dataset_json(task_dir))
    return task_dir


def environment(out):
    env = dict(os.environ)
    for key, sub in (("nnUNet_raw_data_base", "raw"), ("nnUNet_preprocessed", "preprocessed"),
                     ("RESULTS_FOLDER", "results")):
        env[key] = os.path.join(out, sub)
        os.makedirs(env[key], exist_ok=True)
    env["nnUNet_extTrainer"] = os.path.join(REPO, "benchmarks", "trainers")   # small_case_trainers.py
    return env


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--test", type=int, default=4)
    parser.add_argument("--spacing", type=float, default=2.0)
    args = parser.parse_args(argv)
    from competition.pipeline import run_task
    out = os.path.abspath(args.out)
    task_dir = write_small_task(os.path.join(out, "decathlon"), args.cases, args.test, args.spacing)
    env = environment(out)
    run_task(task_dir, task_id=TASK_ID, folds=("0",), pretrain_task_id=PRETRAIN_TASK_ID, stop_after="prepare",
             env=env)
    print("\n".join("export %s=%s" % (k, env[k]) for k in ("nnUNet_raw_data_base", "nnUNet_preprocessed",
                                                          "RESULTS_FOLDER", "nnUNet_extTrainer")))


if __name__ == "__main__":
    main()
