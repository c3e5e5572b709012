"""Benchmark: a series of N checkpoints against N single audits, and what reading the data once saves.

N copies of the demo CNN (the data: the demo's 300 images, or ``--data``), measured in one run:

- singles: ``run_audit`` and ``write_outputs`` once per checkpoint, each opening and decoding the data itself
  (as N `audit run`s);
- series:  ``run_series`` over the N checkpoints (the data opened and decoded once, replayed to the others; its
  check that every checkpoint loads with one network first, and series.json, included);
- load:    opening the data and one decoding pass over it (``open_data`` and ``batches``), alone.

Prints the times and the check of the issue: series <= singles − (N − 1) · load (the ratio series /
(singles − (N − 1) · load) at most 1, within the noise of a shared machine).

    .venv/bin/python benchmarks/bench_series.py [--n 6] [--samples 300] [--data demo] [--threads 2]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

from audit import AuditConfig, run_audit  # noqa: E402
from audit.data import Framing, open_data  # noqa: E402
from audit.demo import ARCH, ASSETS  # noqa: E402
from audit.engine.series import find_checkpoints, run_series  # noqa: E402
from audit.outputs import write_outputs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--samples", default="300")
    parser.add_argument("--data", default="demo")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ckpt"
        folder.mkdir()
        for i in range(1, args.n + 1):
            shutil.copy(ASSETS / "fashion_cnn.safetensors", folder / f"epoch_{i}.safetensors")
        template = AuditConfig(model=str(folder / "epoch_1.safetensors"), arch=ARCH, data=args.data,
                               classes="fashion-mnist", attacks=["fgsm"], eps="0.1", samples=args.samples,
                               layers="none", checks=False, html=False, threads=args.threads, device="cpu")
        points = find_checkpoints([str(folder)])
        started = time.perf_counter()
        data = open_data(args.data, samples=template.resolved().samples, seed=0, framing=Framing())
        for _ in data.batches(template.batch_size):
            pass
        load = time.perf_counter() - started
        started = time.perf_counter()
        for point in points:  # as `audit run` does: the audit, then its report written
            write_outputs(run_audit(replace(template, model=str(point.path))), Path(tmp) / "single" / point.name,
                          html=False)
        singles = time.perf_counter() - started
        started = time.perf_counter()
        series, _ = run_series(template, points, Path(tmp) / "out", order="number")
        whole = time.perf_counter() - started
    bound = singles - (args.n - 1) * load
    print(f"{args.n} checkpoints, {len(data)} images: {args.n} single audits {singles:.2f} s, series {whole:.2f} s "
          f"(data opened {series['tool']['data_opened']}x); one data load {load:.3f} s")
    print(f"series / ({args.n} audits - {args.n - 1} data loads) = {whole / bound:.3f} (at most 1: data read once)")


if __name__ == "__main__":
    main()
