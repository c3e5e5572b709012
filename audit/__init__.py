"""robustness-audit: audit the adversarial robustness of PyTorch image classifiers.

Importing this package stays cheap (no torch); ``run_audit`` and ``AuditConfig`` load on first use.
"""

from audit.version import __version__

__all__ = ["AuditConfig", "run_audit", "__version__"]


def __getattr__(name):
    if name == "run_audit":
        from audit.engine.runner import run_audit

        return run_audit
    if name == "AuditConfig":
        from audit.config import AuditConfig

        return AuditConfig
    raise AttributeError(f"module 'audit' has no attribute {name!r}")
