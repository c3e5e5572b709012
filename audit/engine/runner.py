"""The audit pipeline: load, probe, choose layers and analyses, then one pass over the data in which every
attack and every analysis sees the same clean and adversarial batches, then the result.

The parts: :mod:`audit.engine.plan` (attacks x budgets), :mod:`audit.engine.audit_pass` (what one batch does),
:mod:`audit.engine.execution` (ranks, saved state, resume), :mod:`audit.engine.result` (the result object).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Protocol

import torch

from audit.analyses.base import Analysis
from audit.analyses.suite import AnalysisContext, build_suite, choose_layers
from audit.config import AuditConfig
from audit.data import Framing, open_data
from audit.data.shared import SharedData
from audit.engine.audit_pass import AuditPass, PassSettings
from audit.engine.distributed import world as distributed_world
from audit.engine.execution import Execution, audit_fingerprint
from audit.engine.plan import plan_attacks
from audit.engine.preprocessing import finish_classes, finish_size, settle
from audit.engine.result import Audited, assemble, conclude
from audit.engine.state import StateDir
from audit.engine.targets import SEMANTIC_TARGETS, target_distance
from audit.errors import AuditError
from audit.options import fit_stats, this_placement
from audit.data.labels import align_labels, imagenet_names_for
from audit.model import AuditedModel, declared_size, eval_mode, expected_channels, load_model, probe
from reports.schema import AuditResult


class Progress(Protocol):
    def stage(self, text: str) -> None: ...

    def start(self, total: int) -> None: ...

    def advance(self, n: int) -> None: ...


class _Silent:
    def stage(self, text: str) -> None:
        pass

    def start(self, total: int) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


def run_audit(
    config: AuditConfig, *, progress: Progress | None = None, analyses: list[Analysis] | None = None,
    state_dir: str | None = None, shared: SharedData | None = None,
) -> AuditResult | None:
    """Run a whole audit and return its result object (no report is written here).

    ``analyses``: analyses of your own (subclasses of :class:`audit.analyses.base.Analysis`), run beside the
    registered ones on the same pass. With ``state_dir`` the audit saves its state there after every completed
    batch (``config.resume`` continues from it). With ``shared`` (an
    :class:`audit.data.shared.SharedData`), the data is opened and decoded once for every audit given the same
    one (``audit series``); the result is the same as without it. Under torchrun every rank runs this; rank 0 returns the result
    of the whole run, the other ranks None.

    The audit seeds torch's generators (and building a network from ``--arch`` draws from them); the
    caller's random state is restored afterwards.
    """
    with torch.random.fork_rng(devices=_cuda_devices(config.device)):
        return _run_audit(config, progress or _Silent(), list(analyses or []), state_dir, shared)


def _cuda_devices(device: str) -> list[int]:
    """The CUDA devices whose random state the audit forks: only the one it runs on (forking a device creates a
    CUDA context on it, which under torchrun would put every rank on every GPU); none on the CPU."""
    if not torch.cuda.is_available():
        return []
    try:
        where = this_placement(device)
    except AuditError:
        return []  # the audit refuses the device itself, with its own line
    if not where.device.startswith("cuda"):
        return []
    return [where.gpu if where.gpu is not None else torch.cuda.current_device()]


def _run_audit(config: AuditConfig, progress: Progress, user: list[Analysis], state_dir: str | None,
               shared: SharedData | None) -> AuditResult | None:
    world = distributed_world(config.device)
    started = time.perf_counter()
    opts = config.resolved()
    plans = plan_attacks(config.attacks, opts.eps, config.targeted)
    runs = [run for plan in plans for run in plan]
    device = opts.device

    progress.stage("loading the model")
    loaded = load_model(config.model, arch=config.arch, arch_kwargs=opts.arch_kwargs, trust_model=config.trust_model,
                        weights_meta=config.weights_meta)
    settled = settle(opts, config.interpolation, loaded.declared)
    progress.stage("reading the data")
    framing = Framing(settled.resize, settled.crop, settled.interpolation)
    data = (shared.open if shared else open_data)(config.data, samples=opts.samples, seed=config.seed,
                                                  framing=framing)
    if len(data) == 0:
        raise AuditError(f"no samples to audit in {config.data}")
    channels = config.channels or expected_channels(loaded.module) or data.native_channels
    size = data.input_size(settled.input_size, declared_size(loaded.module))
    finish_size(settled, size, data.native_size)
    mean = fit_stats(settled.mean, channels, _named("--mean", settled, "mean"))
    std = fit_stats(settled.std, channels, _named("--std", settled, "std"))
    opts.check_budgets(channels, size)
    audited = AuditedModel(loaded.module, mean, std, config.output_key).to(device)
    load_s = time.perf_counter() - started

    with _threads(config.threads), eval_mode(audited):
        batches = data.batches(config.batch_size, size=size, channels=channels)
        first = next(batches, None)
        if first is None:
            raise AuditError(f"none of the {len(data)} chosen samples in {config.data} could be read")
        given = settled.classes
        probed = probe(audited, first.x[:8].to(device), len(given) if given else None,
                       _named("--classes", settled, "classes"))
        names = given
        if not names:
            indices = [str(c) for c in range(probed.num_outputs)]
            names, source = next((found, where) for found, where in (
                (imagenet_names_for(data.classes, probed.num_outputs), "data (ImageNet-1k names of its wnid folders)"),
                (data.classes, "data"), (indices, "default (output indices)")) if found)
            finish_classes(settled, names, source)
        if len(names) != probed.num_outputs:
            raise AuditError(
                f"the model has {probed.num_outputs} outputs but the data names {len(names)} classes: "
                "give the model's class names with --classes"
            )
        relabel = align_labels(data.classes, names, data.labels)
        chosen = choose_layers(opts.layers, audited, first.x[:2].to(device))
        layers = chosen.names
        space = None
        if layers or (config.targeted in SEMANTIC_TARGETS and config.target_space == "glove"):
            from audit.analyses.semantics.space import build_word_space

            space = build_word_space(names, config.embeddings, config.class_words)
        from audit.analyses.semantics.wordnet import audit_synsets

        synsets = audit_synsets(names, config.class_synsets, config.wordnet)
        distance = target_distance(config.targeted, config.target_space, space, synsets)
        suite = build_suite(AnalysisContext(config, names, layers, runs, space, synsets), user, chosen)
        preprocessing = settled.report()  # settled: every value, the class names included, is decided
        settings = PassSettings(seed=config.seed, targeted=config.targeted, steps=config.steps, budgets=opts.eps,
                                confidence=config.confidence)
        audit_pass = AuditPass(settings, audited, device, plans, names, relabel, suite, distance)
        execution = Execution(
            audit_pass, lambda: data.batches(config.batch_size, size=size, channels=channels), len(data), world,
            StateDir(state_dir, world.rank) if state_dir else None,
            audit_fingerprint(config.effective(), loaded.sha256, data, world, preprocessing,
                              None if isinstance(synsets, str) else synsets.wnids), config.resume, progress)
        if suite.prepass:
            progress.stage("clean pre-pass (class representations)")
            execution.prepass()
        progress.stage("attacking")
        execution.attack(first, batches)
        if world.rank:
            return None  # the sums went to rank 0, which writes the report
        checks = []
        if config.checks:
            progress.stage("validity checks")
            checks = audit_pass.validity_checks()

    measured = Audited(config=config, options=opts, loaded=loaded, probed=probed, data=data, audit_pass=audit_pass,
                       suite=suite, names=names, input_shape=(channels, size[0], size[1]), mean=mean, std=std,
                       preprocessing=preprocessing,
                       device=device, load_s=load_s, total_s=time.perf_counter() - started)
    result = conclude(assemble(measured), measured, checks)
    if world.active:
        result.environment.update(world.describe())
    execution.finished()
    return result


def _named(flag: str, settled, key: str) -> str:
    """How a message names a value: its flag, or the model config it came from."""
    source = settled.sources.get(key, "")
    return flag if source in ("", "flag") else f"the {key} of the {source}"


@contextmanager
def _threads(count: int | None):
    """Use ``count`` CPU threads for the audit (None: torch's default), and restore the caller's setting."""
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
