"""Class names: built-in label sets, comma lists and label files."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from audit.errors import AuditError

_LABEL_DIR = Path(__file__).parent.parent / "label_sets"  # audit/label_sets

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


def imagenet_wnids() -> list[str]:
    """The WordNet ids of the ImageNet-1k classes, in class-index order (``n01440764`` is class 0)."""
    return (_LABEL_DIR / "imagenet-1k-wnids.txt").read_text(encoding="utf-8").split()


def imagenet_names_for(data_classes: list[str] | None, num_outputs: int) -> list[str] | None:
    """The ImageNet-1k names when every data class is an ImageNet-1k wnid (folders laid out like the ImageNet
    validation set) and the model has 1000 outputs; else None."""
    if not data_classes or num_outputs != 1000:
        return None
    wnids = set(imagenet_wnids())
    return BUILTIN["imagenet-1k"]() if all(c.strip().lower() in wnids for c in data_classes) else None


def norm_name(name: str) -> str:
    """A class name as matching compares it: case, ``_``, ``-`` and runs of spaces do not count."""
    return " ".join(re.split(r"[\s_-]+", name.strip().lower())).strip()


def _class_keys(names: list[str]) -> dict[str, list[int]]:
    """Every key that names a model class, with the classes it names: normalised names, and the wnids when the
    model has the 1000 ImageNet-1k classes (any 1000 names: torchvision's categories, a Hugging Face
    ``id2label`` and timm's names all keep the standard order, the sorted wnids)."""
    keys: dict[str, list[int]] = defaultdict(list)
    for i, name in enumerate(names):
        keys[norm_name(name)].append(i)
    if len(names) == len(imagenet_wnids()):
        for i, wnid in enumerate(imagenet_wnids()):
            keys[wnid].append(i)
    return keys


def align_labels(data_classes: list[str] | None, names: list[str], labels) -> np.ndarray:
    """A lookup array from the data's label indices to the model's class indices.

    Folder or file class names are matched to the model's class names exactly after normalisation (case, and
    ``_``, ``-`` or spaces: ``lawn_mower`` matches ``lawn mower``), to the ImageNet-1k wnids (``n01440764``)
    when the model has 1000 classes, or to an index when a folder is named ``0``, ``1``,
    …. A folder that names two classes or none is an error naming it. Only when no folder names a class at all
    and there are as many folders as classes are the data's classes taken to be the model's, in the same order.
    """
    top = int(labels.max()) + 1 if len(labels) else 0
    identity = np.arange(max(top, len(names)))
    if not data_classes or list(data_classes) == list(names):
        return identity
    keys = _class_keys(names)
    found: list[list[int]] = []
    for c in data_classes:
        hits = keys.get(norm_name(c)) or []
        if not hits and c.strip().isdigit() and int(c) < len(names):
            hits = [int(c)]
        found.append(hits)
    if all(len(hits) == 1 for hits in found):
        return np.array([hits[0] for hits in found])
    if not any(found) and len(data_classes) == len(names):
        return identity
    ambiguous = [(c, hits) for c, hits in zip(data_classes, found, strict=True) if len(hits) > 1]
    if ambiguous:
        c, hits = ambiguous[0]
        named = " and ".join(f"#{i} {names[i]!r}" for i in hits[:3])
        raise AuditError(f"the data's class {c!r} is ambiguous: it names {len(hits)} of the model's classes "
                         f"({named}); rename the folder to the class's index or (ImageNet) its wnid")
    unknown = [c for c, hits in zip(data_classes, found, strict=True) if not hits]
    shown = ", ".join(repr(c) for c in unknown[:3]) + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else "")
    raise AuditError(
        f"{len(unknown)} of the data's {len(data_classes)} classes ({shown}) are not among the model's "
        f"{len(names)} class names: name the folders by class name, index (0, 1, …) or ImageNet wnid, or give "
        "the model's names with --classes"
    )
