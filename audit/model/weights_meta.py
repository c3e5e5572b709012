"""``--weights-meta NAME``: the preprocessing and class names of a torchvision weights enum, without its weights.

With ``--arch torchvision.models:resnet50 --weights-meta IMAGENET1K_V2`` (or ``DEFAULT``, or the full
``ResNet50_Weights.IMAGENET1K_V2``), the member of the builder's weights enum
(``torchvision.models.get_model_weights``) declares the evaluation transform (``weights.transforms()``: the short
side resized to ``resize_size``, the centre ``crop_size`` cut out, ``mean``, ``std``, ``interpolation``) and the
class names (``weights.meta["categories"]``). Both are part of torchvision itself: nothing is downloaded (the
enum's weights are never fetched); the weights come from MODEL.
"""

from __future__ import annotations

from typing import Any

from audit.errors import AuditError
from audit.model.declared import INTERPOLATIONS, Declared

EXAMPLE = "e.g. --arch torchvision.models:resnet50 --weights-meta IMAGENET1K_V2"


def weights_member(arch: str | None, name: str) -> Any:
    """The member ``name`` of the weights enum of the torchvision builder ``arch`` names; each bad input is one
    line: no ``--arch``, an ``--arch`` that is no torchvision builder, a name the enum does not have."""
    from audit.model.arch import resolve_factory
    from audit.model.torchvision_door import models

    if arch is None:
        raise AuditError(f"--weights-meta {name} needs --arch naming the torchvision builder the weights are for ({EXAMPLE})")
    factory = resolve_factory(arch)
    try:
        enum = models().get_model_weights(factory)
    except Exception:  # torchvision says ValueError: no `weights` parameter, or none typed as a weights enum
        raise AuditError(f"--weights-meta {name}: --arch {arch} is not a torchvision model builder with a weights "
                         f"enum ({EXAMPLE}); drop --weights-meta and give --mean, --std and the sizes") from None
    prefix, _, member = name.strip().rpartition(".")
    if prefix and prefix != enum.__name__:
        raise AuditError(f"--weights-meta {name} names {prefix}, but --arch {arch} takes {enum.__name__}; "
                         f"give one of {', '.join(enum.__members__)}")
    found = enum.__members__.get(member.upper())
    if found is None:
        raise AuditError(f"--weights-meta {name}: {enum.__name__} has no {member}; it has "
                         f"{', '.join(enum.__members__)}")
    return found


def _single(values) -> int | None:
    return int(values[0]) if values is not None and len(values) == 1 else None


def declared_by_weights(weights: Any) -> Declared:
    """What a torchvision weights enum member declares: its ``transforms()`` and ``meta['categories']``."""
    qualified = f"{type(weights).__name__}.{weights.name}"
    transform = weights.transforms()
    if not all(hasattr(transform, a) for a in ("resize_size", "crop_size", "mean", "std", "interpolation")):
        raise AuditError(f"--weights-meta {qualified}: its transforms are {type(transform).__name__}, not an image "
                         "classifier's (resize, centre crop, normalize); give --mean, --std and the sizes")
    source = f"torchvision {qualified}"
    if not getattr(transform, "antialias", True):
        source += "; its resize without antialiasing is not reproduced"
    resize, side = _single(transform.resize_size), _single(transform.crop_size)
    crop = None if side is None else (side, side)
    interpolation = str(transform.interpolation.value).lower()
    categories = weights.meta.get("categories")
    return Declared(
        source=source, mean=tuple(float(v) for v in transform.mean), std=tuple(float(v) for v in transform.std),
        input_size=crop, resize=resize, crop=crop,
        interpolation=interpolation if interpolation in INTERPOLATIONS else None,
        classes=None if categories is None else tuple(categories),
        classes_source=None if categories is None else f"torchvision {qualified}.meta['categories']",
    )
