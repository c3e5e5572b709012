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

from audit.engine.distributed import World
from audit.errors import AuditError
from audit.engine.state import StateDir, fingerprint

# settings that do not change any number of the report
NOT_NUMBERS = {"resume", "threads", "label", "config", "out", "html", "junit", "export_representations"}


def audit_fingerprint(config, sha256: str, data, world: World) -> dict:
    settings = {f"--{k.replace('_', '-')}": v for k, v in config.effective().items() if k not in NOT_NUMBERS}
    chosen = hashlib.sha256(data.chosen.tobytes()).hexdigest()
    return fingerprint({"model": sha256, "data": [data.source, data.format, chosen], **settings,
                        "world size": world.size})


class Execution:
    """Runs the pre-pass and the attacking pass of ``run`` (a runner ``_Pass``) over ``data``'s batches."""

    def __init__(self, run, data, batch_args: dict, world: World, state: StateDir | None, fp: dict,
                 resume: bool, progress):
        self.run, self.data, self.batch_args, self.world = run, data, batch_args, world
        self.state, self.fp, self.progress = state, fp, progress
        self.saved = None
        if resume:
            if state is None or not state.exists():
                raise AuditError("--resume: no saved state of an interrupted audit in this output folder")
            self.saved = state.load(fp)
        self.done: set[int] = set(self.saved["completed"]) if self.saved else set()
        self.prepass_state = self.saved["prepass"] if self.saved else None

    def _batches(self):
        return self.data.batches(**self.batch_args)

    def _save(self) -> None:
        if self.state is not None:
            self.state.save(self.fp, {"completed": sorted(self.done), "prepass": self.prepass_state,
                                      "pass": self.run.export()})

    def prepass(self, observers: list) -> None:
        """The clean pre-pass: each rank its batches, then everyone's sums added up on every rank."""
        if self.prepass_state is None:
            error = None
            try:
                for k, batch in enumerate(self._batches()):
                    if self.world.mine(k):
                        self.run.prepare(batch.x, batch.y)
            except AuditError as exc:
                error = str(exc)
            self.world.sync(error)
            parts = self.world.gather(self.run.analyses.export("prepass"))
            self.run.analyses.reset_prepass()
            for part in parts:
                self.run.analyses.absorb("prepass", part)
            self.prepass_state = self.run.analyses.export("prepass")
        else:
            self.run.analyses.absorb("prepass", self.prepass_state)
        for observer in observers:
            observer.prepared()
        self._save()

    def attack(self, first, rest) -> None:
        """The attacking pass over ``first`` and the ``rest`` of the batches; afterwards rank 0 holds the sums
        of every rank."""
        if self.saved:
            self.run.absorb(self.saved["pass"])
        self.progress.start(len(self.data))
        error = None
        try:
            for k, batch in enumerate(_chain(first, rest)):
                if self.world.mine(k) and k not in self.done:
                    self.run.batch(batch.x, batch.y)
                    self.done.add(k)
                    self._save()
                self.run.seen += len(batch.y)
                self.progress.advance(len(batch.y))
        except AuditError as exc:
            error = str(exc)
        self.world.sync(error)
        parts = self.world.gather(self.run.export() if self.world.rank else None)
        if self.world.rank == 0:
            for part in parts[1:]:
                self.run.absorb(part)

    def finished(self) -> None:
        if self.state is not None and self.world.rank == 0:
            self.state.remove()


def _chain(first, rest):
    yield first
    yield from rest
