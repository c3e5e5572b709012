"""``audit series``: one audit per checkpoint, on the same samples, seed and settings, and series.json.

- :func:`find_checkpoints`: the MODEL arguments (files, folders, globs) to named checkpoints, ordered by the
  numbers in their names (``epoch_2`` before ``epoch_10``) or as given. An empty glob, a name twice, or a name
  without a number under ``--order number``: one AuditError line.
- :func:`check_checkpoints`: every checkpoint is loaded before any audit runs, and must have the first one's
  network (module type, parameter names and shapes: so also its number of classes); a file that does not load or
  differs is named in one AuditError line, and nothing is written.
- :func:`run_series`: the audits, one after the other, sharing the data (:class:`audit.data.shared.SharedData`:
  read and decoded once); each writes its own report into ``OUT/<name>/`` as ``audit run`` does
  (:func:`audit.outputs.write_outputs`); series.json (:mod:`reports.series`) and its review page series.html
  (:mod:`reports.html.series`, rendered from series.json's text; not with ``--no-html``) are written last, all or
  none (:func:`audit.outputs.write_all`, series.json last). An earlier series.json and series.html in OUT are
  removed before the first audit, so those on disk always belong to the reports beside them.

Not yet: resuming a killed series, torchrun.
"""

from __future__ import annotations

import glob
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, UTC
from pathlib import Path

from audit.config import AuditConfig
from audit.errors import AuditError

MODEL_SUFFIXES = (".safetensors", ".pt", ".pth", ".pt2", ".ckpt", ".bin")  # model files in a folder argument
ORDERS = ("number", "given")
NUMBER = re.compile(r"\d+")


@dataclass(frozen=True)
class Checkpoint:
    name: str  # the file's name without its suffix (a folder's own name): OUT/<name>/
    path: Path


def _expand(spec: str) -> list[Path]:
    path = Path(spec).expanduser()
    if path.is_dir():
        from audit.model.huggingface import is_model_folder

        if is_model_folder(path):
            return [path]
        found = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(MODEL_SUFFIXES))
        if not found:
            raise AuditError(f"the folder {spec} holds no model file ({', '.join(MODEL_SUFFIXES)})")
        return found
    if path.exists():
        return [path]
    if glob.has_magic(spec):
        found = sorted(Path(p) for p in glob.glob(os.path.expanduser(spec)))
        if not found:
            raise AuditError(f"no checkpoint matches {spec}: check the pattern (quote it so the shell passes it on)")
        return found
    raise AuditError(f"model file {spec} does not exist; check the path")


def _name(path: Path) -> str:
    for suffix in MODEL_SUFFIXES:
        if path.name.endswith(suffix) and path.name != suffix:
            return path.name[: -len(suffix)]
    return path.name


def find_checkpoints(specs: list[str], order: str = "number") -> list[Checkpoint]:
    """The checkpoints the MODEL arguments name, in the series' order (see the module docstring)."""
    if order not in ORDERS:
        raise AuditError(f"--order must be number or given, got {order!r}")
    if not specs:
        raise AuditError("no MODEL given: name the checkpoints (files, a folder, or a glob like "
                         "'ckpt/epoch_*.safetensors')")
    points = [Checkpoint(_name(p), p) for spec in specs for p in _expand(spec)]
    seen: dict[str, Path] = {}
    for point in points:
        if point.name in seen:
            raise AuditError(f"two checkpoints are named {point.name} ({seen[point.name]} and {point.path}): each "
                             "gets OUT/<name>/, so names must differ; rename one")
        seen[point.name] = point.path
    if order == "number":
        missing = [p.name for p in points if not NUMBER.search(p.name)]
        if missing:
            raise AuditError(f"cannot order the checkpoints by the number in their names: {missing[0]} has none; "
                             "use --order given to keep the order of the arguments")
        points.sort(key=lambda p: (tuple(int(n) for n in NUMBER.findall(p.name)), p.name))
    return points


def _signature(module) -> tuple[str, dict[str, tuple[int, ...]]]:
    kind = f"{type(module).__module__}.{type(module).__qualname__}"
    return kind, {key: tuple(value.shape) for key, value in module.state_dict().items()}


def check_checkpoints(points: list[Checkpoint], config: AuditConfig) -> dict[str, str]:
    """Load every checkpoint and check it has the first one's network; returns each checkpoint's sha256."""
    from audit.model import load_model
    from audit.options import parse_arch_kwargs

    first, hashes = None, {}
    for point in points:
        try:
            loaded = load_model(point.path, arch=config.arch, arch_kwargs=parse_arch_kwargs(config.arch_kwargs),
                                trust_model=config.trust_model, weights_meta=config.weights_meta)
        except AuditError as exc:
            text = str(exc)
            raise AuditError(text if str(point.path) in text else f"{point.path}: {text}") from None
        hashes[point.name] = loaded.sha256
        kind, shapes = _signature(loaded.module)
        if first is None:
            first = point, kind, shapes
            continue
        base, base_kind, base_shapes = first
        if kind != base_kind:
            raise AuditError(f"{point.path} is a {kind}, but {base.path} is a {base_kind}: a series audits "
                             "checkpoints of one architecture")
        if shapes != base_shapes:
            raise AuditError(f"{point.path} has another network than {base.path} ({_difference(base_shapes, shapes)})"
                             ": a series audits checkpoints of one architecture with the same classes")
    return hashes


def _difference(base: dict, new: dict) -> str:
    for key in base:
        if key not in new:
            return f"no parameter {key}"
        if base[key] != new[key]:
            return (f"{key} has shape {list(new[key])} where the first has {list(base[key])}: a different "
                    "architecture or number of classes")
    extra = next(key for key in new if key not in base)
    return f"an extra parameter {extra}"


@dataclass
class Audited:
    """One checkpoint's audit: its report dict and where it was written."""

    checkpoint: Checkpoint
    report: dict
    seconds: float


def run_series(template: AuditConfig, points: list[Checkpoint], out: Path, *, order: str,
               select: str | None = None, gate_on: str = "last", alpha: float = 0.05,
               progress: Callable[[str], object] | None = None,
               done: Callable[[int, int, Audited], None] | None = None) -> tuple[dict, list[Audited]]:
    """Audit every checkpoint with ``template``'s settings (its ``model`` and ``out`` replaced), write each
    report into ``out/<name>/`` and series.json (with series.html unless ``template.html`` is off) into ``out``;
    returns the series document and the audits.

    ``progress(name)``: a context manager giving the runner's progress reporter for one checkpoint; ``done``
    is called after each checkpoint's report is written (index from 1, total, the audit)."""
    from contextlib import nullcontext

    from audit.data.shared import SharedData
    from audit.engine.runner import run_audit
    from audit.outputs import write_all, write_outputs
    from audit.version import __version__
    from reports.series import GATE_ON, build_series, check_select

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise AuditError("audit series does not run under torchrun yet: run it as one process")
    if gate_on not in GATE_ON:
        raise AuditError(f"--gate-on must be last or selected, got {gate_on!r}")
    if gate_on == "selected" and not select:
        raise AuditError("--gate-on selected needs --select METRIC: it names the checkpoint the gates apply to")
    if select:
        check_select(select)
    template.check()
    check_checkpoints(points, template)
    for stale in ("series.json", "series.html"):
        (out / stale).unlink(missing_ok=True)
    shared = SharedData()
    audits: list[Audited] = []
    for i, point in enumerate(points, 1):
        config = replace(template, model=str(point.path), out=str(out / point.name), resume=False)
        started = time.perf_counter()
        with (progress(point.name) if progress else nullcontext(None)) as reporter:
            result = run_audit(config, progress=reporter, state_dir=str(out / point.name / ".state"), shared=shared)
        write_outputs(result, out / point.name, export=config.export_representations, html=config.html)
        report = result.to_dict()
        if select and i == 1:
            check_select(select, report)
        audits.append(Audited(point, report, time.perf_counter() - started))
        if done:
            done(i, len(points), audits[-1])
    named = [(a.checkpoint.name, str(a.checkpoint.path), a.report) for a in audits]
    series = build_series(named, order=order, alpha=alpha, select_metric=select, gate_on=gate_on,
                          tool={"name": "robustness-audit", "version": __version__,
                                "data_opened": shared.opened, "data_decoded": shared.decoded},
                          created=datetime.now(UTC).isoformat(timespec="seconds"))
    files: dict[Path, str] = {}
    if template.junit is not None:
        from reports.junit import junit_xml

        gated = next(a.report for a in audits if a.checkpoint.name == series["gates"]["checkpoint"])
        files[Path(template.junit)] = junit_xml(gated)
    import json

    text = json.dumps(series, indent=2, allow_nan=False) + "\n"
    if template.html:
        from reports.html import render_series_html

        files[out / "series.html"] = render_series_html(json.loads(text))
    files[out / "series.json"] = text
    write_all(files)
    return series, audits
