"""What mutation testing of issue 21's modules showed untested (docs/mutation.md, "Issue 21's modules"):
series.json's figures read from hand-edited copies of a stored report, the paired tests between checkpoints
against a literal McNemar and Holm, the selection's rule, the terminal's lines and trend table cell by cell,
the checkpoints' names and order, the architecture check's messages, and the shared data's limits."""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from rich import box
from rich.console import Console

from audit.data import Framing, open_data
from audit.data.shared import SharedData
from audit.engine.series import Checkpoint, check_checkpoints, checkpoint_digests, find_checkpoints
from audit.errors import AuditError
from reports.compare import FISHER, MCNEMAR, compare
from reports.schema import pack_bits, unpack_bits
from reports.series import (better_of, build_series, change, check_select, checkpoint_entry, closing_lines,
                            progress_line, select, trend_table, validate_series)

FIXTURE = Path(__file__).with_name("fixtures") / "reports" / "demo-full.json.gz"
ASSETS = Path(__file__).resolve().parents[1] / "audit" / "demo_assets"
N = 300


def stored() -> dict:
    report = json.loads(gzip.decompress(FIXTURE.read_bytes()))
    report["attacks"] = [e for e in report["attacks"] if (e["name"], e["eps_text"]) in
                         (("fgsm", "0.1"), ("pgd", "0.1"))]
    return report


def _set(block: dict, field: str, bits: list[bool], key: str) -> None:
    block["per_sample"][field] = pack_bits(bits)
    block[key] = sum(bits) / len(bits)


def edited(clean_lost: int, clean_gained: int, pgd_lost: int, pgd_gained: int, pgd_swapped: int = 0) -> dict:
    """A copy of the stored report whose clean and PGD outcomes change on chosen samples (FGSM unchanged)."""
    report = stored()
    new = copy.deepcopy(report)
    bits = unpack_bits(report["clean"]["per_sample"]["correct"], N)
    right = [i for i, b in enumerate(bits) if b]
    wrong = [i for i, b in enumerate(bits) if not b]
    for i in right[:clean_lost]:
        bits[i] = False
    for i in wrong[:clean_gained]:
        bits[i] = True
    _set(new["clean"], "correct", bits, "accuracy")
    new["clean"]["n_correct"] = sum(bits)
    pgd = next(e for e in new["attacks"] if e["name"] == "pgd")
    robust = unpack_bits(pgd["per_sample"]["robust"], N)
    up = [i for i, b in enumerate(robust) if b]
    down = [i for i, b in enumerate(robust) if not b]
    for i in up[:pgd_lost + pgd_swapped]:
        robust[i] = False
    for i in down[:pgd_gained + pgd_swapped]:
        robust[i] = True
    _set(pgd, "robust", robust, "robust_accuracy")
    return new


def _tail(k: int, n: int) -> float:
    """P(X <= k), X ~ Binomial(n, 1/2), a literal sum."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n if k >= 0 else 0.0


def _holm(ps: dict[str, float]) -> dict[str, float]:
    out, running = {}, 0.0
    for j, key in enumerate(sorted(ps, key=ps.get)):
        running = max(running, min(1.0, (len(ps) - j) * ps[key]))
        out[key] = running
    return out


def _literal(base: dict, new: dict) -> dict[str, dict]:
    """b, c, the two one-sided exact p-values Holm-adjusted over the three rows, by hand."""
    pairs = {"clean.accuracy": (base["clean"], new["clean"], "correct")}
    for e, f in zip(base["attacks"], new["attacks"], strict=True):
        pairs[f"robust_accuracy[{e['name']}@{e['eps_text']}]"] = (e, f, "robust")
    worse, better, counts = {}, {}, {}
    for metric, (a, b, field) in pairs.items():
        x, y = unpack_bits(a["per_sample"][field], N), unpack_bits(b["per_sample"][field], N)
        lost = sum(u and not v for u, v in zip(x, y, strict=True))
        gained = sum(v and not u for u, v in zip(x, y, strict=True))
        n = lost + gained
        counts[metric] = (lost, gained)
        worse[metric] = 1.0 if n == 0 else 1 - _tail(lost - 1, n)
        better[metric] = 1.0 if n == 0 else _tail(lost, n)
    hw, hb = _holm(worse), _holm(better)
    return {m: {"b": counts[m][0], "c": counts[m][1], "p_adjusted": hw[m], "p_better_adjusted": hb[m]}
            for m in pairs}


def test_a_change_s_rows_equal_a_literal_mcnemar_and_holm_and_read_their_direction():
    base = stored()
    new = edited(clean_lost=12, clean_gained=1, pgd_lost=0, pgd_gained=15, pgd_swapped=0)
    got = change("a", base, "b", new, 0.05)
    assert (got["from"], got["to"], got["paired"], got["alpha"]) == ("a", "b", True, 0.05)
    assert got["note"] == compare(base, new, 0.0, 0.05)["note"]
    literal = _literal(base, new)
    rows = {r["metric"]: r for r in got["rows"]}
    assert list(rows) == ["clean.accuracy", "robust_accuracy[fgsm@0.1]", "robust_accuracy[pgd@0.1]"]
    direct = {r["metric"]: r for r in compare(base, new, 0.0, 0.05)["rows"]}
    for metric, row in rows.items():
        want = literal[metric]
        assert (row["b"], row["c"]) == (want["b"], want["c"])
        assert row["p_adjusted"] == pytest.approx(want["p_adjusted"], rel=1e-9, abs=1e-15)
        assert row["p_better_adjusted"] == pytest.approx(want["p_better_adjusted"], rel=1e-9, abs=1e-15)
        assert row["test"] == MCNEMAR and row["difference_ci"] == direct[metric]["difference_ci"]
        assert (row["base"], row["new"]) == (direct[metric]["base"], direct[metric]["new"])
        assert row["delta"] == pytest.approx((want["c"] - want["b"]) / N, abs=1e-12)
        assert set(row) == {"metric", "base", "new", "delta", "difference_ci", "test", "b", "c", "p_adjusted",
                            "p_better_adjusted", "significant", "direction"}
    assert literal["clean.accuracy"]["p_adjusted"] < 0.05 and literal["robust_accuracy[pgd@0.1]"][
        "p_better_adjusted"] < 0.05
    assert [(r["direction"], r["significant"]) for r in rows.values()] == [
        ("fell", True), ("identical", False), ("rose", True)]
    # alpha exactly at a row's Holm p: not below it, so inconclusive (the other row, with a smaller p, stays)
    at = literal["robust_accuracy[pgd@0.1]"]["p_better_adjusted"]
    assert at < literal["clean.accuracy"]["p_adjusted"]
    edge = {r["metric"]: r for r in change("a", base, "b", new, at)["rows"]}
    assert edge["robust_accuracy[pgd@0.1]"]["direction"] == "inconclusive"
    assert edge["robust_accuracy[pgd@0.1]"]["significant"] is False
    assert edge["clean.accuracy"]["direction"] == "inconclusive"  # its Holm p is larger still
    # a fall read on the better side would not be significant; a rise read on the worse side would not be either
    assert literal["clean.accuracy"]["p_better_adjusted"] > 0.05 and literal["robust_accuracy[pgd@0.1]"][
        "p_adjusted"] > 0.05


def test_a_change_that_swaps_outcomes_without_moving_is_inconclusive_not_identical():
    base = stored()
    new = edited(clean_lost=0, clean_gained=0, pgd_lost=0, pgd_gained=0, pgd_swapped=4)
    rows = {r["metric"]: r for r in change("a", base, "b", new, 0.05)["rows"]}
    pgd = rows["robust_accuracy[pgd@0.1]"]
    assert (pgd["b"], pgd["c"], pgd["delta"]) == (4, 4, 0.0)
    assert pgd["direction"] == "inconclusive" and pgd["significant"] is False
    assert rows["clean.accuracy"]["direction"] == "identical"


def test_a_change_between_other_samples_is_fisher_and_unpaired():
    base = stored()
    new = edited(clean_lost=40, clean_gained=0, pgd_lost=0, pgd_gained=0)
    new["data"]["sample"]["fingerprint"] = "another"
    got = change("a", base, "b", new, 0.05)
    direct = {r["metric"]: r for r in compare(base, new, 0.0, 0.05)["rows"]}
    assert got["paired"] is False
    for row in got["rows"]:
        assert row["test"] == FISHER and row["b"] is None and row["c"] is None
        want = direct[row["metric"]]
        assert (row["p_adjusted"], row["p_better_adjusted"]) == (want["p_adjusted"], want["p_better_adjusted"])
        p = row["p_better_adjusted"] if row["delta"] > 0 else row["p_adjusted"]
        assert row["direction"] == (("rose" if row["delta"] > 0 else "fell") if p < 0.05 else "inconclusive")
    assert {r["metric"]: r["direction"] for r in got["rows"]}["clean.accuracy"] == "fell"
    assert {r["metric"]: r["direction"] for r in got["rows"]}["robust_accuracy[fgsm@0.1]"] == "inconclusive"


def _sections(report: dict) -> dict:
    report["analyses"]["semantics"] = {
        "space": "wordnet", "alpha": 0.01,
        "layers": [{"name": "conv1", "clean": {"two_vs_two": 0.7, "p_value": 0.01}},
                   {"name": "fc", "clean": {"two_vs_two": 0.9, "p_value": 0.009}},
                   {"name": "head"}],
        "spaces": {"wordnet": {"layers": [{"name": "x", "clean": {"two_vs_two": 0.1, "p_value": 0.0}}]},
                   "glove": {"layers": [{"name": "fc", "clean": {"two_vs_two": 0.6, "p_value": None}}]},
                   "empty": {"layers": []}}}
    report["analyses"]["saliency"] = {
        "entropy": "shannon", "method": "gradient",
        "layers": [{"name": "conv1", "clean": {"mean": 2.5, "mean_ci": [2, 3]}}, {"name": "fc"},
                   {"name": "x", "clean": {"mean": 1.0, "mean_ci": [1.0, 2.0, 3.0]}}],
        "superization": {"index": 0.25, "p_value": 0.5, "testable": True, "statement": "s", "reason": "r"}}
    return report


def test_a_checkpoint_entry_reads_every_figure_of_a_hand_edited_report():
    report = _sections(stored())
    report["attacks"] = [
        {"name": "fgsm", "eps_text": "0.1", "robust_accuracy": 0.25, "robust_accuracy_ci": (0, 1)},
        {"name": "fgsm", "eps_text": "0.1", "robust_accuracy": 0.5, "robust_accuracy_ci": [0.1, 0.9]},
        {"name": "cw", "eps_text": None, "robust_accuracy": 0.75, "robust_accuracy_ci": [0.5, "x"]},
        {"name": "pgd", "eps_text": "0.2", "robust_accuracy": None},
        {"name": "pgd", "eps_text": "0.3", "robust_accuracy": 0.0, "robust_accuracy_ci": [0.0, 0.25, 0.5]}]
    report["clean"]["accuracy_ci"] = [None, 0.5]
    report["model"]["sha256"] = "abc"
    entry = checkpoint_entry("ep", "/x/ep.pt", report, "ep/report.json")
    assert entry == {
        "name": "ep", "path": "/x/ep.pt", "sha256": "abc", "report": "ep/report.json",
        "clean": {"accuracy": 0.9, "accuracy_ci": None, "n": 300},
        "robust": [{"metric": "robust_accuracy[fgsm@0.1]", "attack": "fgsm", "eps_text": "0.1", "value": 0.25,
                    "ci": [0.0, 1.0]},
                   {"metric": "robust_accuracy[cw@min]", "attack": "cw", "eps_text": None, "value": 0.75, "ci": None},
                   {"metric": "robust_accuracy[pgd@0.3]", "attack": "pgd", "eps_text": "0.3", "value": 0.0,
                    "ci": None}],
        "score": {"value": report["score"]["value"], "interval": report["score"]["interval"], "grade": "F",
                  "capped_by": None},
        "semantics": {
            "wordnet": {"alpha": 0.01, "layers": [
                {"layer": "conv1", "two_vs_two": 0.7, "p_value": 0.01, "significant": False},
                {"layer": "fc", "two_vs_two": 0.9, "p_value": 0.009, "significant": True},
                {"layer": "head", "two_vs_two": None, "p_value": None, "significant": False}]},
            "glove": {"alpha": 0.01, "layers": [
                {"layer": "fc", "two_vs_two": 0.6, "p_value": None, "significant": False}]}},
        "saliency": {"entropy": "shannon", "method": "gradient", "layers": [
            {"layer": "conv1", "entropy": 2.5, "entropy_ci": [2.0, 3.0]},
            {"layer": "fc", "entropy": None, "entropy_ci": None},
            {"layer": "x", "entropy": 1.0, "entropy_ci": None}],
            "superization": {"index": 0.25, "p_value": 0.5, "testable": True, "statement": "s"}}}
    assert all(type(v) is float for v in entry["robust"][0]["ci"])
    assert list(entry["semantics"]) == ["wordnet", "glove"]
    report["score"]["capped"] = {"grade": "C", "by": ("a", "b"), "applied": False}  # below the cap already
    assert checkpoint_entry("ep", "/x/ep.pt", report, "r")["score"]["capped_by"] is None
    report["score"]["capped"]["applied"] = True
    assert checkpoint_entry("ep", "/x/ep.pt", report, "r")["score"]["capped_by"] == ["a", "b"]


def test_a_checkpoint_entry_without_score_sections_or_superization():
    report = stored()
    report["score"] = None
    report["analyses"] = {"semantics": {"layers": [{"name": "a", "clean": {"two_vs_two": 0.5, "p_value": 0.04}}]},
                          "saliency": {"layers": [{"name": "a", "clean": {"mean": 1.5}}]}}
    entry = checkpoint_entry("e", "p", report, "r")
    assert entry["score"] == {"value": None, "interval": None, "grade": None, "capped_by": None}
    assert entry["semantics"] == {"glove": {"alpha": 0.05, "layers": [
        {"layer": "a", "two_vs_two": 0.5, "p_value": 0.04, "significant": True}]}}
    assert entry["saliency"] == {"entropy": None, "method": None, "superization": None,
                                 "layers": [{"layer": "a", "entropy": 1.5, "entropy_ci": None}]}
    report["analyses"] = {"semantics": {"layers": []}, "saliency": {"layers": []}}
    assert checkpoint_entry("e", "p", report, "r")["semantics"] is None
    assert checkpoint_entry("e", "p", report, "r")["saliency"] is None
    report.pop("analyses")
    assert checkpoint_entry("e", "p", report, "r")["semantics"] is None


def _named(values: list[float | None], metric_field: str = "accuracy") -> list[tuple[str, dict]]:
    out = []
    for i, v in enumerate(values):
        r = stored()
        r["clean"][metric_field] = v
        out.append((f"c{i}", r))
    return out


def test_select_takes_the_best_the_later_of_ties_and_passes_over_nulls():
    got = select("clean.accuracy", _named([0.5, None, 0.7, 0.7, 0.6]))
    assert got == {"metric": "clean.accuracy", "better": "higher", "selected": "c3", "value": 0.7,
                   "rule": "the highest clean.accuracy (higher is better); ties go to the later checkpoint; "
                           "c2 ties with it; null in c1, passed over",
                   "values": [{"name": "c0", "value": 0.5}, {"name": "c1", "value": None},
                              {"name": "c2", "value": 0.7}, {"name": "c3", "value": 0.7},
                              {"name": "c4", "value": 0.6}]}
    assert select("clean.accuracy", _named([None, 0.2, None]))["rule"].endswith("; null in c0, c2, passed over")
    assert select("clean.accuracy", _named([0.2, 0.9, 0.1]))["selected"] == "c1"
    assert select("clean.accuracy", _named([float("nan"), 0.1]))["selected"] == "c1"
    assert select("clean.accuracy", _named([0.3, float("nan")]))["selected"] == "c0"
    assert select("clean.accuracy", _named([0.3, 0.3, 0.1]))["rule"].endswith("ties go to the later checkpoint; c0 "
                                                                              "ties with it")
    assert select("clean.accuracy", _named([0.3, 0.3, 0.3]))["rule"].endswith("; c0, c1 tie with it")
    assert select("clean.accuracy", _named([0.3, 0.2]))["rule"].endswith("ties go to the later checkpoint")
    with pytest.raises(AuditError) as err:
        select("clean.accuracy", _named([None, None]))
    assert str(err.value) == "--select clean.accuracy: the metric is null in every checkpoint, so none can be selected"


def test_select_takes_the_lowest_where_lower_is_better_and_an_infinite_value_is_written_null():
    named = []
    for i, rate in enumerate((0.4, 0.2, 0.2, 0.9)):
        r = stored()
        r["attacks"][0]["success_rate"] = rate
        named.append((f"c{i}", r))
    got = select("success_rate[fgsm@0.1]", named)
    assert (got["better"], got["selected"], got["value"]) == ("lower", "c2", 0.2)
    assert got["rule"] == ("the lowest success_rate[fgsm@0.1] (lower is better); ties go to the later checkpoint; "
                           "c1 ties with it")
    for r, median in zip((x for _, x in named), (0.5, None, 0.1, 0.2), strict=True):
        r["attacks"][0]["minimal_perturbation"] = {"median": median, "n": 10}
    inf = select("median_norm[fgsm]", named)
    assert (inf["selected"], inf["value"], inf["better"]) == ("c1", None, "higher")
    assert inf["values"][1] == {"name": "c1", "value": None} and inf["values"][0] == {"name": "c0", "value": 0.5}
    assert "passed over" not in inf["rule"]


@pytest.mark.parametrize(("metric", "better"), [
    ("clean.accuracy.lower", "higher"), ("success_rate[pgd@0.1].upper", "lower"), ("score.lower", "higher"),
    ("score.upper", "higher"), ("score.value.lower", "higher"), ("median_norm[pgd]", "higher"),
    ("success_rate[pgd@0.1]", "lower"), ("score.components.severity", "higher")])
def test_better_of_reads_a_bound_as_its_metric(metric, better):
    assert better_of(metric) == better


def test_check_select_refuses_an_unknown_name_and_one_a_report_lacks():
    check_select("clean.accuracy")
    check_select("robust_accuracy[fgsm@0.1]", stored())
    with pytest.raises(AuditError, match="unknown metric 'robust_accuracy\\[cw@1\\]'"):
        check_select("robust_accuracy[cw@1]", stored())
    with pytest.raises(AuditError):
        check_select("nonsense")
    check_select("robust_accuracy[fgsm@0.1].lower", stored())


def _three() -> list[tuple[str, str, dict]]:
    a, b, c = stored(), edited(0, 0, 0, 20), edited(30, 0, 0, 19)
    for r, passed, summary in ((a, True, "A ok"), (b, False, "B failed"), (c, True, "C ok")):
        r["verdict"] = {"gated": True, "passed": passed, "summary": summary}
    return [("e1", "/m/e1.pt", a), ("e2", "/m/e2.pt", b), ("e3", "/m/e3.pt", c)]


def test_build_series_chains_the_changes_and_gates_the_last_or_the_selected():
    named = _three()
    doc = build_series(named, order="number", alpha=0.05, select_metric=None, gate_on="last",
                       tool={"name": "t"}, created="now")
    validate_series(doc)
    assert (doc["schema_version"], doc["tool"], doc["created"], doc["order"], doc["alpha"], doc["selection"]) == (
        "1.1", {"name": "t"}, "now", "number", 0.05, None)
    assert doc["checkpoints"] == [checkpoint_entry(n, p, r, f"{n}/report.json") for n, p, r in named]
    assert [(c["from"], c["to"]) for c in doc["changes"]] == [("e1", "e2"), ("e2", "e3")]
    assert doc["changes"][1] == change("e2", named[1][2], "e3", named[2][2], 0.05)
    assert doc["gates"] == {"on": "last", "checkpoint": "e3", "gated": True, "passed": True, "summary": "C ok"}
    sel = build_series(named, order="given", alpha=0.01, select_metric="robust_accuracy[pgd@0.1]",
                       gate_on="selected", tool={}, created="now")
    assert sel["selection"]["selected"] == "e2" and sel["changes"][0]["alpha"] == 0.01
    assert sel["gates"] == {"on": "selected", "checkpoint": "e2", "gated": True, "passed": False,
                            "summary": "B failed"}
    selected_last = build_series(named, order="given", alpha=0.05, select_metric="robust_accuracy[pgd@0.1]",
                                 gate_on="last", tool={}, created="now")
    assert selected_last["gates"]["checkpoint"] == "e3"
    for _, _, r in named:
        r.pop("verdict")
    bare = build_series(named[:1], order="given", alpha=0.05, select_metric=None, gate_on="last", tool={},
                        created="now")
    assert bare["changes"] == [] and bare["gates"] == {"on": "last", "checkpoint": "e1", "gated": False,
                                                       "passed": True, "summary": ""}
    named[0][2]["verdict"] = {}
    assert build_series(named[:1], order="given", alpha=0.05, select_metric=None, gate_on="last", tool={},
                        created="now")["gates"]["passed"] is True


def test_build_series_refuses_a_bad_gate_on_word_for_word():
    named = _three()
    with pytest.raises(AuditError) as err:
        build_series(named, order="number", alpha=0.05, select_metric=None, gate_on="first", tool={}, created="")
    assert str(err.value) == "--gate-on must be last or selected, got 'first'"
    with pytest.raises(AuditError) as err:
        build_series(named, order="number", alpha=0.05, select_metric=None, gate_on="selected", tool={}, created="")
    assert str(err.value) == ("--gate-on selected needs --select METRIC: it names the checkpoint the gates apply "
                              "to")


def test_validate_series_names_where_the_document_is_wrong():
    doc = build_series(_three(), order="number", alpha=0.05, select_metric=None, gate_on="last", tool={},
                       created="now")
    bad = copy.deepcopy(doc)
    bad["checkpoints"][1]["name"] = 7
    with pytest.raises(AuditError) as err:
        validate_series(bad, where="x.json")
    assert str(err.value).startswith("x.json is not a robustness-audit series: at checkpoints/1/name: ")
    long = copy.deepcopy(doc)
    long["changes"] = "x" * 500
    with pytest.raises(AuditError) as err:
        validate_series(long)
    head = "series.json is not a robustness-audit series: at changes: "
    assert str(err.value) == head + ("'" + "x" * 500 + "' is not of type 'array'")[:200]
    top = copy.deepcopy(doc)
    top.pop("checkpoints")
    with pytest.raises(AuditError) as err:
        validate_series(top)
    assert str(err.value).startswith("series.json is not a robustness-audit series: at the top level: ")


def _pct(v, ci=None) -> str:
    return "—" if v is None else f"{v * 100:.1f}%" + ("" if ci is None else f" [{ci[0] * 100:.1f}, {ci[1] * 100:.1f}]")


def test_the_progress_line_word_for_word():
    report = stored()
    report["attacks"].append({"name": "cw", "eps_text": None, "robust_accuracy": 0.5})
    c, f, p = report["clean"], report["attacks"][0], report["attacks"][1]
    want = (f"[2/5] e1: clean {_pct(c['accuracy'], c['accuracy_ci'])}, fgsm@0.1 "
            f"{_pct(f['robust_accuracy'], f['robust_accuracy_ci'])}, pgd@0.1 "
            f"{_pct(p['robust_accuracy'], p['robust_accuracy_ci'])}, cw@min 50.0%, score "
            f"{report['score']['value']:.1f} (1.2 s)")
    assert progress_line(2, 5, "e1", report, 1.234) == want
    report["score"] = {"value": None}
    report["clean"]["accuracy"] = None
    assert progress_line(1, 1, "e", report, 0.0).startswith("[1/1] e: clean —, fgsm@0.1 ")
    assert progress_line(1, 1, "e", report, 0.0).endswith(" (0.0 s)") and "score" not in progress_line(
        1, 1, "e", report, 0.0)


def _cells(table) -> list[list[str]]:
    return [[str(cell) for cell in column._cells] for column in table.columns]


def test_the_trend_table_cell_by_cell():
    named = _three()
    named[0][2]["score"]["interval"] = None
    named[2][2]["attacks"].append({"name": "cw", "eps_text": None, "robust_accuracy": None})
    named[1][2]["attacks"].append({"name": "cw", "eps_text": None, "robust_accuracy": 0.5})
    doc = build_series(named, order="number", alpha=0.05, select_metric="clean.accuracy", gate_on="last", tool={},
                       created="")
    doc["checkpoints"][2]["score"]["value"] = None
    doc["checkpoints"][1]["score"]["capped_by"] = ["gradient_free_attack"]
    table = trend_table(doc)
    assert table.title == ("series: 3 checkpoints; changes from the one before significant at one-sided alpha 0.05 "
                           "(McNemar, Holm)")
    assert [str(c.header) for c in table.columns] == ["checkpoint", "clean", "fgsm@0.1", "pgd@0.1", "cw@min",
                                                      "score", "significant changes"]
    cells = _cells(table)
    points = doc["checkpoints"]
    assert cells[0] == ["e1", "e2 (selected)", "e3"] and doc["selection"]["selected"] == "e2"
    for i, c in enumerate(points):
        assert cells[1][i] == _pct(c["clean"]["accuracy"], c["clean"]["accuracy_ci"]).replace(" [", "\n[")
        for col, metric in ((2, "robust_accuracy[fgsm@0.1]"), (3, "robust_accuracy[pgd@0.1]")):
            r = next(r for r in c["robust"] if r["metric"] == metric)
            assert cells[col][i] == _pct(r["value"], r["ci"]).replace(" [", "\n[")
    assert cells[4] == ["—", "50.0%", "—"]
    s1 = points[1]["score"]
    assert cells[5] == [f"{points[0]['score']['value']:.1f}",
                        f"{s1['value']:.1f} capped\n[{s1['interval'][0]:.1f}, {s1['interval'][1]:.1f}]", "—"]
    first, second = doc["changes"]
    rows1 = {r["metric"]: r for r in first["rows"]}
    pgd = rows1["robust_accuracy[pgd@0.1]"]
    assert pgd["direction"] == "rose" and [r["metric"] for r in first["rows"] if r["significant"]] == [
        "robust_accuracy[pgd@0.1]"]
    from reports.compare import p_text, shown_p
    assert cells[6][0] == ""
    assert cells[6][1] == f"pgd@0.1 ↑+{100 * pgd['delta']:.1f} pp (p {p_text(shown_p(pgd))})"
    clean2 = {r["metric"]: r for r in second["rows"]}["clean.accuracy"]
    assert clean2["direction"] == "fell" and clean2["significant"]
    assert cells[6][2] == f"clean ↓{100 * clean2['delta']:+.1f} pp (p {p_text(shown_p(clean2))})"
    assert cells[6][2].startswith("clean ↓-10.0 pp (p ")
    quiet = build_series(named[:2], order="number", alpha=1e-12, select_metric=None, gate_on="last", tool={},
                         created="")
    assert _cells(trend_table(quiet))[-1] == ["", "none significant"]
    assert _cells(trend_table(quiet))[0] == ["e1", "e2"]
    both = build_series([named[0], named[2]], order="number", alpha=0.05, select_metric=None, gate_on="last",
                        tool={}, created="")
    text = _cells(trend_table(both))[-1][1]
    assert text.startswith("clean ↓") and ", pgd@0.1 ↑+" in text
    # the layout: numbers right-aligned, names and changes folded, a simple head rule, the title on the left
    assert [c.justify for c in table.columns] == ["left", *["right"] * 5, "left"]
    assert [c.overflow for c in table.columns] == ["fold", *["ellipsis"] * 5, "fold"]
    assert (table.title_justify, table.header_style, table.box, table.pad_edge) == (
        "left", "bold", box.SIMPLE_HEAD, False)
    console = Console(file=io.StringIO(), width=200)
    console.print(trend_table(doc))
    assert "e2 (selected)" in console.file.getvalue()


def test_the_closing_lines_word_for_word():
    doc = {"selection": {"selected": "e2", "metric": "median_norm[cw]", "value": 0.123456, "rule": "R"},
           "gates": {"on": "selected", "checkpoint": "e2", "summary": "PASSED"}}
    assert closing_lines(doc) == ["selected: e2 (median_norm[cw] = 0.1235): R",
                                  "gates on the selected checkpoint, e2: PASSED"]
    doc["selection"]["value"] = None
    assert closing_lines(doc)[0] == "selected: e2 (median_norm[cw] = ∞): R"
    doc["selection"] = None
    assert closing_lines(doc) == ["gates on the selected checkpoint, e2: PASSED"]


@pytest.fixture()
def folder(tmp_path):
    source = ASSETS / "fashion_cnn.safetensors"
    for name in ("run_1_step_10.safetensors", "run_1_step_2.pt", "run_10_step_1.ckpt", "run_1_step_2.pth"):
        shutil.copy(source, tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a model")
    (tmp_path / "sub").mkdir()
    return tmp_path


def test_checkpoints_are_named_without_their_suffix_and_ordered_by_every_number(folder):
    with pytest.raises(AuditError, match="two checkpoints are named run_1_step_2"):
        find_checkpoints([str(folder)])
    (folder / "run_1_step_2.pth").unlink()
    points = find_checkpoints([str(folder)])
    assert [(p.name, p.path.name) for p in points] == [
        ("run_1_step_2", "run_1_step_2.pt"), ("run_1_step_10", "run_1_step_10.safetensors"),
        ("run_10_step_1", "run_10_step_1.ckpt")]
    for name in ("b_7.bin", "a_7.pt2", ".pt"):
        shutil.copy(folder / "run_1_step_2.pt", folder / name)
    given = find_checkpoints([str(folder / "b_7.bin"), str(folder / "a_7.pt2"), str(folder / ".pt")], "given")
    assert [p.name for p in given] == ["b_7", "a_7", ".pt"]
    ties = find_checkpoints([str(folder / "b_7.bin"), str(folder / "a_7.pt2")])
    assert [p.name for p in ties] == ["a_7", "b_7"]  # the same numbers: by name
    globbed = find_checkpoints([str(folder / "run_1_*")], "given")
    assert [p.name for p in globbed] == ["run_1_step_10", "run_1_step_2"]  # a glob's matches sorted by path


def test_find_checkpoints_refuses_word_for_word(folder, tmp_path):
    cases = [
        (([str(folder)], "sideways"), "--order must be number or given, got 'sideways'"),
        (([], "number"), "no MODEL given: name the checkpoints (files, a folder, or a glob like "
                         "'ckpt/epoch_*.safetensors')"),
        (([str(folder / "sub")], "number"), f"the folder {folder / 'sub'} holds no model file (.safetensors, .pt, "
                                            ".pth, .pt2, .ckpt, .bin)"),
        (([str(folder / "gone.pt")], "number"), f"model file {folder / 'gone.pt'} does not exist; check the path"),
        (([str(folder / "zz_*.pt")], "number"), f"no checkpoint matches {folder / 'zz_*.pt'}: check the pattern "
                                                "(quote it so the shell passes it on)"),
        (([str(folder / "run_1_step_2.pt"), str(folder / "run_1_step_2.pth")], "given"),
         f"two checkpoints are named run_1_step_2 ({folder / 'run_1_step_2.pt'} and {folder / 'run_1_step_2.pth'}): "
         "each gets OUT/<name>/, so names must differ; rename one")]
    for (specs, order), message in cases:
        with pytest.raises(AuditError) as err:
            find_checkpoints(specs, order)
        assert str(err.value) == message
    (tmp_path / "final.pt").write_bytes(b"")
    (tmp_path / "plain.pt").write_bytes(b"")
    with pytest.raises(AuditError) as err:
        find_checkpoints([str(folder / "run_1_step_2.pt"), str(tmp_path / "final.pt"), str(tmp_path / "plain.pt")])
    assert str(err.value) == ("cannot order the checkpoints by the number in their names: final has none; use "
                              "--order given to keep the order of the arguments")
    assert find_checkpoints([str(tmp_path / "final.pt")], "given")[0] == Checkpoint("final", tmp_path / "final.pt")


def _script(path: Path, *layers: torch.nn.Module) -> Path:
    torch.jit.save(torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), *layers)), str(path))
    return path


CONFIG = SimpleNamespace(arch=None, arch_kwargs=None, trust_model=False, weights_meta=None)


def test_check_checkpoints_names_the_first_difference_and_digests_are_each_sha256(tmp_path):
    torch.manual_seed(0)
    a = _script(tmp_path / "a_1.pt", torch.nn.Linear(784, 10))
    b = _script(tmp_path / "a_2.pt", torch.nn.Linear(784, 10))
    points = [Checkpoint("a_1", a), Checkpoint("a_2", b)]
    assert check_checkpoints(points, CONFIG) is None
    assert checkpoint_digests(points, CONFIG) == {
        "a_1": hashlib.sha256(a.read_bytes()).hexdigest(), "a_2": hashlib.sha256(b.read_bytes()).hexdigest()}
    cases = [
        (_script(tmp_path / "c.pt", torch.nn.Linear(784, 5)),
         "1.weight has shape [5, 784] where the first has [10, 784]: a different architecture or number of classes"),
        (_script(tmp_path / "d.pt", torch.nn.Linear(784, 10), torch.nn.ReLU(), torch.nn.Linear(10, 10)),
         "an extra parameter 3.weight"),
        (_script(tmp_path / "e.pt", torch.nn.Identity(), torch.nn.Linear(784, 10)), "no parameter 1.weight")]
    for path, why in cases:
        with pytest.raises(AuditError) as err:
            check_checkpoints([points[0], Checkpoint("x", path)], CONFIG)
        assert str(err.value) == (f"{path} has another network than {a} ({why}): a series audits checkpoints of "
                                  "one architecture with the same classes")
    bad = tmp_path / "f.pt"
    bad.write_bytes(b"not a model" * 20)
    with pytest.raises(AuditError) as err:
        check_checkpoints([points[0], Checkpoint("f", bad)], CONFIG)
    assert str(err.value).startswith(str(bad)) and str(err.value).count(str(bad)) == 1


def test_check_checkpoints_refuses_another_module_type(tmp_path):
    a = _script(tmp_path / "a.pt", torch.nn.Linear(784, 10))
    whole = tmp_path / "b.pt"
    torch.save(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)), whole)
    trusted = SimpleNamespace(arch=None, arch_kwargs=None, trust_model=True, weights_meta=None)
    with pytest.raises(AuditError) as err:
        check_checkpoints([Checkpoint("a", a), Checkpoint("b", whole)], trusted)
    assert str(err.value) == (f"{whole} is a torch.nn.modules.container.Sequential, but {a} is a "
                              "torch.jit._script.RecursiveScriptModule: a series audits checkpoints of one "
                              "architecture")


def test_shared_data_keeps_each_batching_once_and_nothing_past_its_limit():
    framing = Framing()
    shared = SharedData()
    assert (shared.opened, shared.decoded, shared.limit_bytes) == (0, 0, 2 << 30)
    images = shared.open("demo", samples=10, seed=1, framing=framing)
    fresh = open_data("demo", samples=10, seed=1, framing=framing)
    assert len(images) == len(fresh) == 10
    assert shared.open("demo", samples=11, seed=1, framing=framing) is not images and shared.opened == 2
    assert shared.open("demo", samples=10, seed=2, framing=framing) is not images and shared.opened == 3
    with pytest.raises(AuditError):  # another source is opened, not the cached demo set
        shared.open(str(ASSETS / "no_such_data.npz"), samples=10, seed=1, framing=framing)
    framed = Framing(resize=32, crop=(20, 20))
    cut = next(shared.open("demo", samples=10, seed=1, framing=framed).batches(4))
    assert cut.x.shape[-2:] == (20, 20)
    assert torch.equal(cut.x, next(open_data("demo", samples=10, seed=1, framing=framed).batches(4)).x)
    first = next(images.batches(4))  # a pass left unfinished keeps nothing
    assert first.x.shape[0] == 4 and shared.decoded == 0
    by4, by5 = list(images.batches(4)), list(images.batches(5))
    assert shared.decoded == 2 and [len(b.y) for b in by4] == [4, 4, 2] and [len(b.y) for b in by5] == [5, 5]
    again4, again5 = list(images.batches(4)), list(images.batches(5))
    assert shared.decoded == 2
    for kept, want in ((again4, fresh.batches(4)), (again5, fresh.batches(5))):
        for a, b in zip(kept, want, strict=True):
            assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.index, b.index)
    assert images.fingerprint() == fresh.fingerprint()
    sized = list(images.batches(4, size=(14, 14)))
    assert sized[0].x.shape[-2:] == (14, 14) and shared.decoded == 3
    colour = list(images.batches(4, size=(14, 14), channels=3))
    assert colour[0].x.shape[1:] == (3, 14, 14) and shared.decoded == 4
    again4[0].y.fill_(-1)
    assert torch.equal(next(images.batches(4)).y, next(fresh.batches(4)).y)
    # the limit: 4 images of 1x28x28 float32 are 12,544 bytes a batch
    one = 4 * 28 * 28 * 4
    for limit, kept in ((2 * one + one // 2, True), (2 * one + one // 2 - 1, False), (one, False)):
        small = SharedData(limit_bytes=limit).open("demo", samples=10, seed=1, framing=framing)
        assert [b.x.element_size() * b.x.nelement() for b in small.batches(4)] == [one, one, one // 2]
        list(small.batches(4))
        assert small._owner.decoded == (1 if kept else 2)


def test_check_checkpoints_loads_with_the_series_settings_and_names_the_file_that_fails(tmp_path, monkeypatch):
    import audit.model

    seen = []

    def load(path, **kwargs):
        seen.append(kwargs)
        if path.name == "bad.pt":
            raise AuditError("cannot read this file")
        if path.name == "named.pt":
            raise AuditError(f"{path} is broken")
        return SimpleNamespace(sha256=path.name, module=torch.nn.Linear(2, 2))

    monkeypatch.setattr(audit.model, "load_model", load)
    config = SimpleNamespace(arch="pkg:Net", arch_kwargs='{"width": 4, "depth": 2}', trust_model=True, weights_meta="m.json")
    assert check_checkpoints([Checkpoint("a", tmp_path / "a.pt")], config) is None
    assert seen == [{"arch": "pkg:Net", "arch_kwargs": {"width": 4, "depth": 2}, "trust_model": True,
                     "weights_meta": "m.json"}]
    (tmp_path / "hub").mkdir()  # a model folder's digest comes from its load, with the series' settings
    assert checkpoint_digests([Checkpoint("h", tmp_path / "hub")], config) == {"h": "hub"} and seen[1] == seen[0]
    for name, message in (("bad.pt", f"{tmp_path / 'bad.pt'}: cannot read this file"),
                          ("named.pt", f"{tmp_path / 'named.pt'} is broken")):
        with pytest.raises(AuditError) as err:
            check_checkpoints([Checkpoint("a", tmp_path / "a.pt"), Checkpoint("b", tmp_path / name)], config)
        assert str(err.value) == message
