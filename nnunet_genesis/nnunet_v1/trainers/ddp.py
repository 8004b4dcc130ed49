"""Let nnUNetTrainerV2_DDP run where it is launched today: torchrun, and CPU-only machines.

nnUNetTrainerV2_DDP (nnU-Net 1.7.1's ``nnunet/training/network_training/nnUNetTrainerV2_DDP.py``)
hard-codes the NCCL backend and ``device_ids=[local_rank]`` and reads the local rank only from
``--local_rank``, which torchrun no longer passes. The mixin changes only
those three things, and only for the duration of nnU-Net's own ``__init__``/``initialize``:
  * local rank: ``$LOCAL_RANK`` when torchrun set it;
  * backend: gloo when CUDA is not available (NCCL needs GPUs), NCCL otherwise as before;
  * DistributedDataParallel: ``device_ids=None`` for a CPU module, as torch requires.
With a GPU everything is exactly nnU-Net's. On CPU this is what lets the DDP logic be tested
(``tests/test_ddp.py``).
"""
import contextlib
import os

import torch
import torch.distributed as dist

import nnunet.training.network_training.nnUNetTrainerV2_DDP as nnunet_ddp_module


@contextlib.contextmanager
def _cpu_capable_distributed():
    """Temporarily make nnU-Net's DDP set-up calls work without CUDA."""
    if torch.cuda.is_available():
        yield
        return
    real_init, real_ddp = dist.init_process_group, nnunet_ddp_module.DDP

    def init_process_group(backend=None, *args, **kwargs):
        if dist.is_initialized():  # e.g. a launcher that set the group up itself
            return None
        return real_init("gloo", *args, **kwargs)

    def cpu_ddp(module, device_ids=None, *args, **kwargs):
        return real_ddp(module, None, *args, **kwargs)

    dist.init_process_group, nnunet_ddp_module.DDP = init_process_group, cpu_ddp
    try:
        yield
    finally:
        dist.init_process_group, nnunet_ddp_module.DDP = real_init, real_ddp


class CpuCapableDDPMixin:
    def __init__(self, plans_file, fold, local_rank, *args, **kwargs):
        local_rank = int(os.environ.get("LOCAL_RANK", local_rank))
        with _cpu_capable_distributed():
            super().__init__(plans_file, fold, local_rank, *args, **kwargs)

    def initialize(self, training=True, force_load_plans=False):
        with _cpu_capable_distributed():
            return super().initialize(training, force_load_plans)

