"""The per-layer analyses: what watches the audit's single pass besides the attacks.

- :mod:`audit.analyses.base`: the contract (:class:`~audit.analyses.base.Analysis`, every hook documented, and
  :class:`~audit.analyses.base.Batch`, what a hook sees).
- :mod:`audit.analyses.registry`: how analyses are found: every folder here with a ``report.py`` defining a
  ``SECTION`` (and folders on ``AUDIT_ANALYSES_PATH``).
- :mod:`audit.analyses.suite`: the analyses of one audit, built from the registry and the user's own, and the
  tapped passes they share.
- :mod:`audit.analyses.layers` (which layers ``--layers`` picks) and :mod:`audit.analyses.tap` (one hooked forward
  per batch: pooled vectors and saliency maps).
- one folder per analysis: ``semantics/`` (*Words as a window*) and ``saliency/`` (*Semiotic aggregation*), each
  with its pure math, ``analysis.py`` (the Analysis; torch) and ``report.py`` (its section of the report: terminal
  lines, HTML panel, score components, gate metrics; no torch, no numpy).

A new analysis is one more folder. Importing this package costs nothing (no torch, no numpy).
"""
