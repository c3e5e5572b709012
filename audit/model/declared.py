"""What a model's own source says about its input: normalization, size, framing, interpolation and class names.

A model source that carries its preprocessing (timm's ``pretrained_cfg``, a Hugging Face folder's
``preprocessor_config.json`` and ``config.json``, a torchvision weights enum named by ``--weights-meta``) hands
the loader a :class:`Declared`. The runner takes each value from the flag when one is given, else from the
declaration, else the default, and the report records which (:func:`audit.engine.preprocessing.settle`).
"""

from __future__ import annotations

from dataclasses import dataclass

from audit.options import INTERPOLATIONS


@dataclass(frozen=True)
class Declared:
    """Preprocessing a model source declares. Every field may be None (not declared)."""

    source: str  # where the values come from, as a reader would look them up, e.g. "timm pretrained_cfg of resnet18"
    mean: tuple[float, ...] | None = None  # per channel, in [0, 1] pixel units
    std: tuple[float, ...] | None = None
    input_size: tuple[int, int] | None = None  # (H, W) the network takes
    resize: int | None = None  # short side before the centre crop
    crop: tuple[int, int] | None = None  # (H, W) of the centre crop
    interpolation: str | None = None  # one of INTERPOLATIONS
    classes: tuple[str, ...] | None = None  # one name per output, in output order
    classes_source: str | None = None  # where the class names come from, when not ``source``

    def __post_init__(self) -> None:
        if self.interpolation is not None and self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
