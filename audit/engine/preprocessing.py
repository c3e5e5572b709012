"""Which preprocessing an audit uses, and where each value came from.

Every value is taken from the first of:

1. the **flag** (``--mean``, ``--std``, ``--input-size``, ``--resize``, ``--crop``, ``--interpolation``,
   ``--classes``, or the same key in a ``--config`` file);
2. the **model's config**: what the model's source declares (:class:`audit.model.declared.Declared`: timm's
   ``pretrained_cfg``, a Hugging Face folder's ``preprocessor_config.json`` and ``config.json``, the torchvision
   weights enum named by ``--weights-meta``);
3. the **default**: no normalization (the network normalizes itself), no resize or crop, bilinear resampling;
   the input size the images share once framed, else the size the network object declares
   (:func:`audit.model.declared_size`); the class names the data carries (ImageNet names for wnid folders),
   else the output indices.

The report keeps the outcome under ``preprocessing``: for each key its ``value`` and its ``source``
(``"flag"``, the model config's own description, e.g. ``"timm pretrained_cfg of resnet18"``, or ``"default"``,
``"data"``, ``"model"`` for the last rule's variants).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from audit.model.declared import Declared

FLAG = "flag"
DEFAULT = "default"
KEYS = ("mean", "std", "input_size", "resize", "crop", "interpolation", "classes")


@dataclass
class Preprocessing:
    """The settled values (None: not set by a flag or the model config) and each one's source."""

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    input_size: tuple[int, int] | None = None
    resize: int | None = None
    crop: tuple[int, int] | None = None
    interpolation: str = "bilinear"
    classes: list[str] | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def record(self, key: str, value, source: str) -> None:
        setattr(self, key, value)
        self.sources[key] = source

    def report(self) -> dict:
        """``preprocessing`` in report.json: {key: {"value": ..., "source": ...}} (class names by their count)."""
        out = {}
        for key in KEYS:
            value = getattr(self, key)
            if key == "classes":
                value = None if value is None else len(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[key] = {"value": value, "source": self.sources.get(key, DEFAULT)}
        return out


def settle(options, interpolation: str | None, declared: Declared | None) -> Preprocessing:
    """Flag, else the model's config, else the default, for every key but the input size's and the class names'
    defaults, which need the data and the model's outputs (:func:`finish_size`, :func:`finish_classes`).

    ``options``: the audit's :class:`audit.config.Resolved` options; ``interpolation``: ``--interpolation``.
    """
    settled = Preprocessing()
    given = {"mean": options.mean, "std": options.std, "input_size": options.input_size, "resize": options.resize,
             "crop": options.crop, "interpolation": interpolation, "classes": options.classes}
    for key in KEYS:
        if given[key] is not None:
            settled.record(key, list(given[key]) if key == "classes" else given[key], FLAG)
            continue
        value = getattr(declared, key, None) if declared is not None else None
        if value is None:
            continue
        if key == "classes":
            settled.record(key, list(value), declared.classes_source or declared.source)
        else:
            settled.record(key, value, declared.source)
    return settled


def finish_size(settled: Preprocessing, size: tuple[int, int], native: tuple[int, int] | None) -> None:
    """Record the input size the data decided when neither a flag nor the model config did: the size every
    image shares once framed (``native``: "data", or "crop" when a crop made it so) or the network's own
    declared size ("model")."""
    if "input_size" in settled.sources:
        return
    source = "model" if native is None else "crop" if settled.crop is not None else "data"
    settled.record("input_size", tuple(size), source)


def finish_classes(settled: Preprocessing, names: list[str], source: str) -> None:
    """Record the class names the audit uses when neither a flag nor the model config named them."""
    if "classes" not in settled.sources:
        settled.record("classes", list(names), source)
