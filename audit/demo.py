"""`audit demo`: the shipped Fashion-MNIST CNN and its adversarially trained twin, audited side by side."""

from __future__ import annotations

from pathlib import Path

from audit.config import AuditConfig

ASSETS = Path(__file__).parent / "demo_assets"
ARCH = "audit.demo_model:FashionCNN"
MODELS = {
    "standard": ("fashion_cnn.safetensors", "FashionCNN, standard training"),
    "adversarial": ("fashion_cnn_adv.safetensors", "FashionCNN, adversarial training"),
}


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
