"""Minimal-perturbation attacks, on top of torchattacks' classes, with two of their defects mended.

These attacks do not take a budget: each searches, per sample, the smallest L2 perturbation that changes the
decision. What they measure is that per-sample norm (see ``audit.engine.tallies.minimal_sizes`` and
``minimal_summary``), not a robust accuracy.

- :class:`DeepFoolL2` (Moosavi-Dezfooli et al. 2016). torchattacks 3.5.1 scales every step by
  ``1 + overshoot`` and clamps, so its final image sits on the decision boundary, where float rounding (and so
  the thread count) decides the label. Here, as in the paper, the steps add up to a total perturbation
  ``r_tot`` (kept inside the [0, 1] box) and the image is ``x + (1 + overshoot) * r_tot``; a sample counts as fooled
  only when another class wins by more than float rounding (clamping can eat the overshoot). The linearised step
  looks at the ``candidates`` classes with the largest clean logits (10, as foolbox does) for the whole batch at
  once, instead of a Jacobian over every class for one image at a time.
- :class:`CarliniWagnerL2` (Carlini & Wagner 2017). torchattacks keeps ``c`` fixed (no binary search) and its
  margin ``f`` multiplies logits by a one-hot mask, so a negative target logit reads as 0 and the targeted
  attack gets no gradient toward the target (upstream issue #184: targeted CW reports 0% success). Here ``f``
  masks with -inf; pixels at exactly 0 or 1 can move (torchattacks maps them to an infinite, frozen ``w``);
  and ``c`` is searched per sample: ``search_steps`` rounds starting at ``initial_const``,
  ×10 until the attack succeeds, then bisection; the smallest successful perturbation over all rounds is kept.
"""

from __future__ import annotations

import torch
import torchattacks

MARGIN_TOLERANCE = 1e-4  # relative to the largest candidate logit


class DeepFoolL2(torchattacks.DeepFool):
    """DeepFool with the overshoot applied to the total perturbation, batched over images."""

    def __init__(self, model, steps: int = 50, overshoot: float = 0.02, candidates: int = 10):
        super().__init__(model, steps=steps, overshoot=overshoot)
        self.candidates = candidates

    @torch.enable_grad()
    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = images.clone().detach().to(self.device)
        y = labels.clone().detach().to(self.device)
        with torch.no_grad():
            logits = self.get_logits(x)
        k = min(self.candidates, logits.shape[1])
        # candidate classes: the true class first, then the k-1 most likely others
        others = logits.scatter(1, y[:, None], float("-inf")).topk(k - 1, dim=1).indices
        cand = torch.cat([y[:, None], others], dim=1)
        r_tot = torch.zeros_like(x)
        x_adv = x.clone()
        active = torch.ones(len(x), dtype=torch.bool, device=x.device)
        for _ in range(self.steps):
            idx = active.nonzero().flatten()
            if idx.numel() == 0:
                break
            xa = x_adv[idx].clone().requires_grad_(True)
            f = self.get_logits(xa).gather(1, cand[idx])  # (n, k); column 0 is the true class
            grads = [torch.autograd.grad(f[:, j].sum(), xa, retain_graph=j < k - 1)[0] for j in range(k)]
            f = f.detach()
            # another candidate wins by more than float rounding could undo (a decision flipped by 1e-7 flips back
            # in a forward pass with another batch size or thread count)
            fooled = f[:, 1:].max(1).values - f[:, 0] > MARGIN_TOLERANCE * f.abs().amax(1).clamp_min(1.0)
            w = torch.stack(grads, 1)
            w = (w - w[:, :1]).flatten(2)  # gradient of f_j - f_true
            w_norm = w.norm(dim=2).clamp_min(1e-12)
            ratio = ((f - f[:, :1]).abs() + 1e-4) / w_norm
            ratio[:, 0] = float("inf")
            best = ratio.argmin(1)
            rows = torch.arange(len(idx), device=x.device)
            step = (ratio[rows, best] / w_norm[rows, best])[:, None] * w[rows, best]
            step[fooled] = 0
            # keep the total perturbation inside the box: a part that clamping cancels would otherwise pile up
            # and have to be undone before that pixel could move the other way
            r_tot[idx] = (x[idx] + r_tot[idx] + step.view_as(xa)).clamp(0, 1) - x[idx]
            x_adv[idx] = (x[idx] + (1 + self.overshoot) * r_tot[idx]).clamp(0, 1)
            active[idx[fooled]] = False
        return x_adv.detach()


class CarliniWagnerL2(torchattacks.CW):
    """Carlini-Wagner L2 with a per-sample binary search over c and a correct margin for targeted runs."""

    def __init__(self, model, steps: int = 100, search_steps: int = 9, initial_const: float = 1e-3,
                 kappa: float = 0.0, lr: float = 0.01):
        super().__init__(model, c=1.0, kappa=kappa, steps=steps, lr=lr)
        self.search_steps = search_steps
        self.initial_const = initial_const
        self._const: torch.Tensor | None = None  # per-sample c of the current round

    def f(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        own = torch.nn.functional.one_hot(labels, outputs.shape[1]).bool()
        real = outputs.gather(1, labels[:, None]).squeeze(1)
        other = outputs.masked_fill(own, float("-inf")).amax(1)
        margin = other - real if self.targeted else real - other
        return self._const * margin.clamp(min=-self.kappa)

    def inverse_tanh_space(self, x: torch.Tensor) -> torch.Tensor:
        # Pixels at exactly 0 or 1 map to an infinite w with zero gradient and could never move; shrink by 1e-6
        # as the authors' implementation does.
        return self.atanh((x * 2 - 1).clamp(-1, 1) * (1 - 1e-6))

    @torch.enable_grad()
    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = images.clone().detach().to(self.device)
        y = labels.clone().detach().to(self.device)
        goal = self.get_target_label(x, y) if self.targeted else y
        n = len(x)
        lower = torch.zeros(n, device=x.device)
        upper = torch.full((n,), float("inf"), device=x.device)
        const = torch.full((n,), self.initial_const, device=x.device)
        best = x.clone()
        best_l2 = torch.full((n,), float("inf"), device=x.device)
        for _ in range(self.search_steps):
            self._const = const
            adv = super().forward(x, y)
            with torch.no_grad():
                pred = self.get_logits(adv).argmax(1)
            ok = pred == goal if self.targeted else pred != goal
            l2 = (adv - x).flatten(1).norm(dim=1)
            better = ok & (l2 < best_l2)
            best[better], best_l2[better] = adv[better], l2[better]
            upper = torch.where(ok, torch.minimum(upper, const), upper)
            lower = torch.where(ok, lower, torch.maximum(lower, const))
            const = torch.where(torch.isinf(upper), const * 10, (lower + upper) / 2)
        self._const = None
        return best
