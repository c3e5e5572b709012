"""The per-layer analyses."""
