"""`audit series`: one audit per checkpoint on the shared data, series.json, the paired tests between
consecutive checkpoints, the selection and the gates, the order, and bad input (one line, exit 2, nothing
written)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from audit.cli import main
from audit.data.shared import SharedData
from audit.data import Framing, open_data
from audit.config import AuditConfig
from audit.engine.series import STATE_FILE, SeriesState, find_checkpoints, run_series
from audit.errors import AuditError
from reports.compare import compare
from reports.schema import unpack_bits
from reports.series import validate_series

ASSETS = Path(__file__).resolve().parents[1] / "audit" / "demo_assets"
STANDARD, ADVERSARIAL = ASSETS / "fashion_cnn.safetensors", ASSETS / "fashion_cnn_adv.safetensors"
SETTINGS = ["--arch", "audit.demo_model:FashionCNN", "--classes", "fashion-mnist", "--samples", "40", "-a", "fgsm",
            "-a", "pgd", "--eps", "0.1", "--steps", "3", "--permutations", "50", "--no-html", "--no-checks"]
QUICK = ["--arch", "audit.demo_model:FashionCNN", "--classes", "fashion-mnist", "--samples", "30", "-a", "fgsm",
         "--eps", "0.1", "--layers", "none", "--no-html", "--no-checks"]


def cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as stop:
        main(args)
    out, err = capsys.readouterr()
    return stop.value.code, out, err


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """The two demo twins as a series, and each audited alone with `audit run` (the same settings)."""
    root = tmp_path_factory.mktemp("twins")
    for model, out in ((STANDARD, "single_std"), (ADVERSARIAL, "single_adv")):
        with pytest.raises(SystemExit) as stop:
            main(["run", str(model), *SETTINGS, "--out", str(root / out)])
        assert stop.value.code == 0
    with pytest.raises(SystemExit) as stop:
        main(["series", str(STANDARD), str(ADVERSARIAL), "--order", "given", *SETTINGS, "--out", str(root / "series"),
              "--select", "robust_accuracy[pgd@0.1].lower"])
    assert stop.value.code == 0
    return root


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _numbers(report: dict) -> dict:
    """Everything a report measured (timing, paths, dates and the environment aside)."""
    attacks = [{k: v for k, v in e.items() if k != "wall_time_s"} for e in report["attacks"]]
    return {"clean": report["clean"], "attacks": attacks, "score": report["score"], "analyses": report["analyses"],
            "data": report["data"], "verdict": report["verdict"], "sha256": report["model"]["sha256"]}


def test_a_series_of_the_twins_reproduces_the_single_audits_exactly(twins):
    for single, name in (("single_std", "fashion_cnn"), ("single_adv", "fashion_cnn_adv")):
        alone = _read(twins / single / "report.json")
        in_series = _read(twins / "series" / name / "report.json")
        assert _numbers(in_series) == _numbers(alone)
        assert in_series["analyses"]["semantics"]["layers"] and in_series["analyses"]["saliency"]["layers"]
    # with layers chosen, each audit makes a clean pre-pass before its attack pass: still one decoding in all
    series = _read(twins / "series" / "series.json")
    assert (series["tool"]["data_opened"], series["tool"]["data_decoded"]) == (1, 1)


def test_series_json_is_valid_and_reads_each_report(twins):
    series = _read(twins / "series" / "series.json")
    validate_series(series)
    assert series["schema_version"] == "1.1" and series["order"] == "given"
    assert [c["name"] for c in series["checkpoints"]] == ["fashion_cnn", "fashion_cnn_adv"]
    assert series["tool"]["data_opened"] == 1  # the data opened once for both checkpoints
    for c in series["checkpoints"]:
        report = _read(twins / "series" / c["report"])
        assert c["sha256"] == report["model"]["sha256"] and Path(c["path"]).name == f"{c['name']}.safetensors"
        assert c["clean"] == {"accuracy": report["clean"]["accuracy"], "accuracy_ci": report["clean"]["accuracy_ci"],
                              "n": 40}
        by_key = {f"robust_accuracy[{e['name']}@{e['eps_text']}]": e for e in report["attacks"]}
        assert [r["metric"] for r in c["robust"]] == ["robust_accuracy[fgsm@0.1]", "robust_accuracy[pgd@0.1]"]
        for r in c["robust"]:
            assert (r["value"], r["ci"]) == (by_key[r["metric"]]["robust_accuracy"],
                                             by_key[r["metric"]]["robust_accuracy_ci"])
        assert (c["score"]["value"], c["score"]["interval"]) == (report["score"]["value"], report["score"]["interval"])
        sem = report["analyses"]["semantics"]
        assert set(c["semantics"]) == {"glove", "wordnet"}
        for space, layers in (("glove", sem["layers"]), ("wordnet", sem["spaces"]["wordnet"]["layers"])):
            got = c["semantics"][space]["layers"]
            assert [(g["layer"], g["two_vs_two"], g["p_value"]) for g in got] == [
                (layer["name"], layer["clean"]["two_vs_two"], layer["clean"]["p_value"]) for layer in layers]
            assert [g["significant"] for g in got] == [layer["clean"]["p_value"] < sem["alpha"] for layer in layers]
        sal = report["analyses"]["saliency"]
        assert [(s["layer"], s["entropy"]) for s in c["saliency"]["layers"]] == [
            (layer["name"], layer["clean"]["mean"]) for layer in sal["layers"]]
        assert c["saliency"]["superization"]["index"] == sal["superization"]["index"]
    bad = dict(series, order="sideways")
    with pytest.raises(AuditError, match="order"):
        validate_series(bad)


def _binomial_tail(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), by summing the terms."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n


def test_the_paired_tests_between_checkpoints_against_a_literal_mcnemar_and_holm(twins):
    series = _read(twins / "series" / "series.json")
    base = _read(twins / "series" / "fashion_cnn" / "report.json")
    new = _read(twins / "series" / "fashion_cnn_adv" / "report.json")
    (change,) = series["changes"]
    assert change["from"] == "fashion_cnn" and change["to"] == "fashion_cnn_adv" and change["paired"]
    rows = {r["metric"]: r for r in change["rows"]}
    assert set(rows) == {"clean.accuracy", "robust_accuracy[fgsm@0.1]", "robust_accuracy[pgd@0.1]"}
    # literal: discordant pairs from the per-sample bits, exact one-sided binomial p each way, Holm over 3 rows
    outcomes = {"clean.accuracy": (base["clean"], new["clean"], "correct")}
    for i, e in enumerate(base["attacks"]):
        outcomes[f"robust_accuracy[{e['name']}@{e['eps_text']}]"] = (e, new["attacks"][i], "robust")
    raw = {}
    for metric, (a, b, field) in outcomes.items():
        x, y = unpack_bits(a["per_sample"][field], 40), unpack_bits(b["per_sample"][field], 40)
        lost = sum(1 for u, v in zip(x, y, strict=True) if u and not v)
        gained = sum(1 for u, v in zip(x, y, strict=True) if v and not u)
        assert (rows[metric]["b"], rows[metric]["c"]) == (lost, gained)
        n = lost + gained
        raw[metric] = (1 - _binomial_tail(lost - 1, n) if lost else 1.0, _binomial_tail(lost, n))  # worse, better
    for side, key in ((0, "p_adjusted"), (1, "p_better_adjusted")):
        ordered = sorted(raw, key=lambda m: raw[m][side])
        running = 0.0
        for j, metric in enumerate(ordered):
            running = max(running, min(1.0, (len(ordered) - j) * raw[metric][side]))
            assert rows[metric][key] == pytest.approx(running, rel=1e-9, abs=1e-12)
    for row in rows.values():
        p = row["p_better_adjusted"] if row["delta"] > 0 else row["p_adjusted"]
        expected = ("rose" if row["delta"] > 0 else "fell") if p < 0.05 else "inconclusive"
        assert row["direction"] == expected and row["significant"] == (p < 0.05)
    assert rows["robust_accuracy[pgd@0.1]"]["direction"] == "rose"  # adversarial training: 5% -> 70% of 40
    # the same rows as `audit compare` computes them
    direct = {r["metric"]: r for r in compare(base, new, 0.0, 0.05)["rows"]}
    for metric, row in rows.items():
        assert (row["p_adjusted"], row["difference_ci"]) == (direct[metric]["p_adjusted"],
                                                             direct[metric]["difference_ci"])


def test_select_names_the_best_checkpoint_with_its_rule(twins, capsys):
    series = _read(twins / "series" / "series.json")
    sel = series["selection"]
    lowers = {c["name"]: next(r["ci"][0] for r in c["robust"] if r["metric"] == "robust_accuracy[pgd@0.1]")
              for c in series["checkpoints"]}
    assert sel["selected"] == max(lowers, key=lowers.get) == "fashion_cnn_adv"
    assert sel["value"] == lowers["fashion_cnn_adv"] and "highest robust_accuracy[pgd@0.1].lower" in sel["rule"]
    assert series["gates"] == {"on": "last", "checkpoint": "fashion_cnn_adv", "gated": False, "passed": True,
                               "summary": series["gates"]["summary"]}


def test_gates_apply_to_the_last_or_the_selected_checkpoint(tmp_path, capsys):
    pair = [str(STANDARD), str(ADVERSARIAL), "--order", "given", *QUICK, "--gate", "robust_accuracy[fgsm@0.1]>=0.5"]
    code, out, _ = cli(["series", *pair, "--out", str(tmp_path / "last")], capsys)
    assert code == 0 and "gates on the last checkpoint, fashion_cnn_adv: PASSED" in out
    code, out, err = cli(["series", *pair, "--select", "clean.accuracy", "--gate-on", "selected",
                          "--out", str(tmp_path / "selected")], capsys)
    assert code == 1 and "gate failed: fashion_cnn (selected checkpoint)" in err
    assert "selected: fashion_cnn (clean.accuracy" in out and "lowest" not in out
    series = _read(tmp_path / "selected" / "series.json")
    assert series["gates"]["checkpoint"] == "fashion_cnn" and not series["gates"]["passed"]
    assert "[1/2] fashion_cnn: clean" in out and "[2/2] fashion_cnn_adv: clean" in out  # one line per checkpoint


@pytest.fixture()
def epochs(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    for n, source in ((10, ADVERSARIAL), (2, STANDARD), (1, STANDARD)):
        shutil.copy(source, folder / f"epoch_{n}.safetensors")
    return folder


def test_checkpoints_are_ordered_by_the_number_in_their_name(epochs):
    by_glob = find_checkpoints([str(epochs / "epoch_*.safetensors")])
    assert [p.name for p in by_glob] == ["epoch_1", "epoch_2", "epoch_10"]
    assert [p.name for p in find_checkpoints([str(epochs)])] == ["epoch_1", "epoch_2", "epoch_10"]
    given = [str(epochs / f"epoch_{n}.safetensors") for n in (10, 1, 2)]
    assert [p.name for p in find_checkpoints(given, "given")] == ["epoch_10", "epoch_1", "epoch_2"]
    assert [p.name for p in find_checkpoints(given)] == ["epoch_1", "epoch_2", "epoch_10"]
    with pytest.raises(AuditError, match="fashion_cnn has none; use --order given"):
        find_checkpoints([str(STANDARD)])


def test_a_series_shares_one_decoded_data_set(epochs, tmp_path, capsys):
    code, out, _ = cli(["series", str(epochs / "epoch_*.safetensors"), *QUICK, "--out", str(tmp_path / "o")], capsys)
    assert code == 0, out
    series = _read(tmp_path / "o" / "series.json")
    assert [c["name"] for c in series["checkpoints"]] == ["epoch_1", "epoch_2", "epoch_10"]
    assert series["tool"]["data_opened"] == 1
    first, second = (_read(tmp_path / "o" / n / "report.json") for n in ("epoch_1", "epoch_2"))
    assert _numbers(first) == _numbers(second)  # the same weights, decoded once, replayed: the same numbers
    (same, moved) = series["changes"]
    assert all(r["direction"] == "identical" for r in same["rows"])


def test_replayed_batches_equal_a_fresh_decode():
    shared = SharedData()
    framing = Framing()
    kept = shared.open("demo", samples=25, seed=3, framing=framing)
    assert shared.open("demo", samples=25, seed=3, framing=framing) is kept and shared.opened == 1
    first = list(kept.batches(8))
    first[0].x.add_(1.0)  # an audit changing its batch changes no other audit's
    replay = list(kept.batches(8))
    fresh_set = open_data("demo", samples=25, seed=3, framing=framing)
    fresh = list(fresh_set.batches(8))
    assert shared.decoded == 1 and len(replay) == len(fresh) == 4
    for a, b in zip(replay, fresh, strict=True):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.index, b.index)
    assert kept.fingerprint() == fresh_set.fingerprint() and kept.audited.tolist() == fresh_set.audited.tolist()


def test_a_pass_begun_before_another_finished_replays_the_rest_of_it():
    """An audit's attack pass holds its first batch while its pre-pass decodes everything: the attack pass
    goes on from the pre-pass's batches; past the memory limit nothing is kept and it decodes on."""
    framing = Framing()
    fresh = list(open_data("demo", samples=25, seed=3, framing=framing).batches(8))
    for limit, decoded in ((2 << 30, 1), (1000, 2)):
        shared = SharedData(limit_bytes=limit)
        images = shared.open("demo", samples=25, seed=3, framing=framing)
        attack = images.batches(8)
        held = next(attack)
        prepass = list(images.batches(8))
        prepass[1].x.add_(1.0)  # the pre-pass's own batches are not the ones replayed
        rest = list(attack)
        assert shared.decoded == decoded and len(rest) == len(fresh) - 1
        for a, b in zip([held, *rest], fresh, strict=True):
            assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.index, b.index)


def _nothing_written(out: Path) -> bool:
    return not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("case", ["empty glob", "same name", "other classes", "unreadable second",
                                  "no number", "gate-on without select", "unknown select", "data not a data set",
                                  "headers alike, not the arch's"])
def test_bad_input_is_one_line_exit_2_and_nothing_written(case, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    shutil.copy(STANDARD, a / "epoch_1.safetensors")
    args = [str(a / "epoch_1.safetensors")]
    expect = ""
    if case == "empty glob":
        args, expect = [str(tmp_path / "none_*.safetensors")], "no checkpoint matches"
    elif case == "same name":
        shutil.copy(ADVERSARIAL, b / "epoch_1.safetensors")
        args.append(str(b / "epoch_1.safetensors"))
        expect = "two checkpoints are named epoch_1"
    elif case == "other classes":
        for n, classes in ((1, 10), (2, 5)):
            net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, classes))
            torch.jit.save(torch.jit.script(net), str(b / f"epoch_{n}.pt"))
        args, expect = [str(b / "epoch_1.pt"), str(b / "epoch_2.pt")], f"{b / 'epoch_2.pt'} has another network"
    elif case == "unreadable second":
        (b / "epoch_2.safetensors").write_bytes(b"not a model at all" * 10)
        args.append(str(b / "epoch_2.safetensors"))
        expect = str(b / "epoch_2.safetensors")
    elif case == "no number":
        args, expect = [str(STANDARD)], "has none; use --order given"
    elif case == "gate-on without select":
        args.append("--gate-on=selected")
        expect = "--gate-on selected needs --select"
    elif case == "unknown select":
        args += ["--select", "robustness"]
        expect = "unknown metric 'robustness'"
    out = tmp_path / "out"
    extra = [] if case == "other classes" else QUICK
    if case == "headers alike, not the arch's":  # found when the first audit loads the first checkpoint
        from safetensors.torch import save_file

        for n in (1, 2):
            save_file(torch.nn.Linear(784, 10).state_dict(), str(b / f"epoch_{n}.safetensors"))
        args, expect = [str(b / "epoch_1.safetensors"), str(b / "epoch_2.safetensors")], "epoch_1.safetensors"
    if case == "data not a data set":  # found inside the first checkpoint's audit
        (tmp_path / "empty").mkdir()
        extra = [*QUICK, "--data", str(tmp_path / "empty")]
        expect = "is not a recognized data set"
    code, _, err = cli(["series", *args, *extra, "--out", str(out)], capsys)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("[epoch_1] ")]  # progress
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], err
    assert _nothing_written(out)


def test_bad_input_inside_the_first_audit_leaves_a_folder_the_user_made_and_a_resumable_state(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    made, other = tmp_path / "made", tmp_path / "other"
    made.mkdir(), other.mkdir()
    (other / "notes.txt").write_text("mine")
    for out in (made, other):
        code, _, _ = cli(["series", str(STANDARD), "--order", "given", *QUICK, "--data", str(tmp_path / "empty"),
                          "--out", str(out)], capsys)
        assert code == 2
    assert made.is_dir() and not any(made.iterdir()) and [p.name for p in other.iterdir()] == ["notes.txt"]
    # a resumed series keeps its state through bad input: the user fixes the input and resumes again
    template = AuditConfig(model=str(STANDARD), arch="audit.demo_model:FashionCNN", classes="fashion-mnist",
                           samples="30", attacks=["fgsm"], eps="0.1", layers="none", html=False, checks=False,
                           data=str(tmp_path / "empty"))
    SeriesState(made, template).save()  # an interrupted series' state, nothing finished yet
    with pytest.raises(AuditError, match="is not a recognized data set"):
        run_series(template, find_checkpoints([str(STANDARD)], "given"), made, order="given", resume=True)
    assert (made / STATE_FILE).is_file()


def test_later_safetensors_checkpoints_are_checked_by_their_header(tmp_path, monkeypatch):
    """.safetensors checkpoints with the same tensor names and shapes are checked by their headers, none loaded
    before the audits; one with another shape is loaded with the first and refused with its name."""
    import hashlib

    import audit.model as model
    from audit.engine.series import Checkpoint, check_checkpoints, checkpoint_digests
    from audit.config import AuditConfig
    from safetensors.torch import load_file, save_file

    loads = []
    real = model.load_model
    monkeypatch.setattr(model, "load_model", lambda path, **kw: loads.append(Path(path).name) or real(path, **kw))
    for n, src in ((1, STANDARD), (2, ADVERSARIAL), (3, STANDARD)):
        shutil.copy(src, tmp_path / f"epoch_{n}.safetensors")
    points = [Checkpoint(f"epoch_{n}", tmp_path / f"epoch_{n}.safetensors") for n in (1, 2, 3)]
    config = AuditConfig(model=str(points[0].path), arch="audit.demo_model:FashionCNN", data="demo")
    check_checkpoints(points, config)
    assert loads == []
    assert checkpoint_digests(points, config) == {p.name: hashlib.sha256(p.path.read_bytes()).hexdigest()
                                                  for p in points} and loads == []
    weights = load_file(str(STANDARD))
    weights["classifier.3.weight"] = weights["classifier.3.weight"][:5]
    weights["classifier.3.bias"] = weights["classifier.3.bias"][:5]
    save_file(weights, str(tmp_path / "epoch_4.safetensors"))
    with pytest.raises(AuditError) as info:
        check_checkpoints([*points, Checkpoint("epoch_4", tmp_path / "epoch_4.safetensors")], config)
    assert str(tmp_path / "epoch_4.safetensors") in str(info.value) and "\n" not in str(info.value)
    assert loads == ["epoch_1.safetensors", "epoch_4.safetensors"]
    with pytest.raises(AuditError, match="epoch_4.safetensors"):  # the second of two: compared too
        check_checkpoints([points[0], Checkpoint("epoch_4", tmp_path / "epoch_4.safetensors")], config)


def test_audit_report_re_renders_a_series(twins, tmp_path, capsys):
    from reports.html import render_series_html
    from reports.junit import junit_xml

    path = twins / "series" / "series.json"
    series = _read(path)
    page, xml = tmp_path / "page.html", tmp_path / "junit.xml"
    code, out, _ = cli(["report", str(path), "--html", str(page), "--junit", str(xml)], capsys)
    assert code in (0, None)
    assert page.read_text(encoding="utf-8") == render_series_html(series)
    gated = _read(twins / "series" / series["gates"]["checkpoint"] / "report.json")
    assert series["gates"]["checkpoint"] == "fashion_cnn_adv" and xml.read_text(encoding="utf-8") == junit_xml(gated)
    assert "gates on the last checkpoint, fashion_cnn_adv" in " ".join(out.split())
    broken = dict(series, checkpoints=[{"name": "x"}])
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    code, _, err = cli(["report", str(tmp_path / "broken.json"), "--html", str(tmp_path / "b.html")], capsys)
    assert code == 2 and err.strip().startswith("error: ") and "is not a robustness-audit series" in err
    assert not (tmp_path / "b.html").exists()


def test_a_checkpoint_that_fails_mid_series_is_named_and_the_series_resumes_once_it_is_fixed(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    ck, out = tmp_path / "ck", tmp_path / "out"
    ck.mkdir()
    shutil.copy(STANDARD, ck / "epoch_1.safetensors")
    weights = load_file(str(STANDARD))
    weights["classifier.3.bias"][0] = float("nan")  # the same header: found only when its audit runs
    save_file(weights, str(ck / "epoch_2.safetensors"))
    code, _, err = cli(["series", str(ck), *QUICK, "--out", str(out)], capsys)
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: auditing {ck / 'epoch_2.safetensors'}: "), err
    assert "NaN" in lines[0] and lines[0].endswith(
        f"(the reports of the 1 checkpoint(s) before it stay in {out}: fix this and rerun with --resume to continue)")
    assert (out / "epoch_1" / "report.json").is_file() and not (out / "series.json").exists()
    shutil.copy(ADVERSARIAL, ck / "epoch_2.safetensors")
    code, stdout, _ = cli(["series", str(ck), *QUICK, "--out", str(out), "--resume"], capsys)
    assert code == 0 and "kept: audited before the interruption" in stdout
    assert [c["name"] for c in _read(out / "series.json")["checkpoints"]] == ["epoch_1", "epoch_2"]
