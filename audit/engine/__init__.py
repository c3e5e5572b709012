"""The audit engine: one pass over the data in which every attack and every analysis sees the same batches.

``runner`` (``run_audit``: load, probe, plan, pass, result), ``audit_pass`` (the pass: what one batch does),
``execution`` (how the passes run: ranks, saved state, resume), ``state`` and ``distributed`` (their plumbing),
``plan`` (attacks × budgets), ``targets`` (targeted audits), ``tallies`` (the mergeable per-attack sums).
"""
