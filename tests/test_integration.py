"""The stock nnU-Net v1 entry points see our trainers and load checkpoints under torch >= 2.6.

Each check runs in a fresh interpreter, as the stock console scripts do, so that what is tested is
the start-up hook installed by ``nnunet_genesis.pth`` and not something this test process imported.
"""
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import torch

from tests.conftest import subprocess_env
from tests.gpu_saved import assert_cuda_tagged, save_as_if_on_gpu

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code, **env):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=subprocess_env(**env),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)


FIND = """
    import nnunet
    from os.path import join
    from nnunet.training.model_restore import recursive_find_python_class
    tr = recursive_find_python_class([join(nnunet.__path__[0], "training", "network_training")], %r,
                                     current_module="nnunet.training.network_training")
    print("FOUND", None if tr is None else tr.__module__ + "." + tr.__name__)
"""


def test_stock_search_finds_our_trainer():
    out = run_python(FIND % "nnUNetTrainerV2_Genesis")
    assert "FOUND nnunet_genesis.nnunet_v1.trainers.finetune.nnUNetTrainerV2_Genesis" in out.stdout, out.stdout


def test_stock_trainers_still_come_from_nnunet():
    out = run_python(FIND % "nnUNetTrainerV2")
    assert "FOUND nnunet.training.network_training.nnUNetTrainerV2.nnUNetTrainerV2" in out.stdout, out.stdout


def test_hook_can_be_disabled():
    out = run_python(FIND % "nnUNetTrainerV2_Genesis", NNUNET_GENESIS_DISABLE_HOOK="1")
    assert "FOUND None" in out.stdout, out.stdout


def write_ext_trainer(folder, class_name, body="pass"):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "my_trainers.py"), "w") as f:
        f.write("from nnunet_genesis.nnunet_v1.trainers import nnUNetTrainerV2_Genesis\n\n"
                "class %s(nnUNetTrainerV2_Genesis):\n    %s\n" % (class_name, body))


def test_ext_trainer_folders_are_searched_in_order(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second" / "nested"
    write_ext_trainer(str(first), "OtherTrainer")
    write_ext_trainer(str(second), "MyTrainerFromExt")
    out = run_python(FIND % "MyTrainerFromExt",
                     nnUNet_extTrainer=os.pathsep.join([str(first), str(tmp_path / "second")]))
    assert "FOUND nnunet_genesis_ext_" in out.stdout and ".MyTrainerFromExt" in out.stdout, out.stdout


def test_broken_ext_trainer_module_is_named(tmp_path):
    folder = tmp_path / "ext"
    folder.mkdir()
    (folder / "broken.py").write_text("import this_module_does_not_exist\n")
    out = run_python(FIND % "AnyTrainer", nnUNet_extTrainer=str(folder))
    assert out.returncode != 0
    assert "broken.py" in out.stdout and "this_module_does_not_exist" in out.stdout, out.stdout


def nnunet_style_checkpoint():
    """What nnU-Net's save_checkpoint writes: numpy scalars and floats inside the plot lists."""
    return {"epoch": 3, "state_dict": {"w": torch.arange(4.0)}, "optimizer_state_dict": None,
            "lr_scheduler_state_dict": None, "amp_grad_scaler": {"scale": 65536.0},
            "plot_stuff": ([np.float64(0.5)], [np.mean([1.0, 2.0])], [], [np.float32(0.25)]),
            "best_stuff": (2, np.float64(0.1), np.float64(0.3))}


LOAD = """
    import torch
    import nnunet.training.network_training.network_trainer  # what every stock command imports
    ckpt = torch.load(%r, map_location="cpu")
    print("LOADED", ckpt["epoch"], float(ckpt["best_stuff"][1]))
"""


def test_weights_only_loading_of_nnunet_checkpoints(tmp_path):
    path = str(tmp_path / "model_final_checkpoint.model")
    torch.save(nnunet_style_checkpoint(), path)
    ok = run_python(LOAD % path)
    assert "LOADED 3 0.1" in ok.stdout, ok.stdout
    # Without the hook torch's weights-only default refuses the numpy scalars: the hook is the fix,
    # and it did not switch weights-only off (an arbitrary object is still refused, below).
    refused = run_python(LOAD % path, NNUNET_GENESIS_DISABLE_HOOK="1")
    assert refused.returncode != 0 and "Weights only load failed" in refused.stdout


def test_weights_only_stays_on_for_other_objects(tmp_path):
    path = str(tmp_path / "evil.model")
    torch.save({"epoch": 1, "payload": zipfile.ZipInfo("x")}, path)
    out = run_python(LOAD % path)
    assert out.returncode != 0 and "Weights only load failed" in out.stdout


STOCK_PRETRAINED = """
    import torch
    from nnunet.run.load_pretrained_weights import load_pretrained_weights
    net = torch.nn.Sequential()
    net.add_module("conv_blocks_context", torch.nn.Conv3d(1, 2, 3))
    load_pretrained_weights(net, %r)
    print("WEIGHT_SUM", float(net.conv_blocks_context.weight.sum()))
"""


def test_stock_pretrained_loader_maps_gpu_saved_weights_to_cpu(tmp_path):
    conv = torch.nn.Conv3d(1, 2, 3)
    torch.nn.init.constant_(conv.weight, 0.5)
    path = str(tmp_path / "gpu.model")
    save_as_if_on_gpu({"state_dict": {"conv_blocks_context." + k: v for k, v in conv.state_dict().items()}}, path)
    assert_cuda_tagged(path)
    out = run_python(STOCK_PRETRAINED % path)
    assert "WEIGHT_SUM %s" % float(0.5 * conv.weight.numel()) in out.stdout, out.stdout
    stock = run_python(STOCK_PRETRAINED % path, NNUNET_GENESIS_DISABLE_HOOK="1")
    assert stock.returncode != 0


def test_regular_install_wheel_carries_the_pth(tmp_path):
    """A regular (non-editable) install puts nnunet_genesis.pth at the root of site-packages."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), REPO], check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wheel = [f for f in os.listdir(tmp_path) if f.endswith(".whl")][0]
    names = zipfile.ZipFile(os.path.join(tmp_path, wheel)).namelist()
    assert "nnunet_genesis.pth" in names
    assert "nnunet_genesis/integration.py" in names


def test_pth_line_is_valid_for_site():
    """site.py executes a .pth line only if it starts with 'import'; the line must also be one line."""
    with open(os.path.join(REPO, "nnunet_genesis.pth")) as f:
        lines = [l for l in f.read().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("import ")
