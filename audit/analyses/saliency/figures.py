"""Small PNG pictures of attacked examples: the image, its adversarial, the perturbation, and saliency maps.

One picture per example: a top row with the clean image, the adversarial image and the perturbation (amplified
so its largest pixel change is full contrast; grey is no change), then for up to four layers the saliency map of
the clean image above that of the adversarial image (upsampled to the input size, for the picture only).
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, ImageDraw

from audit.analyses.saliency.maps import upsample

PANEL = 112  # pixels per panel side
LABEL = 14  # pixels of text above each panel
MAX_LAYERS = 4
# a dark-to-bright colour ramp (black, purple, orange, light yellow) for saliency maps
_RAMP = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float64)


def _colour(map2d: np.ndarray) -> np.ndarray:
    lo, hi = float(map2d.min()), float(map2d.max())
    s = (map2d - lo) / (hi - lo) if hi > lo else np.zeros_like(map2d)
    pos = s * (len(_RAMP) - 1)
    i = np.clip(pos.astype(int), 0, len(_RAMP) - 2)
    t = (pos - i)[..., None]
    return (_RAMP[i] * (1 - t) + _RAMP[i + 1] * t).astype(np.uint8)


def _image(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, 3) uint8."""
    a = (x.detach().float().clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    return np.repeat(a, 3, axis=0).transpose(1, 2, 0) if a.shape[0] == 1 else a[:3].transpose(1, 2, 0)


def _panel(rgb: np.ndarray) -> Image.Image:
    return Image.fromarray(rgb).resize((PANEL, PANEL), Image.NEAREST if rgb.shape[0] < PANEL else Image.BILINEAR)


def _layer_pick(layers: list[str]) -> list[str]:
    if len(layers) <= MAX_LAYERS:
        return list(layers)
    idx = np.linspace(0, len(layers) - 1, MAX_LAYERS).round().astype(int)
    return [layers[i] for i in idx]


def example_png(example: dict, layers: list[str], classes: list[str], title: str) -> bytes:
    clean, adv = example["clean"], example["adversarial"]
    delta = (adv - clean).float()
    scale = float(delta.abs().max()) or 1.0
    perturbation = (0.5 + 0.5 * delta / scale).clamp(0, 1)
    size = tuple(clean.shape[-2:])
    shown = _layer_pick(layers)
    top = [("clean: " + classes[example["true"]], _image(clean)),
           ("adversarial: " + classes[example["predicted"]], _image(adv)),
           (f"perturbation x{0.5 / scale:.0f}", _image(perturbation))]
    cols = max(len(top), len(shown))
    width, height = cols * PANEL, LABEL + 3 * (PANEL + LABEL)
    canvas = Image.new("RGB", (width, height + LABEL), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((2, 0), title, fill="black")

    def put(col: int, row: int, text: str, rgb: np.ndarray) -> None:
        x0, y0 = col * PANEL, LABEL + row * (PANEL + LABEL)
        draw.text((x0 + 2, y0), text[:22], fill="black")
        canvas.paste(_panel(rgb), (x0, y0 + LABEL))

    for col, (text, rgb) in enumerate(top):
        put(col, 0, text, rgb)
    for col, name in enumerate(shown):
        for row, key in ((1, "maps_clean"), (2, "maps_adversarial")):
            big = upsample(example[key][name][None], size)[0].numpy()
            put(col, row, f"{name} {'clean' if row == 1 else 'adv'}", _colour(big))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def example_figures(examples: dict, layers: list[str], classes: list[str]) -> dict[str, bytes]:
    """``figures/<attack>_<budget>_<k>.png`` -> PNG bytes, for the examples kept per attack run."""
    files = {}
    for key, items in examples.items():
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in key.replace("@", "_"))
        for k, example in enumerate(items):
            files[f"figures/{safe}_{k}.png"] = example_png(example, layers, classes, f"{key}, example {k + 1}")
    return files
