"""`audit report` re-renders from the JSON alone (no torch); `audit compare` gates on regressions."""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import pytest

from audit import AuditConfig, run_audit
from audit.cli import main
from audit.demo import ARCH, ASSETS
from audit.outputs import write_outputs


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    paths = {}
    for key, weights in (("standard", "fashion_cnn.safetensors"), ("adversarial", "fashion_cnn_adv.safetensors")):
        result = run_audit(AuditConfig(model=str(ASSETS / weights), arch=ARCH, data="demo", classes="fashion-mnist",
                                       attacks=["pgd"], eps="0.1", steps=5, samples=40, device="cpu",
                                       permutations=20))
        paths[key] = write_outputs(result, out / key, html=False)
    return paths


def test_report_re_renders_html_and_summary_without_importing_torch(reports, tmp_path):
    html = tmp_path / "page.html"
    code = (
        "import sys\nfrom audit.cli import main\n"
        f"try:\n    main(['report', {str(reports['standard'])!r}, '--html', {str(html)!r}])\n"
        "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Clean accuracy" in proc.stdout and "Score" in proc.stdout
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "Content-Security-Policy" in page
    # figures referenced by the report are embedded from beside it
    assert "data:image/png;base64," in page


def test_compare_exits_1_on_a_regression_and_0_without_one(reports, tmp_path, capsys):
    with pytest.raises(SystemExit) as worse:
        main(["compare", str(reports["adversarial"]), str(reports["standard"]), "--html", str(tmp_path / "c.html")])
    assert worse.value.code == 1 and "regressed" in capsys.readouterr().err
    assert (tmp_path / "c.html").read_text().count("<svg") >= 1
    with pytest.raises(SystemExit) as same:
        main(["compare", str(reports["standard"]), str(reports["standard"])])
    assert same.value.code == 0
    assert "robust_accuracy[pgd@0.1]" in capsys.readouterr().out


def test_a_file_that_is_not_a_report_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema_version": "2.0"}))
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(bad)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "is not a robustness-audit report" in err[0]


def test_a_report_of_the_previous_schema_is_one_line_exit_2(tmp_path, capsys):
    report = json.loads((Path(__file__).parent / "fixtures" / "reports" / "demo" / "report.json").read_text())
    for key in ("statistics", "score"):  # as a report written before intervals existed
        report.pop(key)
    old = tmp_path / "old.json"
    old.write_text(json.dumps({**report, "schema_version": "1.0"}))
    for command in (["report", str(old), "--html", str(tmp_path / "r.html")], ["compare", str(old), str(old)]):
        with pytest.raises(SystemExit) as exit_info:
            main(command)
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(err) == 1
        assert "has report schema 1.0" in err[0] and "re-run the audit" in err[0]
    assert not (tmp_path / "r.html").exists()


HOSTILE = ["</script><img src=x onerror=alert(1)>", '" onmouseover="x', "[/bold]", "[red]red[/red]"]


def test_untrusted_names_do_not_break_the_terminal_summary(reports):
    import io

    from rich.console import Console

    from reports.schema import AuditResult
    from reports.terminal import render_summary

    data = json.loads(reports["standard"].read_text())
    data["data"]["classes"][:4] = HOSTILE
    data["model"]["label"] = HOSTILE[2]
    data["warnings"].append(f"class {HOSTILE[3]} looked odd")
    for i, layer in enumerate(data["analyses"]["semantics"]["layers"][:4]):
        layer["name"] = HOSTILE[i]
    data["analyses"]["semantics"]["notes"].append(HOSTILE[2])
    data["checks"][0].update(status="warn", detail=HOSTILE[3])
    out = io.StringIO()
    render_summary(AuditResult.from_dict(data), Console(file=out, width=80, color_system=None), None)
    text = out.getvalue()
    for name in HOSTILE:
        assert name in text  # printed literally, never read as markup
    assert max(len(line) for line in text.splitlines()) <= 80


def test_the_attack_table_fits_80_columns_without_cutting_cells():
    import io

    from rich.console import Console

    from reports.schema import AuditResult
    from reports.terminal import count, duration, render_summary

    assert [count(n) for n in (812, 8262, 27540, 1_234_567)] == ["812", "8.3k", "28k", "1.2M"]
    assert [duration(t) for t in (3.21, 17.4, 1500, 12345.6)] == ["3.2s", "17s", "25m", "3.4h"]
    entry = {"name": "apgd", "title": "", "eps": 8 / 255, "eps_text": "8/255", "norm": "Linf", "bounded": True,
             "steps": 100, "steps_unit": "steps", "standard_budget": False, "budget_mode": "cumulative",
             "robust_accuracy": 0.123, "success_rate": 0.877, "minimal_perturbation": None,
             "robust_accuracy_ci": [0.0951, 0.1572], "success_rate_ci": [0.8428, 0.9049],
             "perturbation": {"linf_mean": 0.0313725, "l2_mean": 12.3456}, "forward_passes": 2_754_000,
             "backward_passes": 2_727_000, "wall_time_s": 12345.6}
    result = AuditResult(tool={}, created="", model={"path": "m", "format": "safetensors", "sha256": "0" * 64,
                                                     "load_policy": "weights only", "input_shape": [3, 224, 224]},
                         data={"source": "d", "format": "imagefolder", "n_samples": 500, "n_available": 50000,
                               "classes": ["a"] * 1000, "n_corrupt": 0}, seed=0, device="cpu", settings={},
                         clean={"accuracy": 0.8, "n_correct": 400, "n": 500}, attacks=[entry],
                         statistics={"confidence": 0.95, "proportions": "Wilson score interval (scipy)"})
    out = io.StringIO()
    render_summary(result, Console(file=out, width=80, color_system=None), None)
    lines = out.getvalue().splitlines()
    table = [line for line in lines if "apgd" in line][0]
    assert "…" not in table and "12.3% ±3.4" in table and "87.7% ±3.4" in table and "3.4h" in table
    assert all(len(line) <= 80 for line in lines)
    assert "apgd 2.8M/2.7M" in " ".join(out.getvalue().split())  # the model passes, below the table
    assert "0.031/12.3" in table
