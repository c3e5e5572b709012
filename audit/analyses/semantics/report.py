"""Temporary: replaced by the reports branch."""

from audit.analyses.registry import Section

SECTION = Section(key="semantics", title="The semantic window", order=10, build="audit.analyses.semantics.analysis:build")
