"""Resume after a crash (kill -9) and torchrun with 2 processes both give the uninterrupted single-process report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audit.demo import ARCH, ASSETS

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
ARGS = [str(ASSETS / "fashion_cnn.safetensors"), "--arch", ARCH, "--classes", "fashion-mnist", "--samples", "60",
        "--batch-size", "10", "--attack", "pgd", "--attack", "deepfool", "--eps", "0.05,0.1", "--steps", "5", "--permutations", "50",
        "--threads", "1", "--no-html"]
VOLATILE = {"created", "timing", "environment"}


def audit(*args, **kw):
    return subprocess.run([sys.executable, "-m", "audit", *args], capture_output=True, text=True, env=ENV,
                          timeout=600, check=False, **kw)


def numbers(report: dict) -> dict:
    """The report without what may differ between runs of the same audit: timings, environment, how it ran."""
    out = {k: v for k, v in report.items() if k not in VOLATILE}
    out["attacks"] = [{k: v for k, v in e.items() if k != "wall_time_s"} for e in report["attacks"]]
    out["settings"] = {k: v for k, v in report["settings"].items() if k not in ("resume", "out", "junit", "html")}
    return out


def close(a, b, path="report"):
    """Equal, floats to 1e-9 relative (sums added in another order), everything else exactly."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12), path
    else:
        assert a == b, path


def same_outcomes(report: dict, whole: dict) -> None:
    """The per-sample outcomes and the sample's identity, exactly; and they say what the counts say."""
    from reports.schema import unpack_bits, unpack_norms

    assert report["data"]["sample"] == whole["data"]["sample"]
    assert report["clean"]["per_sample"] == whole["clean"]["per_sample"]
    n = whole["clean"]["n"]
    assert sum(unpack_bits(whole["clean"]["per_sample"]["correct"], n)) == whole["clean"]["n_correct"]
    for entry, reference in zip(report["attacks"], whole["attacks"], strict=True):
        assert entry["per_sample"] == reference["per_sample"], entry["name"]
        robust = sum(unpack_bits(reference["per_sample"]["robust"], n))
        assert robust == round(n * (reference["robust_accuracy"] if reference["robust_accuracy"] is not None
                                    else reference["failure_rate"]))
        if reference["minimal_perturbation"]:
            norms = unpack_norms(reference["per_sample"]["norm"], n)
            assert sum(0 < v < float("inf") for v in norms) == reference["n_success"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("whole")
    proc = audit(*ARGS, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert not (out / ".state").exists()  # a finished audit removes its state
    return json.loads((out / "report.json").read_text())


def killed_after(out: Path, completed: int) -> Path:
    """Start an audit into ``out``, SIGKILL it once its saved state lists ``completed`` finished batches; the
    state file's path."""
    proc = subprocess.Popen([sys.executable, "-m", "audit", *ARGS, "--out", str(out)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / ".state" / "rank0.json"
    deadline = time.time() + 300
    while time.time() < deadline:
        if state.exists():
            try:
                done = json.loads(state.read_text())["state"]["completed"]
            except (ValueError, KeyError):
                done = []
            if len(done) >= completed:
                break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return state


def test_an_audit_killed_mid_run_and_resumed_gives_the_uninterrupted_report(uninterrupted, tmp_path):
    out = tmp_path / "out"
    state = killed_after(out, completed=2)
    assert not (out / "report.json").exists() and 2 <= len(json.loads(state.read_text())["state"]["completed"]) < 6
    resumed = audit(*ARGS, "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads((out / "report.json").read_text())
    close(numbers(report), numbers(uninterrupted))
    same_outcomes(report, uninterrupted)


def test_resume_refuses_a_corrupted_state_and_another_audits_state(tmp_path, capsys):
    out = tmp_path / "out"
    state = killed_after(out, completed=0)
    from audit.cli import main

    def refused(*args) -> str:  # in-process: no interpreter start-up per case
        with pytest.raises(SystemExit) as exit_info:
            main([*ARGS, *args])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and "Traceback" not in err, err
        return err

    assert "belongs to another audit" in (err := refused("--out", str(out), "--resume", "--seed", "7"))
    assert "--seed" in err
    state.write_text(state.read_text()[: len(state.read_text()) // 2])  # truncated
    assert "unreadable" in refused("--out", str(out), "--resume")
    assert not (out / "report.json").exists()
    assert "no saved state" in refused("--out", str(tmp_path / "fresh"), "--resume")


def test_torchrun_with_two_processes_gives_the_single_process_report(uninterrupted, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    out = tmp_path / "dist"
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "audit", *ARGS,
                           "--out", str(out)], capture_output=True, text=True, env=ENV, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["environment"]["world_size"] == 2 and report["environment"]["backend"] == "gloo"
    close(numbers(report), numbers(uninterrupted))
    same_outcomes(report, uninterrupted)
    assert proc.stdout.count("Clean accuracy") == 1  # only rank 0 reports
