"""Benchmark: what the WordNet measures add to an audit (target: < 2% of its time), and the ImageNet-1k hierarchy.

1. An audit of the demo CNN (by default as ``audit demo`` runs it: FGSM, PGD and APGD at four L∞ budgets on the
   300 shipped images, every analysis on), with the WordNet measures
   - on:  every timed hook below is wrapped in a timer, so their own seconds are measured inside the real audit;
   - off: ``audit_synsets`` answers that there is no hierarchy, so every analysis that reads the class mapping
     turns itself off (the hierarchy section says "off", as it does for class names that are no built-in set, and
     the semantic window measures the word vectors only), the same hooks timed;
   interleaved, ``--repeat`` times (the minimum of each kept). Printed: each timed hook's seconds on and off, the
   WordNet measures' own time (the hooks' total on minus off: the hierarchy analysis and the semantic window's
   second space) and its share of the audit's wall time (the precise figure: same runs), and the on/off wall times
   with their difference and every repeat's times (noisy on a shared machine: the spread shows how much).
2. The ImageNet-1k hierarchy from the shipped files: ``load_builtin`` (read and map the 1000 classes),
   ``build_tree``, ``lca_height`` (all 499,500 pairs), and ``wordnet_distance`` (the WordNet target space of
   ``--target-space wordnet``, with its Wu–Palmer tie-break: paid only by audits that ask for it).

Timed hooks: ``audit_synsets`` (the class mapping, once per audit), the hierarchy analysis's ``__init__`` (its
tree and LCA heights), ``on_clean``, ``on_adversarial``, ``export``, ``absorb`` and ``finish``, and the semantic
window's ``build_wordnet_space`` (Wu–Palmer matrix), ``prepared``, ``on_adversarial`` and ``finish``. Add more with
``--time MODULE:QUALNAME`` (e.g. a WordNet semantic space's builder), and options of the audit with ``--option
KEY=VALUE`` (a config file's key and value, for both audits: ``--option semantic_space=both``).

    OMP_NUM_THREADS=2 PYTHONPATH=. .venv/bin/python benchmarks/bench_wordnet.py [--repeat 2] [--threads 2]
        [--model standard|adversarial] [--attack pgd --eps 0.1 --samples 100] [--option KEY=VALUE] [--time M:Q]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import importlib  # noqa: E402
import time  # noqa: E402
import tomllib  # noqa: E402
from collections.abc import Callable  # noqa: E402
from contextlib import contextmanager  # noqa: E402

import torch  # noqa: E402

from audit import AuditConfig, run_audit  # noqa: E402
from audit.demo import MODELS, demo_configs  # noqa: E402

TIMED = [
    "audit.analyses.semantics.wordnet:audit_synsets",
    "audit.analyses.hierarchy.analysis:HierarchyAnalysis.__init__",
    "audit.analyses.hierarchy.analysis:HierarchyAnalysis.on_clean",
    "audit.analyses.hierarchy.analysis:HierarchyAnalysis.on_adversarial",
    "audit.analyses.hierarchy.analysis:HierarchyAnalysis.export",
    "audit.analyses.hierarchy.analysis:HierarchyAnalysis.absorb",
    "audit.analyses.hierarchy.analysis:HierarchyAnalysis.finish",
    # the semantic window: with the WordNet measures on it measures both spaces (the default for classes that map
    # to WordNet), off only the word vectors; the difference of its hooks is the WordNet space's own time
    "audit.analyses.semantics.space:build_wordnet_space",
    "audit.analyses.semantics.analysis:SemanticAnalysis.prepared",
    "audit.analyses.semantics.analysis:SemanticAnalysis.on_adversarial",
    "audit.analyses.semantics.analysis:SemanticAnalysis.finish",
]
OFF = "the WordNet measures are turned off for the benchmark"


@contextmanager
def replaced(target: str, make: Callable[[Callable], Callable]):
    """``MODULE:QUALNAME`` replaced by ``make(original)`` for the duration (the runner looks it up at call time)."""
    module_name, _, qualname = target.partition(":")
    owner = importlib.import_module(module_name)
    *path, name = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
    setattr(owner, name, make(original))
    try:
        yield
    finally:
        setattr(owner, name, original)


def timer(clock: dict[str, float], target: str) -> Callable[[Callable], Callable]:
    def make(original: Callable) -> Callable:
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                clock[target] += time.perf_counter() - start
        return timed
    return make


def audit_on(config: AuditConfig, targets: list[str]) -> tuple[float, dict[str, float], dict]:
    """The audit's wall time with the WordNet measures on, each timed hook's own seconds, and its report."""
    clock = dict.fromkeys(targets, 0.0)
    with contextmanager_chain([replaced(t, timer(clock, t)) for t in targets]):
        start = time.perf_counter()
        result = run_audit(config)
        wall = time.perf_counter() - start
    return wall, clock, result.to_dict()


def audit_off(config: AuditConfig, targets: list[str]) -> tuple[float, dict[str, float], dict]:
    """The same with the WordNet measures off (and the same hooks timed)."""
    with replaced("audit.analyses.semantics.wordnet:audit_synsets", lambda original: lambda *a, **k: OFF):
        return audit_on(config, targets)


@contextmanager
def contextmanager_chain(managers: list):
    if not managers:
        yield
        return
    with managers[0], contextmanager_chain(managers[1:]):
        yield


def imagenet() -> None:
    from audit.analyses.semantics.hierarchy import build_tree, lca_height
    from audit.analyses.semantics.wordnet import load_builtin
    from audit.engine.targets import wordnet_distance

    t0 = time.perf_counter()
    syn = load_builtin("imagenet-1k")
    t1 = time.perf_counter()
    tree = build_tree(syn.graph.hypernyms, [syn.wnids[c] for c in syn.mapped])
    t2 = time.perf_counter()
    lca = lca_height(tree)
    t3 = time.perf_counter()
    wordnet_distance(syn)
    t4 = time.perf_counter()
    n = len(syn.mapped)
    print(f"ImageNet-1k: {n}/{len(syn.classes)} classes mapped, tree of {len(tree.parent)} nodes, height "
          f"{tree.height[tree.root]}, {n * (n - 1) // 2:,} LCA heights (max {lca.max()})")
    print(f"  load_builtin {1000 * (t1 - t0):.0f} ms, build_tree {1000 * (t2 - t1):.0f} ms, lca_height "
          f"{1000 * (t3 - t2):.0f} ms: the hierarchy in {1000 * (t3 - t0):.0f} ms; wordnet_distance (targets "
          f"from WordNet, Wu–Palmer tie-break included) {t4 - t3:.2f} s")


def parsed_option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` under the config file's key; VALUE read as a TOML value (``200``, ``true``), else as text."""
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--option {text!r}: give KEY=VALUE")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return key.strip().replace("-", "_"), parsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="standard")
    parser.add_argument("--attack", action="append", help="attacks (default: the demo's fgsm, pgd, apgd)")
    parser.add_argument("--eps", default="0.05,0.1,0.2,0.3")
    parser.add_argument("--samples", default="all")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--option", action="append", type=parsed_option, default=[],
                        help="KEY=VALUE: a config file key and value for both audits, e.g. semantic_space=both")
    parser.add_argument("--time", action="append", default=[], help="MODULE:QUALNAME: another hook to time")
    parser.add_argument("--skip-imagenet", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.skip_imagenet:
        imagenet()
    config = demo_configs(attacks=args.attack or ["fgsm", "pgd", "apgd"], eps=args.eps, steps=args.steps,
                          samples=args.samples, seed=0)[args.model]
    config = AuditConfig.from_options({**config.effective(), "threads": args.threads, **dict(args.option)})
    config.check()
    targets = TIMED + args.time
    walls_on, walls_off, clocks, clocks_off = [], [], [], []
    for _ in range(args.repeat):  # interleaved, so that a noisy phase of the machine hits both alike
        wall, clock, report = audit_on(config, targets)
        walls_on.append(wall)
        clocks.append(clock)
        wall, clock, off_report = audit_off(config, targets)
        walls_off.append(wall)
        clocks_off.append(clock)
    assert "skipped" not in report["analyses"]["hierarchy"], report["analyses"]["hierarchy"]
    assert off_report["analyses"]["hierarchy"]["skipped"] == OFF
    best = min(range(args.repeat), key=lambda i: walls_on[i])
    best_off = min(range(args.repeat), key=lambda i: walls_off[i])
    on, off, clock, clock_off = walls_on[best], walls_off[best_off], clocks[best], clocks_off[best_off]
    runs = len(report["analyses"]["hierarchy"]["adversarial"])
    print(f"audit: demo {args.model} CNN, {report['clean']['n']} images, {runs} attack runs "
          f"({', '.join(config.attacks)} at {config.eps}), {args.threads} threads, best of {args.repeat}"
          + (f", options {dict(args.option)}" if args.option else ""))
    print(f"  {'hook':42s} {'on':>9s} {'off':>9s}")
    for target, seconds in clock.items():
        print(f"  {target.split(':')[1]:42s} {1000 * seconds:6.1f} ms {1000 * clock_off[target]:6.1f} ms")
    own = sum(clock.values()) - sum(clock_off.values())
    print(f"  the WordNet measures' own time (timed hooks on minus off) {own:.3f} s of the audit's {on:.2f} s: "
          f"{100 * own / on:.2f}% (target < 2%)")
    print(f"  on {on:.2f} s, off {off:.2f} s: difference {on - off:+.2f} s ({100 * (on - off) / off:+.1f}%); every "
          f"repeat on {', '.join(f'{w:.2f}' for w in walls_on)} s, off {', '.join(f'{w:.2f}' for w in walls_off)} s "
          "(the spread is the machine's noise)")


if __name__ == "__main__":
    main()
