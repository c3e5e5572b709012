"""Benchmark: what the per-layer analyses add to an audit, against the bare torchattacks PGD-10 loop.

On the same model and images (the demo CNN and its 300 images by default), measured in one run and repeated
``--repeat`` times (the minimum of each is kept):

- bare:      a plain loop of ``torchattacks.PGD(steps=10)`` over the batches, then one forward for the result;
- audit:     ``run_audit`` with the same attack, ``--layers none --no-checks`` (attacks and tallies only);
- analyses:  ``run_audit`` with ``--layers auto --no-checks`` (every per-layer analysis on, as by default);
- full:      ``run_audit`` as by default: the analyses and the attack-validity checks.

Prints the wall times and the ratios to the bare loop (target: analyses <= 1.3x bare). Times on shared machines
are noisy: run with OMP_WAIT_POLICY=PASSIVE and compare only the ratios of one run.

    .venv/bin/python benchmarks/bench_analyses.py [--model standard|adversarial] [--threads 2] [--repeat 3]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torchattacks  # noqa: E402

from audit import AuditConfig, run_audit  # noqa: E402
from audit.data import open_data  # noqa: E402
from audit.demo import ARCH, ASSETS, MODELS  # noqa: E402
from audit.model import AuditedModel, load_model  # noqa: E402

EPS, STEPS, BATCH = 0.1, 10, 64


def bare_loop(model, batches) -> float:
    start = time.perf_counter()
    robust = 0
    for x, y in batches:
        adv = torchattacks.PGD(model, eps=EPS, alpha=2.5 * EPS / STEPS, steps=STEPS, random_start=True)(x, y)
        with torch.no_grad():
            robust += int((model(adv).argmax(1) == y).sum())
    return time.perf_counter() - start


def audit_run(weights: str, layers: str, threads: int, checks: bool) -> float:
    config = AuditConfig(model=weights, arch=ARCH, data="demo", classes="fashion-mnist", attacks=["pgd"],
                         eps=str(EPS), steps=STEPS, samples="all", batch_size=BATCH, device="cpu", threads=threads,
                         layers=layers, checks=checks)
    start = time.perf_counter()
    run_audit(config)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="standard")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    weights = str(ASSETS / MODELS[args.model][0])
    model = AuditedModel(load_model(weights, arch=ARCH).module, None, None, None).eval()
    data = open_data("demo", samples=None, seed=0)
    batches = [(b.x, torch.as_tensor(b.y)) for b in data.batches(BATCH, size=(28, 28), channels=1)]
    times = {"bare": [], "audit": [], "analyses": [], "full": []}
    for _ in range(args.repeat):  # interleaved, so that a noisy phase of the machine hits all alike
        times["bare"].append(bare_loop(model, batches))
        times["audit"].append(audit_run(weights, "none", args.threads, False))
        times["analyses"].append(audit_run(weights, "auto", args.threads, False))
        times["full"].append(audit_run(weights, "auto", args.threads, True))
    best = {k: min(v) for k, v in times.items()}
    print(f"model {args.model}, {len(data)} images, PGD-{STEPS} at eps {EPS}, {args.threads} threads, "
          f"best of {args.repeat}")
    for key, seconds in best.items():
        print(f"  {key:9s} {seconds:7.2f} s   {seconds / best['bare']:.2f}x bare")


if __name__ == "__main__":
    main()
