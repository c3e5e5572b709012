"""Exit code 3 for internal errors (one line, a traceback only on request), and reports written atomically."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import reports.schema
from audit.cli import main
from audit.errors import EXIT_INTERNAL
from audit_inputs import write_inputs
from reports.schema import write_atomic

NEEDLE = "internal error: RuntimeError: the kernel broke under autograd"


def failing_args(tmp_path) -> list[str]:
    """A model whose forward fails only under the attack (after the probe passed): a bug, not bad input."""
    inputs = write_inputs(tmp_path)
    return [str(inputs["weights"]), "--arch", f"{inputs['arch']}:FailsUnderAttack", "--data", str(inputs["data"]),
            "--attack", "fgsm", "--eps", "0.01", "--out", str(tmp_path / "out")]


def test_an_internal_error_is_exit_3_with_one_line_and_no_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "AUDIT_DEBUG"}
    proc = subprocess.run([sys.executable, "-m", "audit", *failing_args(tmp_path)], capture_output=True, text=True,
                          env={**env, "OMP_NUM_THREADS": "1"}, timeout=300, check=False)
    assert proc.returncode == EXIT_INTERNAL == 3, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("[audit]")]
    assert len(lines) == 1 and lines[0].startswith(NEEDLE) and "AUDIT_DEBUG=1" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "report.json").exists()


def test_audit_debug_lets_the_traceback_through(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIT_DEBUG", "1")
    with pytest.raises(RuntimeError, match="the kernel broke under autograd") as excinfo:
        main(failing_args(tmp_path))
    assert excinfo.traceback  # the exception itself, with its frames, reaches the interpreter


def test_a_report_write_that_fails_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "report.json"
    path.write_text("old report\n")

    def refuse(src, dst):
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(reports.schema.os, "replace", refuse)
        with pytest.raises(OSError, match="disk full"):
            write_atomic(path, "new report\n")
    assert path.read_text() == "old report\n" and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]

    # a failure in the middle of writing the text (a lone surrogate cannot be encoded as UTF-8)
    with pytest.raises(UnicodeEncodeError):
        write_atomic(path, "x" * 100_000 + "\ud800" + "tail")
    assert path.read_text() == "old report\n" and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]

    write_atomic(path, "new report\n")
    assert path.read_text() == "new report\n" and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
