"""The README's custom analysis, run as written: beside the audit, after a kill and --resume, and on 2 torchrun
processes it reports what one uninterrupted process reports; an analysis that cannot hand on its sums is refused
there with one line; the contract's flags are read."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from audit import AuditConfig, run_audit
from audit.analyses.base import Analysis
from audit.demo import ARCH, ASSETS
from audit.errors import AuditError

README = Path(__file__).resolve().parent.parent / "README.md"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
SETTINGS = dict(model=str(ASSETS / "fashion_cnn.safetensors"), arch=ARCH, classes="fashion-mnist", samples=60,
                batch_size=10, attacks=["pgd"], eps="0.05,0.1", steps=5, layers="none", threads=1, device="cpu",
                checks=False)
DRIVER = textwrap.dedent('''
    import json, os, signal, sys
    sys.path.insert(0, sys.argv[1])
    from confidence import Confidence
    from audit import AuditConfig, run_audit
    from audit.analyses.base import Analysis

    class KillAfter(Analysis):
        """SIGKILLs its process at the clean batch after the given number of batches (None: never)."""
        key = "kill_after"
        def __init__(self, batches):
            self.batches, self.seen = batches, 0
        def on_clean(self, batch):
            if self.seen == self.batches:
                os.kill(os.getpid(), signal.SIGKILL)
            self.seen += 1
        def export(self, phase):
            return None  # it keeps no sums
        def absorb(self, phase, part):
            pass

    out, mode = sys.argv[2], sys.argv[3]
    settings = json.loads(sys.argv[4])
    kill = int(mode[5:]) if mode.startswith("kill:") else None
    config = AuditConfig(**settings, resume=mode == "resume")
    result = run_audit(config, analyses=[Confidence(), KillAfter(kill)], state_dir=os.path.join(out, ".state"))
    if result is not None:
        with open(os.path.join(out, "confidence.json"), "w") as f:
            json.dump(result.analyses["confidence"], f)
''')


def readme_analysis() -> str:
    """The README's code block that defines the custom analysis."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    found = [b for b in blocks if "class Confidence(Analysis)" in b]
    assert len(found) == 1
    return found[0]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    here = tmp_path_factory.mktemp("custom")
    (here / "confidence.py").write_text(readme_analysis())
    (here / "driver.py").write_text(DRIVER)
    return here


def drive(folder: Path, out: Path, mode: str, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    out.mkdir(parents=True, exist_ok=True)
    command = [*(launcher or [sys.executable]), str(folder / "driver.py"), str(folder), str(out), mode,
               json.dumps(SETTINGS)]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=600, check=False)


def close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-9), key


def test_the_readme_analysis_runs_beside_the_audit_and_agrees_with_a_direct_computation(folder):
    namespace: dict = {}
    exec(compile(readme_analysis(), "README.md", "exec"), namespace)
    confidence = namespace["Confidence"]()
    result = run_audit(AuditConfig(**SETTINGS), analyses=[confidence])
    section = result.analyses["confidence"]
    assert set(section) == {"clean", "pgd@0.05", "pgd@0.1"}
    # directly: the same 60 images through the same network, no audit machinery
    from audit.data import open_data
    from audit.model import load_model

    net = load_model(SETTINGS["model"], arch=ARCH).module.eval()
    data = open_data("demo", samples=60, seed=0)
    tops = []
    with torch.no_grad():
        for batch in data.batches(10, size=(28, 28), channels=1):
            tops.append(net(batch.x).double().softmax(1).amax(1))
    assert section["clean"] == pytest.approx(float(torch.cat(tops).mean()), rel=1e-6)
    assert section["pgd@0.1"] < section["clean"]  # adversarials are found where the model is less sure


@pytest.fixture(scope="module")
def uninterrupted(folder, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("whole")
    proc = drive(folder, out, "whole")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "confidence.json").read_text())


def test_the_readme_analysis_resumes_after_a_kill_to_the_uninterrupted_numbers(folder, uninterrupted, tmp_path):
    killed = drive(folder, tmp_path, "kill:3")
    assert killed.returncode == -9  # SIGKILL at the fourth batch: three completed batches are saved
    saved = json.loads((tmp_path / ".state" / "rank0.json").read_text())["state"]["completed"]
    assert saved == [0, 1, 2] and not (tmp_path / "confidence.json").exists()
    resumed = drive(folder, tmp_path, "resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    close(json.loads((tmp_path / "confidence.json").read_text()), uninterrupted)


def test_the_readme_analysis_on_two_torchrun_processes_reports_the_single_process_numbers(folder, uninterrupted,
                                                                                           tmp_path):
    torchrun = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc-per-node", "2"]
    proc = drive(folder, tmp_path, "whole", launcher=torchrun)
    assert proc.returncode == 0, proc.stderr[-3000:]
    close(json.loads((tmp_path / "confidence.json").read_text()), uninterrupted)


class Forgetful(Analysis):
    """Counts clean images but cannot hand the count on."""

    key = "forgetful"

    def __init__(self):
        self.n = 0

    def on_clean(self, batch):
        self.n += len(batch.y)


def test_an_analysis_without_export_and_absorb_is_refused_with_a_saved_state_in_one_line(tmp_path):
    with pytest.raises(AuditError) as refused:
        run_audit(AuditConfig(**SETTINGS), analyses=[Forgetful()], state_dir=str(tmp_path / ".state"))
    message = str(refused.value)
    assert "\n" not in message and "forgetful (Forgetful)" in message and "export/absorb" in message
    assert not (tmp_path / ".state").exists()
    # without a saved state (one uninterrupted process) it runs as it is
    forgetful = Forgetful()
    run_audit(AuditConfig(**SETTINGS), analyses=[forgetful])
    assert forgetful.n == 60


def test_an_analysis_that_is_not_an_analysis_is_refused():
    class Old:
        def on_clean(self, x, y, logits, tap=None):
            pass

    with pytest.raises(AuditError, match="Old is not an audit.analyses.base.Analysis"):
        run_audit(AuditConfig(**SETTINGS), analyses=[Old()])


def test_the_flags_of_the_contract_are_read():
    from audit.analyses.suite import AnalysisSuite

    class Maps(Analysis):
        def __init__(self, method, whose="predicted"):
            self.saliency, self.saliency_class = method, whose

    assert not Analysis().needs_gradients and not Analysis.watches_batches() and not Analysis.carries_sums()
    assert Maps("gradcam").needs_gradients and not Maps("activation").needs_gradients
    assert AnalysisSuite(["a"], [Maps("gradcam")]).gradients
    assert not AnalysisSuite(["a"], [Maps("activation")]).gradients
    assert AnalysisSuite(["a"], [Maps("activation")]).saliency == "activation"
    with pytest.raises(AuditError, match="different saliency maps"):
        AnalysisSuite(["a"], [Maps("gradcam"), Maps("gradcam", "true")])


class HalfMergeable(Forgetful):
    """Exports its count but cannot absorb one."""

    key = "half"

    def export(self, phase):
        return {"n": self.n}


def test_the_refusal_names_every_analysis_that_cannot_hand_on_its_sums_in_one_exact_line():
    from audit.analyses.base import refuse_unmergeable

    assert not HalfMergeable.carries_sums() and HalfMergeable.watches_batches()
    with pytest.raises(AuditError) as refused:
        refuse_unmergeable([Forgetful(), HalfMergeable(), Analysis()], "--resume")
    assert str(refused.value) == ("--resume needs every analysis to hand on its sums, and forgetful (Forgetful), "
                                  "half (HalfMergeable) defines no export/absorb (see audit.analyses.base)")
    refuse_unmergeable([Analysis()], "--resume")  # one that watches nothing keeps no sums: accepted
