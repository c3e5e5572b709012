"""End-to-end runs of the `audit` command on the shipped demo, and its answers to bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from audit.demo import ARCH, ASSETS
from reports.schema import SCHEMA_PATH

STANDARD = str(ASSETS / "fashion_cnn.safetensors")
ADVERSARIAL = str(ASSETS / "fashion_cnn_adv.safetensors")
ENV = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"), "PYTHONUNBUFFERED": "1"}


def audit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "audit", *args], capture_output=True, text=True, env=ENV,
                          cwd=cwd, timeout=600, check=False)


def demo_args(model: str, out: Path, *extra: str) -> list[str]:
    return [model, "--arch", ARCH, "--data", "demo", "--classes", "fashion-mnist", "--out", str(out), *extra]


def test_version_and_help_answer_without_importing_torch():
    code = (
        "import sys\nfrom audit.cli import main\n"
        "for a in (['--version'], ['--help']):\n"
        "    try:\n        main(a)\n    except SystemExit as e:\n        assert e.code == 0, e.code\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "robustness-audit 0.1.0" in proc.stdout
    assert "Exit codes" in proc.stdout and "attacks" in proc.stdout


def test_attacks_lists_every_attack_with_defaults():
    proc = audit("attacks")
    assert proc.returncode == 0, proc.stderr
    for name in ("fgsm", "pgd", "pgdl2", "mifgsm", "apgd", "apgdt", "square", "cw", "deepfool", "fab", "autoattack",
                 "autoattack-fast"):
        assert f"\n│ {name} " in proc.stdout or f"┃ {name} " in proc.stdout or f" {name} " in proc.stdout
    assert "0.03137" in proc.stdout  # 8/255, the Linf default
    assert "(default)" in proc.stdout.split("autoattack-fast", 1)[1].splitlines()[1]  # marked under its name


@pytest.fixture(scope="module")
def pgd_report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("pgd")
    proc = audit(*demo_args(STANDARD, out, "--attack", "pgd", "--attack", "fgsm", "--eps", "0.05,0.1",
                            "--steps", "10", "--samples", "60", "--seed", "3", "--export-representations"))
    assert proc.returncode == 0, proc.stderr
    assert "Clean accuracy" in proc.stdout and "L∞ 0.05" in proc.stdout and "10*" in proc.stdout
    assert "Semantic window" in proc.stdout and "source-like" in proc.stdout
    report = json.loads((out / "report.json").read_text())
    report["_out"] = str(out)
    return report


def test_exported_representations_reproduce_every_layers_two_vs_two(pgd_report):
    import itertools

    import numpy as np

    arrays = np.load(Path(pgd_report["_out"]) / "representations.npz", allow_pickle=False)
    word = arrays["word_similarity"]
    assert list(arrays["classes"]) == pgd_report["analyses"]["semantics"]["classes_used"]
    for layer in pgd_report["analyses"]["semantics"]["layers"]:
        reps = arrays[f"layer:{layer['name']}:representations"]
        net = np.corrcoef(reps)  # Pearson similarity of the class representations
        assert np.allclose(net, arrays[f"layer:{layer['name']}:similarity"], atol=1e-10)
        n, hits = len(net), 0
        for i, j in itertools.combinations(range(n), 2):
            keep = [k for k in range(n) if k not in (i, j)]
            r = [[np.corrcoef(net[a, keep], word[b, keep])[0, 1] for b in (i, j)] for a in (i, j)]
            hits += r[0][0] + r[1][1] > r[0][1] + r[1][0]
        assert layer["clean"]["two_vs_two"] == pytest.approx(hits / (n * (n - 1) / 2), abs=1e-12)


def test_report_follows_the_schema_and_holds_the_promised_fields(pgd_report):
    pgd_report = {k: v for k, v in pgd_report.items() if k != "_out"}
    jsonschema.validate(pgd_report, json.loads(SCHEMA_PATH.read_text()))
    r = pgd_report
    assert r["model"]["format"] == "safetensors" and r["model"]["input_shape"] == [1, 28, 28]
    assert r["model"]["num_classes"] == 10 and len(r["model"]["sha256"]) == 64
    assert r["data"]["n_samples"] == 60 and r["data"]["class_counts"] == [6] * 10
    assert r["seed"] == 3 and r["clean"]["accuracy"] > 0.7
    names = [(a["name"], a["eps_text"]) for a in r["attacks"]]
    assert names == [("pgd", "0.05"), ("pgd", "0.1"), ("fgsm", "0.05"), ("fgsm", "0.1")]
    pgd05, pgd10 = r["attacks"][:2]
    assert pgd05["robust_accuracy"] >= pgd10["robust_accuracy"]  # a curve, monotone by construction
    assert not pgd05["standard_budget"] and "non-standard" in pgd05["budget_note"]  # 10 < 40 steps
    assert pgd10["n_attacked_at_this_eps"] < pgd05["n_attacked_at_this_eps"]  # the cascade attacks survivors
    assert pgd05["perturbation"]["linf_max"] <= 0.05 + 1e-6
    assert pgd05["backward_passes"] >= 10 * pgd05["n_attacked_at_this_eps"]
    assert any("non-standard" in w for w in r["warnings"])


def test_demo_contrasts_the_two_models(tmp_path):
    proc = audit("demo", "--out", str(tmp_path), "--attack", "pgd", "--eps", "0.1", "--steps", "10",
                 "--samples", "100")
    assert proc.returncode == 0, proc.stderr
    std = json.loads((tmp_path / "standard" / "report.json").read_text())
    adv = json.loads((tmp_path / "adversarial" / "report.json").read_text())
    assert adv["attacks"][0]["robust_accuracy"] > std["attacks"][0]["robust_accuracy"] + 0.3
    assert "Contrast" in proc.stdout


@pytest.mark.parametrize("args,needle", [
    (["missing.pt", "--data", "demo"], "missing.pt"),
    ([STANDARD, "--data", "demo"], "--arch"),
    ([STANDARD, "--arch", ARCH, "--attack", "pgx"], "unknown attack"),
    ([STANDARD, "--arch", ARCH, "--eps", "8/"], "--eps"),
    ([STANDARD, "--arch", ARCH, "--device", "cuda"], "cuda"),
    ([STANDARD, "--arch", ARCH, "--samples", "-3"], "--samples"),
    ([STANDARD, "--arch", ARCH, "--data", "nowhere/"], "nowhere"),
    ([STANDARD, "--arch", ARCH, "--classes", "cifar100"], "100"),
    ([STANDARD, "--arch", ARCH, "--targeted", "random", "--attack", "deepfool"], "targeted"),
    ([STANDARD, "--arch", "audit.demo_model:Nope"], "Nope"),
    ([STANDARD, "--arch", ARCH, "--layers", "features.9"], "features"),
    ([STANDARD, "--arch", ARCH, "--embeddings", str(ASSETS / "manifest.json")], "manifest.json"),
    ([STANDARD, "--arch", ARCH, "--embeddings", "nowhere.vec"], "nowhere.vec"),
    ([STANDARD, "--arch", ARCH, "--class-words", str(ASSETS / "FASHION_MNIST_LICENSE.txt")], "--class-words"),
])
def test_bad_input_is_one_line_exit_2_and_no_report(tmp_path, args, needle, capsys):
    # in-process: the same main() the console script calls, without a new interpreter per case
    from audit.cli import main

    if "cuda" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
    out = tmp_path / "out"
    argv = [*args, "--out", str(out)] + ([] if "--samples" in args else ["--samples", "20"])
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    stderr = capsys.readouterr().err
    assert exit_info.value.code == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("[audit]")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], stderr
    assert "Traceback" not in stderr
    assert not (out / "report.json").exists()


def test_pickled_model_is_refused_without_trust_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    payload = tmp_path / "evil.pt"
    script = (
        "import torch, os\n"
        "class Evil:\n"
        f"    def __reduce__(self):\n        return (os.system, ('touch {marker}',))\n"
        f"torch.save({{'model': Evil()}}, '{payload}')\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, env=ENV)
    proc = audit(str(payload), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "--trust-model" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_out_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    proc = audit(*demo_args(STANDARD, target, "--samples", "10"))
    assert proc.returncode == 2 and "not a directory" in proc.stderr


@pytest.mark.parametrize("args,needle", [
    (["model.pt", "--steps", "abc"], "--steps"),
    (["model.pt", "--bogus"], "--bogus"),
    (["demo", "--bogus"], "--bogus"),
    (["run"], "MODEL"),
])
def test_usage_errors_are_one_line_exit_2(args, needle):
    proc = audit(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr


def test_minimal_perturbation_attacks_report_norms_not_robust_accuracy(tmp_path):
    proc = audit(*demo_args(STANDARD, tmp_path, "--attack", "deepfool", "--attack", "cw", "--attack", "pgdl2",
                            "--eps", "1.0", "--steps", "8", "--samples", "12", "--seed", "1"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    jsonschema.validate(report, json.loads(SCHEMA_PATH.read_text()))
    deepfool, cw, pgdl2 = report["attacks"]
    for entry in (deepfool, cw):
        assert entry["budget_mode"] == "minimal" and entry["robust_accuracy"] is None
        block = entry["minimal_perturbation"]
        assert block["n"] == report["clean"]["n_correct"] and 1.0 in [p["eps"] for p in block["curve"]]
        assert f"{entry['name']} (minimal L2, no budget): median" in proc.stdout
        # the samples the attack failed on are exactly those it left correctly classified
        assert round(entry["failure_rate"] * report["data"]["n_samples"]) == block["n_failed"]
    assert pgdl2["budget_mode"] == "cumulative" and pgdl2["minimal_perturbation"] is None


def test_class_words_naming_an_unknown_class_is_one_line_exit_2(tmp_path):
    words = tmp_path / "words.tsv"
    words.write_text("Trouser\ttrousers pants\nZebra\tzebra\n")
    proc = audit(*demo_args(STANDARD, tmp_path / "out", "--class-words", str(words), "--samples", "20"))
    assert proc.returncode == 2 and "Zebra" in proc.stderr and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("[audit]")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and not (tmp_path / "out" / "report.json").exists()
