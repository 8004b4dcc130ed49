"""Interpreter start-up cost of the integration hook (nnunet_genesis.pth).

Measures ``python -c pass`` with the hook installed (the default) against the same interpreter with
``NNUNET_GENESIS_DISABLE_HOOK=1`` (the .pth line then stops before importing anything of ours), in
interleaved runs of the same session, and prints medians, the difference and the ratio. It also
prints what ``python -X importtime`` attributes to our modules.

    python benchmarks/startup.py [--runs 40]
"""
import argparse
import os
import statistics
import subprocess
import sys
import time


def time_once(env):
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
    return (time.perf_counter() - start) * 1000.0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()

    enabled = dict(os.environ)
    enabled.pop("NNUNET_GENESIS_DISABLE_HOOK", None)
    disabled = dict(enabled, NNUNET_GENESIS_DISABLE_HOOK="1")
    for env in (enabled, disabled):  # warm the file cache
        time_once(env)
    with_hook, without_hook = [], []
    for _ in range(args.runs):  # interleaved, so drifts in machine load hit both alike
        with_hook.append(time_once(enabled))
        without_hook.append(time_once(disabled))
    a, b = statistics.median(with_hook), statistics.median(without_hook)
    print("python -c pass, median of %d runs each" % args.runs)
    print("  hook enabled : %7.2f ms" % a)
    print("  hook disabled: %7.2f ms" % b)
    print("  difference   : %+7.2f ms  (ratio enabled/disabled %.3f)" % (a - b, a / b))

    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"], env=enabled,
                         stderr=subprocess.PIPE, text=True).stderr
    ours = [l for l in out.splitlines() if "nnunet_genesis" in l]
    print("python -X importtime, our modules (self us | cumulative us | module):")
    for line in ours:
        print("  " + line.split(":", 1)[1].strip())


if __name__ == "__main__":
    main()
