"""The built-in demo set, named ``demo`` instead of a path: Fashion-MNIST test images shipped with the package
(``audit/demo_assets/fashion_mnist_test.npz``), read as an .npz with the Fashion-MNIST class names."""

from __future__ import annotations

from pathlib import Path

from audit.data import npz
from audit.data.labels import FASHION_MNIST
from audit.data.source import Source
from audit.errors import AuditError

NAME = "demo"
DEMO_FILE = Path(__file__).parent.parent / "demo_assets" / "fashion_mnist_test.npz"


def read() -> Source:
    if not DEMO_FILE.is_file():
        raise AuditError(f"the built-in demo set is missing ({DEMO_FILE}); reinstall robustness-audit")
    return npz.read(DEMO_FILE, fmt="demo", classes=list(FASHION_MNIST))
