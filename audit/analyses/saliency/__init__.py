"""Saliency entropy per layer: superization (Mușat & Andonie 2020) and how attacks disturb it.

The entropy and statistics are numpy only, the map functions of ``audit.analyses.saliency.maps`` need torch;
each loads on first use (``from audit.analyses.saliency import spatial_entropy``): importing the package, as the
report renderers do for its ``report`` module, loads neither.
"""

_HOMES = {
    "entropy": ("choose_levels", "quantise", "spatial_entropy"),
    "stats": ("DetectorResult", "Superization", "auroc", "detector_auroc", "stratified_split", "superization_index"),
    "maps": ("NoSpatialMap", "activation_energy", "grad_x_act", "gradcam", "needs_gradient", "saliency_maps",
             "upsample"),
}

__all__ = sorted(name for names in _HOMES.values() for name in names)


def __getattr__(name):
    home = next((module for module, names in _HOMES.items() if name in names), None)
    if home is not None:
        import importlib

        return getattr(importlib.import_module(f"audit.analyses.saliency.{home}"), name)
    raise AttributeError(f"module 'audit.analyses.saliency' has no attribute {name!r}")
