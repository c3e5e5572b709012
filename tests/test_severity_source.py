"""The score's severity component reads the class hierarchy when the report has it, else the word vectors: its
value against a hand computation from a real demo report for both sources, and where the report shows the source."""

from __future__ import annotations

import copy

import pytest
from rich.console import Console

from audit import AuditConfig, run_audit
from audit.demo import ARCH, ASSETS
from reports.score import score_report


@pytest.fixture(scope="module")
def demo():
    """A real demo audit with both sections: the semantic window (word vectors) and the class hierarchy."""
    config = AuditConfig(model=str(ASSETS / "fashion_cnn.safetensors"), arch=ARCH, data="demo",
                         classes="fashion-mnist", attacks=["fgsm"], eps="0.1", samples=120, batch_size=120,
                         device="cpu", permutations=20, saliency="none", checks=False)
    result = run_audit(config)
    return result, result.to_dict()


def share_broken(report: dict) -> float:
    entry = report["attacks"][0]  # the only attack: the reference run
    return entry["n_success"] / entry["n_attacked"]


def test_with_the_hierarchy_the_component_is_the_lca_height_over_a_random_wrong_classes(demo):
    result, report = demo
    tree = report["analyses"]["hierarchy"]["adversarial"][0]
    assert tree["attack"] == "fgsm" and tree["n"] >= 20  # enough mistakes to count
    # hand computation: the mistakes' mean LCA height relative to a random wrong class's, capped at 2, weighted by
    # the share of clean-correct samples the attack broke
    relative = tree["mean"] / tree["baseline_mean"]
    expected = 1 - share_broken(report) * min(relative, 2.0) / 2.0
    severity = result.score["components"]["severity"]
    assert severity["value"] == pytest.approx(expected, abs=1e-12)
    assert severity["source"] == "hierarchy" and severity["n"] == tree["n"] and severity["included"]
    assert severity["detail"].startswith("hierarchy: fgsm@0.1 broke ")
    assert f"against {tree['baseline_mean']:.2f} for a random wrong class: severity {relative:.2f}" in \
        severity["detail"]
    # the hierarchy and the word vectors disagree on this run, so the test tells the two sources apart
    words = report["analyses"]["semantics"]["severity"][0]["mean"]
    assert abs(min(words, 2.0) - min(relative, 2.0)) > 0.05


def test_without_the_hierarchy_the_component_keeps_the_word_vector_value(demo):
    _, report = demo
    for absent in ("removed", "skipped"):
        r = copy.deepcopy(report)
        if absent == "removed":
            del r["analyses"]["hierarchy"]
        else:
            r["analyses"]["hierarchy"] = {"skipped": "no class hierarchy was loaded"}
        sem = r["analyses"]["semantics"]["severity"][0]
        expected = 1 - share_broken(r) * min(sem["mean"], 2.0) / 2.0  # the formula before the hierarchy existed
        severity = score_report(r)["components"]["severity"]
        assert severity["value"] == pytest.approx(expected, abs=1e-12)
        assert severity["source"] == "word vectors" and severity["n"] == sem["n"]
        assert severity["detail"].startswith("word vectors: fgsm@0.1 broke ")
        assert "(1 = an average confusion between two classes; " in severity["detail"]


def test_too_few_mistakes_in_the_hierarchy_leave_the_component_out_without_switching_source(demo):
    _, report = demo
    r = copy.deepcopy(report)
    r["analyses"]["hierarchy"]["adversarial"][0]["n"] = 19
    severity = score_report(r)["components"]["severity"]
    assert severity["source"] == "hierarchy" and severity["too_few"] and not severity["included"]
    assert severity["detail"].startswith("hierarchy: only 19 errors of fgsm@0.1 scored (")
    assert severity["detail"].endswith("; the component needs at least 20")
    none = copy.deepcopy(report)
    none["analyses"]["hierarchy"]["adversarial"][0].update(n=0, mean=None, baseline_mean=None)
    severity = score_report(none)["components"]["severity"]
    assert severity["value"] is None and "source" not in severity
    assert severity["detail"] == ("no mistake of fgsm@0.1 was scored in the class hierarchy (both classes need a "
                                  "synset)")


def test_the_terminal_and_the_html_page_say_which_source(demo):
    from reports.html.render import render_html
    from reports.terminal import render_verdict

    result, report = demo
    console = Console(record=True, width=300)
    render_verdict(result, console)
    value = result.score["components"]["severity"]["value"]
    assert f"severity {value:.2f} (hierarchy)" in console.export_text()
    html = render_html(report)
    assert "hierarchy: fgsm@0.1 broke " in html
