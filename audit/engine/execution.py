"""How the passes over the data are executed: split over the ranks of a distributed run, saved after every
completed batch for ``--resume``, and added up at the end.

Every rank iterates the same batches in the same order (so each knows every batch's position, which seeds its
attacks), but audits only its own: batches r, r+R, r+2R, ... A rank's sums are exported as plain data
(``export``) after every batch it completes, with the completed batch numbers, under ``OUT/.state/``; a resumed
rank absorbs its saved sums and skips the batches already done. At the end the ranks gather their sums and
rank 0 adds them up in rank order: counts are then identical to a single process's; float sums agree up to the
order of summation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator

from audit.engine.audit_pass import AuditPass
from audit.engine.distributed import World
from audit.engine.state import StateDir, fingerprint
from audit.errors import AuditError

# settings that do not change any number of the report
NOT_NUMBERS = {"resume", "threads", "label", "config", "out", "html", "junit", "export_representations"}


def audit_fingerprint(settings: dict, sha256: str, data, world: World, preprocessing: dict | None = None,
                      synsets: tuple | None = None) -> dict:
    """What determines the numbers of an audit: the model file, the data and its chosen samples, every setting
    (``AuditConfig.effective()``) that changes a number, the world size, the preprocessing as settled
    (``model.preprocessing``: a model config, such as a Hugging Face folder's preprocessor_config.json, is not
    part of the model's digest), and the classes' synsets (a ``--class-synsets`` file's content is not part of
    the settings: its path is)."""
    options = {f"--{k.replace('_', '-')}": v for k, v in settings.items() if k not in NOT_NUMBERS}
    chosen = hashlib.sha256(data.chosen.tobytes()).hexdigest()
    extra = {} if preprocessing is None else {"preprocessing": preprocessing}
    if synsets is not None:
        extra["synsets"] = list(synsets)
    return fingerprint({"model": sha256, "data": [data.source, data.format, chosen], **options,
                        "world size": world.size, **extra})


class Execution:
    """Runs the pre-pass and the attacking pass of an :class:`AuditPass` over the batches ``batches()`` yields
    (each with ``x`` and ``y``), ``total`` samples in all."""

    def __init__(self, audit_pass: AuditPass, batches: Callable[[], Iterator], total: int, world: World,
                 state: StateDir | None, fp: dict, resume: bool, progress):
        self.audit_pass, self.batches, self.total, self.world = audit_pass, batches, total, world
        self.state, self.fp, self.progress = state, fp, progress
        self.saved = None
        if world.size > 1:
            audit_pass.suite.refuse_unmergeable(f"a distributed run ({world.size} processes)")
        if state is not None:
            audit_pass.suite.refuse_unmergeable("saving the state for --resume")
        if resume:
            if state is None or not state.exists():
                raise AuditError("--resume: no saved state of an interrupted audit in this output folder")
            self.saved = state.load(fp)
        self.done: set[int] = set(self.saved["completed"]) if self.saved else set()
        self.prepass_state = self.saved["prepass"] if self.saved else None

    def _save(self) -> None:
        if self.state is not None:
            self.state.save(self.fp, {"completed": sorted(self.done), "prepass": self.prepass_state,
                                      "pass": self.audit_pass.export()})

    def prepass(self) -> None:
        """The clean pre-pass: each rank its batches, then everyone's sums added up on every rank."""
        suite = self.audit_pass.suite
        if self.prepass_state is None:
            error = None
            try:
                for k, offset, batch in _positions(self.batches()):
                    if self.world.mine(k):
                        self.audit_pass.prepare(batch.x, batch.y, offset)
            except AuditError as exc:
                error = str(exc)
            self.world.sync(error)
            parts = self.world.gather(suite.export("prepass"))
            suite.reset_prepass()
            for part in parts:
                suite.absorb("prepass", part)
            self.prepass_state = suite.export("prepass")
        else:
            suite.absorb("prepass", self.prepass_state)
        suite.prepared()
        self._save()

    def attack(self, first, rest: Iterable) -> None:
        """The attacking pass over ``first`` and the ``rest`` of the batches; afterwards rank 0 holds the sums
        of every rank."""
        if self.saved:
            self.audit_pass.absorb(self.saved["pass"])
        self.progress.start(self.total)
        error = None
        try:
            for k, offset, batch in _positions(_chain(first, rest)):
                if self.world.mine(k) and k not in self.done:
                    self.audit_pass.batch(batch.x, batch.y, offset)
                    self.done.add(k)
                    self._save()
                self.progress.advance(len(batch.y))
        except AuditError as exc:
            error = str(exc)
        self.world.sync(error)
        parts = self.world.gather(self.audit_pass.export() if self.world.rank else None)
        if self.world.rank == 0:
            for part in parts[1:]:
                self.audit_pass.absorb(part)

    def finished(self) -> None:
        if self.state is not None and self.world.rank == 0:
            self.state.remove()


def _positions(batches: Iterable):
    """(batch number, position of its first sample, batch) for each batch."""
    offset = 0
    for k, batch in enumerate(batches):
        yield k, offset, batch
        offset += len(batch.y)


def _chain(first, rest):
    yield first
    yield from rest
