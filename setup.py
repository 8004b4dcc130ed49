"""nnunet-genesis: Models Genesis self-supervised pretraining for nnU-Net v1.

Besides the packages, installing puts ``nnunet_genesis.pth`` into site-packages (regular and
editable installs alike): the one line that lets the stock nnUNet_* commands find our trainers.
See nnunet_genesis/integration.py and docs/architecture.md ("How the stock commands find our trainers").
"""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PTH = "nnunet_genesis.pth"


class BuildPyWithPth(build_py):
    """Regular installs: the .pth goes to the wheel's root, i.e. into site-packages."""

    def run(self):
        super().run()
        if not getattr(self, "editable_mode", False):
            self.copy_file(os.path.join(HERE, PTH), os.path.join(self.build_lib, PTH), preserve_mode=0)

    def get_outputs(self, include_bytecode=1):
        outputs = super().get_outputs(include_bytecode)
        if not getattr(self, "editable_mode", False):
            outputs.append(os.path.join(self.build_lib, PTH))
        return outputs


cmdclass = {"build_py": BuildPyWithPth}

try:  # editable installs (PEP 660, setuptools >= 64) build their own wheel without build_lib
    from setuptools.command.editable_wheel import editable_wheel

    class EditableWheelWithPth(editable_wheel):
        def _run_build_commands(self, dist_name, unpacked_wheel, build_lib, tmp_dir):
            result = super()._run_build_commands(dist_name, unpacked_wheel, build_lib, tmp_dir)
            shutil.copyfile(os.path.join(HERE, PTH), os.path.join(unpacked_wheel, PTH))
            return result

    cmdclass["editable_wheel"] = EditableWheelWithPth
except ImportError:
    pass


setup(
    name="nnunet-genesis",
    version="0.1.0",
    description="Models Genesis self-supervised pretraining for nnU-Net v1 and v2, through nnU-Net's own commands",
    long_description=open(os.path.join(HERE, "README.md")).read() if os.path.exists(os.path.join(HERE, "README.md")) else "",
    long_description_content_type="text/markdown",
    packages=["nnunet_genesis", "nnunet_genesis.distortions", "nnunet_genesis.pretraining", "nnunet_genesis.transfer",
              "nnunet_genesis.checkpoints", "nnunet_genesis.io", "nnunet_genesis.commands",
              "nnunet_genesis.nnunet_v1", "nnunet_genesis.nnunet_v1.trainers", "nnunet_genesis.nnunet_v2",
              "nnunet_genesis.nnunet_v2.trainers",
              "competition",
              "competition.demo_trainers", "evaluation"],
    python_requires=">=3.9",
    install_requires=[
        "nnunet==1.7.1",
        "torch>=1.10",  # any build satisfies it, so a user's own CUDA torch is kept
        "batchgenerators>=0.25",
        "SimpleITK",
        "nibabel",     # the demo's data are written with it (competition/demo_data.py; already required by nnunet)
        "numpy",
        "numba>=0.60",  # the transforms' per-voxel loops (nnunet_genesis/distortions/kernels.py)
        "scipy<2",
        "tqdm",        # progress bars (already required by nnunet)
        "matplotlib",  # preview and comparison PNGs (already required by nnunet)
        "scikit-image>=0.19",  # marching cubes for the NSD surfels (evaluation/metrics.py)
        "scikit-learn",  # nnU-Net's default 5-fold split, for a study on a task never trained (competition/study.py)
    ],
    extras_require={
        # nilearn ships the MNI152 template the demo (and its tests) are built from;
        # surface-distance is DeepMind's published NSD, the reference our NSD is tested against.
        "demo": ["nilearn"],
        # nnU-Net v2 beside v1 in one environment (nnunet_genesis/nnunet_v2/); install with the torch
        # constraint (README: -c torch-cpu-constraint.txt), or its dependency chain replaces torch.
        "v2": ["nnunetv2==2.8.1"],
        # pytest-xdist: the README runs the tests on two workers (whole files per worker)
        "test": ["pytest", "pytest-xdist", "nilearn", "surface-distance", "nnunetv2==2.8.1"],
    },
    cmdclass=cmdclass,
    entry_points={"console_scripts": [
        "nnUNet_genesis_transfer = nnunet_genesis.commands.cli:transfer_main",
        "nnUNet_genesis_prepare = nnunet_genesis.commands.cli:prepare_main",
        "nnUNet_genesis_restoration = nnunet_genesis.commands.cli:restoration_main",
        "nnUNet_genesis_evaluate = evaluation.cli:evaluate_main",
        "nnUNet_genesis_compare = evaluation.cli:compare_main",
        "nnUNet_genesis_submission = competition.cli:submission_main",
        "nnUNet_genesis_run_task = competition.cli:run_task_main",
        "nnUNet_genesis_demo = competition.cli:demo_main",
        "nnUNet_genesis_study = competition.cli:study_main",
    ]},
)
