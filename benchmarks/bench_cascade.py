"""Benchmark: the eps cascade against independent attacks at each budget, measured in one run.

Prints gradient passes and wall time of (a) the cascade over all budgets, (b) one independent attack per
budget, and (c) a single attack at the smallest budget, with the ratios (a)/(b) and (a)/(c). Pass counts are
exact; times are noisy on shared machines (run with OMP_WAIT_POLICY=PASSIVE and compare only the ratios).

    .venv/bin/python benchmarks/bench_cascade.py [--model standard|adversarial] [--steps 40]
"""

from __future__ import annotations

import argparse
import time

import torch

from attacks.cascade import run_cascade
from attacks.registry import get_spec
from audit.data import open_data
from audit.demo import ARCH, ASSETS, MODELS
from audit.model import AuditedModel, load_model


def attack_cost(model, x, y, budgets, steps):
    with torch.no_grad():
        logits = model(x)
    start = time.perf_counter()
    outs = list(run_cascade(get_spec("pgd"), model, x, y, logits, budgets, steps=steps, num_classes=10, seed=0))
    seconds = time.perf_counter() - start
    robust = [float((o.logits.argmax(1) == y).float().mean()) for o in outs]
    return sum(o.backward for o in outs), seconds, robust


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="adversarial")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--eps", default="0.05,0.1,0.2,0.3")
    args = parser.parse_args()
    torch.set_num_threads(2)
    budgets = [float(e) for e in args.eps.split(",")]
    loaded = load_model(ASSETS / MODELS[args.model][0], arch=ARCH)
    model = AuditedModel(loaded.module, None, None).eval()
    batch = next(open_data("demo").batches(300))
    x, y = batch.x, batch.y

    cascade = attack_cost(model, x, y, budgets, args.steps)
    independent = [attack_cost(model, x, y, [eps], args.steps) for eps in budgets]
    single = independent[0]
    ind_passes, ind_seconds = sum(r[0] for r in independent), sum(r[1] for r in independent)

    print(f"PGD-{args.steps} on the demo '{args.model}' model, {len(y)} images, budgets {budgets}")
    print(f"{'':26}{'backward passes':>16}{'seconds':>10}")
    print(f"{'cascade (all budgets)':26}{cascade[0]:>16}{cascade[1]:>10.1f}")
    print(f"{'independent (sum)':26}{ind_passes:>16}{ind_seconds:>10.1f}")
    print(f"{'single attack, eps ' + str(budgets[0]):26}{single[0]:>16}{single[1]:>10.1f}")
    print(f"ratio cascade / independent: passes {cascade[0] / ind_passes:.2f}, time {cascade[1] / ind_seconds:.2f}")
    print(f"ratio cascade / single attack: passes {cascade[0] / single[0]:.2f}, time {cascade[1] / single[1]:.2f}")
    print("robust accuracy, cascade:    ", " ".join(f"{r:.3f}" for r in cascade[2]))
    print("robust accuracy, independent:", " ".join(f"{r[2][0]:.3f}" for r in independent))


if __name__ == "__main__":
    main()
