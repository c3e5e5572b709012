"""The scored report: validity checks on a gradient-masked model, the twins' scores, gates and JUnit output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from audit import AuditConfig, run_audit
from audit.demo import ARCH, ASSETS
from reports.schema import SCHEMA_PATH

STANDARD = str(ASSETS / "fashion_cnn.safetensors")
ADVERSARIAL = str(ASSETS / "fashion_cnn_adv.safetensors")
MASKED_ARCH = '''from audit.demo_model import FashionCNN


class Saturated(FashionCNN):
    """The demo CNN with its logits scaled until cross-entropy gradients underflow (a gradient-masked model)."""

    def forward(self, x):
        return super().forward(x) * 1e4
'''


def config(**kw) -> AuditConfig:
    base = dict(model=STANDARD, arch=ARCH, data="demo", classes="fashion-mnist", attacks=["fgsm", "pgd"],
                eps="0.05,0.1,0.2", steps=10, samples=60, batch_size=30, device="cpu", permutations=50)
    return AuditConfig(**{**base, **kw})


def statuses(result) -> dict:
    return {c["name"]: c["status"] for c in result.checks}


def test_a_gradient_masked_model_fails_its_checks_and_grades_no_better_than_c(tmp_path):
    arch = tmp_path / "masked.py"
    arch.write_text(MASKED_ARCH)
    masked = run_audit(config(arch=f"{arch}:Saturated"))
    plain = run_audit(config())
    # the masked model is the same classifier: identical clean accuracy, but PGD looks far more robust on it
    assert masked.clean["accuracy"] == plain.clean["accuracy"]
    got = statuses(masked)
    assert got["input_gradients"] == "fail" and statuses(plain)["input_gradients"] == "pass"
    assert masked.score["grade"] in ("C", "D", "F") and masked.score["value"] < 70
    assert masked.score["capped"] and "input_gradients" in masked.score["capped"]["by"]
    numbers = next(c["numbers"] for c in masked.checks if c["name"] == "input_gradients")
    assert numbers["vanishing"] > numbers["n"] / 2 and numbers["backward_passes"] == numbers["n"]


def test_the_adversarially_trained_twin_scores_at_least_20_points_higher():
    standard = run_audit(config())
    adversarial = run_audit(config(model=ADVERSARIAL))
    assert adversarial.score["value"] >= standard.score["value"] + 20
    assert all(c["status"] != "fail" for c in standard.checks + adversarial.checks)


def test_clean_accuracy_near_chance_fails_and_says_what_to_check(tmp_path):
    import numpy as np

    data = np.load(ASSETS / "fashion_mnist_test.npz")
    shifted = tmp_path / "shifted.npz"
    np.savez(shifted, x=data["x"][:60], y=(data["y"][:60] + 1) % 10)  # labels shifted by one
    result = run_audit(config(data=str(shifted), samples="all", attacks=["fgsm"], eps="0.1", checks=False))
    check = next(c for c in result.checks if c["name"] == "clean_accuracy")
    assert check["status"] == "fail" and "labels" in check["detail"] and "normalization" in check["detail"]
    assert result.score["grade"] in ("C", "D", "F")


ENV = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}


def audit(*args):
    return subprocess.run([sys.executable, "-m", "audit", *args], capture_output=True, text=True, env=ENV,
                          timeout=600, check=False)


def cli_args(out, *extra):
    return [STANDARD, "--arch", ARCH, "--classes", "fashion-mnist", "--samples", "40", "--attack", "pgd",
            "--steps", "5", "--eps", "0.1", "--permutations", "20", "--no-html", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    out = tmp_path_factory.mktemp("scored")
    proc = audit(*cli_args(out, "--junit", str(out / "junit.xml"), "--gate", "clean.accuracy>=0.5"))
    assert proc.returncode == 0, proc.stderr
    return out, proc, json.loads((out / "report.json").read_text())


def in_process(args, capsys) -> tuple[int, str]:
    """The CLI's main() in this process (no interpreter start-up per case): exit code and stderr."""
    from audit.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return exit_info.value.code, capsys.readouterr().err


def test_fail_under_above_the_score_exits_1_and_below_exits_0(scored, tmp_path, capsys):
    value = scored[2]["score"]["value"]
    above, above_err = in_process(cli_args(tmp_path / "above", "--fail-under", f"{value + 1:.1f}"), capsys)
    below, below_err = in_process(cli_args(tmp_path / "below", "--fail-under", f"{max(value - 1, 0):.1f}"), capsys)
    assert above == 1 and "fail-under" in above_err
    assert below == 0, below_err
    assert (tmp_path / "above" / "report.json").exists()  # the report is written before the gate fails


def test_a_failing_gate_exits_1_and_a_malformed_gate_is_one_line_exit_2(tmp_path, capsys):
    failing, failing_err = in_process(cli_args(tmp_path / "a", "--gate", "robust_accuracy[pgd@0.1]>=0.9"), capsys)
    assert failing == 1 and "robust_accuracy[pgd@0.1]" in failing_err
    bad, bad_err = in_process(cli_args(tmp_path / "b", "--gate", "robust_acuracy[pgd@0.1]>=0.9"), capsys)
    lines = [line for line in bad_err.splitlines() if line.strip() and not line.startswith("[audit]")]
    assert bad == 2 and len(lines) == 1 and "robust_accuracy" in lines[0]
    assert not (tmp_path / "b" / "report.json").exists()


def test_junit_file_holds_one_case_per_gate_and_per_check(scored):
    out, _, report = scored
    root = ET.parse(out / "junit.xml").getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == len(report["checks"]) + len(report["verdict"]["gates"])
    assert int(root.get("failures")) == sum(c["status"] == "fail" for c in report["checks"])


def test_scored_report_follows_the_schema_and_the_summary_shows_it(scored):
    import jsonschema

    _, proc, report = scored
    jsonschema.validate(report, json.loads(SCHEMA_PATH.read_text()))
    assert "Score" in proc.stdout and "Checks" in proc.stdout and "Verdict" in proc.stdout
    assert report["verdict"]["passed"] and report["verdict"]["gates"][0]["value"] == report["clean"]["accuracy"]
