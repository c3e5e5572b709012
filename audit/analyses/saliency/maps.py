"""Saliency maps of one layer, from its activation A (N, C, H, W) and the gradient G = ∂y_k/∂A of the chosen
class logit y_k (same shape). Pure torch; every map comes back detached, float32, shape (N, H, W).

- ``gradcam``: ReLU(Σ_c w_c A_c) with w_c the spatial mean of G_c (Selvaraju et al., "Grad-CAM: visual
  explanations from deep networks via gradient-based localization", ICCV 2017).
- ``gradxact``: |Σ_c G_c A_c|. The channel sum is the first-order change of the logit if the activation at that
  location were removed (up to sign), so it is taken before the magnitude: channels at one location may cancel,
  locations do not. We keep the absolute value rather than the ReLU: evidence against the class is salient too,
  and a ReLU would leave many maps of a wrongly predicted or attacked image all zero (entropy 0 by definition).
- ``activation``: mean over channels of |A| (activation energy; needs no gradient).

A vision transformer's token layer (N, T, D) gets its maps from its patch tokens laid on their grid as
(N, D, h, w), prefix tokens dropped, for the activation and the gradient alike
(:func:`audit.analyses.tap.on_grid`, with the network's token layout; the analyses' suite does it before calling
``saliency_maps``): D plays the channels, the patch grid the space, so Grad-CAM's weights are the gradient's
mean over the patches. A layer whose output is not (N, C, H, W) after that, for example a fully connected
layer's (N, C) or tokens with no known grid, has no spatial map: ``saliency_maps`` raises ``NoSpatialMap``,
which the caller reports as a skipped layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from audit.errors import AuditError

METHODS = ("gradcam", "gradxact", "activation")
GRADIENT_METHODS = frozenset({"gradcam", "gradxact"})


class NoSpatialMap(ValueError):
    """The layer's output has no spatial dimensions (e.g. a fully connected layer): skip the layer."""


def has_spatial_map(shape) -> bool:
    """Whether a layer output of this shape (batch first) gives a spatial map: it must be (N, C, H, W)."""
    return len(shape) == 4


def needs_gradient(method: str) -> bool:
    """Whether ``method`` needs the gradient of the class logit (a backward pass)."""
    _check_method(method)
    return method in GRADIENT_METHODS


def gradcam(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """Grad-CAM: ReLU(Σ_c w_c A_c), w_c = mean over (H, W) of G_c. Shape (N, H, W)."""
    a, g = _pair(activation, gradient)
    weights = g.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * a).sum(dim=1))


def grad_x_act(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """Gradient × activation: |Σ_c G_c A_c| (channel sum first, then the magnitude). Shape (N, H, W)."""
    a, g = _pair(activation, gradient)
    return (g * a).sum(dim=1).abs()


def activation_energy(activation: torch.Tensor) -> torch.Tensor:
    """Activation energy: mean over channels of |A|. Shape (N, H, W)."""
    return _spatial(activation, "activation").abs().mean(dim=1)


def saliency_maps(method: str, activation: torch.Tensor, gradient: torch.Tensor | None = None) -> torch.Tensor:
    """Maps (N, H, W) of ``method`` (``gradcam``, ``gradxact`` or ``activation``) for one layer.

    Raises ``NoSpatialMap`` for a layer output that is not (N, C, H, W), ``AuditError`` for an unknown method.
    """
    _check_method(method)
    if method == "activation":
        return activation_energy(activation)
    if gradient is None:
        raise ValueError(f"saliency method {method!r} needs the gradient of the class logit")
    return gradcam(activation, gradient) if method == "gradcam" else grad_x_act(activation, gradient)


def upsample(maps: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resize of maps (N, H, W) to ``size`` (an int or (height, width)), for pictures only."""
    if maps.dim() != 3:
        raise ValueError(f"maps must have shape (N, H, W), got {tuple(maps.shape)}")
    size = (size, size) if isinstance(size, int) else tuple(size)
    return F.interpolate(maps.detach().float()[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise AuditError(f"unknown saliency method {method!r}; choose one of {', '.join(METHODS)}")


def _spatial(tensor: torch.Tensor, what: str) -> torch.Tensor:
    if not has_spatial_map(tensor.shape):
        raise NoSpatialMap(f"{what} of shape {tuple(tensor.shape)} has no spatial map (need N, C, H, W)")
    return tensor.detach().float()


def _pair(activation: torch.Tensor, gradient: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a = _spatial(activation, "activation")
    if gradient.shape != activation.shape:
        raise ValueError(f"gradient shape {tuple(gradient.shape)} differs from activation {tuple(a.shape)}")
    return a, gradient.detach().float()
