"""Benchmark: a series of N checkpoints against N single audits, and what reading the data once saves.

Two setups:

- ``--data demo`` (default; or another ``--data``): N copies of the demo CNN on the demo's 300 images. Loading
  them costs about 0.1 s, so the saving drowns in the machine's noise.
- ``--data photos``: real photos whose decoding costs something: the 20 ImageNet photos shipped with foolbox
  (512×512 JPEGs; ``--photos-from`` another folder of ``imagenet_<i>_<label>.jpg``), copied to ``--photos``
  files in ImageNet wnid folders (an ImageFolder the audit reads with its ImageNet class names), each read with
  ``--resize 256 --crop 224``; N torchvision networks (``--net``, default mobilenet_v3_small: small, so decoding
  is a real share of an audit) with random weights (seed i for checkpoint i, saved as safetensors, loaded with
  ``--arch torchvision.models:NET``).

Measured in one run:

- singles: ``run_audit`` (saving its state for ``--resume`` as ``audit run`` does) and ``write_outputs`` once
  per checkpoint, each opening and decoding the data itself (as N `audit run`s);
- series:  ``run_series`` over the N checkpoints (the data opened and decoded once, replayed to the others; its
  check that every checkpoint loads with one network first, and series.json, included);
- load:    opening the data and one decoding pass over it (``open_data`` and ``batches``), alone.

With ``--cli`` the two sides are what a user runs instead: N ``audit run`` processes against one ``audit series``
process (the same settings; CPU time from the finished children's usage), so the series also saves N − 1 process
starts (imports); the load is still timed in this process.

An untimed audit of 20 samples runs first, so that no side pays the process's warm-up (imports, kernels).

Prints the times and the check of the issue: series <= singles − (N − 1) · load (the ratio series /
(singles − (N − 1) · load) at most 1), in wall time and in this process's CPU time (all its threads; on a
machine shared with other work the CPU time is the steadier of the two); ``--repeat R`` measures R rounds and
prints the medians. With ``--layers`` other than none each single audit decodes the data twice (its clean pre-pass,
then its attack pass) and the series still once in all; the bound stays the issue's, N − 1 loads.

    .venv/bin/python benchmarks/bench_series.py [--n 6] [--samples 300] [--data demo] [--threads 2]
    .venv/bin/python benchmarks/bench_series.py --data photos [--photos 600] [--net mobilenet_v3_small] [--repeat 3]
        [--layers auto] [--cli]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

from audit import AuditConfig, run_audit  # noqa: E402
from audit.data import Framing, open_data  # noqa: E402
from audit.demo import ARCH, ASSETS  # noqa: E402
from audit.engine.series import find_checkpoints, run_series  # noqa: E402
from audit.outputs import write_outputs  # noqa: E402

PHOTO_NAME = "imagenet_*.jpg"  # imagenet_<i>_<label index>.jpg


def _foolbox_photos() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("foolbox")
    return Path(spec.origin).parent / "data" if spec and spec.origin else None


def photo_setup(root: Path, n: int, photos: int, source: Path | None, net: str, template: dict) -> tuple:
    """An ImageFolder of ``photos`` copies of the real photos in wnid folders, and ``n`` checkpoints of a
    torchvision ``net`` with random weights; the folders and the audit settings."""
    import torch
    from safetensors.torch import save_file

    from audit.data.labels import imagenet_wnids
    from audit.model.torchvision_door import import_torchvision

    found = sorted(source.glob(PHOTO_NAME)) if source else []
    if not found:
        raise SystemExit(f"no {PHOTO_NAME} photos in {source}: install foolbox or give --photos-from")
    wnids = imagenet_wnids()
    data = root / "photos"
    for i in range(photos):
        photo = found[i % len(found)]
        folder = data / wnids[int(photo.stem.split("_")[2])]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, folder / f"{photo.stem}_{i:05d}.jpg")
    build = getattr(import_torchvision().models, net)
    ckpt = root / "ckpt"
    ckpt.mkdir()
    for i in range(1, n + 1):
        torch.manual_seed(i)
        weights = {k: v.contiguous() for k, v in build(weights=None).state_dict().items()}
        save_file(weights, str(ckpt / f"epoch_{i}.safetensors"))
    settings = dict(template, arch=f"torchvision.models:{net}", data=str(data), classes=None, resize=256,
                    crop="224", eps="2/255")
    return ckpt, settings, Framing(256, (224, 224)), (224, 224), 3


def _flags(settings: dict) -> list[str]:
    """The audit settings as `audit run` / `audit series` options."""
    flags = []
    for key, value in settings.items():
        if value is None or key == "attacks":
            continue
        if isinstance(value, bool):
            flags += [] if value else [f"--no-{key}"]
        else:
            flags += [f"--{key.replace('_', '-')}", str(value)]
    return flags + [arg for attack in settings["attacks"] for arg in ("-a", attack)]


def _processes(commands: list[list[str]]) -> tuple[float, float]:
    """Run ``audit COMMAND...`` processes one after the other: their wall time and their CPU time (user + system)."""
    import resource
    import subprocess
    import sys

    audit = Path(sys.executable).with_name("audit")
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    for command in commands:
        subprocess.run([str(audit), *command], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - started, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _read(path: Path) -> dict:
    import json

    return json.loads(path.read_text(encoding="utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--samples", default="300")
    parser.add_argument("--data", default="demo")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--photos", type=int, default=600, help="with --data photos: how many photo files")
    parser.add_argument("--photos-from", type=Path, default=None, help="folder of imagenet_<i>_<label>.jpg")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of the measurement (the median is printed)")
    parser.add_argument("--net", default="mobilenet_v3_small", help="with --data photos: a torchvision builder")
    parser.add_argument("--cli", action="store_true", help="time `audit run` and `audit series` processes")
    parser.add_argument("--layers", default="none", help="the audits' --layers (none: no per-layer analysis; with "
                        "layers an audit makes a clean pre-pass, a second decoding of the data for a single audit)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = dict(arch=ARCH, data=args.data, classes="fashion-mnist", attacks=["fgsm"], eps="0.1",
                        samples=args.samples, layers=args.layers, checks=False, html=False, threads=args.threads,
                        device="cpu")
        framing, size, channels = Framing(), None, None
        if args.data == "photos":
            folder, settings, framing, size, channels = photo_setup(
                Path(tmp), args.n, args.photos, args.photos_from or _foolbox_photos(), args.net,
                dict(settings, samples="all"))
        else:
            folder = Path(tmp) / "ckpt"
            folder.mkdir()
            for i in range(1, args.n + 1):
                shutil.copy(ASSETS / "fashion_cnn.safetensors", folder / f"epoch_{i}.safetensors")
        template = AuditConfig(model=str(folder / "epoch_1.safetensors"), **settings)
        points = find_checkpoints([str(folder)])
        run_audit(replace(template, samples="20"))  # warm-up, untimed: imports and kernels, for both sides alike
        ratios, cpu_ratios = [], []
        for round_ in range(1, args.repeat + 1):
            started, cpu = time.perf_counter(), time.process_time()
            data = open_data(template.data, samples=template.resolved().samples, seed=0, framing=framing)
            for _ in data.batches(template.batch_size, size=size, channels=channels):
                pass
            load, load_cpu = time.perf_counter() - started, time.process_time() - cpu
            if args.cli:
                flags = _flags(settings)
                commands = [["run", str(point.path), *flags, "--out", str(Path(tmp) / f"single{round_}" / point.name)]
                            for point in points]
                singles, singles_cpu = _processes(commands)
                (whole, whole_cpu), series = _processes([["series", str(folder), *flags, "--out", str(
                    Path(tmp) / f"out{round_}")]]), _read(Path(tmp) / f"out{round_}" / "series.json")
            else:
                started, cpu = time.perf_counter(), time.process_time()
                for point in points:  # as `audit run` does: the audit (its state saved for --resume), its report
                    single = Path(tmp) / f"single{round_}" / point.name
                    write_outputs(run_audit(replace(template, model=str(point.path)),
                                            state_dir=str(single / ".state")), single, html=False)
                singles, singles_cpu = time.perf_counter() - started, time.process_time() - cpu
                started, cpu = time.perf_counter(), time.process_time()
                series, _ = run_series(template, points, Path(tmp) / f"out{round_}", order="number")
                whole, whole_cpu = time.perf_counter() - started, time.process_time() - cpu
            ratios.append(whole / (singles - (args.n - 1) * load))
            cpu_ratios.append(whole_cpu / (singles_cpu - (args.n - 1) * load_cpu))
            what = args.net if args.data == "photos" else args.data
            kinds = "`audit run` processes" if args.cli else "single audits"
            print(f"{args.n} checkpoints ({what}), {len(data)} images: {args.n} {kinds} {singles:.2f} s, "
                  f"series {whole:.2f} s (data opened {series['tool']['data_opened']}x, decoded "
                  f"{series['tool']['data_decoded']}x); one data load {load:.3f} s")
            print(f"  CPU time of {'the processes' if args.cli else 'this process'}: singles {singles_cpu:.2f} s, "
                  f"series {whole_cpu:.2f} s, load {load_cpu:.3f} s")
            print(f"series / ({args.n} audits - {args.n - 1} data loads) = {ratios[-1]:.3f} wall, "
                  f"{cpu_ratios[-1]:.3f} CPU (at most 1: data read once)", flush=True)
    if len(ratios) > 1:
        for kind, values in (("wall", ratios), ("CPU", cpu_ratios)):
            print(f"median {kind} ratio over {len(values)} rounds: {statistics.median(values):.3f} "
                  f"(min {min(values):.3f}, max {max(values):.3f})")


if __name__ == "__main__":
    main()
