"""``audit series``: one audit per checkpoint, on the same samples, seed and settings, and series.json.

- :func:`find_checkpoints`: the MODEL arguments (files, folders, globs) to named checkpoints, ordered by the
  numbers in their names (``epoch_2`` before ``epoch_10``) or as given. An empty glob, a name twice, or a name
  without a number under ``--order number``: one AuditError line.
- :func:`check_checkpoints`: before any audit runs, every checkpoint must have the first one's network (module
  type, parameter names and shapes: so also its number of classes), read from ``.safetensors`` headers where they
  tell; a file that does not load or differs is named in one AuditError line, and nothing is written.
- :func:`run_series`: the audits, one after the other, sharing the data (:class:`audit.data.shared.SharedData`:
  read and decoded once); each writes its own report into ``OUT/<name>/`` as ``audit run`` does
  (:func:`audit.outputs.write_outputs`); series.json (:mod:`reports.series`) and its review page series.html
  (:mod:`reports.html.series`, rendered from series.json's text; not with ``--no-html``) are written last, all or
  none (:func:`audit.outputs.write_all`, series.json last). An earlier series.json and series.html in OUT are
  removed before the first audit, so those on disk always belong to the reports beside them.
- ``--resume`` (:class:`SeriesState`): ``OUT/.series-state.json`` holds a fingerprint of every setting that
  changes a number (as an audit's saved state does, :func:`audit.engine.execution.audit_fingerprint`) and, per
  finished checkpoint, its checkpoint's sha256, the sha256 of its report.json and the fingerprint of the samples
  it audited. A resumed series keeps a report only when all three still hold (a changed checkpoint or report is
  audited again, and so is a kept report whose samples differ from the ones this run decodes: the data changed
  meanwhile); the checkpoint with a saved state in ``OUT/<name>/.state/`` continues from it as ``audit run
  --resume`` does; the rest run. The file is removed once series.json is written, and when bad input stops a
  series (not a resumed one) before any report was written: nothing to resume, or a state of other settings, is
  one AuditError line.
- Under torchrun every rank runs :func:`run_series`: each checkpoint's batches are split over the ranks as in a
  single audit (:mod:`audit.engine.execution`), rank 0 decides what a resume keeps (the other ranks follow it),
  writes every report, the series state and series.json.
"""

from __future__ import annotations

import glob
import hashlib
import json
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
STATE_FILE = ".series-state.json"  # what an unfinished series has done, for --resume
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


def check_checkpoints(points: list[Checkpoint], config: AuditConfig) -> None:
    """Check every checkpoint has the first one's network before any audit runs.

    ``.safetensors`` checkpoints whose headers (their tensors' names and shapes, read without the tensors) all
    equal the first one's load into the same network, so only their headers are read: the first audit loads the
    first checkpoint, and one that does not load stops the series there with one line and nothing written.
    Otherwise the first checkpoint is loaded as the audit loads it, and so is every checkpoint that is no
    ``.safetensors`` or whose header differs; each is compared with the first by its network (module type,
    parameter names and shapes), so that a difference is named. A tensor whose bytes are damaged behind a sound
    header is found when that checkpoint's audit loads it (the reports before it stay, and ``--resume``
    continues)."""
    headers = [_header(point.path) for point in points]
    if headers[0] is not None and all(header == headers[0] for header in headers):
        return
    first = None
    for point, header in zip(points, headers, strict=True):
        if first is not None and header is not None and header == headers[0]:
            continue
        kind, shapes = _signature(_load(point, config).module)
        if first is None:
            first = (point, kind, shapes)
            continue
        base, base_kind, base_shapes = first
        if kind != base_kind:
            raise AuditError(f"{point.path} is a {kind}, but {base.path} is a {base_kind}: a series audits "
                             "checkpoints of one architecture")
        if shapes != base_shapes:
            raise AuditError(f"{point.path} has another network than {base.path} ({_difference(base_shapes, shapes)})"
                             ": a series audits checkpoints of one architecture with the same classes")


def checkpoint_digests(points: list[Checkpoint], config: AuditConfig) -> dict[str, str]:
    """Each checkpoint's sha256 as its report's ``model.sha256`` gives it (for ``--resume``): a file's own sha256;
    a model folder's digest from its load."""
    from audit.model.loading import file_sha256

    return {point.name: _load(point, config).sha256 if point.path.is_dir() else file_sha256(point.path)
            for point in points}


def _load(point: Checkpoint, config: AuditConfig):
    """The checkpoint loaded as its audit loads it; a failure is one AuditError line naming the file."""
    from audit.model import load_model
    from audit.options import parse_arch_kwargs

    try:
        return load_model(point.path, arch=config.arch, arch_kwargs=parse_arch_kwargs(config.arch_kwargs),
                          trust_model=config.trust_model, weights_meta=config.weights_meta)
    except AuditError as exc:
        raise _naming(exc, point.path) from None


def _naming(exc: AuditError, path, doing: str = "") -> AuditError:
    """``exc``'s line, led by the checkpoint's file unless it names it already."""
    text = str(exc)
    return AuditError(text if str(path) in text else f"{doing}{path}: {text}")


def _header(path: Path) -> dict[str, tuple[int, ...]] | None:
    """A ``.safetensors`` file's tensor names and shapes from its header (no tensor read); None for another
    file or one whose header cannot be read (the full load then says what is wrong)."""
    if Path(path).suffix != ".safetensors":
        return None
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}  # noqa: SIM118 (not a dict)
    except (OSError, SafetensorError):
        return None


def _difference(base: dict, new: dict) -> str:
    for key in base:
        if key not in new:
            return f"no parameter {key}"
        if base[key] != new[key]:
            return (f"{key} has shape {list(new[key])} where the first has {list(base[key])}: a different "
                    "architecture or number of classes")
    extra = next(key for key in new if key not in base)
    return f"an extra parameter {extra}"


class SeriesState:
    """What a series has finished, for ``--resume``: ``OUT/.series-state.json`` (see the module docstring)."""

    FORMAT = 1

    def __init__(self, out: Path, template: AuditConfig):
        from audit.engine.execution import NOT_NUMBERS
        from audit.engine.state import fingerprint

        self.out, self.path = out, out / STATE_FILE
        self.fingerprint = fingerprint({f"--{k.replace('_', '-')}": v for k, v in template.effective().items()
                                        if k not in NOT_NUMBERS | {"model"}})
        self.records: dict[str, dict] = {}

    def save(self) -> None:
        from reports.schema import write_atomic

        write_atomic(self.path, json.dumps({"format": self.FORMAT, "fingerprint": self.fingerprint,
                                            "checkpoints": self.records}, indent=1))

    def record(self, name: str, sha256: str, report_path: Path, report: dict) -> None:
        """A checkpoint's report is written: remember its checkpoint, its file and its samples."""
        self.records[name] = {"sha256": sha256, "report": _digest(report_path),
                              "sample": report["data"]["sample"]["fingerprint"]}
        self.save()

    def plan(self, points: list[Checkpoint], hashes: dict[str, str]) -> tuple[dict[str, dict], set[str]]:
        """For --resume: the reports kept (name -> report dict) and the checkpoints resumed from their state."""
        where = f"--resume: {self.path}"
        if not self.path.exists():
            raise AuditError(f"--resume: no saved state of an interrupted series in {self.out} (a finished "
                             "series leaves none): start without --resume")
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
            if saved.get("format") != self.FORMAT:
                raise ValueError(f"unknown format {saved.get('format')!r}")
            differs = [k for k in sorted(set(self.fingerprint) | set(saved["fingerprint"]))
                       if self.fingerprint.get(k) != saved["fingerprint"].get(k)]
            records = {str(k): dict(v) for k, v in saved["checkpoints"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            raise AuditError(f"{where} is unreadable ({detail}): start without --resume") from None
        if differs:
            raise AuditError(f"{where} belongs to another series: {', '.join(differs)} differ; rerun with the "
                             "same settings, or start without --resume")
        kept, resumed = {}, set()
        for point in points:
            record, report = records.get(point.name), self.out / point.name / "report.json"
            if (record and record.get("sha256") == hashes[point.name] and report.is_file()
                    and record.get("report") == _digest(report)):
                try:
                    kept[point.name] = json.loads(report.read_text(encoding="utf-8"))
                    self.records[point.name] = record
                    continue
                except ValueError:
                    pass
            if (self.out / point.name / ".state" / "rank0.json").exists():
                resumed.add(point.name)
        return kept, resumed

    def stale(self, kept: dict[str, dict], fresh: set[str]) -> list[str]:
        """The kept reports whose samples differ from those this run decoded (the data changed meanwhile)."""
        if len(fresh) != 1:
            return []
        return [name for name in kept if self.records[name]["sample"] not in fresh]

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Audited:
    """One checkpoint's audit: its report dict and where it was written."""

    checkpoint: Checkpoint
    report: dict
    seconds: float
    how: str | None = None  # with --resume: "kept" (its report from before), "resumed" (from its saved state)


def run_series(template: AuditConfig, points: list[Checkpoint], out: Path, *, order: str,
               select: str | None = None, gate_on: str = "last", alpha: float = 0.05,
               resume: bool = False, progress: Callable[[str], object] | None = None,
               done: Callable[[int, int, Audited], None] | None = None) -> tuple[dict | None, list[Audited]]:
    """Audit every checkpoint with ``template``'s settings (its ``model`` and ``out`` replaced), write each
    report into ``out/<name>/`` and series.json (with series.html unless ``template.html`` is off) into ``out``;
    returns the series document and the audits.

    ``progress(name)``: a context manager giving the runner's progress reporter for one checkpoint; ``done``
    is called after each checkpoint's report is written (index from 1, total, the audit). ``resume``: continue
    the interrupted series in ``out`` (see the module docstring). Under torchrun every rank calls this; rank 0
    writes and returns what it returns, the other ranks return (None, [])."""
    from contextlib import nullcontext

    from audit.data.shared import SharedData
    from audit.engine.distributed import world as distributed_world
    from audit.engine.runner import run_audit
    from audit.outputs import write_all, write_outputs
    from audit.version import __version__
    from reports.series import GATE_ON, build_series, check_select

    if gate_on not in GATE_ON:
        raise AuditError(f"--gate-on must be last or selected, got {gate_on!r}")
    if gate_on == "selected" and not select:
        raise AuditError("--gate-on selected needs --select METRIC: it names the checkpoint the gates apply to")
    if select:
        check_select(select)
    template.check()
    world = distributed_world(template.device)
    check_checkpoints(points, template)
    state = SeriesState(out, template)
    kept: dict[str, dict] = {}
    plan = None
    if world.rank == 0:
        try:
            kept, resumed = state.plan(points, checkpoint_digests(points, template)) if resume else ({}, set())
            plan = {"kept": set(kept), "resume": resumed}
        except AuditError as exc:
            plan = str(exc)
    plan = world.gather(plan)[0]  # every rank follows rank 0's reading of OUT
    if isinstance(plan, str):  # rank 0's refusal, raised on every rank
        raise AuditError(plan)
    fresh_out = not out.exists()
    if world.rank == 0:
        for stale in ("series.json", "series.html"):
            (out / stale).unlink(missing_ok=True)
        state.save()
    shared = SharedData()
    done_by_name: dict[str, Audited] = {}
    checked = False

    def run(config: AuditConfig, **kwargs):
        """One checkpoint's audit; its bad input names the checkpoint's file."""
        try:
            return run_audit(config, state_dir=str(Path(config.out) / ".state"), shared=shared, **kwargs)
        except AuditError as exc:
            raise _naming(exc, config.model, "auditing ") from None

    def audit(i: int, point: Checkpoint) -> None:
        config = replace(template, model=str(point.path), out=str(out / point.name),
                         resume=point.name in plan["resume"])
        started = time.perf_counter()
        if world.rank:  # another rank of a torchrun: its share of the batches, quietly; rank 0 writes
            run(config)
            return
        with (progress(point.name) if progress else nullcontext(None)) as reporter:
            result = run(config, progress=reporter)
        path = write_outputs(result, out / point.name, export=config.export_representations, html=config.html)
        report = result.to_dict()
        state.record(point.name, report["model"]["sha256"], path, report)
        finish(i, point, report, time.perf_counter() - started, "resumed" if config.resume else None)

    def finish(i: int, point: Checkpoint, report: dict, seconds: float, how: str | None) -> None:
        nonlocal checked
        if select and not checked:
            check_select(select, report)
            checked = True
        done_by_name[point.name] = Audited(point, report, seconds, how)
        if done:
            done(i, len(points), done_by_name[point.name])

    try:
        for i, point in enumerate(points, 1):
            if point.name in plan["kept"]:
                if world.rank == 0:
                    finish(i, point, kept[point.name], 0.0, "kept")
                continue
            audit(i, point)
        # a kept report saw the data as it was then: one whose samples differ from what this run decoded is redone
        fresh = {a.report["data"]["sample"]["fingerprint"] for a in done_by_name.values() if a.how != "kept"}
        stale = world.gather(state.stale(kept, fresh) if world.rank == 0 else None)[0]
        for i, point in enumerate(points, 1):
            if point.name in stale:
                plan["resume"].discard(point.name)
                audit(i, point)
    except AuditError as exc:
        if world.rank == 0 and not resume and not state.records:  # bad input before any report: leave nothing
            state.remove()
            if fresh_out and not any(out.iterdir()):
                out.rmdir()
        if state.records:
            raise AuditError(f"{exc} (the reports of the {len(state.records)} checkpoint(s) before it stay in {out}: "
                             "fix this and rerun with --resume to continue)") from None
        raise
    if world.rank:
        return None, []
    audits = [done_by_name[p.name] for p in points]
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
    text = json.dumps(series, indent=2, allow_nan=False) + "\n"
    if template.html:
        from reports.html import render_series_html

        files[out / "series.html"] = render_series_html(json.loads(text))
    files[out / "series.json"] = text
    write_all(files)
    state.remove()  # the series is whole: nothing left to resume
    return series, audits
