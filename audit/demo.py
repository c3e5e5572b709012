"""`audit demo`: the shipped Fashion-MNIST CNN and its adversarially trained twin, audited side by side.

``demo_assets/series/`` ships checkpoints over training (``scripts/train_demo.py --series``): the adversarial
twin's weights after several epochs of its training run and a random-label control, each with its epoch, sha256
and measured accuracies in ``series/manifest.json``; ``series_checkpoints`` lists them in epoch order.
"""

from __future__ import annotations

import json
from pathlib import Path

from audit.config import AuditConfig
from audit.errors import AuditError

ASSETS = Path(__file__).parent / "demo_assets"
ARCH = "audit.demo_model:FashionCNN"
MODELS = {
    "standard": ("fashion_cnn.safetensors", "FashionCNN, standard training"),
    "adversarial": ("fashion_cnn_adv.safetensors", "FashionCNN, adversarial training"),
}
SERIES = ASSETS / "series"
SERIES_KINDS = ("adversarial", "control")
SERIES_ATTACKS, SERIES_EPS = ("pgd",), "0.1,0.3"  # `audit demo --series`: 7 checkpoints in about 2 minutes
SERIES_SELECT = "robust_accuracy[pgd@0.1].lower"  # the adversarial series names its best epoch by this


def series_manifest() -> dict:
    """``demo_assets/series/manifest.json``: per kind, what it is and its checkpoints (file, epoch, sha256,
    metrics)."""
    return json.loads((SERIES / "manifest.json").read_text())


def series_checkpoints(kind: str = "adversarial") -> list[Path]:
    """The shipped checkpoints of ``kind`` in epoch order: ``adversarial`` (epochs of the adversarial twin's
    training) or ``control`` (the random-label control)."""
    if kind not in SERIES_KINDS:
        raise AuditError(f"unknown demo series {kind!r}; choose one of {', '.join(SERIES_KINDS)}")
    checkpoints = sorted(series_manifest()[kind]["checkpoints"], key=lambda c: c["epoch"])
    return [SERIES / c["file"] for c in checkpoints]


def demo_configs(*, attacks, eps, steps, samples, seed, device: str = "cpu") -> dict[str, AuditConfig]:
    """Both demo audits; on the CPU unless ``device`` says otherwise (the README's demo figures are the CPU's)."""
    return {
        key: AuditConfig(
            model=str(ASSETS / filename), arch=ARCH, data="demo", classes="fashion-mnist", attacks=list(attacks),
            eps=eps, steps=steps, samples=samples, seed=seed, device=device, label=label,
        )
        for key, (filename, label) in MODELS.items()
    }


def run_demo(out: Path, *, attacks, eps, steps, samples, seed, audit, console, device: str = "cpu") -> dict:
    """Audit both demo models with ``audit(config, out_dir, label)`` and print the contrast."""
    from reports.terminal import contrast_table

    results = {}
    for key, config in demo_configs(attacks=attacks, eps=eps, steps=steps, samples=samples, seed=seed,
                                    device=device).items():
        console.rule(f"[bold]{config.label}")
        results[key] = audit(config, Path(out) / key, label=key)
    console.rule("[bold]Contrast")
    console.print(contrast_table(results))
    return results


def run_demo_series(out: Path, *, attacks, eps, steps, samples, seed, series, console, device: str = "cpu") -> dict:
    """`audit demo --series`: the shipped checkpoints over training, each kind as a series run by
    ``series(template, checkpoints, out_dir, select=...)`` into ``OUT/<kind>/``; the adversarial series names its
    best epoch by ``SERIES_SELECT`` when PGD at 0.1 is among its runs."""
    from audit.engine.series import find_checkpoints

    manifest = series_manifest()
    results = {}
    for kind in SERIES_KINDS:
        points = find_checkpoints([str(p) for p in series_checkpoints(kind)], "number")
        template = AuditConfig(model=str(points[0].path), arch=ARCH, data="demo", classes="fashion-mnist",
                               attacks=list(attacks), eps=eps, steps=steps, samples=samples, seed=seed,
                               device=device, label=f"FashionCNN, {kind} series")
        console.rule(f"[bold]{kind}: {manifest[kind]['what']}")
        select = SERIES_SELECT if kind == "adversarial" and "pgd" in attacks and "0.1" in str(eps).split(",") \
            else None
        results[kind] = series(template, points, Path(out) / kind, select=select)
    return results
