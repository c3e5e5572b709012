"""How severe the model's mistakes are in the class hierarchy, clean and under each attack run.

``analysis.py`` watches the audit's logits (clean and adversarial; no layer is tapped, so it runs with ``--layers
none`` too) and writes ``analyses.hierarchy``; ``report.py`` renders it (terminal lines, HTML panel). The tree and
its measures are ``audit.analyses.semantics.hierarchy``; the shipped class -> synset mappings are
``audit.analyses.semantics.wordnet``.
"""
