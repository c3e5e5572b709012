"""Hugging Face ``save_pretrained`` folders: ``config.json`` and weights, loaded without running code.

A folder holding ``config.json`` is read as a Hugging Face image classifier:

- **No remote code.** ``config.json`` is read as JSON first. A config with ``auto_map`` (its network is Python code
  shipped in the folder) is refused unless ``--trust-model``; so is a ``model_type`` this transformers does not
  know, and one that has no image-classification head (a BERT config, say). Then
  ``AutoModelForImageClassification.from_pretrained(folder, local_files_only=True, trust_remote_code=False)``
  builds the network (``trust_remote_code=True`` only under ``--trust-model`` for an ``auto_map`` config), in
  float32. transformers is imported through :mod:`audit.model.torchvision_door` (its image utilities import
  torchvision).
- **Weights.** ``model.safetensors`` (or a sharded ``model.safetensors.index.json``) is preferred; a
  ``pytorch_model.bin`` (or its sharded index) is read only by ``torch.load(weights_only=True)`` — transformers 5
  does exactly that when ``from_pretrained(..., weights_only=True)`` is passed, which we always pass; a ``.bin``
  holding more than plain tensors is refused even with ``--trust-model``. Weights that leave part of the network
  at its random initialisation (missing keys, e.g. a backbone saved without its classifier) are refused.
- **Digest.** :func:`folder_digest`: the sha256 of the ``sha256sum`` listing of ``config.json`` and the weight
  files, sorted by name, i.e. ``cd FOLDER && sha256sum config.json model.safetensors | sha256sum`` (names in
  byte order). ``preprocessor_config.json`` is not part of it: preprocessing is recorded in the report itself.
- **Declared preprocessing** (:func:`declared_from`, pure JSON, no torch): class names from ``config.id2label``
  (index order; transformers' default ``LABEL_0``.. names count as none), the rest from
  ``preprocessor_config.json`` when present:

  - ``image_mean``/``image_std`` (when ``do_normalize``) folded with ``do_rescale``/``rescale_factor`` (and
    EfficientNet's ``rescale_offset``) into [0, 1] pixel units: the processor computes
    ``(x * f - o - mean) / std`` on 0..255 pixels ``x``; with ``p = x / 255`` that is ``(p - m') / s'`` with
    ``m' = (mean + o) / (255 f)`` and ``s' = std / (255 f)``, exact for any factor (``f = 1/255``, ``o = 0``: the
    processor's own mean and std). ``do_normalize`` false declares mean 0 and std 1 after the fold.
  - ``size {"height", "width"}`` without a centre crop: the input size (the tool's final resize to the input
    size is that exact resize). With ``do_center_crop``: resize the short side to ``min(height, width)`` then
    crop ``crop_size`` (the processor squashes the image to height x width first; the tool keeps the aspect
    ratio: the source string says so).
  - ``size {"shortest_edge": N}``: resize N; with ``do_center_crop`` and ``crop_size``: then crop. ConvNeXt's
    ``crop_pct`` (processor types ``ConvNext*``): below 384, resize ``int(N / crop_pct)`` and crop N x N; from
    384, an exact N x N resize, as its processor does. ``crop_pct`` of other processor types is not applied
    (the source string says so).
  - An int ``size`` is ``shortest_edge`` when a centre crop follows, else height = width.
  - ``resample`` (PIL codes): 0 nearest, 2 bilinear, 3 bicubic; the others by the nearest supported kernel:
    1 (Lanczos, a sharp wide kernel) as bicubic, 4 (box) and 5 (Hamming) as bilinear (the source says so).
  - No ``preprocessor_config.json``: the input size from ``config.image_size``; the rest is not declared.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from audit.errors import AuditError, short_reason
from audit.model.declared import Declared
from audit.model.torchvision_door import through_door

CONFIG = "config.json"
PREPROCESSOR = "preprocessor_config.json"
SAFE, SAFE_INDEX = "model.safetensors", "model.safetensors.index.json"
BIN, BIN_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"

POLICY_SAFE = "Hugging Face folder, safetensors weights, no code executed"
POLICY_BIN = "Hugging Face folder, pytorch_model.bin read with torch.load(weights_only=True), no code executed"
POLICY_REMOTE = "Hugging Face folder whose network is its own Python code (auto_map), trusted by --trust-model"

PREPROCESSOR_SOURCE = "Hugging Face preprocessor_config.json"
CLASSES_SOURCE = "config.json id2label"
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}
_RESAMPLE_NEAREST = {1: ("Lanczos", "bicubic"), 4: ("box", "bilinear"), 5: ("Hamming", "bilinear")}
_CONVNEXT_WARP_FROM = 384  # ConvNeXt's processor warps to N x N instead of cropping from this shortest edge on

_FOLDER_NEEDS = (
    "a model folder is a Hugging Face save_pretrained folder (config.json with model.safetensors or "
    "pytorch_model.bin)"
)


@dataclass(frozen=True)
class HubModel:
    """What :func:`load_folder` found: the network, its digest and load policy, its class, its declaration."""

    module: torch.nn.Module
    sha256: str
    load_policy: str
    architecture: str  # the transformers class built, e.g. ViTForImageClassification
    declared: Declared


# --- the folder ------------------------------------------------------------------------------------------


def is_model_folder(path: Path) -> bool:
    return (path / CONFIG).is_file()


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise AuditError(f"{path} is not valid JSON ({short_reason(exc)}): {what}") from exc
    if not isinstance(data, dict):
        raise AuditError(f"{path} holds a JSON {type(data).__name__}, not an object: {what}")
    return data


def _shards(folder: Path, index_name: str) -> list[str]:
    index = _read_json(folder / index_name, "a sharded checkpoint's index must map weight names to shard files")
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise AuditError(f"{folder / index_name} has no weight_map; re-save the model with save_pretrained")
    names = sorted({str(v) for v in weight_map.values()})
    for name in names:
        if Path(name).name != name or not (folder / name).is_file():
            raise AuditError(f"{folder / index_name} names the shard {name!r}, which is not a file in {folder}")
    return names


def weight_files(folder: Path, config: dict) -> tuple[list[str], bool]:
    """(names of the weight files in ``folder``, whether they are safetensors), in transformers' order of choice:
    the file config.json's ``transformers_weights`` names, model.safetensors, its sharded index, pytorch_model.bin,
    its sharded index."""
    explicit = config.get("transformers_weights")
    if isinstance(explicit, str):
        if Path(explicit).name != explicit or not (folder / explicit).is_file():
            raise AuditError(f"{folder / CONFIG} names the weights file {explicit!r}, which is not a file in {folder}")
        if explicit.endswith(".safetensors.index.json"):
            return [explicit, *_shards(folder, explicit)], True
        return [explicit], explicit.endswith(".safetensors")
    for name, index, safe in ((SAFE, SAFE_INDEX, True), (BIN, BIN_INDEX, False)):
        if (folder / name).is_file():
            return [name], safe
        if (folder / index).is_file():
            return [index, *_shards(folder, index)], safe
    raise AuditError(
        f"{folder} has config.json but no weights ({SAFE}, {SAFE_INDEX} with its shards, or {BIN}); "
        "save the model into it with save_pretrained"
    )


def folder_digest(folder: Path, names: list[str]) -> str:
    """sha256 of the ``sha256sum`` listing ("<hex>  <name>\\n" per file) of ``names``, sorted by name."""

    def file_sha256(name: str) -> str:
        with open(folder / name, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()

    listing = "".join(f"{file_sha256(name)}  {name}\n" for name in sorted(names))
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


# --- what config.json allows -----------------------------------------------------------------------------


def _transformers():
    import transformers

    return transformers


def _known_types() -> tuple[dict, dict]:
    def names():
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES

        return CONFIG_MAPPING_NAMES, MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES

    return through_door(names)


def remote_code(folder: Path, config: dict, trust_model: bool) -> bool:
    """Whether the network must come from Python code in the folder (allowed only with ``--trust-model``);
    refuses, in one line, a config that needs it without the flag, and one transformers cannot build."""
    path = folder / CONFIG
    auto_map = config.get("auto_map")
    if auto_map:
        if not trust_model:
            raise AuditError(
                f"refusing to load {folder}: {path} has auto_map, so its network is Python code shipped with the "
                "model and loading it would run that code; if you trust its source, pass --trust-model "
                "(nothing was executed)"
            )
        if isinstance(auto_map, dict) and "AutoModelForImageClassification" not in auto_map:
            raise AuditError(
                f"{path} auto_map names no AutoModelForImageClassification (it has {', '.join(map(str, auto_map))}): "
                "the folder's own code defines no image classifier"
            )
        return True
    model_type = config.get("model_type")
    config_types, classifiers = _known_types()
    version = _transformers().__version__
    if not isinstance(model_type, str) or not model_type:
        raise AuditError(f"{path} has no model_type, so transformers cannot tell which network it describes; "
                         "save the model with save_pretrained")
    if model_type not in config_types:
        raise AuditError(
            f"{path} has model_type {model_type!r}, which transformers {version} does not know; upgrade "
            "transformers, or audit the weights with --arch"
        )
    if model_type not in classifiers:
        raise AuditError(
            f"{path} describes a {config_types[model_type]} ({model_type}), which has no image-classification "
            "head in transformers (AutoModelForImageClassification); audit an image classifier"
        )
    return False


# --- loading ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """transformers' info logging and progress bars off for the load; the caller's settings back after."""
    logging = _transformers().utils.logging
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def _from_pretrained(folder: Path, safetensors: bool, trust_remote: bool) -> torch.nn.Module:
    def load():
        auto = _transformers().AutoModelForImageClassification
        with _quiet():
            return auto.from_pretrained(
                str(folder), local_files_only=True, trust_remote_code=trust_remote, use_safetensors=safetensors,
                weights_only=True, dtype=torch.float32, output_loading_info=True,
            )

    try:
        network, info = through_door(load)
    except Exception as exc:
        reason = short_reason(exc)
        if "weights only load failed" in reason.lower() or "unsupported global" in reason.lower():
            raise AuditError(
                f"refusing to load {folder}: its pytorch_model.bin holds more than plain weights, and only "
                "torch.load(weights_only=True) reads a .bin here; re-save the model with save_pretrained "
                "(safetensors)"
            ) from exc
        raise AuditError(f"transformers could not build the model in {folder}: {reason}") from exc
    missing = sorted(info.get("missing_keys") or ())
    mismatched = sorted(str(k) for k in info.get("mismatched_keys") or ())
    if missing or mismatched:
        keys = missing or mismatched
        shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
        what = "lack" if missing else "have the wrong shape for"
        raise AuditError(
            f"the weights in {folder} {what} {len(keys)} of the {type(network).__name__} parameters ({shown}); "
            "they would stay random: save the whole image classifier with save_pretrained"
        )
    return network.eval()


def load_folder(folder: Path, trust_model: bool) -> HubModel:
    """The image classifier in the Hugging Face folder ``folder``, under the policy in the module docstring."""
    if not is_model_folder(folder):
        raise AuditError(f"{folder} is a directory without {CONFIG}; {_FOLDER_NEEDS}; else pass the checkpoint "
                         "file itself")
    config = _read_json(folder / CONFIG, "a Hugging Face model folder needs the config.json save_pretrained writes")
    trust_remote = remote_code(folder, config, trust_model)
    names, safetensors = weight_files(folder, config)
    preprocessor = folder / PREPROCESSOR
    processor = (_read_json(preprocessor, "fix it or remove it (then the preprocessing is not declared)")
                 if preprocessor.is_file() else None)
    declared = declared_from(config, processor)
    network = _from_pretrained(folder, safetensors, trust_remote)
    policy = POLICY_REMOTE if trust_remote else POLICY_SAFE if safetensors else POLICY_BIN
    return HubModel(network, folder_digest(folder, [CONFIG, *names]), policy, type(network).__name__, declared)


# --- what the folder declares ----------------------------------------------------------------------------


def class_names(config: dict) -> tuple[str, ...] | None:
    """config.id2label in index order; None when absent, not indices 0..n-1, or transformers' LABEL_i defaults."""
    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        return None
    try:
        by_index = {int(k): str(v) for k, v in id2label.items()}
    except (TypeError, ValueError):
        return None
    if sorted(by_index) != list(range(len(by_index))):
        return None
    names = tuple(by_index[i] for i in range(len(by_index)))
    return None if names == tuple(f"LABEL_{i}" for i in range(len(names))) else names


def _square(value: Any) -> tuple[int, int] | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value > 0:
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value):
        return value[0], value[1]
    if isinstance(value, dict) and {"height", "width"} <= value.keys():
        return _square((value["height"], value["width"]))
    return None


def _channels(values: Any, channels: int, what: str) -> tuple[float, ...]:
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        return (float(values),) * channels
    if isinstance(values, (list, tuple)) and values and all(isinstance(v, (int, float)) for v in values):
        return tuple(float(v) for v in values)
    raise AuditError(f"{PREPROCESSOR} has {what} {values!r}; expected a number or one number per channel")


def _normalization(processor: dict, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) in [0, 1] pixel units (the fold in the module docstring)."""
    factor = float(processor.get("rescale_factor", 1 / 255)) if processor.get("do_rescale", True) else 1.0
    if not math.isfinite(factor) or factor <= 0:
        raise AuditError(f"{PREPROCESSOR} has rescale_factor {factor}; expected a positive number")
    offset = 1.0 if processor.get("do_rescale", True) and processor.get("rescale_offset") else 0.0
    if processor.get("do_normalize", True):
        mean = _channels(processor.get("image_mean", 0.5), channels, "image_mean")
        std = _channels(processor.get("image_std", 0.5), channels, "image_std")
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise AuditError(f"{PREPROCESSOR} has image_mean {mean} and image_std {std}: expected one mean and "
                             "one positive std per channel")
    else:
        mean, std = (0.0,) * channels, (1.0,) * channels
    scale = 1.0 if math.isclose(factor, 1 / 255, rel_tol=1e-12) else 255.0 * factor
    return tuple((m + offset) / scale for m in mean), tuple(s / scale for s in std)


def _framing(processor: dict, image_size: tuple[int, int] | None, notes: list[str]) -> dict:
    """input_size, resize and crop from the processor's size / crop settings."""
    crop = _square(processor.get("crop_size")) if processor.get("do_center_crop") else None
    size = processor.get("size")
    if not processor.get("do_resize", True) or size is None:
        return {"input_size": crop or image_size, "resize": None, "crop": crop}
    if isinstance(size, int) and not isinstance(size, bool):
        size = {"shortest_edge": size} if crop else {"height": size, "width": size}
    exact = _square(size)
    if exact is not None:
        if crop is None or crop == exact:
            return {"input_size": exact, "resize": None, "crop": None}
        notes.append(f"its {exact[0]}x{exact[1]} resize before the crop taken as the short side "
                         f"{min(exact)}, the aspect ratio kept")
        return {"input_size": crop, "resize": min(exact), "crop": crop}
    edge = size.get("shortest_edge") if isinstance(size, dict) else None
    if not isinstance(edge, int) or isinstance(edge, bool) or edge <= 0 or set(size) - {"shortest_edge"}:
        notes.append(f"size {size} not supported (only height/width or shortest_edge)")
        return {"input_size": crop or image_size, "resize": None, "crop": crop}
    crop_pct = processor.get("crop_pct")
    if crop_pct is not None and crop is None:
        kind = str(processor.get("image_processor_type") or processor.get("feature_extractor_type") or "")
        if kind.startswith("ConvNext") and isinstance(crop_pct, (int, float)) and 0 < crop_pct <= 1:
            if edge >= _CONVNEXT_WARP_FROM:
                return {"input_size": (edge, edge), "resize": None, "crop": None}
            return {"input_size": (edge, edge), "resize": int(edge / crop_pct), "crop": (edge, edge)}
        notes.append(f"crop_pct {crop_pct} of {kind or 'this processor'} not applied")
    return {"input_size": crop or image_size, "resize": edge, "crop": crop}


def _interpolation(processor: dict, notes: list[str]) -> str | None:
    code = processor.get("resample")
    if code is None or isinstance(code, bool) or not isinstance(code, int):
        return None
    if code in _RESAMPLE:
        return _RESAMPLE[code]
    if code in _RESAMPLE_NEAREST:
        name, used = _RESAMPLE_NEAREST[code]
        notes.append(f"resample {code} ({name}) as {used}")
        return used
    notes.append(f"resample {code} unknown, not declared")
    return None


def declared_from(config: dict, processor: dict | None) -> Declared:
    """The preprocessing and class names a folder's config.json and preprocessor_config.json declare."""
    classes = class_names(config)
    image_size = _square(config.get("image_size"))
    if processor is None:
        return Declared(
            source=f"Hugging Face config.json (no {PREPROCESSOR}: only the input size is declared)",
            input_size=image_size, classes=classes, classes_source=CLASSES_SOURCE if classes else None,
        )
    channels = config.get("num_channels") if isinstance(config.get("num_channels"), int) else 3
    notes: list[str] = []
    mean, std = _normalization(processor, channels)
    framing = _framing(processor, image_size, notes)
    interpolation = _interpolation(processor, notes)
    source = PREPROCESSOR_SOURCE + (f" ({'; '.join(notes)})" if notes else "")
    return Declared(source=source, mean=mean, std=std, interpolation=interpolation, classes=classes,
                    classes_source=CLASSES_SOURCE if classes else None, **framing)
