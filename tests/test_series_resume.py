"""`audit series --resume` after a SIGKILL mid-series, and torchrun with 2 processes: both give the uninterrupted
single-process series.json; reports that are stale or of another series are not trusted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audit.cli import main
from audit.errors import AuditError
from tests.test_resume_distributed import close

ASSETS = Path(__file__).resolve().parents[1] / "audit" / "demo_assets"
STANDARD, ADVERSARIAL = ASSETS / "fashion_cnn.safetensors", ASSETS / "fashion_cnn_adv.safetensors"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
SETTINGS = ["--arch", "audit.demo_model:FashionCNN", "--classes", "fashion-mnist", "--samples", "60", "--batch-size",
            "10", "-a", "fgsm", "-a", "pgd", "--eps", "0.1", "--steps", "10", "--permutations", "50", "--no-html",
            "--no-checks", "--threads", "1"]


def series_numbers(series: dict) -> dict:
    """series.json without what differs between two runs of one series: when it was written, and how often this
    run opened and decoded the data (its cost, like a timing: a resumed run skips what was done before)."""
    out = {k: v for k, v in series.items() if k != "created"}
    out["tool"] = {k: v for k, v in series["tool"].items() if k not in ("data_opened", "data_decoded")}
    return out


def report_numbers(report: dict) -> dict:
    attacks = [{k: v for k, v in e.items() if k != "wall_time_s"} for e in report["attacks"]]
    return {"clean": report["clean"], "attacks": attacks, "score": report["score"], "analyses": report["analyses"],
            "data": report["data"], "verdict": report["verdict"], "sha256": report["model"]["sha256"]}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ckpt")
    for n, source in ((1, STANDARD), (2, ADVERSARIAL), (3, STANDARD)):
        shutil.copy(source, folder / f"epoch_{n}.safetensors")
    return folder


@pytest.fixture(scope="module")
def uninterrupted(checkpoints, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole")
    with pytest.raises(SystemExit) as stop:
        main(["series", str(checkpoints), *SETTINGS, "--out", str(out)])
    assert stop.value.code == 0
    assert not (out / ".series-state.json").exists()  # a finished series leaves nothing to resume
    return out


def cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as stop:
        main(args)
    out, err = capsys.readouterr()
    return stop.value.code, out, err


def killed_on_second(checkpoints: Path, out: Path) -> None:
    """Start the series into ``out`` and SIGKILL it once the second checkpoint has saved 2 finished batches."""
    proc = subprocess.Popen([sys.executable, "-m", "audit", "series", str(checkpoints), *SETTINGS, "--out",
                             str(out)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / "epoch_2" / ".state" / "rank0.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            if len(json.loads(state.read_text())["state"]["completed"]) >= 2:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (out / "epoch_1" / "report.json").exists() and not (out / "epoch_2" / "report.json").exists()
    assert 2 <= len(json.loads(state.read_text())["state"]["completed"]) < 6  # killed mid-checkpoint
    assert not (out / "series.json").exists() and not (out / "epoch_3").exists()


def test_a_series_killed_mid_checkpoint_resumes_there_and_gives_the_uninterrupted_series(
        checkpoints, uninterrupted, tmp_path, capsys):
    out = tmp_path / "out"
    killed_on_second(checkpoints, out)
    first = out / "epoch_1" / "report.json"
    before = (first.read_bytes(), first.stat().st_mtime_ns)
    code, printed, err = cli(["series", str(checkpoints), *SETTINGS, "--out", str(out), "--resume"], capsys)
    assert code == 0, err
    assert "[1/3] epoch_1: " in printed and "[kept: audited before the interruption]" in printed
    assert printed.count("[resumed from its saved state]") == 1 and "[2/3] epoch_2: " in printed
    assert (first.read_bytes(), first.stat().st_mtime_ns) == before  # epoch_1 was not audited again
    whole = json.loads((uninterrupted / "series.json").read_text())
    resumed = json.loads((out / "series.json").read_text())
    assert series_numbers(resumed) == series_numbers(whole)
    for n in (1, 2, 3):
        assert report_numbers(json.loads((out / f"epoch_{n}" / "report.json").read_text())) == report_numbers(
            json.loads((uninterrupted / f"epoch_{n}" / "report.json").read_text()))
    assert not (out / ".series-state.json").exists() and not (out / "epoch_2" / ".state").exists()
    # finished: nothing left to resume
    code, _, err = cli(["series", str(checkpoints), *SETTINGS, "--out", str(out), "--resume"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no saved state of an interrupted series" in err


def test_resume_refuses_another_series_and_audits_a_stale_report_again(checkpoints, uninterrupted, tmp_path,
                                                                         capsys):
    def refused(*args) -> str:
        code, _, err = cli(["series", str(checkpoints), *SETTINGS, *args], capsys)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
        return lines[0]

    fresh = tmp_path / "fresh"
    assert "no saved state of an interrupted series" in refused("--out", str(fresh), "--resume")
    assert not fresh.exists()
    out = tmp_path / "out"
    killed_on_second(checkpoints, out)
    line = refused("--out", str(out), "--resume", "--seed", "7")
    assert "belongs to another series" in line and "--seed" in line
    assert not (out / "series.json").exists() and (out / ".series-state.json").exists()
    saved = (out / ".series-state.json").read_text()
    (out / ".series-state.json").write_text(saved[: len(saved) // 2])
    assert "unreadable" in refused("--out", str(out), "--resume")
    (out / ".series-state.json").write_text(saved)
    first = out / "epoch_1" / "report.json"
    tampered = json.loads(first.read_text())
    tampered["clean"]["accuracy"] = 0.5  # a report that is not the one the series wrote
    first.write_text(json.dumps(tampered))
    code, printed, err = cli(["series", str(checkpoints), *SETTINGS, "--out", str(out), "--resume"], capsys)
    assert code == 0, err
    assert "[kept" not in printed and "[1/3] epoch_1: " in printed and "[resumed" in printed
    whole = json.loads((uninterrupted / "series.json").read_text())
    assert series_numbers(json.loads((out / "series.json").read_text())) == series_numbers(whole)


def test_only_reports_of_the_same_checkpoint_and_file_are_kept(tmp_path):
    """The plan of a resume, against the saved records: a changed checkpoint (another sha256), a report changed
    or missing, a checkpoint with a saved audit state, one never started."""
    from audit.config import AuditConfig
    from audit.engine.series import Checkpoint, SeriesState

    template = AuditConfig(model=str(STANDARD), samples="20")
    points = [Checkpoint(f"e{n}", STANDARD) for n in range(1, 6)]
    state = SeriesState(tmp_path, template)
    for n in range(1, 5):
        (tmp_path / f"e{n}").mkdir()
        report = tmp_path / f"e{n}" / "report.json"
        report.write_text(json.dumps({"n": n, "data": {"sample": {"fingerprint": "f"}}}))
        state.record(f"e{n}", f"sha{n}", report, json.loads(report.read_text()))
    (tmp_path / "e3" / "report.json").write_text("{}")
    (tmp_path / "e4" / "report.json").unlink()
    (tmp_path / "e4" / ".state").mkdir()
    (tmp_path / "e4" / ".state" / "rank0.json").write_text("{}")
    hashes = {"e1": "sha1", "e2": "other", "e3": "sha3", "e4": "sha4", "e5": "sha5"}
    again = SeriesState(tmp_path, template)
    kept, resumed = again.plan(points, hashes)
    assert list(kept) == ["e1"] and kept["e1"]["n"] == 1 and resumed == {"e4"}
    assert again.stale(kept, {"f"}) == []
    assert again.stale(kept, {"g"}) == ["e1"]  # the data decoded now differs from the kept report's
    with pytest.raises(AuditError, match="belongs to another series: --samples differ"):
        SeriesState(tmp_path, AuditConfig(model=str(STANDARD), samples="30")).plan(points, hashes)


def test_torchrun_with_two_processes_gives_the_single_process_series(checkpoints, uninterrupted, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    out = tmp_path / "dist"
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "audit", "series",
                           str(checkpoints), *SETTINGS, "--out", str(out)], capture_output=True, text=True, env=ENV,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("[1/3] epoch_1: ") == 1 and proc.stdout.count(f"series: {out}") == 1  # rank 0 reports
    whole = json.loads((uninterrupted / "series.json").read_text())
    close(series_numbers(json.loads((out / "series.json").read_text())), series_numbers(whole), "series")
    for n in (1, 2, 3):
        report = json.loads((out / f"epoch_{n}" / "report.json").read_text())
        assert report["environment"]["world_size"] == 2
        close(report_numbers(report), report_numbers(json.loads(
            (uninterrupted / f"epoch_{n}" / "report.json").read_text())), f"epoch_{n}")
