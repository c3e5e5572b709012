"""Benchmark: spatial entropy of 10 000 saliency maps of 32×32, for every method; the target is under 1 s.

Maps are half smooth random fields, half uniform noise (the work does not depend on the content). Each method
runs on a numpy array and on a float32 torch tensor (what the layer tap hands over); the best of ``--repeat``
runs is printed with its ratio to one second, beside the CPU time of that run (wall time above CPU time means
the machine was busy). Run with OMP_WAIT_POLICY=PASSIVE (set here when absent). From a checkout that is not
installed, put the repository root on the path: PYTHONPATH=. python benchmarks/bench_entropy.py

    .venv/bin/python benchmarks/bench_entropy.py [--maps 10000] [--size 32] [--repeat 5]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from audit.analyses.saliency.entropy import METHODS, choose_levels, spatial_entropy  # noqa: E402


def best_seconds(maps, method: str, repeat: int) -> tuple[float, float]:
    """Best wall time of ``repeat`` runs, and the CPU time of that run (near the wall time on an idle machine)."""
    spatial_entropy(maps, method=method)  # untimed warm-up: the allocator's first pages
    times = []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        spatial_entropy(maps, method=method)
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    half = args.maps // 2
    smooth = np.cumsum(np.cumsum(rng.normal(size=(half, args.size, args.size)), axis=1), axis=2)
    maps = np.concatenate([smooth, rng.random((args.maps - half, args.size, args.size))])
    tensor = torch.tensor(maps, dtype=torch.float32)
    levels = choose_levels(args.size, args.size)
    print(f"{args.maps} maps of {args.size}x{args.size}, L = {levels}, best of {args.repeat}, "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}")
    print(f"{'method':12}{'input':>10}{'seconds':>10}{'ratio to 1 s':>14}{'CPU seconds':>13}")
    for method in METHODS:
        for name, data in (("torch f32", tensor), ("numpy", maps)):
            seconds, cpu = best_seconds(data, method, args.repeat)
            print(f"{method:12}{name:>10}{seconds:>10.3f}{seconds / 1.0:>14.2f}{cpu:>13.3f}")


if __name__ == "__main__":
    main()
