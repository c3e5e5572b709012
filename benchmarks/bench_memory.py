"""Benchmark: peak memory of an audit stays flat in the number of images.

The demo's 300 Fashion-MNIST images are replicated into uncompressed .npz files of 1 000 and 10 000 images
(by default) in a temporary directory; each is audited by the demo CNN with a cheap attack (FGSM), every
per-layer analysis on (``--layers auto``) and the validity checks on, each audit in its own fresh process so
that peaks do not mix. Every child reports its peak resident memory (``VmHWM``), and the parent prints both
peaks and the growth (aim: under 10 %).

    .venv/bin/python benchmarks/bench_memory.py [--sizes 1000 10000] [--threads 2] [--batch-size 64]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` memory field (VmHWM: peak resident set, VmRSS: current) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def replicate_demo(n: int, path: Path) -> Path:
    """An uncompressed .npz of ``n`` images: the demo set repeated (the last copy cut short)."""
    from audit.data import DEMO_FILE

    with np.load(DEMO_FILE) as demo:
        x, y = demo["x"], demo["y"]
    reps = -(-n // len(y))
    np.savez(path, x=np.concatenate([x] * reps)[:n], y=np.concatenate([y] * reps)[:n])
    return path


class StagePeaks:
    """The audit's progress sink: samples the resident set every few milliseconds and keeps, per stage, its
    peak (``finishing`` is what follows the last stage: the observers' ``finish``, scoring)."""

    def __init__(self, interval: float = 0.005):
        self.stage_name, self.peaks, self._stop = "importing", {}, threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(interval,), daemon=True)
        self._thread.start()

    def _sample(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.record()

    def record(self) -> None:
        name = self.stage_name
        self.peaks[name] = max(self.peaks.get(name, 0), status_kib("VmRSS"))

    def stage(self, text: str) -> None:
        self.record()
        self.stage_name = text

    def start(self, total: int) -> None:
        pass

    def advance(self, n: int) -> None:
        pass

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        self.record()
        return self.peaks


def child(data: str, threads: int, batch_size: int, layers: str) -> None:
    """Run one audit and print its peak memory as JSON (the last line of stdout)."""
    from audit import AuditConfig, run_audit
    from audit.demo import ARCH, ASSETS, MODELS

    imported = status_kib("VmHWM")
    config = AuditConfig(model=str(ASSETS / MODELS["standard"][0]), arch=ARCH, data=data, classes="fashion-mnist",
                         attacks=["fgsm"], eps="0.1", samples="all", batch_size=batch_size, device="cpu",
                         threads=threads, layers=layers, checks=True)
    start = time.perf_counter()
    stages = StagePeaks()
    result = run_audit(config, progress=stages)
    stages.stage("finishing")
    print(json.dumps({"n": result.data["n_samples"], "peak_kib": status_kib("VmHWM"), "imported_kib": imported,
                      "end_rss_kib": status_kib("VmRSS"), "seconds": round(time.perf_counter() - start, 1),
                      "analyses": sorted(result.analyses), "stages": stages.stop()}))


def measure(data: Path, threads: int, batch_size: int, layers: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", str(data), "--threads", str(threads),
                           "--batch-size", str(batch_size), "--layers", layers], cwd=ROOT, capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
        raise SystemExit(f"the audit of {data} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[1000, 10000])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--layers", default="auto", help="auto (every analysis) or none (attacks and tallies only)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.threads, args.batch_size, args.layers)
        return
    with tempfile.TemporaryDirectory() as tmp:
        runs = [measure(replicate_demo(n, Path(tmp) / f"demo_{n}.npz"), args.threads, args.batch_size, args.layers)
                for n in args.sizes]
    small, large = runs
    print(f"FGSM at eps 0.1, --layers {args.layers} (sections: {', '.join(small['analyses']) or '-'}), checks on, "
          f"batch {args.batch_size}, {args.threads} threads; one process per audit")
    for run in runs:
        print(f"  {run['n']:6d} images  peak RSS {run['peak_kib'] / 1024:7.1f} MiB  (after imports "
              f"{run['imported_kib'] / 1024:6.1f} MiB, at the end {run['end_rss_kib'] / 1024:6.1f} MiB)  "
              f"{run['seconds']:6.1f} s")
        print("      peak by stage (MiB): " + ", ".join(f"{name} {kib / 1024:.1f}" for name, kib in run["stages"].items()))
    growth = large["peak_kib"] / small["peak_kib"] - 1
    per_image = (large["peak_kib"] - small["peak_kib"]) * 1024 / (large["n"] - small["n"])
    print(f"  growth of the peak: {100 * growth:+.1f} %  ({per_image:.0f} bytes per extra image; aim: < 10 %)")


if __name__ == "__main__":
    main()
