"""Class names: built-in label sets, comma lists and label files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from audit.errors import AuditError

_LABEL_DIR = Path(__file__).parent / "label_sets"

CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FASHION_MNIST = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
MNIST = tuple(str(d) for d in range(10))
CIFAR100 = tuple(
    ["apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm"]
)

BUILTIN = {
    "cifar10": lambda: list(CIFAR10),
    "cifar100": lambda: list(CIFAR100),
    "fashion-mnist": lambda: list(FASHION_MNIST),
    "mnist": lambda: list(MNIST),
    "imagenet-1k": lambda: (_LABEL_DIR / "imagenet-1k.txt").read_text(encoding="utf-8").splitlines(),
}


def resolve_classes(spec: str | None) -> list[str] | None:
    """Turn ``--classes`` into a list of names.

    ``spec`` is a built-in set name, a text file with one name per line, or a comma list. ``None`` means the
    names are not given (the data source's own names, or class indices, are used instead).
    """
    if spec is None or not spec.strip():
        return None
    key = spec.strip()
    if key.lower() in BUILTIN:
        return BUILTIN[key.lower()]()
    path = Path(key)
    if path.is_file():
        try:
            names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            raise AuditError(f"cannot read class names from {path}: {exc}") from None
        names = [n for n in names if n]
        if not names:
            raise AuditError(f"the class file {path} holds no names (one name per line expected)")
        return names
    if "," in key:
        names = [n.strip() for n in key.split(",")]
        if any(not n for n in names):
            raise AuditError(f"--classes has an empty name in '{spec}'")
        return names
    raise AuditError(
        f"--classes '{spec}' is neither a built-in label set ({', '.join(sorted(BUILTIN))}), "
        "an existing file with one name per line, nor a comma list"
    )


def _norm_name(name: str) -> str:
    return name.strip().lower().replace("_", " ")


def align_labels(data_classes: list[str] | None, names: list[str], labels) -> np.ndarray:
    """A lookup array from the data's label indices to the model's class indices.

    Folder or file class names are matched to the model's class names by name (``lawn_mower`` matches
    ``lawn mower``); folders named by class index (``0``, ``1``, …) map to that index; otherwise the data's
    classes are taken to be the model's, in the same order (torchvision's convention for ImageNet folders).
    """
    top = int(labels.max()) + 1 if len(labels) else 0
    identity = np.arange(max(top, len(names)))
    if not data_classes or list(data_classes) == list(names):
        return identity
    normed = [_norm_name(n) for n in names]
    counts = Counter(normed)
    # names that occur twice (ImageNet has two "missile" and two "sunglasses") cannot identify a class
    index = {n: i for i, n in enumerate(normed) if counts[n] == 1}
    if all(_norm_name(c) in index for c in data_classes):
        return np.array([index[_norm_name(c)] for c in data_classes])
    if all(c.strip().isdigit() for c in data_classes):
        return np.array([int(c) for c in data_classes])
    if len(data_classes) == len(names):
        return identity
    unknown = [c for c in data_classes if _norm_name(c) not in index][:3]
    raise AuditError(
        f"the data's classes ({', '.join(unknown)}, …) are not among the model's {len(names)} class names: "
        "name the folders by class name or index, or give the model's names with --classes"
    )
