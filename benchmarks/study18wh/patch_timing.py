"""Seconds per training iteration of a task's planned nnU-Net v1 network at several patch sizes, on one core.

    taskset -c 0 python benchmarks/study18wh/patch_timing.py PLANS.pkl [Z Y X ...]

For each patch (default 64^3, 64 x 96 x 64, 128^3; each size divisible by 2^(poolings)): batch 2, random
input, forward + mean of the full-resolution output + backward + SGD step, three times (the fastest is
printed), then one forward of a single patch without gradients (a sliding-window tile). Single-threaded
(torch.set_num_threads(1)). Used for docs/measurements_study18_wholehead.md (why the study's patch is 64^3).
"""
import sys
import time

import torch

from nnunet_genesis.nnunet_v1.network import build_network_from_plans


def main(argv):
    torch.set_num_threads(1)
    net = build_network_from_plans(argv[0])
    sizes = [int(v) for v in argv[1:]] or [64, 64, 64, 64, 96, 64, 128, 128, 128]
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    for patch in zip(sizes[0::3], sizes[1::3], sizes[2::3]):
        x = torch.randn(2, 1, *patch)
        times = []
        for _ in range(3):
            start = time.time()
            net(x)[0].mean().backward()
            optimizer.step()
            optimizer.zero_grad()
            times.append(time.time() - start)
        net.eval()
        with torch.no_grad():
            start = time.time()
            net(torch.randn(1, 1, *patch))
            tile = time.time() - start
        net.train()
        print("patch %s: training iteration %.1f s, one tile forward %.2f s" % (patch, min(times), tile), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
