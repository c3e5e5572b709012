#!/usr/bin/env python
"""Train the embedded Fashion-MNIST demo assets of the robustness audit.

Produces, in ``--out-dir`` (default ``audit/demo_assets``):

* ``fashion_cnn.safetensors``      - FashionCNN trained normally (Adam, cross-entropy);
* ``fashion_cnn_adv.safetensors``  - the same architecture, adversarially trained on PGD examples
  (Madry et al. 2018) at eps 0.3 with a linear epsilon warm-up;
* ``fashion_mnist_test.npz``       - 300 real test images (30 per class, fixed seed) as
  ``x`` uint8 Nx28x28 and ``y`` int64 N;
* ``manifest.json``                - the training recipe and the accuracies measured here.

With ``--series`` it also writes ``series/`` (shipped as ``audit/demo_assets/series``): the adversarial
twin's weights after the epochs ``--series-epochs`` (``adv_epoch_NN.safetensors``, taken from the same
training run as the twin this run writes), a random-label control (``control_epoch_NN.safetensors``:
the standard model's recipe on a seeded permutation of the training labels, its first and last epoch of
``--control-epochs``), and ``series/manifest.json`` with every checkpoint's epoch, sha256 and accuracies.
Saving checkpoints reads the weights only; the twins' training and files are the same with or without it.

The data comes from the Debian package ``dataset-fashion-mnist`` (IDX files, gzip-compressed).
Everything is seeded, and training runs on the CPU (``--threads`` intra-op threads). For both
models the epoch that scores best on 1000 held-out training images is kept (clean accuracy for the
standard model, PGD-10 accuracy at the training eps for the twin).

Recipe note for the twin: a first try, PGD-3 with a large step (alpha = 0.83 * eps), peak lr 2e-3
and a 2-epoch warm-up, "learned the attack" at eps 0.3 (accuracy on its own PGD examples near 90%
while clean accuracy fell to ~33%). The defaults (alpha = 0.4 * eps, lr 1e-3, 3-epoch warm-up)
train stably; PGD-5 with alpha = eps / 3 gave similar robustness at a higher cost.

Usage: python scripts/train_demo.py [--out-dir DIR] [--epochs N] [--seed S] [--threads T] [--series]
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import os
import random
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

# Idle OpenMP workers of torch spin by default, which makes training several times slower when
# the CPU cores are shared with other processes; let them sleep instead (must precede torch import).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchattacks  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from audit.demo_model import FashionCNN  # noqa: E402

DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
SPLITS = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
DEMO_PER_CLASS = 30
EVAL_EPS = (0.05, 0.1, 0.2, 0.3)
EVAL_PGD_STEPS = 40
EVAL_FGSM_EPS = 0.1

# A training attack maps (model, images, labels) to adversarial images.
TrainAttack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- data


def read_idx(path: Path) -> np.ndarray:
    """Parse a gzip-compressed IDX file of unsigned bytes (the MNIST file format).

    Header: two zero bytes, a type code (0x08 = uint8), the number of dimensions,
    then one big-endian uint32 per dimension; the raw data follows.
    """
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_split(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8, Nx28x28) and labels (int64, N) of the 'train' or 'test' split."""
    image_file, label_file = (data_dir / name for name in SPLITS[split])
    missing = [p.name for p in (image_file, label_file) if not p.is_file()]
    if missing:
        sys.exit(
            f"error: Fashion-MNIST file(s) {', '.join(missing)} not found in {data_dir}; "
            "install them with `apt-get install dataset-fashion-mnist`"
        )
    return read_idx(image_file), read_idx(label_file).astype(np.int64)


def to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images -> float32 Nx1x28x28 in [0, 1]; labels -> int64 tensor."""
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(labels)


def pick_demo_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices of `per_class` randomly chosen examples of every class."""
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False)
        for c in range(int(labels.max()) + 1)
    ]
    return np.sort(np.concatenate(chosen))


# --------------------------------------------------------------------------- training


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pgd_perturb(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int
) -> torch.Tensor:
    """L-inf PGD on the cross-entropy from a uniform random start, staying inside [0, 1].

    Used for training only (the measurements use torchattacks); steps=1 with
    alpha=1.25*eps would give the "fast" FGSM-with-random-start of Wong et al. (2020).
    """
    delta = torch.empty_like(x).uniform_(-eps, eps)
    delta = (x + delta).clamp(0, 1) - x
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(x + delta), y)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + alpha * grad.sign()).clamp(-eps, eps)
        delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


class WarmupPGD:
    """PGD training attack whose epsilon grows linearly from 0 to `eps` over `warmup_batches`.

    The step size is `alpha_ratio` times the current epsilon. Starting adversarial
    training directly at a large epsilon leaves a small network stuck near chance.
    """

    def __init__(self, eps: float, steps: int, alpha_ratio: float, warmup_batches: int) -> None:
        self.eps, self.steps, self.alpha_ratio = eps, steps, alpha_ratio
        self.warmup_batches = max(1, warmup_batches)
        self.batches_seen = 0

    def current_eps(self) -> float:
        return self.eps * min(1.0, self.batches_seen / self.warmup_batches)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.batches_seen += 1
        eps = self.current_eps()
        if eps == 0.0:
            return x
        return pgd_perturb(model, x, y, eps, self.alpha_ratio * eps, self.steps)


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    attack: TrainAttack | None = None,
) -> tuple[float, float]:
    """One pass over (x, y) in a seeded random order; trains on attack(batch) if an attack is given.

    Returns the mean loss and the accuracy on the (possibly adversarial) training batches.
    """
    model.train()
    order = torch.randperm(len(x), generator=generator)
    total_loss, correct = 0.0, 0
    for start in range(0, len(x), batch_size):
        idx = order[start : start + batch_size]
        xb, yb = x[idx], y[idx]
        if attack is not None:
            xb = attack(model, xb, yb)
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total_loss += loss.item() * len(idx)
        correct += (logits.argmax(1) == yb).sum().item()
    return total_loss / len(x), correct / len(x)


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: torchattacks.Attack | None = None,
    batch_size: int = 500,
) -> float:
    """Accuracy of `model` on (x, y), or on attack(x, y) when a torchattacks attack is given."""
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        if attack is not None:
            xb = attack(xb, yb)
        with torch.no_grad():
            correct += (model(xb).argmax(1) == yb).sum().item()
    return correct / len(x)


def train_model(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    attack: TrainAttack | None = None,
    val_eps: float | None = None,
    on_epoch: Callable[[int, nn.Module], None] | None = None,
) -> tuple[FashionCNN, dict]:
    """Train a fresh FashionCNN with Adam and a one-cycle learning-rate schedule.

    After every epoch the model is scored on the held-out `val` images: by clean
    accuracy, or, when `val_eps` is given, by accuracy under a 10-step PGD at that
    epsilon. The best-scoring epoch is returned ("early stopping", Rice et al. 2020),
    which also guards against a late collapse of adversarial training.
    ``on_epoch(epoch, model)`` is called after every epoch's scores; it must not consume random numbers.
    Returns the model and a summary (wall time, selected epoch and its scores).
    """
    seed_everything(seed)
    model = FashionCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = -(-len(train[0]) // batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.25
    )
    generator = torch.Generator().manual_seed(seed)
    best: dict = {"score": -1.0}
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        loss, acc = train_epoch(model, optimizer, scheduler, *train, batch_size, generator, attack)
        scores = {"val_clean_acc": evaluate(model, *val)}
        if val_eps is not None:
            pgd = torchattacks.PGD(model, eps=val_eps, alpha=val_eps / 4, steps=10, random_start=True)
            scores[f"val_pgd10_acc_eps{val_eps}"] = evaluate(model, *val, attack=pgd)
        score = list(scores.values())[-1]
        if score >= best["score"]:
            best = {
                "score": score,
                "epoch": epoch,
                "scores": scores,
                "state": copy.deepcopy(model.state_dict()),
            }
        if on_epoch is not None:
            on_epoch(epoch, model)
        eps_note = f" (eps {attack.current_eps():.3f})" if isinstance(attack, WarmupPGD) else ""
        print(
            f"  epoch {epoch:2d}/{epochs}: loss {loss:.4f}, train acc{eps_note} {acc:.4f}, "
            + ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
            + f"  [{time.perf_counter() - start:.0f}s]",
            flush=True,
        )
    wall_time = time.perf_counter() - start
    model.load_state_dict(best["state"])
    print(f"  kept epoch {best['epoch']}")
    return model, {"wall_time_s": round(wall_time, 1), "selected_epoch": best["epoch"], **best["scores"]}


# --------------------------------------------------------------------------- measurement


def measure(
    model: nn.Module,
    test: tuple[torch.Tensor, torch.Tensor],
    demo: tuple[torch.Tensor, torch.Tensor],
    seed: int,
) -> dict[str, float]:
    """Clean accuracy on the full test set and clean/robust accuracy on the demo images."""
    model.eval()
    seed_everything(seed)  # torchattacks' random starts use the global torch RNG
    metrics = {
        "clean_acc_test10k": evaluate(model, *test),
        "clean_acc_demo": evaluate(model, *demo),
    }
    for eps in EVAL_EPS:
        pgd = torchattacks.PGD(
            model, eps=eps, alpha=2.5 * eps / EVAL_PGD_STEPS, steps=EVAL_PGD_STEPS, random_start=True
        )
        metrics[f"pgd_acc_demo_eps{eps}"] = evaluate(model, *demo, attack=pgd)
    fgsm = torchattacks.FGSM(model, eps=EVAL_FGSM_EPS)
    metrics[f"fgsm_acc_demo_eps{EVAL_FGSM_EPS}"] = evaluate(model, *demo, attack=fgsm)
    return {k: round(v, 4) for k, v in metrics.items()}


def measure_checkpoint(
    model: nn.Module,
    test: tuple[torch.Tensor, torch.Tensor],
    demo: tuple[torch.Tensor, torch.Tensor],
    eps: float,
    seed: int,
) -> dict[str, float]:
    """A series checkpoint's figures: clean accuracy on the test split and the demo images, and the
    accuracy under PGD-40 at `eps` on the demo images, the global RNG seeded right before the attack."""
    model.eval()
    metrics = {"clean_acc_test10k": evaluate(model, *test), "clean_acc_demo": evaluate(model, *demo)}
    seed_everything(seed)
    pgd = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / EVAL_PGD_STEPS, steps=EVAL_PGD_STEPS, random_start=True)
    metrics[f"pgd_acc_demo_eps{eps}"] = evaluate(model, *demo, attack=pgd)
    return {k: round(v, 4) for k, v in metrics.items()}


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", type=Path, default=Path("audit/demo_assets"))
    p.add_argument("--data-dir", type=Path, default=DATA_DIR)
    p.add_argument("--epochs", type=int, default=10, help="epochs of adversarial training")
    p.add_argument("--std-epochs", type=int, default=3, help="epochs of standard training")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op CPU threads")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--std-lr", type=float, default=2e-3, help="peak learning rate, standard training")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate, adversarial training")
    p.add_argument("--val-size", type=int, default=1000, help="training images held out for validation")
    p.add_argument("--train-eps", type=float, default=0.3, help="L-inf eps of adversarial training")
    p.add_argument("--train-steps", type=int, default=3, help="PGD steps of adversarial training")
    p.add_argument("--alpha-ratio", type=float, default=0.4, help="PGD step size as a fraction of eps")
    p.add_argument("--warmup-epochs", type=float, default=3.0, help="epochs of linear eps warm-up")
    p.add_argument("--series", action="store_true",
                   help="also write OUT_DIR/series/: adversarial checkpoints and a random-label control")
    p.add_argument("--series-epochs", default="1,3,5,8,10",
                   help="adversarial epochs whose weights --series keeps (comma-separated)")
    p.add_argument("--control-epochs", type=int, default=3,
                   help="epochs of the random-label control (its first and last are kept)")
    args = p.parse_args(argv)
    args.series_epochs = sorted({int(e) for e in args.series_epochs.split(",")})
    if args.series and not all(1 <= e <= args.epochs for e in args.series_epochs):
        p.error(f"--series-epochs must lie in 1..{args.epochs} (the adversarial epochs)")
    if args.series and args.control_epochs < 1:
        p.error("--control-epochs must be at least 1")
    return args


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as it is saved: detached float32 copies."""
    return {k: v.detach().float().contiguous().clone() for k, v in model.state_dict().items()}


def sha256_of(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_assets(
    out: Path, models: dict[str, nn.Module], images: np.ndarray, labels: np.ndarray, manifest: dict
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, model in models.items():
        save_file(weights(model), out / manifest["models"][name]["file"])
    np.savez_compressed(out / manifest["demo_images"]["file"], x=images, y=labels.astype(np.int64))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    # read before this run can overwrite it (the default --out-dir is the shipped assets' folder)
    args.shipped_twin_sha256 = sha256_of(SHIPPED_TWIN) if SHIPPED_TWIN.is_file() else None
    t_total = time.perf_counter()

    # Data: a seeded hold-out of the training split for validation, the full test split for
    # measurement, and 30 test images per class shipped with the package.
    x_all, y_all = to_tensors(*load_split(args.data_dir, "train"))
    order = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(args.seed))
    val = x_all[order[: args.val_size]], y_all[order[: args.val_size]]
    train = x_all[order[args.val_size :]], y_all[order[args.val_size :]]
    test_images, test_labels = load_split(args.data_dir, "test")
    test = to_tensors(test_images, test_labels)
    demo_idx = pick_demo_subset(test_labels, DEMO_PER_CLASS, args.seed)
    demo = to_tensors(test_images[demo_idx], test_labels[demo_idx])
    print(
        f"train {len(train[0])}, validation {len(val[0])}, test {len(test[0])}, demo {len(demo_idx)} images"
    )

    print(f"standard training: {args.std_epochs} epochs")
    std_model, std_info = train_model(train, val, args.std_epochs, args.std_lr, args.batch_size, args.seed)

    steps_per_epoch = -(-len(train[0]) // args.batch_size)
    attack = WarmupPGD(
        args.train_eps, args.train_steps, args.alpha_ratio, round(args.warmup_epochs * steps_per_epoch)
    )
    adv_states: dict[int, dict[str, torch.Tensor]] = {}

    def keep_adv(epoch: int, model: nn.Module) -> None:
        if args.series and epoch in args.series_epochs:
            adv_states[epoch] = weights(model)

    print(f"adversarial training: {args.epochs} epochs, PGD-{args.train_steps} at eps {args.train_eps}")
    adv_model, adv_info = train_model(
        train, val, args.epochs, args.lr, args.batch_size, args.seed, attack, val_eps=args.train_eps,
        on_epoch=keep_adv,
    )

    print("measuring accuracies ...")
    models = {"standard": std_model, "adversarial": adv_model}
    metrics = {name: measure(model, test, demo, args.seed) for name, model in models.items()}
    for name, values in metrics.items():
        print(f"  {name}: {values}")

    recipe = {
        "optimizer": "Adam",
        "lr_schedule": "one-cycle (cosine, 25% warm-up)",
        "batch_size": args.batch_size,
        "loss": "cross-entropy",
        "train_images": len(train[0]),
        "checkpoint": f"best epoch on {len(val[0])} held-out training images",
    }
    training = {
        "standard": {**recipe, "peak_lr": args.std_lr, "epochs": args.std_epochs, "attack": None},
        "adversarial": {
            **recipe,
            "peak_lr": args.lr,
            "epochs": args.epochs,
            "loss": "cross-entropy on PGD adversarial examples only (Madry et al. 2018)",
            "attack": {
                "name": "PGD, L-inf, uniform random start (own implementation)",
                "eps": args.train_eps,
                "steps": args.train_steps,
                "alpha": round(args.alpha_ratio * args.train_eps, 5),
                "eps_warmup": f"linear from 0 over the first {args.warmup_epochs:g} epochs "
                "(alpha scales with eps)",
            },
        },
    }
    infos = {"standard": std_info, "adversarial": adv_info}
    files = {"standard": "fashion_cnn.safetensors", "adversarial": "fashion_cnn_adv.safetensors"}
    manifest = {
        "dataset": "Fashion-MNIST (Zalando SE, MIT licence) from the Debian package dataset-fashion-mnist",
        "architecture": "audit.demo_model.FashionCNN",
        "parameters": sum(p.numel() for p in std_model.parameters()),
        "input": "1x28x28, pixels in [0, 1], no normalisation (mean 0, std 1)",
        "seed": args.seed,
        "threads": args.threads,
        "torch": torch.__version__,
        "torchattacks": torchattacks.__version__,
        "demo_images": {
            "file": "fashion_mnist_test.npz",
            "split": "t10k",
            "per_class": DEMO_PER_CLASS,
            "count": len(demo_idx),
            "test_indices": demo_idx.tolist(),
        },
        "evaluation": {
            "clean_acc_test10k": "full t10k test split",
            "clean_acc_demo and robust accuracies": "the demo images",
            "pgd": f"torchattacks.PGD(eps, alpha=2.5*eps/{EVAL_PGD_STEPS}, steps={EVAL_PGD_STEPS}, "
            "random_start=True)",
            "fgsm": f"torchattacks.FGSM(eps={EVAL_FGSM_EPS})",
        },
        "models": {
            name: {
                "file": files[name],
                "training": training[name],
                "training_result": infos[name],
                "metrics": metrics[name],
            }
            for name in models
        },
        "total_wall_time_s": round(time.perf_counter() - t_total, 1),
    }
    save_assets(args.out_dir, models, test_images[demo_idx], test_labels[demo_idx], manifest)
    print(f"wrote {args.out_dir}/ in {manifest['total_wall_time_s']}s")
    if args.series:
        write_series(args, train, val, test, demo, adv_states, manifest)


SHIPPED_TWIN = Path(__file__).resolve().parents[1] / "audit" / "demo_assets" / "fashion_cnn_adv.safetensors"


def twin_of_run(out: Path, manifest: dict, shipped_sha256: str | None) -> dict:
    """The twin this run wrote (its kept epoch and sha256) and whether it is byte for byte the twin shipped
    when the run started: another CPU's kernels round differently, so a rerun elsewhere trains another twin."""
    sha = sha256_of(out / manifest["models"]["adversarial"]["file"])
    return {
        "epoch": manifest["models"]["adversarial"]["training_result"]["selected_epoch"],
        "sha256": sha,
        "same_as_shipped_twin": sha == shipped_sha256,
    }


def write_series(args, train, val, test, demo, adv_states: dict, manifest: dict) -> None:
    """Train the random-label control, then save and measure every series checkpoint in OUT_DIR/series/.

    Runs after the twins are saved, so nothing here can touch them."""
    labels = np.random.default_rng(args.seed).permutation(train[1].numpy())
    control_keep = sorted({1, args.control_epochs})
    control_states: dict[int, dict[str, torch.Tensor]] = {}

    def keep_control(epoch: int, model: nn.Module) -> None:
        if epoch in control_keep:
            control_states[epoch] = weights(model)

    print(f"random-label control: {args.control_epochs} epochs of standard training on permuted labels")
    _, control_info = train_model(
        (train[0], torch.from_numpy(labels)), val, args.control_epochs, args.std_lr, args.batch_size,
        args.seed, on_epoch=keep_control,
    )
    out = args.out_dir / "series"
    out.mkdir(parents=True, exist_ok=True)
    groups = {}
    for group, prefix, states in (("adversarial", "adv", adv_states), ("control", "control", control_states)):
        checkpoints = []
        for epoch, state in sorted(states.items()):
            path = out / f"{prefix}_epoch_{epoch:02d}.safetensors"
            save_file(state, path)
            model = FashionCNN()
            model.load_state_dict(state)
            metrics = measure_checkpoint(model, test, demo, args.train_eps, args.seed)
            print(f"  {path.name}: {metrics}")
            checkpoints.append({"file": path.name, "epoch": epoch, "sha256": sha256_of(path), "metrics": metrics})
        groups[group] = checkpoints
    series = {
        "architecture": manifest["architecture"],
        "seed": args.seed,
        "adversarial": {
            "what": "a run of the adversarial twin's recipe (manifest.json, models.adversarial), its weights after "
            f"epochs {', '.join(map(str, args.series_epochs))} of {args.epochs}",
            "twin_of_this_run": twin_of_run(args.out_dir, manifest, args.shipped_twin_sha256),
            "checkpoints": groups["adversarial"],
        },
        "control": {
            "what": "random-label control: the standard model's recipe (manifest.json, models.standard) for "
            f"{args.control_epochs} epochs on the training labels permuted by "
            f"numpy.random.default_rng({args.seed}).permutation; its weights after epochs "
            f"{', '.join(map(str, control_keep))}",
            "training_result": control_info,
            "checkpoints": groups["control"],
        },
        "evaluation": {
            "clean_acc_test10k": "full t10k test split",
            "clean_acc_demo": "the 300 demo images (manifest.json, demo_images)",
            f"pgd_acc_demo_eps{args.train_eps}": f"torchattacks.PGD(eps={args.train_eps}, "
            f"alpha=2.5*eps/{EVAL_PGD_STEPS}, steps={EVAL_PGD_STEPS}, random_start=True) on the 300 demo "
            f"images in one batch, torch.manual_seed({args.seed}) right before",
        },
    }
    (out / "manifest.json").write_text(json.dumps(series, indent=2) + "\n")
    print(f"wrote {out}/")


if __name__ == "__main__":
    main()
