"""Edges of the score and the comparison that mutation testing showed untested (hand-made report dicts)."""
import math

import pytest
from test_score import entry, report

from audit.errors import AuditError
from reports.compare import beyond_tolerance
from reports.score import check_weights, reference_run


def test_the_reference_norm_is_linf_even_when_an_l2_entry_comes_first():
    attacks = [entry("pgdl2", 1.0, 0.0, norm="L2"), entry("pgd", 0.1, 0.3), entry("fgsm", 0.1, 0.5)]
    assert (reference_run(report(attacks))["name"], reference_run(report(attacks))["norm"]) == ("pgd", "Linf")


def test_without_linf_the_first_bounded_norm_is_the_reference():
    attacks = [entry("pgdl2", 0.5, 0.4, norm="L2"), entry("pgdl2", 1.0, 0.2, norm="L2"),
               entry("apgdl1", 10.0, 0.0, norm="L1")]
    ref = reference_run(report(attacks))
    assert (ref["name"], ref["eps"]) == ("pgdl2", 1.0)


def test_the_budget_match_tolerates_rounding_of_eps():
    # the largest budget found again after a round trip through text (8/255 written with fewer digits)
    attacks = [entry("fgsm", 8 / 255, 0.3), entry("pgd", 0.031372549019607, 0.2)]
    assert reference_run(report(attacks))["name"] == "pgd"


def test_with_minimal_attacks_only_the_highest_success_rate_is_the_reference():
    attacks = [entry("cw", None, None, norm="L2", n_success=40, curve=[(0.5, 0.6)]),
               entry("fmn", None, None, norm="L2", n_success=70, curve=[(0.5, 0.5)])]
    assert reference_run(report(attacks))["name"] == "fmn"


def test_mean_curve_breaks_a_tie_at_the_largest_budget():
    # at the largest budget both reach 0; a mean (sum / count) over 2 vs 3 budgets decides, not a sum
    attacks = [entry("a", 0.1, 0.3), entry("a", 0.3, 0.0),
               entry("b", 0.05, 0.2), entry("b", 0.1, 0.2), entry("b", 0.3, 0.0)]
    assert reference_run(report(attacks))["name"] == "b"  # mean 0.133 < 0.15, though its sum 0.4 > 0.3


def test_weight_errors_name_the_problem():
    with pytest.raises(AuditError, match="^unknown score component 'speed' in the weights; the components are "
                                         "robustness, severity, representation, saliency$"):
        check_weights({"speed": 1})
    with pytest.raises(AuditError, match="^score weight severity=-1 is not a non-negative number$"):
        check_weights({"severity": -1})
    with pytest.raises(AuditError, match="^all score weights are zero: give at least one component a positive "
                                         "weight$"):
        check_weights(dict.fromkeys(("robustness", "severity", "representation", "saliency"), 0))


@pytest.mark.parametrize("metric, base, new, tolerance, worse", [
    ("robust_accuracy[pgd@0.1]", 0.75, 0.5, 0.25, False),  # exactly base - t: not more than the tolerance
    ("success_rate[pgd@0.1]", 0.25, 0.5, 0.25, False),  # exactly base + t
    ("median_norm[cw]", 2.0, 1.5, 0.25, False),  # exactly base (1 - t)
    ("median_norm[cw]", 2.0, 1.985, 0.01, False),  # relative: 1.985 >= 1.98, though 1.985 < 2.0 - 0.01
    ("median_norm[cw]", 2.0, 1.97, 0.01, True),
    ("score.value", 80.0, 79.0, 0.01, False),  # points: 100 t = 1 point
    ("score.value", 80.0, 78.995, 0.01, True),
    ("checks.failed", 1.0, 2.0, 0.5, True),  # counts: any newly failed check, whatever the tolerance
])
def test_regression_edges_per_family(metric, base, new, tolerance, worse):
    assert beyond_tolerance(metric, base, new, tolerance) is worse


# --- the semantic score components (audit.analyses.semantics.report), read at the reference run -------------

REF = {"name": "pgd", "eps": 0.1, "eps_text": "0.1", "n_attacked": 10, "n_success": 4}


def semantic_report(layers=None, severity=None) -> dict:
    layers = layers if layers is not None else [
        {"name": "a", "clean": {"two_vs_two": 0.9}, "adversarial": []},
        {"name": "b", "clean": {"two_vs_two": 0.6}, "adversarial": [{"attack": "pgd", "eps": 0.2}]},
        {"name": "c", "clean": {"two_vs_two": 0.8},
         "adversarial": [{"attack": "pgd", "eps": 0.1, "two_vs_two": 0.65, "source_like": 0.3,
                          "source_like_clean": 0.6, "n_scored": 30}]}]
    return {"analyses": {"semantics": {"layers": layers, "severity": severity or []}}, "settings": {}}


def test_representation_reads_the_last_layer_at_the_reference_run_and_says_why_not_otherwise():
    from audit.analyses.semantics.report import representation

    value, detail, size = representation(semantic_report(), REF)
    assert value == pytest.approx((0.5 + 0.5) / 2)  # 2v2 retention (0.65-0.5)/(0.8-0.5), 1 vs 2 retention 0.3/0.6
    assert detail == ("layer c under pgd@0.1: 2v2 0.80 clean → 0.65 adversarial (retention 0.50); "
                      "source-like 0.30 vs 0.60 for the clean versions (retention 0.50; 30 adversarials scored)")
    assert size == {"n": 30, "too_few": False}
    assert representation(semantic_report(layers=[]), REF) == (None, "no semantic layer in the report")
    assert representation(semantic_report(layers=[]), None) == (None, "no attack run to read it at")
    assert representation(semantic_report(), None) == (None, "no attack run to read it at")
    no_run = semantic_report(layers=[{"name": "z", "clean": {"two_vs_two": 0.9}}])
    assert representation(no_run, REF) == (None, "no semantic measurement of pgd@0.1 at layer z")
    chance = semantic_report(layers=[{"name": "z", "clean": {"two_vs_two": 0.5},
                                      "adversarial": [{"attack": "pgd", "eps": 0.1, "two_vs_two": 0.4}]}])
    assert representation(chance, REF) == (None, "layer z under pgd@0.1: 2v2 left out (clean 2v2 0.5 is not "
                                                 "above chance); 1 vs 2 left out (no scored adversarial, or no "
                                                 "clean baseline)", {"n": 0, "too_few": True})
    unmeasured = semantic_report(layers=[{"name": "z", "clean": {"two_vs_two": None},
                                          "adversarial": [{"attack": "pgd", "eps": 0.1, "source_like": 0.2,
                                                           "source_like_clean": 0.8, "n_scored": 20}]}])
    value, detail, _ = representation(unmeasured, REF)
    assert value == 0.25 and "2v2 left out (clean 2v2 None is not above chance)" in detail


def test_severity_reads_the_reference_runs_mean_and_says_why_not_otherwise():
    from audit.analyses.semantics.report import severity

    entry = {"attack": "pgd", "eps": 0.1, "mean": 1.5, "n": 20}
    value, detail, size = severity(semantic_report(severity=[{"attack": "pgd", "eps": 0.2, "mean": 0.1, "n": 1},
                                                             entry]), REF)
    assert value == pytest.approx(1 - 0.4 * 1.5 / 2) and size == {"n": 20, "too_few": False, "source": "word vectors"}
    assert detail == ("word vectors: pgd@0.1 broke 40.0% of the clean-correct samples with mean severity 1.50 (1 = "
                      "an average confusion between two classes; 20 errors scored)")
    capped, _, _ = severity(semantic_report(severity=[{**entry, "mean": 3.0}]), REF)
    assert capped == pytest.approx(1 - 0.4)  # severity above 2 counts as 2
    assert severity(semantic_report(), None) == (None, "no attack run to read it at")
    assert severity(semantic_report(), {**REF, "n_attacked": 0}) == (None, "pgd@0.1 attacked no clean-correct "
                                                                           "sample")
    assert severity(semantic_report(), {**REF, "n_success": 0}) == (1.0, "pgd@0.1 broke no clean-correct sample")
    missing = (None, "no broken sample of pgd@0.1 has word vectors for both its classes")
    assert severity(semantic_report(), REF) == missing
    assert severity(semantic_report(severity=[{**entry, "mean": None}]), REF) == missing


def test_the_semantic_gate_metrics_and_component_reasons_read_a_report_without_analyses():
    from audit.analyses.semantics.report import gate_metrics, representation

    assert gate_metrics({}) == {}
    assert gate_metrics(semantic_report()) == {"semantics.two_vs_two[a]": 0.9, "semantics.two_vs_two[b]": 0.6,
                                               "semantics.two_vs_two[c]": 0.8}
    # a section with layers and a reference run but nothing measured there: the reason names the layer only
    detail = representation(semantic_report(layers=[{"name": "z", "clean": {"two_vs_two": None},
                                                     "adversarial": [{"attack": "pgd", "eps": 0.1}]}]), REF)[1]
    assert detail.startswith("layer z under pgd@0.1: 2v2 left out")


def saliency_report(**section) -> dict:
    base = {"levels": 8, "entropy": "glcm", "log_base": 2, "layers": [
        {"name": "a", "adversarial": [{"attack": "pgd", "eps": 0.1, "delta": 0.6}]},
        {"name": "b", "adversarial": [{"attack": "pgd", "eps": 0.2, "delta": 5.0}, {"attack": "pgd", "eps": 0.1,
                                                                                     "delta": -1.2}]},
        {"name": "c", "adversarial": [{"attack": "pgd", "eps": 0.1, "delta": None}]},
        {"name": "d"}]}
    return {"analyses": {"saliency": {**base, **section}}, "settings": {}}


def test_the_saliency_component_is_one_minus_the_mean_shift_over_the_largest_entropy_the_definition_reaches():
    from audit.analyses.saliency.report import saliency

    value, detail, size = saliency(saliency_report(), REF)  # H_max = 2 log2 8 = 6 bits; mean |dH| over a, b = 0.9
    assert size == {"n": None, "too_few": False}  # a report that does not say how many images: not left out
    assert value == pytest.approx(1 - 0.9 / 6)
    assert detail == ("mean |ΔH| 0.900 bits over 2 layers under pgd@0.1, against the largest possible 6.00 "
                      "(glcm, L=8)")
    without_base = {k: v for k, v in saliency_report()["analyses"]["saliency"].items() if k != "log_base"}
    assert saliency({"analyses": {"saliency": without_base}}, REF)[0] == pytest.approx(1 - 0.9 / 6)
    natural = saliency(saliency_report(log_base=math.e, entropy="histogram", levels=4), REF)
    assert natural[0] == pytest.approx(1 - 0.9 / math.log(4)) and natural[1].endswith("1.39 (histogram, L=4)")
    assert saliency(saliency_report(entropy="other", levels=4), REF)[0] == pytest.approx(1 - 0.9 / 4)
    two_levels = saliency(saliency_report(entropy="histogram", levels=2), REF)  # H_max = 1 bit
    assert two_levels[0] == pytest.approx(0.1)
    nothing = (None, "no saliency-entropy shift measured under pgd@0.1")
    assert saliency(saliency_report(levels=1), REF) == nothing  # one level: no entropy at all
    assert saliency(saliency_report(layers=[]), REF) == nothing
    assert saliency({"analyses": {"saliency": {"levels": 8}}}, REF) == nothing
    assert saliency(saliency_report(layers=[{"name": "d"}]), REF) == nothing
    assert saliency(saliency_report(), None) == (None, "no attack run to read it at")


def test_component_details_round_and_read_sections_without_optional_lists():
    from audit.analyses.semantics.report import representation, severity

    low = semantic_report(layers=[{"name": "z", "clean": {"two_vs_two": 0.456},
                                   "adversarial": [{"attack": "pgd", "eps": 0.1}]}])
    assert "(clean 2v2 0.46 is not above chance)" in representation(low, REF)[1]
    no_severity = {"analyses": {"semantics": {"layers": semantic_report()["analyses"]["semantics"]["layers"]}}}
    assert severity(no_severity, REF) == (None, "no broken sample of pgd@0.1 has word vectors for both its classes")


def test_threat_model_violations_of_an_empty_batch_and_without_a_budget():
    import torch

    from attacks.threat_model import violations

    empty = torch.zeros(0, 1, 2, 2)
    assert violations(empty, empty, 0.1, "Linf") == (0.0, 0.0)
    x = torch.full((1, 1, 2, 2), 0.5)
    assert violations(x, x + 0.3, None, "Linf") == (0.0, 0.0)  # no budget: only the box is checked
    assert violations(x, x + 0.75, None, "L2") == (0.0, pytest.approx(0.25))
    assert violations(x, x + 0.3, 0.1, "Linf") == (pytest.approx(0.2), 0.0)


def test_layer_choice_of_an_empty_value_is_an_error_not_a_module_name():
    from audit.options import LayerChoice, parse_layers

    for empty in ("", None, " , "):
        with pytest.raises(AuditError, match="names no layer"):
            parse_layers(empty)
    assert parse_layers(" NONE ") == LayerChoice("none") and parse_layers("Auto").auto
    assert parse_layers(LayerChoice("names", ("a",))) == LayerChoice("names", ("a",))


def test_extra_analysis_folders_are_separated_by_the_path_separator_and_must_exist(tmp_path, monkeypatch):
    import os

    import audit.analyses as package
    from audit.analyses import registry

    monkeypatch.setattr(package, "__path__", list(package.__path__))
    first, second = tmp_path / "one folder", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    monkeypatch.setenv(registry.PATH_VARIABLE, f"{first}{os.pathsep}{second}")
    path = registry._search_path()
    assert path[-2:] == [str(first), str(second)]
    monkeypatch.setenv(registry.PATH_VARIABLE, str(tmp_path / "missing"))
    with pytest.raises(AuditError) as missing:
        registry._search_path()
    assert str(missing.value) == f"AUDIT_ANALYSES_PATH: {tmp_path / 'missing'} is not a folder"
