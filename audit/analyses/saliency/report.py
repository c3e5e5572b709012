"""Temporary: replaced by the reports branch."""

from audit.analyses.registry import Section

SECTION = Section(key="saliency", title="Saliency entropy", order=20, build="audit.analyses.saliency.analysis:build")
