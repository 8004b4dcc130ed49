"""The restoration loss and its running R^2, and the network's output form (direct or residual).
"""
import torch
from torch import nn


# --------------------------------------------------------------------------------------------
# Loss and metrics
# --------------------------------------------------------------------------------------------
def full_resolution(output):
    """Generic_UNet returns a tuple of outputs (full resolution first) under deep supervision."""
    return output[0] if isinstance(output, (tuple, list)) else output


class RestorationLoss(nn.Module):
    """MSE between the full-resolution output and the original patch (see module doc).

    The lower-resolution deep-supervision outputs enter with weight 0: their gradients are exactly
    zero, but every parameter takes part in the graph, which DistributedDataParallel requires
    (it fails on parameters that produced no gradient).
    """

    def forward(self, output, target):
        target = full_resolution(target).float()
        output_full = full_resolution(output).float()
        inside = torch.isfinite(target)  # NaN: outside the image (GenesisTransform's inside_key)
        if bool(inside.all()):
            loss = nn.functional.mse_loss(output_full, target)
        else:
            squared = torch.where(inside, output_full - torch.nan_to_num(target), torch.zeros_like(output_full)) ** 2
            loss = squared.sum() / inside.sum().clamp(min=1)
        if isinstance(output, (tuple, list)):
            for low_resolution in output[1:]:
                loss = loss + 0.0 * low_resolution.sum()
        return loss


class RestorationAccumulator:
    """Sums of squared errors and of squares around the mean over validation batches, so the
    epoch's R^2 weights every voxel equally (what nnU-Net's global Dice does for overlaps)."""

    def __init__(self):
        self.sse = self.sum = self.sum_sq = self.count = 0.0

    def add(self, output, target):
        """Voxels where ``target`` is NaN (outside the image) are left out."""
        output, target = full_resolution(output).detach().float(), full_resolution(target).detach().float()
        inside = torch.isfinite(target)
        target = torch.where(inside, target, torch.zeros_like(target))
        self.sse += float(torch.where(inside, output - target, torch.zeros_like(output)).pow(2).sum())
        self.sum += float(target.sum())
        self.sum_sq += float((target ** 2).sum())
        self.count += int(inside.sum())

    def r2(self):
        if self.count == 0:
            return float("nan")
        sst = self.sum_sq - self.sum ** 2 / self.count
        return 1.0 - self.sse / sst if sst > 0 else float("nan")

    def mse(self):
        return self.sse / self.count if self.count else float("nan")


def add_residual_output(network, zero_init: bool = False) -> None:
    """Make ``network`` answer ``input + network(input)`` at full resolution (a residual output,
    see ``nnunet_genesis/pretraining/recipes.py``), with a forward hook: the weights, their names and the
    checkpoint format stay Generic_UNet's, so the fine-tuning transfer reads them as before. Under
    deep supervision only the full-resolution output gets the input (the others have weight 0).
    Needs as many output channels as input channels, as restoration has. ``zero_init``: the
    full-resolution output layer (Generic_UNet's ``seg_outputs[-1]``) starts at zero, so the network
    starts as the identity."""
    if zero_init:
        head = network.seg_outputs[-1]
        with torch.no_grad():
            head.weight.zero_()
            if head.bias is not None:
                head.bias.zero_()

    def hook(module, inputs, output):
        x = inputs[0]
        if isinstance(output, (tuple, list)):
            return type(output)([output[0] + x] + list(output[1:]))
        return output + x
    network._genesis_residual_hook = network.register_forward_hook(hook)
