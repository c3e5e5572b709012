"""Benchmark: the 2 vs 2 permutation null for many classes (target: 1000 classes x 1000 permutations < 60 s).

The network side is the Pearson similarity of 1000 random 512-d class representations, the word side that of
1000 random 50-d vectors (the rank of a GloVe-50d similarity matrix). Prints the wall time of the observed
2 vs 2, of the whole permutation test and its ratio to 60 s. Times are noisy on shared machines; BLAS runs on
one thread (the permutations are spread over ``--workers`` threads instead).

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=. .venv/bin/python benchmarks/bench_two_vs_two.py [--perms 1000] [--workers 2]
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from audit.analyses.semantics import permutation_pvalues, similarity, two_vs_two  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--perms", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds the permutation test may take")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    words = rng.standard_normal((args.classes, 50))
    net = similarity(words @ rng.standard_normal((50, 512)) + 40.0 * rng.standard_normal((args.classes, 512)))
    word = similarity(words)

    start = time.perf_counter()
    observed = two_vs_two(net, word)
    single = time.perf_counter() - start
    start = time.perf_counter()
    res = permutation_pvalues([net], word, n_perm=args.perms, seed=0, workers=args.workers)
    total = time.perf_counter() - start
    print(f"classes {args.classes}, permutations {args.perms}, workers {args.workers}, cores {os.cpu_count()}")
    print(f"observed 2v2 {observed:.4f} in {single:.2f} s; null mean {res.null.mean():.4f}, p {res.p_values[0]:.4g}")
    print(f"permutation test {total:.1f} s ({total / args.perms * 1e3:.1f} ms per permutation); "
          f"ratio to {args.budget:.0f} s: {total / args.budget:.2f}")


if __name__ == "__main__":
    main()
