"""Saliency entropy per layer: superization (Mușat & Andonie 2020) and how attacks disturb it.

The entropy and statistics are numpy only and load with the package; the torch-based map functions of
``audit.analyses.saliency.maps`` load on first use.
"""

from audit.analyses.saliency.entropy import choose_levels, quantise, spatial_entropy
from audit.analyses.saliency.stats import (
    DetectorResult,
    Superization,
    auroc,
    detector_auroc,
    stratified_split,
    superization_index,
)

_MAP_NAMES = ("NoSpatialMap", "activation_energy", "grad_x_act", "gradcam", "needs_gradient", "saliency_maps",
              "upsample")

__all__ = [
    "DetectorResult",
    "Superization",
    "auroc",
    "choose_levels",
    "detector_auroc",
    "quantise",
    "spatial_entropy",
    "stratified_split",
    "superization_index",
    *_MAP_NAMES,
]


def __getattr__(name):
    if name in _MAP_NAMES:
        from audit.analyses.saliency import maps

        return getattr(maps, name)
    raise AttributeError(f"module 'audit.analyses.saliency' has no attribute {name!r}")
