"""Do two builds of the tool write the same reports? For structural changes, which must change no number.

    python scripts/same_reports.py make DIR        # the demo's two reports and a 2-process torchrun report
    python scripts/same_reports.py compare A B     # every report.json under A against the same one under B

``make`` runs ``audit demo`` (DIR/demo/{standard,adversarial}/report.json) and a 2-process torchrun audit of the
adversarially trained demo CNN with both analyses, FGSM, PGD and DeepFool and the validity checks
(DIR/torchrun/report.json). ``compare`` walks both trees and compares each pair of reports exactly, leaving out
only what differs between two runs of the same audit: when it ran (``created``), how long it took (``timing``,
``wall_time_s``, an ensemble component's ``seconds``), where (``environment``), the tool's version, the
output paths in ``settings``, and the folder of the model file (two checkouts keep the demo weights in two
places; the file's name and its sha256 are compared). It prints one line per report and every difference, and exits 1 on any.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

VOLATILE = {"created", "timing", "environment"}
VOLATILE_KEYS = {"wall_time_s", "seconds"}
PATH_SETTINGS = {"out", "junit", "html", "resume"}


def comparable(report: dict) -> dict:
    """The report without timings, environment, version and output paths."""
    out = {k: v for k, v in report.items() if k not in VOLATILE}
    out["tool"] = {k: v for k, v in report.get("tool", {}).items() if k != "version"}
    out["settings"] = {k: v for k, v in report.get("settings", {}).items() if k not in PATH_SETTINGS}
    if isinstance(out["settings"].get("model"), str):
        out["settings"]["model"] = Path(out["settings"]["model"]).name
    if isinstance(out.get("model", {}).get("path"), str):
        out["model"] = {**out["model"], "path": Path(out["model"]["path"]).name}
    return _drop(out)


def _drop(tree):
    if isinstance(tree, dict):
        return {k: _drop(v) for k, v in tree.items() if k not in VOLATILE_KEYS}
    if isinstance(tree, list):
        return [_drop(v) for v in tree]
    return tree


def differences(a, b, path: str = "report") -> list[str]:
    """Every place where ``a`` and ``b`` differ (exact comparison, floats included)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}: key {k!r} only in the first" for k in a.keys() - b.keys()]
        out += [f"{path}: key {k!r} only in the second" for k in b.keys() - a.keys()]
        for k in a.keys() & b.keys():
            out += differences(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{path}[{i}]")]
    if a != b or type(a) is not type(b):
        return [f"{path}: {a!r} vs {b!r}"]
    return []


def compare(first: Path, second: Path) -> int:
    reports = sorted(p.relative_to(first) for p in first.rglob("report.json"))
    if not reports:
        print(f"no report.json under {first}")
        return 1
    failed = 0
    for rel in reports:
        other = second / rel
        if not other.exists():
            print(f"{rel}: missing under {second}")
            failed += 1
            continue
        diffs = differences(comparable(json.loads((first / rel).read_text())),
                            comparable(json.loads(other.read_text())))
        print(f"{rel}: {'identical' if not diffs else f'{len(diffs)} differences'}")
        for line in diffs[:40]:
            print(f"  {line}")
        failed += bool(diffs)
    return 1 if failed else 0


def make(out: Path) -> int:
    exe = Path(sys.executable)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    demo = subprocess.run([str(exe.with_name("audit")), "demo", "--out", str(out / "demo")], env=env, check=False)
    if demo.returncode:
        return demo.returncode
    assets = Path(__file__).resolve().parent.parent / "audit" / "demo_assets"
    args = [str(assets / "fashion_cnn_adv.safetensors"), "--arch", "audit.demo_model:FashionCNN",
            "--classes", "fashion-mnist", "--samples", "80", "--batch-size", "10", "--attack", "fgsm",
            "--attack", "pgd", "--attack", "deepfool", "--eps", "0.05,0.1", "--steps", "5", "--permutations", "50",
            "--threads", "1", "--out", str(out / "torchrun")]
    ranks = subprocess.run([str(exe.with_name("torchrun")), "--standalone", "--nproc-per-node", "2", "-m", "audit",
                            *args], env=env, check=False)
    return ranks.returncode


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "make":
        return make(Path(argv[1]))
    if len(argv) == 3 and argv[0] == "compare":
        return compare(Path(argv[1]), Path(argv[2]))
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
