"""timm models: ``--arch timm:NAME`` and the preprocessing a timm network declares.

``--arch timm:NAME`` (``timm:resnet18``, ``timm:vit_tiny_patch16_224``, or with a pretrained tag,
``timm:resnet18.tv_in1k``) builds ``timm.create_model(NAME, pretrained=False, **arch-kwargs)``; nothing is
downloaded, the weights come from MODEL. A NAME that is no timm model but an attribute of the timm package
(``timm:create_model``) is called as any other ``--arch`` callable. timm is imported through the torchvision door
(timm imports torchvision, whose CUDA wheel fails to import beside a CPU torch).

A timm network carries its ``pretrained_cfg``; :func:`declared_by_timm` reads it with
``timm.data.resolve_data_config`` and frames images as timm's evaluation transform
(``timm.data.create_transform``) does: for ``crop_mode`` 'center' and a square input of side S, the short side is
resized to ``floor(S / crop_pct)`` and the centre S×S cut out. The 'squash' mode at ``crop_pct`` 1 resizes the
whole image to the input size, which is what the audit does when no resize or crop is set; other modes (squash
with a margin, border, a non-square centre crop) are not reproduced and the source says so. A network with 1000
outputs whose ImageNet subset timm infers as imagenet-1k gets class names: timm's synsets are the ImageNet-1k
wnids, named as the built-in ``imagenet-1k`` set names them (so ImageNet folders named by wnid still match).
"""

from __future__ import annotations

import difflib
import importlib
import math
import sys
from collections.abc import Callable
from typing import Any

import torch

from audit.errors import AuditError, short_reason
from audit.model.declared import INTERPOLATIONS, Declared
from audit.model.torchvision_door import through_door


def import_timm(spec: str):
    try:
        return through_door(lambda: importlib.import_module("timm"))
    except ModuleNotFoundError:
        raise AuditError(f"--arch {spec} needs the timm package: pip install timm") from None
    except Exception as exc:
        raise AuditError(f"--arch {spec}: importing timm failed ({type(exc).__name__}: {short_reason(exc)})") from exc


def _unknown(spec: str, name: str, candidates: list[str], what: str) -> AuditError:
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "see timm.list_models() for the names"
    return AuditError(f"--arch {spec}: {what}; {hint}")


def timm_factory(spec: str, name: str) -> Callable[..., torch.nn.Module] | None:
    """``timm.create_model(name, pretrained=False, **kwargs)`` as a callable, or None when ``name`` is no timm
    model but an attribute of the timm package (``timm:create_model``). An unknown name is one line with the
    closest model names."""
    timm = import_timm(spec)
    arch, tag = timm.models.split_model_name_tag(name)
    if not timm.is_model(arch):
        if hasattr(timm, name.split(".")[0]):
            return None
        raise _unknown(spec, name, timm.list_models(), f"timm has no model {name!r}")
    if tag:
        tagged = timm.list_models(arch, pretrained=True)
        if name not in tagged:
            raise _unknown(spec, name, tagged, f"timm's {arch} has no pretrained tag {tag!r}")

    def build(**kwargs: Any) -> torch.nn.Module:
        return timm.create_model(name, pretrained=False, **kwargs)

    return build


def _framing(size: tuple[int, int], crop_pct: float, crop_mode: str) -> tuple[int | None, tuple[int, int] | None, str]:
    """(resize, crop, note): timm's evaluation framing as the audit's short-side resize and centre crop."""
    if crop_mode == "center" and size[0] == size[1]:
        return math.floor(size[0] / crop_pct), size, ""
    if crop_mode == "squash" and crop_pct == 1:
        return None, None, ""  # the whole image resized to the input size: the audit's framing without a crop
    return None, None, (f"; its crop_mode {crop_mode!r} at crop_pct {crop_pct} for {size[0]}x{size[1]} is not "
                        "reproduced, images are resized to the input size")


def _imagenet_names(timm, network: torch.nn.Module) -> tuple[str, ...] | None:
    """The ImageNet-1k class names for a 1000-way timm network whose subset timm infers as imagenet-1k."""
    from audit.data.labels import BUILTIN, imagenet_wnids

    if getattr(network, "num_classes", None) != 1000 or timm.data.infer_imagenet_subset(network) != "imagenet-1k":
        return None
    if timm.data.ImageNetInfo("imagenet-1k").label_names() != imagenet_wnids():
        return None  # a timm whose synsets are not the ImageNet-1k wnids in class order: names unknown
    return tuple(BUILTIN["imagenet-1k"]())


def declared_by_timm(network: torch.nn.Module, arch_kwargs: dict) -> Declared | None:
    """What a timm network's ``pretrained_cfg`` declares (see the module docstring); None for other networks.
    An ``img_size`` in ``arch_kwargs`` is the input size the network was built for, and wins over the cfg's."""
    timm = sys.modules.get("timm")
    cfg = getattr(network, "pretrained_cfg", None)
    if timm is None or not type(network).__module__.startswith("timm.") or not isinstance(cfg, dict) or not cfg:
        return None
    data = timm.data.resolve_data_config({}, model=network)
    size = tuple(int(v) for v in data["input_size"][-2:])
    built = arch_kwargs.get("img_size")
    source = f"timm pretrained_cfg of {cfg.get('architecture', type(network).__name__)}"
    source += f".{cfg['tag']}" if cfg.get("tag") else ""
    if built is not None:
        size = (built, built) if isinstance(built, int) else tuple(int(v) for v in built)
        source += f" (input size {size[0]}x{size[1]} from --arch-kwargs img_size)"
    resize, crop, note = _framing(size, float(data["crop_pct"]), data["crop_mode"])
    classes = _imagenet_names(timm, network)
    interpolation = data["interpolation"] if data["interpolation"] in INTERPOLATIONS else None
    return Declared(
        source=source + note, mean=tuple(float(v) for v in data["mean"]), std=tuple(float(v) for v in data["std"]),
        input_size=size, resize=resize, crop=crop, interpolation=interpolation, classes=classes,
        classes_source=None if classes is None else "timm's imagenet-1k synsets (the ImageNet-1k wnids), "
        "named as the built-in imagenet-1k set",
    )
