"""Does a pretraining recipe learn? Per-distortion restoration R^2 at fixed iterations, per recipe,
against the identity and mean baselines, on prepared pretraining tasks.

    python benchmarks/pretrain_learning.py --task DIR [--task DIR ...] --recipes nnunet_sgd adamw ...
        [--iterations 500 1000] [--val-cases 2] [--threads 2] [--json out.json]

``--task`` is a pretraining task prepared by ``nnUNet_genesis_prepare`` (its folder in
``$nnUNet_preprocessed``: plans + ``nnUNetData_plans_v2.1_stage*``). Per task the last
``--val-cases`` cases (sorted by name) are held out: every score is on their patches (the central
patch and the patches shifted by a quarter patch along each axis), distorted by a stream fixed per
distortion (``nnunet_genesis.pretraining.scores``), so all recipes and checkpoints face the same patches.

Each recipe trains, from the same initial weights (``--seed``), the network nnU-Net's plans give
(Generic_UNet, output channels = input channels, no deep supervision), on batches of the plans'
batch size: random crops of the plans' patch size from the training cases (a quarter patch of zero
padding, like nnU-Net's data loader), random flips, then ``GenesisTransform`` (the published
distortions, in the recipe's mix: ``Recipe.p_inpaint``, or ``--p-inpaint``). Not nnU-Net's rotation /
scaling / elastic augmentation: that keeps the loop to one process, and it changes neither the
network nor the learning problem. The recipes are ``nnunet_genesis.pretraining.recipes.RECIPES``.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from nnunet_genesis.io.atomic import write_json_atomic  # noqa: E402
from nnunet_genesis.nnunet_v1 import layout  # noqa: E402
from nnunet_genesis.pretraining.loss import add_residual_output
from nnunet_genesis.pretraining.recipes import RECIPES, learning_rate, make_optimizer, transform_kwargs  # noqa: E402
from nnunet_genesis.pretraining.scores import (DISTORTIONS, distorted_pairs, format_scores,  # noqa: E402
                                        restoration_verdict, score_pairs)
from nnunet_genesis.commands.score_checkpoint import ScoreError, load_prepared_cases  # noqa: E402


def load_task(task_dir):
    plans = layout.load_plans(layout.plans_file(task_dir))
    stage = layout.last_stage(plans)
    try:
        return plans, stage, load_prepared_cases(task_dir, plans, stage, max_cases=sys.maxsize)
    except ScoreError as error:
        raise SystemExit(str(error))


def crop(volume, patch_size, start):
    """The patch at ``start`` (may be negative or run past the end: zero padding)."""
    out = np.zeros((volume.shape[0],) + tuple(patch_size), dtype=np.float32)
    src, dst = [slice(None)], [slice(None)]
    for size, p, s in zip(volume.shape[1:], patch_size, start):
        lo, hi = max(s, 0), min(s + p, size)
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def validation_patches(cases, patch_size):
    patches = []
    for volume in cases.values():
        centre = [(size - p) // 2 for size, p in zip(volume.shape[1:], patch_size)]
        patches.append(crop(volume, patch_size, centre))
        for axis in range(3):
            shifted = list(centre)
            shifted[axis] += patch_size[axis] // 4
            patches.append(crop(volume, patch_size, shifted))
    return patches


def training_batch(cases, patch_size, batch_size, rng):
    names = list(cases)
    batch = []
    for _ in range(batch_size):
        volume = cases[names[rng.integers(len(names))]]
        start = [int(rng.integers(-(p // 4), max(size - p + p // 4, -(p // 4)) + 1))
                 for size, p in zip(volume.shape[1:], patch_size)]
        patch = crop(volume, patch_size, start)
        for axis in range(1, 4):
            if rng.random() < 0.5:
                patch = np.flip(patch, axis)
        batch.append(np.ascontiguousarray(patch))
    return np.stack(batch)


def build_network(plans, stage):
    from nnunet_genesis.nnunet_v1.network import build_network_from_plans
    return build_network_from_plans(plans, stage=stage, num_classes=plans["num_modalities"], deep_supervision=False)


def make_restore(network):
    def restore(distorted):
        network.eval()
        with torch.no_grad():
            out = network(torch.from_numpy(np.ascontiguousarray(distorted[None])))
        network.train()
        return out[0].numpy()
    return restore


def run_recipe(recipe, plans, stage, train_cases, pairs, checkpoints, seed, log, p_inpaint=None):
    """``p_inpaint``: the training mix (None: the recipe's)."""
    from nnunet_genesis.distortions.composite import GenesisTransform
    torch.manual_seed(seed)
    network = build_network(plans, stage)
    if recipe.residual:  # the trainer's own hook (nnunet_genesis.pretraining.loss.add_residual_output)
        add_residual_output(network, zero_init=recipe.zero_init_output)
    stage_plans = plans["plans_per_stage"][stage]
    patch_size, batch_size = [int(p) for p in stage_plans["patch_size"]], int(stage_plans["batch_size"])
    optimizer = make_optimizer(recipe, network.parameters())
    transform = GenesisTransform(seed=seed, **transform_kwargs(recipe, None if p_inpaint is None else
                                                                {"p_inpaint": p_inpaint}))
    rng = np.random.default_rng(seed)
    total = max(checkpoints)
    results, start, losses = {}, time.time(), []
    for it in range(total):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(recipe, it / total)
        batch = transform(data=training_batch(train_cases, patch_size, batch_size, rng))
        x, y = torch.from_numpy(batch["data"]), torch.from_numpy(np.ascontiguousarray(batch["target"]))
        out = network(x)
        loss = torch.nn.functional.mse_loss(out, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 12)
        optimizer.step()
        losses.append(float(loss.detach()))
        if not np.isfinite(losses[-1]):
            log("  %s: loss is %s at iteration %d; stopped" % (recipe.name, losses[-1], it + 1))
            break
        if it + 1 in checkpoints:
            scores = score_pairs(pairs, restore=make_restore(network))
            results[it + 1] = {"scores": scores, "verdict": restoration_verdict(scores),
                               "train_loss_last50": float(np.mean(losses[-50:])),
                               "seconds": time.time() - start}
            log("  %s after %d iterations (%.0f s, training loss %.4f):\n%s"
                % (recipe.name, it + 1, time.time() - start, results[it + 1]["train_loss_last50"],
                   "\n".join("    " + line for line in format_scores(scores).splitlines())))
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", nargs="+", required=True, help="prepared pretraining task folder(s)")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=sorted(RECIPES))
    parser.add_argument("--iterations", nargs="+", type=int, default=[500, 1000],
                        help="score after these many iterations (the largest is the budget)")
    parser.add_argument("--val-cases", type=int, default=2)
    parser.add_argument("--val", nargs="+", metavar="NAME",
                        help="hold out the cases whose names contain these strings instead of the last --val-cases")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write every score here")
    parser.add_argument("--p-inpaint", type=float, default=None,
                        help="share of painted patches that are in-painted rather than out-painted during training "
                             "(default: the recipe's; published: 0.2); validation patches keep the published mix")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    def log(message):
        print(message, flush=True)

    everything = {}
    for task_dir in args.task:
        plans, stage, cases = load_task(task_dir)
        names = sorted(cases)
        val_names = [n for n in names if any(v in n for v in args.val)] if args.val else names[-args.val_cases:]
        train_names = [n for n in names if n not in val_names]
        patch_size = [int(p) for p in plans["plans_per_stage"][stage]["patch_size"]]
        pairs = distorted_pairs(validation_patches({n: cases[n] for n in val_names}, patch_size), seed=args.seed)
        task = os.path.basename(os.path.normpath(task_dir))
        log("%s: %d training cases, validation %s, patch %s, batch %d"
            % (task, len(train_names), ", ".join(val_names), patch_size,
               plans["plans_per_stage"][stage]["batch_size"]))
        everything[task] = {}
        for name in args.recipes:
            everything[task][name] = run_recipe(RECIPES[name], plans, stage, {n: cases[n] for n in train_names},
                                                pairs, set(args.iterations), args.seed, log,
                                                p_inpaint=args.p_inpaint)
            if args.json:
                write_json_atomic(everything, args.json)

    log("\nSummary: network R^2 per distortion (identity / mean baseline in brackets); + = beats its baseline")
    for task, by_recipe in everything.items():
        for it in sorted(args.iterations):
            log("%s, %d iterations" % (task, it))
            log("  %-15s" % "recipe" + "".join("%22s" % k for k in DISTORTIONS))
            for name, results in by_recipe.items():
                if it not in results:
                    continue
                s, v = results[it]["scores"], results[it]["verdict"]
                log("  %-15s" % name + "".join(
                    "%22s" % ("%.3f (%.2f/%.2f)%s" % (s[k]["network"], s[k]["identity"], s[k]["mean"],
                                                      "+" if v.get(k) else (" " if k not in v else "-")))
                    for k in DISTORTIONS))


if __name__ == "__main__":
    main()
