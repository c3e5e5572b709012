"""`run_series` and `SeriesState` (audit/engine/series.py), where mutation testing found them untested: what each
checkpoint's audit is given (its model, folder, state folder, progress reporter, the shared data), the `done`
calls, series.json's text, tool and date, the JUnit file of the gated checkpoint, the defaults, the refusals word
for word, stale outputs removed before the audits, a kept report of other samples audited again, the rank-1
branch under torchrun, and the resume state's fingerprint and refusals. Real audits of the demo twins (20
samples, FGSM, no layers); run_audit is wrapped only to record what it is given."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import audit.engine.runner as runner
from audit.config import AuditConfig
from audit.data.shared import SharedData
from audit.engine.series import STATE_FILE, Checkpoint, SeriesState, run_series
from audit.errors import AuditError
from audit.version import __version__

ASSETS = Path(__file__).resolve().parents[1] / "audit" / "demo_assets"
STANDARD, ADVERSARIAL = ASSETS / "fashion_cnn.safetensors", ASSETS / "fashion_cnn_adv.safetensors"


def _template(**kw) -> AuditConfig:
    settings = dict(model="", arch="audit.demo_model:FashionCNN", classes="fashion-mnist", samples="20",
                    attacks=["fgsm"], eps="0.1", layers="none", checks=False, html=False, threads=1, device="cpu")
    return AuditConfig(**{**settings, **kw})


def _points(folder: Path) -> list[Checkpoint]:
    folder.mkdir(parents=True, exist_ok=True)
    points = []
    for n, source in ((1, STANDARD), (2, ADVERSARIAL)):
        shutil.copy(source, folder / f"epoch_{n}.safetensors")
        points.append(Checkpoint(f"epoch_{n}", folder / f"epoch_{n}.safetensors"))
    return points


def _spy(monkeypatch, calls: list, real: bool = True, resume_off: bool = False):
    """Record run_audit's arguments; run the real audit (with ``resume_off``, without its --resume)."""
    audit = runner.run_audit

    def spy(config, **kw):
        calls.append((config, kw))
        if not real:
            return None
        return audit(replace(config, resume=False) if resume_off else config, **kw)

    monkeypatch.setattr(runner, "run_audit", spy)


def test_each_audit_gets_its_checkpoint_folder_state_reporter_and_the_shared_data(tmp_path, monkeypatch):
    from reports.junit import junit_xml

    points, out, calls, named, done = _points(tmp_path / "ckpt"), tmp_path / "out", [], [], []
    _spy(monkeypatch, calls)
    reporters = {}

    @contextmanager
    def progress(name):
        named.append(name)
        reporters[name] = runner._Silent()
        yield reporters[name]

    template = _template(export_representations=True, junit=str(tmp_path / "junit.xml"), layers="auto",
                         permutations=20, saliency="none")
    started = time.perf_counter()
    before = datetime.now().astimezone()
    series, audits = run_series(template, points, out, order="number", select="clean.accuracy",
                                gate_on="selected", alpha=0.05, progress=progress,
                                done=lambda i, total, a: done.append((i, total, a.checkpoint.name, a.how, a.seconds)))
    wall = time.perf_counter() - started
    after = datetime.now().astimezone()
    assert named == ["epoch_1", "epoch_2"]
    assert len(calls) == 2
    for (config, kw), point in zip(calls, points, strict=True):
        assert config.model == str(point.path) and config.out == str(out / point.name) and config.resume is False
        assert kw["state_dir"] == str(out / point.name / ".state") and kw["progress"] is reporters[point.name]
    assert isinstance(calls[0][1]["shared"], SharedData) and calls[0][1]["shared"] is calls[1][1]["shared"]
    assert [d[:4] for d in done] == [(1, 2, "epoch_1", None), (2, 2, "epoch_2", None)]
    assert all(0 < d[4] < wall for d in done) and sum(d[4] for d in done) < wall
    assert [a.checkpoint for a in audits] == points and [a.how for a in audits] == [None, None]
    for point in points:  # --export-representations reaches each audit, --no-html too
        assert (out / point.name / "representations.npz").is_file()
        assert not (out / point.name / "report.html").exists()
    shared = calls[0][1]["shared"]
    assert shared.opened == 1 and series["tool"] == {"name": "robustness-audit", "version": __version__,
                                                     "data_opened": 1, "data_decoded": shared.decoded}
    created = datetime.fromisoformat(series["created"])
    assert created.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= created <= after + timedelta(seconds=1)
    text = (out / "series.json").read_text(encoding="utf-8")
    assert text == json.dumps(series, indent=2, allow_nan=False) + "\n" and json.loads(text) == series
    # the gates (and the JUnit file) are the selected checkpoint's: the standard twin, the first
    assert series["gates"]["checkpoint"] == "epoch_1"
    assert (tmp_path / "junit.xml").read_text(encoding="utf-8") == junit_xml(audits[0].report)
    assert not (out / "series.html").exists() and not (out / STATE_FILE).exists()


def test_the_defaults_and_the_refusals_word_for_word(tmp_path, monkeypatch):
    import reports.series

    checked = []
    check = reports.series.check_select
    monkeypatch.setattr(reports.series, "check_select", lambda m, r=None: (checked.append(r), check(m, r)))
    points = _points(tmp_path / "ckpt")[:1]
    series, _ = run_series(_template(), points, tmp_path / "one", order="number")  # gate_on last, no resume
    assert series["gates"]["on"] == "last" and series["selection"] is None and checked == []
    first = tmp_path / "first"
    run_series(_template(), _points(tmp_path / "two"), first, order="number", select="clean.accuracy")
    assert len(checked) == 2 and checked[0] is None and checked[1]["model"]["path"].endswith("epoch_1.safetensors")
    assert json.loads((first / "series.json").read_text())["changes"][0]["alpha"] == 0.05  # the default alpha
    with pytest.raises(AuditError) as bad:
        run_series(_template(), points, tmp_path / "x", order="number", gate_on="first")
    assert str(bad.value) == "--gate-on must be last or selected, got 'first'"
    with pytest.raises(AuditError) as bad:
        run_series(_template(), points, tmp_path / "x", order="number", gate_on="selected")
    assert str(bad.value) == ("--gate-on selected needs --select METRIC: it names the checkpoint the gates apply "
                              "to")
    with pytest.raises(AuditError, match=r"robust_accuracy\[pgd@0.1\]"):  # the reports have no PGD
        run_series(_template(), points, tmp_path / "x", order="number", select="robust_accuracy[pgd@0.1]")
    with pytest.raises(AuditError) as bad:
        run_series(_template(), points, tmp_path / "fresh", order="number", resume=True)
    assert str(bad.value) == (f"--resume: no saved state of an interrupted series in {tmp_path / 'fresh'} (a "
                              "finished series leaves none): start without --resume")
    assert not (tmp_path / "fresh" / "series.json").exists()


def test_a_stale_series_json_and_page_are_removed_before_the_audits(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("series.json", "series.html"):
        (out / name).write_text("from an earlier series")

    def fails(config, **kw):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(runner, "run_audit", fails)
    with pytest.raises(RuntimeError):
        run_series(_template(), _points(tmp_path / "ckpt"), out, order="number")
    assert not (out / "series.json").exists() and not (out / "series.html").exists()


def test_series_json_is_strict_json(tmp_path, monkeypatch):
    """A NaN never reaches series.json (JSON has none): the series stops before writing it."""
    import reports.series

    build = reports.series.build_series
    monkeypatch.setattr(reports.series, "build_series", lambda *a, **k: {**build(*a, **k), "alpha": math.nan})
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        run_series(_template(), _points(tmp_path / "ckpt")[:1], tmp_path / "out", order="number")
    assert not (tmp_path / "out" / "series.json").exists()


def test_a_kept_report_of_other_samples_is_audited_again_and_a_saved_state_resumes(tmp_path, monkeypatch):
    import reports.html

    points, out = _points(tmp_path / "ckpt"), tmp_path / "out"

    def broken(series):
        raise ValueError("the page failed")

    with monkeypatch.context() as m:  # the series stops after its audits: both reports kept in its state
        m.setattr(reports.html, "render_series_html", broken)
        with pytest.raises(ValueError):
            run_series(_template(html=True), points, out, order="number")
    saved = json.loads((out / STATE_FILE).read_text())
    assert sorted(saved["checkpoints"]) == ["epoch_1", "epoch_2"]
    # epoch_1's report saw other samples (the data changed since): its report and its record say so
    report = out / "epoch_1" / "report.json"
    earlier = json.loads(report.read_text())
    earlier["data"]["sample"]["fingerprint"] = "samples of another data set"
    report.write_text(json.dumps(earlier))
    saved["checkpoints"]["epoch_1"].update(sample="samples of another data set",
                                           report=hashlib.sha256(report.read_bytes()).hexdigest())
    (out / STATE_FILE).write_text(json.dumps(saved))
    (out / "epoch_2" / "report.json").unlink()
    (out / "epoch_2" / ".state").mkdir()
    (out / "epoch_2" / ".state" / "rank0.json").write_text("{}")
    calls, done = [], []
    _spy(monkeypatch, calls, resume_off=True)
    series, audits = run_series(_template(html=True), points, out, order="number", resume=True,
                                done=lambda i, total, a: done.append((i, total, a.checkpoint.name, a.how, a.seconds)))
    assert [(c.model, c.resume) for c, _ in calls] == [(str(points[1].path), True), (str(points[0].path), False)]
    assert [d[:4] for d in done] == [(1, 2, "epoch_1", "kept"), (2, 2, "epoch_2", "resumed"),
                                     (1, 2, "epoch_1", None)]
    assert done[0][4] == 0.0 and done[1][4] > 0 and done[2][4] > 0
    assert [a.how for a in audits] == [None, "resumed"]
    assert series["checkpoints"][0]["name"] == "epoch_1" and not (out / STATE_FILE).exists()
    assert (out / "series.html").is_file()


class _Rank1:
    rank, size, active = 1, 2, True

    def __init__(self, answers):
        self.answers = answers

    def gather(self, obj):
        return [self.answers.pop(0), obj]


def test_another_rank_audits_its_share_quietly_and_writes_nothing(tmp_path, monkeypatch):
    import audit.engine.distributed

    devices, calls = [], []
    answers = [{"kept": set(), "resume": {"epoch_2"}}, []]
    monkeypatch.setattr(audit.engine.distributed, "world", lambda device: (devices.append(device),
                                                                            _Rank1(answers))[1])
    _spy(monkeypatch, calls, real=False)
    points, out = _points(tmp_path / "ckpt"), tmp_path / "out"
    out.mkdir()
    assert run_series(_template(device="cpu"), points, out, order="number",
                      progress=lambda name: pytest.fail("rank 1 reports no progress")) == (None, [])
    assert devices == ["cpu"] and answers == []
    assert [(c.model, c.out, c.resume) for c, _ in calls] == [(str(p.path), str(out / p.name), p.name == "epoch_2")
                                                            for p in points]
    for (_, kw), point in zip(calls, points, strict=True):
        assert set(kw) == {"state_dir", "shared"} and kw["state_dir"] == str(out / point.name / ".state")
    assert isinstance(calls[0][1]["shared"], SharedData) and calls[0][1]["shared"] is calls[1][1]["shared"]
    assert list(out.iterdir()) == []  # rank 0 writes the state and the series
    answers[:] = ["--resume: a refusal of rank 0"]
    with pytest.raises(AuditError) as bad:
        run_series(_template(device="cpu"), points, out, order="number")
    assert str(bad.value) == "--resume: a refusal of rank 0"


def _state(tmp_path: Path, **kw) -> SeriesState:
    return SeriesState(tmp_path, AuditConfig(model=str(STANDARD), samples="20", **kw))


def test_the_resume_state_refuses_word_for_word(tmp_path):
    points = [Checkpoint("e1", STANDARD)]
    state = _state(tmp_path)
    path = tmp_path / STATE_FILE
    state.remove()  # nothing to remove: no error
    state.save()
    saved = json.loads(path.read_text())
    # the model is not part of the series' settings; --batch-size is named as the flag
    assert "--model" not in state.fingerprint and "--batch-size" in state.fingerprint
    assert SeriesState(tmp_path, AuditConfig(model=str(ADVERSARIAL), samples="20")).plan(points, {"e1": "x"}) == (
        {}, set())

    def refusal(document) -> str:
        path.write_text(document if isinstance(document, str) else json.dumps(document))
        with pytest.raises(AuditError) as bad:
            _state(tmp_path).plan(points, {"e1": "x"})
        return str(bad.value)

    where = f"--resume: {path}"
    assert refusal({**saved, "fingerprint": {**saved["fingerprint"], "--extra": 1}}) == (
        f"{where} belongs to another series: --extra differ; rerun with the same settings, or start without "
        "--resume")
    assert refusal({**saved, "fingerprint": {k: v for k, v in saved["fingerprint"].items() if k != "--seed"}}) == (
        f"{where} belongs to another series: --seed differ; rerun with the same settings, or start without --resume")
    path.write_text(json.dumps(saved))
    with pytest.raises(AuditError) as bad:
        _state(tmp_path, batch_size=8, seed=3).plan(points, {"e1": "x"})
    assert str(bad.value) == (f"{where} belongs to another series: --batch-size, --seed differ; rerun with the same "
                              "settings, or start without --resume")
    assert refusal({**saved, "format": 2}) == f"{where} is unreadable (unknown format 2): start without --resume"
    long = "f" * 200
    assert refusal({**saved, "format": long}) == (
        f"{where} is unreadable ({('unknown format ' + repr(long))[:120]}): start without --resume")
    assert refusal('{"format": 1,\n') == (f"{where} is unreadable (Expecting property name enclosed in double "
                                          "quotes: line 2 column 1 (char 14)): start without --resume")
    state.remove()
    assert not path.exists()


# --- the series page's helpers (reports/html/series.py), on hand-written parts of a series document -------------

def test_the_page_helpers_texts_and_placeholders():
    from reports.html.series import _entropy_text, changes, link, score_text, selection

    assert score_text({"value": None}) == "—" and score_text({"value": 47.04}) == "47.0"
    assert score_text({"value": 47.04, "interval": [39.21, 55.66]}) == "47.0 [39.2, 55.7]"
    assert score_text({"value": 69.9, "interval": [69.9, 69.9], "capped_by": ["a"]}) == "69.9 capped [69.9, 69.9]"
    assert score_text({"value": 69.9, "interval": None, "capped_by": None}) == "69.9"
    assert _entropy_text(None, None) == "—" and _entropy_text(2.3456, None) == "2.35"
    assert _entropy_text(2.3456, [2.1, 2.6]) == "2.35 [2.1, 2.6]"
    assert link("a/b c", "report.html") == "a%2Fb%20c/report.html"
    rows = [{"metric": "clean.accuracy", "direction": "rose", "p_rise": 0.01, "p_fall": 1.0},
            {"metric": "robust_accuracy[pgd@0.1]", "direction": "fell", "p_rise": 1.0, "p_fall": 0.02},
            {"metric": "robust_accuracy[fgsm@0.1]", "direction": "fell", "p_rise": 1.0, "p_fall": 0.03},
            {"metric": "robust_accuracy[fgsm@0.2]", "direction": "inconclusive", "p_rise": 0.4, "p_fall": 0.7},
            {"metric": "robust_accuracy[fgsm@0.3]", "direction": "identical", "p_rise": 1.0, "p_fall": 1.0}]
    (ch,) = changes({"changes": [{"from": "a", "to": "b", "paired": True, "note": "", "alpha": 0.05, "rows": rows}]})
    assert (ch["rose"], ch["fell"]) == (1, 2)
    assert [(r["icon"], r["word"], r["kind"]) for r in ch["rows"]][2:4] == [("▼", "fell", "fail"),
                                                                             ("", "inconclusive", "")]
    sel = {"metric": "clean.accuracy.lower", "selected": "b", "value": 0.8123, "rule": "r",
           "values": [{"name": "a", "value": 0.5}, {"name": "b", "value": 0.8123}]}
    shown = selection({"selection": sel})
    assert shown["shown"] == "81.2%" and [r["value"] for r in shown["rows"]] == ["50.0%", "81.2%"]
    sel = {**sel, "metric": "clean.accuracy", "values": [{"name": "b", "value": 0.8123}]}  # no bound
    assert selection({"selection": sel})["shown"] == "81.2%"


def test_the_page_context_of_an_empty_series_and_its_frame():
    from markupsafe import escape

    from reports.html import render_series_html
    from reports.html.render import stylesheet
    from reports.html.series import robust_metrics, series_context

    bare = {"checkpoints": [], "changes": [], "alpha": 0.01, "order": "given",
            "gates": {"on": "last", "checkpoint": "", "gated": False, "passed": True, "summary": "no gates set"}}
    ctx = series_context(bare)
    assert (ctx["tool"], ctx["created"], ctx["alpha"], ctx["order"]) == ({}, "—", 0.01, "given")
    tool = {"name": "robustness-audit", "version": "9"}
    ctx = series_context({**bare, "tool": tool, "created": "2026-01-02T03:04:05+00:00"})
    assert (ctx["tool"], ctx["created"]) == (tool, "2026-01-02T03:04:05+00:00")
    points = [{"robust": [{"metric": "robust_accuracy[pgd@0.1]", "attack": "pgd", "eps_text": "0.1"}]},
              {"robust": [{"metric": "robust_accuracy[fgsm@8/255]", "attack": "fgsm", "eps_text": "8/255"},
                          {"metric": "robust_accuracy[pgd@0.1]", "attack": "pgd", "eps_text": "other"}]}]
    assert robust_metrics(points) == [{"metric": "robust_accuracy[pgd@0.1]", "attack": "pgd", "eps_text": "0.1"},
                                      {"metric": "robust_accuracy[fgsm@8/255]", "attack": "fgsm",
                                       "eps_text": "8/255"}]
    css, policy = stylesheet()
    page = render_series_html(bare)
    assert "<title>Robustness audit: series of 0 checkpoints</title>" in page
    assert f"<style>{css}" in page and f'content="{escape(policy)}"' in page


def _page_series() -> dict:
    """Two checkpoints, hand-written: the second adds FGSM and a layer, the first lacks a score interval's twin."""
    pgd, fgsm = "robust_accuracy[pgd@0.1]", "robust_accuracy[fgsm@0.1]"
    first = {"name": "e1", "clean": {"accuracy": 0.9, "accuracy_ci": [0.8, 0.95], "n": 30},
             "robust": [{"metric": pgd, "attack": "pgd", "eps_text": "0.1", "value": 0.2, "ci": [0.1, 0.35]}],
             "score": {"value": 47.04, "interval": [40.0, 55.0], "grade": "D", "capped_by": ["x", "y"]},
             "semantics": {"glove": {"alpha": 0.05, "layers": [
                 {"layer": "conv1", "two_vs_two": 0.7, "p_value": 0.01, "significant": True},
                 {"layer": "fc", "two_vs_two": None, "p_value": None, "significant": False}]}},
             "saliency": {"entropy": "glcm", "method": "gradcam", "layers": [
                 {"layer": "conv1", "entropy": 2.5, "entropy_ci": [2.0, 3.5]}],
                 "superization": {"index": 0.12345, "p_value": 0.04321}}}
    second = {"name": "e2", "clean": {"accuracy": 0.8, "accuracy_ci": [0.7, 0.9], "n": 30},
              "robust": [{"metric": pgd, "attack": "pgd", "eps_text": "0.1", "value": 0.5, "ci": [0.4, 0.6]},
                         {"metric": fgsm, "attack": "fgsm", "eps_text": "0.1", "value": 0.6, "ci": [0.5, 0.7]}],
              "score": {"value": None, "grade": None},
              "semantics": {"glove": {"alpha": 0.05, "layers": [
                  {"layer": "conv1", "two_vs_two": 0.6, "p_value": 0.2, "significant": False},
                  {"layer": "fc", "two_vs_two": 0.9, "p_value": None, "significant": True}]}},
              "saliency": {"layers": [{"layer": "conv1", "entropy": 2.25, "entropy_ci": None},
                                      {"layer": "conv2", "entropy": 1.5, "entropy_ci": [1.25, 1.75]}]}}
    return {"checkpoints": [first, second]}


def _charts(monkeypatch) -> list[tuple[str, tuple, dict]]:
    import reports.html.series as page

    calls = []
    for name in ("line_chart", "heatmap"):
        real = getattr(page, name)
        monkeypatch.setattr(page, name, lambda *a, _real=real, _name=name, **k: (calls.append((_name, a, k)),
                                                                                 _real(*a, **k))[1])
    return calls


def test_the_accuracy_and_score_charts_and_table(monkeypatch):
    from reports.html.series import trend

    calls = _charts(monkeypatch)
    out = trend(_page_series())
    assert [(r["n"], r["robust"][1], r["grade"]) for r in out["rows"]] == [
        (30, "—", "D (capped by x, y)"), (30, "60.0% [50.0, 70.0]", "—")]
    (_, (pgd,), kp), (_, (fgsm,), kf), (_, (score,), ks) = calls
    for lines, k, attack in ((pgd, kp, "pgd"), (fgsm, kf, "fgsm")):
        assert k == {"title": f"Clean and robust accuracy under {attack} across checkpoints", "x_label": "checkpoint",
                     "y_label": "accuracy", "categories": ["e1", "e2"], "height": 220}
        assert (lines[0].label, list(lines[0].points)) == ("clean", [(0, 0.9), (1, 0.8)])
    assert [(s.label, list(s.points), list(s.intervals)) for s in pgd[1:] + fgsm[1:]] == [
        ("pgd@0.1", [(0, 0.2), (1, 0.5)], [[0.1, 0.35], [0.4, 0.6]]),
        ("fgsm@0.1", [(0, None), (1, 0.6)], [None, [0.5, 0.7]])]
    assert [(s.label, list(s.points), list(s.intervals)) for s in score] == [
        ("score", [(0, 47.04), (1, None)], [[40.0, 55.0], None])]
    fmt = ks.pop("y_format")
    assert (fmt(47.25), fmt(50.0), fmt(3.0), fmt(100.0)) == ("47.2", "50", "3", "100")
    assert ks == {"title": "Score across checkpoints", "x_label": "checkpoint", "y_label": "score",
                  "y_range": (0.0, 100.0), "categories": ["e1", "e2"], "height": 160}


def test_the_semantic_heatmap_and_the_saliency_chart(monkeypatch):
    from reports.html.charts import nice_range
    from reports.html.series import saliency, semantics

    calls = _charts(monkeypatch)
    series = _page_series()
    (space,) = semantics(series)
    (_, (rows, columns, grid), k) = calls.pop()
    assert (rows, columns, space["alphas"]) == (["conv1", "fc"], ["e1", "e2"], [0.05])
    assert [[(c.value, c.marked, c.note) for c in row] for row in grid] == [
        [(0.7, True, "p 0.01 (significant)"), (0.6, False, "p 0.2 (not significant)")],
        [(None, False, "not measured"), (0.9, True, "p — (significant)")]]
    assert {key: k[key] for key in ("title", "x_label", "y_label", "scale_label", "mark_label", "lo", "hi")} == {
        "title": "2 vs 2 per layer across checkpoints (glove)", "x_label": "checkpoint", "y_label": "layer",
        "scale_label": "2 vs 2:", "mark_label": "* significant (p < alpha)", "lo": 0.5, "hi": 1.0}
    series["checkpoints"][1]["semantics"] = None
    semantics(series)
    assert [c.note for c in calls.pop()[1][2][0]] == ["p 0.01 (significant)", "no semantic section"]
    shown = saliency(series)
    ((_, (lines,), k),) = calls
    assert [(s.label, list(s.points), list(s.intervals)) for s in lines] == [
        ("conv1", [(0, 2.5), (1, 2.25)], [[2.0, 3.5], None]), ("conv2", [(0, None), (1, 1.5)], [None, [1.25, 1.75]])]
    fmt = k.pop("y_format")
    assert fmt(2.12345) == "2.12"
    assert k == {"title": "Saliency entropy per layer across checkpoints", "x_label": "checkpoint",
                 "y_label": "entropy", "y_range": nice_range(1.25, 3.5), "categories": ["e1", "e2"], "height": 220}
    assert nice_range(1.25, 3.5) != nice_range(1.5, 2.5)  # the intervals' ends widen the range
    assert shown["kinds"] == ["? entropy of ? maps", "glcm entropy of gradcam maps"]
    assert [(s["index"], s["p"]) for s in shown["superization"]] == [("0.123", "0.0432"), ("—", "—")]
    for testable, shown_index in ((False, "0.123 (untestable)"), (True, "0.123"), (None, "0.123")):
        series["checkpoints"][0]["saliency"]["superization"]["testable"] = testable
        assert saliency(series)["superization"][0]["index"] == shown_index
    series["checkpoints"][0]["saliency"]["superization"].pop("testable")
    del calls[1:]  # the three renders above drew their charts too
    for c in series["checkpoints"]:  # a saliency section without measured layers: no chart
        c["saliency"] = {"layers": [{"layer": "conv1", "entropy": None, "entropy_ci": None}]}
    assert saliency(series)["chart"] is None and len(calls) == 1
