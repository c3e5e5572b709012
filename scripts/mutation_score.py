"""Print the mutation score of the last `mutmut run` (see `make mutation`): killed / checked per file and in all,
and the names of the mutants that survived or timed out (`mutmut show NAME` prints one's diff).

Usage: python scripts/mutation_score.py [GLOB ...]   (mutant-name globs, as given to `mutmut run`)
"""

from __future__ import annotations

import fnmatch
import json
import sys
from collections import Counter
from pathlib import Path

# mutmut 3's exit codes of a mutant's test run (mutmut/stats.py)
KILLED = {1, 3}
SURVIVED = {0}
TIMEOUT = {36, 24, -24, 152, 255}


def main(patterns: list[str]) -> int:
    metas = sorted(Path("mutants").rglob("*.py.meta"))
    if not metas:
        print("no mutmut results under mutants/: run `make mutation` first")
        return 1
    totals, left = Counter(), {"survived": [], "timeout": []}
    for meta in metas:
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        codes = {k: c for k, c in codes.items() if c is not None and (
            not patterns or any(fnmatch.fnmatch(k, p) for p in patterns))}
        if not codes:
            continue
        killed = sum(c in KILLED for c in codes.values())
        print(f"{str(meta)[len('mutants/'):-len('.meta')]}: {killed}/{len(codes)} killed "
              f"({100 * killed / len(codes):.1f}%)")
        totals.update(killed=killed, checked=len(codes))
        left["survived"] += sorted(k for k, c in codes.items() if c in SURVIVED)
        left["timeout"] += sorted(k for k, c in codes.items() if c in TIMEOUT)
    if not totals["checked"]:
        print("no checked mutants match")
        return 1
    for status, names in left.items():
        for name in names:
            print(f"  {status}: {name}")
    print(f"mutation score: {totals['killed']}/{totals['checked']} killed "
          f"({100 * totals['killed'] / totals['checked']:.1f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
