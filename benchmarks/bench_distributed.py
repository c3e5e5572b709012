"""Benchmark: an audit on 2 ranks x 1 thread (torchrun, gloo) against 1 rank x 1 thread, measured in one run.

The same audit (the demo CNN, its 300 images, PGD-40 and APGD-100 at two budgets, every analysis on, checks on,
on the adversarially trained model, where most images survive and attacks cost most) runs first on
one process with one thread, then under ``torchrun --standalone --nproc-per-node 2`` (torchrun gives each rank
one thread); prints both wall times (process start included) and the speed-up. Aim: >= 1.7x on 2 cores.

    .venv/bin/python benchmarks/bench_distributed.py [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from audit.demo import ARCH, ASSETS

ARGS = [str(ASSETS / "fashion_cnn_adv.safetensors"), "--arch", ARCH, "--classes", "fashion-mnist", "--samples", "all",
        "--batch-size", "32", "--attack", "pgd", "--attack", "apgd", "--eps", "0.05,0.1", "--no-html"]


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    single, double = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeat):  # interleaved: a noisy phase of the machine hits both alike
            single.append(timed([sys.executable, "-m", "audit", *ARGS, "--threads", "1", "--out", f"{tmp}/a{k}"], env))
            double.append(timed([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "audit", *ARGS,
                                 "--out", f"{tmp}/b{k}"], env))
    one, two = min(single), min(double)
    print(f"adversarially trained demo CNN, 300 images, PGD-40 + APGD-100 at 2 budgets, analyses and checks on; "
          f"best of {args.repeat}")
    print(f"  1 rank  x 1 thread : {one:6.1f} s")
    print(f"  2 ranks x 1 thread : {two:6.1f} s")
    print(f"  speed-up           : {one / two:.2f}x")


if __name__ == "__main__":
    main()
