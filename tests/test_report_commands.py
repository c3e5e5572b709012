"""`audit report` re-renders from the JSON alone (no torch); `audit compare` gates on regressions."""

from __future__ import annotations

import json
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
    bad.write_text(json.dumps({"schema_version": "1.0"}))
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(bad)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "is not a robustness-audit report" in err[0]
