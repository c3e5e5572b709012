"""The audit engine: one pass over the data in which every attack and every analysis sees the same batches.

``runner`` (``run_audit``: load, probe, plan, pass, result), ``audit_pass`` (the pass: what one batch does),
``execution`` (how the passes run: ranks, saved state, resume), ``state`` and ``distributed`` (their plumbing),
``plan`` (attacks × budgets), ``targets`` (targeted audits), ``tallies`` (the mergeable per-attack sums),
``series`` (``audit series``: one audit per checkpoint on data read once, then series.json).

Devices (``--device cpu``, ``cuda``, ``cuda:N``; under torchrun one GPU per process, see ``distributed``): the
model, the batch and everything computed from them live on the audit's device; every tensor the engine, the
attacks or the analyses create takes ``device=`` from the tensors it works with. A random draw that must give
the same numbers on every device is made on the CPU with its own generator and then moved (APGD's start,
``attacks.apgd``; the random targets, ``targets``). Results go to the CPU at a fixed number of points per batch
and attack budget, never per sample: the accumulators (``tallies``, the analyses' sums) take one array per
quantity and batch. Inside an attack the only synchronisation per step is the early stop's test whether a
sample broke (one boolean; the batch then shrinks). ``tests/test_device.py`` counts these transfers on the CPU
and fails when their number per batch grows with the batch size.
"""
