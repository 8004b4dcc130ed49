"""Time per training iteration: nnUNetTrainerV2_GenesisPretrain against stock nnUNetTrainerV2.

Both train on the same task (the demo's MNI152-derived brain task by default), with the same plans,
patch size, network and number of data-augmentation workers (nnUNet_n_proc_DA), measured in this one
run. Order A B B A (stock, Genesis, Genesis, stock) cancels slow drifts of the machine; each block
starts fresh generators, discards its first iterations (worker start-up) and times the next ones.

    python benchmarks/pretrain_iteration.py [--iterations 20] [--warmup 3] [--workers 2]

The target of issue 4: Genesis / stock <= 1.15.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def set_up_workspace(root, workers):
    for key, sub in (("nnUNet_raw_data_base", "raw"), ("nnUNet_preprocessed", "preprocessed"),
                     ("RESULTS_FOLDER", "results")):
        os.environ[key] = os.path.join(root, sub)
        os.makedirs(os.environ[key], exist_ok=True)
    os.environ["nnUNet_n_proc_DA"] = str(workers)


def stock(name):
    return os.path.join(os.path.dirname(sys.executable), name)


def prepare_tasks(root, task_id=960, pretrain_id=961):
    """Decathlon-format demo task -> converted, planned (stock commands) -> pretraining task."""
    sys.path.insert(0, REPO)
    from competition.demo_data import write_mni_demo_task
    decathlon = write_mni_demo_task(os.path.join(root, "decathlon"))
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, check=True)
    subprocess.run([stock("nnUNet_convert_decathlon_task"), "-i", decathlon, "-output_task_id", str(task_id)], **quiet)
    subprocess.run([stock("nnUNet_plan_and_preprocess"), "-t", str(task_id), "-pl2d", "None", "-tl", "2", "-tf", "2"],
                   **quiet)
    from nnunet_genesis.unlabeled import prepare_pretraining_task
    report = prepare_pretraining_task(str(task_id), [decathlon], pretrain_id)
    from nnunet.utilities.task_name_id_conversion import convert_id_to_task_name
    return convert_id_to_task_name(task_id), report["task_name"]


def make_trainer(trainer_class, task_name, fold, root):
    from nnunet.paths import preprocessing_output_dir
    folder = os.path.join(preprocessing_output_dir, task_name)
    trainer = trainer_class(os.path.join(folder, "nnUNetPlansv2.1_plans_3D.pkl"), fold,
                            output_folder=os.path.join(root, "out", trainer_class.__name__), dataset_directory=folder,
                            batch_dice=False, stage=0, unpack_data=True, deterministic=False, fp16=False)
    trainer.initialize(True)
    return trainer


def time_block(trainer_class, task_name, fold, root, warmup, iterations):
    trainer = make_trainer(trainer_class, task_name, fold, root)
    trainer.network.train()
    try:
        for _ in range(warmup):
            trainer.run_iteration(trainer.tr_gen, True)
        times = []
        for _ in range(iterations):
            start = time.perf_counter()
            trainer.run_iteration(trainer.tr_gen, True)
            times.append(time.perf_counter() - start)
    finally:
        for gen in (trainer.tr_gen, trainer.val_gen):
            gen._finish()
    return times, tuple(trainer.patch_size), trainer.batch_size


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=20, help="timed iterations per block")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations at the start of each block")
    parser.add_argument("--workers", type=int, default=2, help="nnUNet_n_proc_DA for both trainers")
    args = parser.parse_args()

    root = tempfile.mkdtemp(prefix="genesis_bench_")
    try:
        run(root, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)  # our own temporary workspace


def run(root, args):
    set_up_workspace(root, args.workers)
    task, pretrain_task = prepare_tasks(root)

    import torch
    from nnunet.training.network_training.nnUNetTrainerV2 import nnUNetTrainerV2
    from nnunet_genesis.trainers import nnUNetTrainerV2_GenesisPretrain
    runs = {"stock nnUNetTrainerV2": (nnUNetTrainerV2, task, 0),
            "nnUNetTrainerV2_GenesisPretrain": (nnUNetTrainerV2_GenesisPretrain, pretrain_task, "all")}
    names = list(runs)
    times = {n: [] for n in names}
    for name in (names[0], names[1], names[1], names[0]):  # A B B A
        cls, task_name, fold = runs[name]
        block, patch, batch = time_block(cls, task_name, fold, root, args.warmup, args.iterations)
        times[name].extend(block)
        print("  block %-32s median %.3f s/it" % (name, statistics.median(block)), flush=True)

    print("\npatch %s, batch %d, %d data-augmentation workers, torch threads %d, device cpu"
          % ("x".join(map(str, patch)), batch, args.workers, torch.get_num_threads()))
    print("%-34s %12s %12s" % ("trainer", "median s/it", "mean s/it"))
    for name in names:
        print("%-34s %12.3f %12.3f" % (name, statistics.median(times[name]), statistics.mean(times[name])))
    ratio = statistics.median(times[names[1]]) / statistics.median(times[names[0]])
    print("ratio Genesis / stock (medians): %.3f  (target <= 1.15: %s)" % (ratio, "OK" if ratio <= 1.15 else "ABOVE"))


if __name__ == "__main__":
    main()
