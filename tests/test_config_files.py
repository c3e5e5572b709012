"""Options from a config file and from flags: one parser for both, flags win, relative paths, the example file,
one-line errors naming the key, and budgets that cannot exceed the pixel range."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from audit import cli
from audit.config import AuditConfig, meta_key, option_fields
from audit.config_file import example_toml, file_keys, read_config_file
from audit.demo import ARCH, ASSETS
from audit.errors import AuditError
from audit.options import LayerChoice

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"), "PYTHONUNBUFFERED": "1",
       "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def write(folder: Path, text: str, name: str = "audit.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


@pytest.fixture
def captured(monkeypatch):
    """Runs `audit run ...` in this process up to the audit, and returns the config it would audit with."""
    seen = {}

    def fake(config, out, export=False, html=True, junit=None, label="audit"):
        seen.update(config=config, out=out, export=export, html=html, junit=junit)

    monkeypatch.setattr(cli, "_audit_and_report", fake)

    def run(*args: str):
        seen.clear()
        with pytest.raises(SystemExit) as exc:
            cli.main(list(args))
        assert exc.value.code == 0, exc.value.code
        return seen["config"], seen

    return run


def main_error(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.main(list(args))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


# --- the example file -----------------------------------------------------------------------------------------


def test_the_example_reads_back_as_the_defaults(tmp_path):
    text = example_toml()
    path = write(tmp_path, text)
    values = read_config_file(path)
    assert "model" not in values  # commented out: MODEL comes from the command line or the user's own file
    config = AuditConfig.from_options({**values, "model": "m.pt"})
    expected = AuditConfig(model="m.pt", out=str(tmp_path / "audit-out"))  # relative to the file's folder
    assert config == expected
    assert config.effective() == expected.effective()
    # every option is in the example, set or commented out, exactly once
    keys = re.findall(r"^(?:# )?([a-z_]+) = ", text, flags=re.M)
    assert sorted(keys) == sorted(file_keys()) and len(keys) == len(set(keys))


def test_the_examples_commented_values_are_valid_settings(tmp_path):
    uncommented = re.sub(r"^# ([a-z_]+ = )", r"\1", example_toml(), flags=re.M)
    values = read_config_file(write(tmp_path, uncommented))
    assert set(values) == set(file_keys())
    # superclass_depth and superclasses choose one thing: each example is valid alone, the two together are not
    with pytest.raises(AuditError, match="give one of them"):
        AuditConfig.from_options(values).check()
    AuditConfig.from_options({k: v for k, v in values.items() if k != "superclass_depth"}).check()
    config = AuditConfig.from_options({k: v for k, v in values.items() if k != "superclasses"})
    config.check()
    assert config.arch_kwargs == {"num_classes": 10} and config.eps == ["2/255", "4/255", "8/255"]
    assert config.mean == [0.485, 0.456, 0.406] and config.fail_under == 50.0
    assert config.score_weights == {"robustness": 0.7, "severity": 0.1, "representation": 0.1, "saliency": 0.1}


def test_audit_config_example_prints_it(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["config", "--example"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == example_toml()


# --- file and flags ------------------------------------------------------------------------------------------


def test_flags_given_override_the_file_and_defaults_do_not(tmp_path, captured):
    path = write(tmp_path, 'model = "m.pt"\nseed = 5\nsamples = 10\nattack = ["fgsm", "pgd"]\nchecks = false\n'
                           'html = false\nbatch_size = 16\neps = [0.1, "8/255"]\nweights = { robustness = 1.0 }\n')
    config, seen = captured("--config", str(path), "--seed", "0", "--html", "--eps", "4/255")
    assert config.seed == 0  # given on the command line, though equal to the default: it wins over the file
    assert config.html is True and seen["html"] is True  # --html given: wins over html = false
    assert config.eps == ["4/255"]  # a repeatable flag replaces the file's list, it does not extend it
    assert config.samples == 10 and config.attacks == ["fgsm", "pgd"] and config.checks is False
    assert config.batch_size == 16 and config.score_weights == {"robustness": 1.0}
    assert config.model == str(tmp_path / "m.pt")
    config, _ = captured(str(tmp_path / "other.pt"), "--config", str(path))
    assert config.model == str(tmp_path / "other.pt") and config.seed == 5 and config.eps == ["0.1", "8/255"]


def test_without_a_file_the_defaults_are_audit_configs(captured):
    config, seen = captured("m.pt")
    assert config == AuditConfig(model="m.pt")
    assert seen["out"] == Path("audit-out") and seen["html"] is True and seen["junit"] is None


def test_the_command_lines_defaults_are_audit_configs(captured):
    """--help shows the flags' defaults: they must be what an audit without the flag uses."""
    import typer

    command = typer.main.get_command(cli.app).commands["run"]
    defaults = AuditConfig(model="m").effective()
    names = {p.name for p in command.params} - {"config"}
    assert names == set(defaults) - {"label"}  # every flag is a file key; label is set in a file only
    for param in command.params:
        if param.name in ("config", "model"):
            continue
        default, expected = param.default, defaults[param.name]
        if param.name == "samples":
            default = int(default)
        if param.name in ("attack", "gate"):
            default = list(default or [])
        assert (str(default) if isinstance(default, Path) else default) == expected, param.name


@pytest.mark.parametrize("flags,field,value", [
    (["--data", "d"], "data", "d"), (["--arch", "a.b:c"], "arch", "a.b:c"),
    (["--arch-kwargs", '{"k": 1}'], "arch_kwargs", '{"k": 1}'), (["--trust-model"], "trust_model", True),
    (["--weights-meta", "DEFAULT"], "weights_meta", "DEFAULT"),
    (["--classes", "a,b"], "classes", "a,b"), (["--input-size", "32x16"], "input_size", "32x16"),
    (["--channels", "1"], "channels", 1), (["--mean", "0.5"], "mean", "0.5"), (["--std", "0.2"], "std", "0.2"),
    (["--output-key", "logits"], "output_key", "logits"), (["-a", "fgsm", "--attack", "pgd"], "attacks", ["fgsm", "pgd"]),
    (["--eps", "8/255", "--eps", "0.1"], "eps", ["8/255", "0.1"]), (["--steps", "3"], "steps", 3),
    (["--targeted", "random"], "targeted", "random"), (["--samples", "all"], "samples", "all"),
    (["--seed", "3"], "seed", 3), (["--batch-size", "8"], "batch_size", 8), (["--device", "cpu"], "device", "cpu"),
    (["--threads", "1"], "threads", 1), (["--out", "o"], "out", "o"), (["--layers", "none"], "layers", "none"),
    (["--embeddings", "e.txt"], "embeddings", "e.txt"), (["--class-words", "w.tsv"], "class_words", "w.tsv"),
    (["--permutations", "10"], "permutations", 10), (["--saliency", "none"], "saliency", "none"),
    (["--saliency-class", "true"], "saliency_class", "true"), (["--entropy", "2d"], "entropy", "2d"),
    (["--levels", "4"], "levels", 4), (["--export-representations"], "export_representations", True),
    (["--gate", "clean.accuracy>=0.5"], "gates", ["clean.accuracy>=0.5"]), (["--fail-under", "40"], "fail_under", 40.0),
    (["--weights", "robustness=1"], "score_weights", "robustness=1"), (["--no-checks"], "checks", False),
    (["--junit", "j.xml"], "junit", "j.xml"), (["--no-html"], "html", False), (["--resume"], "resume", True),
])
def test_every_flag_still_sets_its_option(captured, flags, field, value):
    config, _ = captured("m.pt", *flags)
    assert getattr(config, field) == value
    untouched = AuditConfig(model="m.pt")
    setattr(untouched, field, value)
    assert config == untouched


def test_without_a_model_anywhere_the_error_says_where_to_give_it(tmp_path, capsys):
    err = main_error(capsys, "--config", str(write(tmp_path, "seed = 1\n")))
    assert "no MODEL given" in err and "--config" in err


# --- errors naming the key -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text,fragments", [
    ("sed = 1\n", ["unknown key 'sed'"]),
    ("[attack]\nname = 'pgd'\n", ["'attack' must be an array of strings or a string", "got a table"]),
    ('seed = "abc"\n', ["'seed' must be an integer", 'got a string ("abc")']),
    ("seed = true\n", ["'seed' must be an integer", "got a boolean"]),
    ("seed = 1.5\n", ["'seed' must be an integer", "got a number (1.5)"]),
    ("checks = 1\n", ["'checks' must be true or false", "got an integer (1)"]),
    ("attack = [1, 2]\n", ["'attack' must be an array of strings or a string"]),
    ("mean = [0.5, 'x']\n", ["'mean' must be an array of numbers or a number or a string"]),
    ("eps = [true]\n", ["'eps' must be an array of budgets"]),
    ("weights = [1, 2]\n", ["'weights' must be a table or a string"]),
    ("batch_size = 8\nbatch-size = 8\n", ["'batch-size' is given twice"]),
    ("seed = \n", ["not valid TOML"]),
])
def test_a_bad_file_is_one_line_naming_the_key(tmp_path, text, fragments):
    path = write(tmp_path, text)
    with pytest.raises(AuditError) as excinfo:
        read_config_file(path)
    message = one_line_error(excinfo)
    assert message.startswith(f"--config {path}: ")
    for fragment in fragments:
        assert fragment in message, message


def test_a_bad_file_ends_the_command_with_exit_2(tmp_path, capsys):
    assert "unknown key 'bogus'" in main_error(capsys, "m.pt", "--config", str(write(tmp_path, "bogus = 1\n")))
    assert "no such file" in main_error(capsys, "m.pt", "--config", str(tmp_path / "missing.toml"))


def test_dashes_are_accepted_for_underscores(tmp_path):
    values = read_config_file(write(tmp_path, 'batch-size = 8\nsaliency-class = "true"\nexport-representations = true\n'))
    assert values == {"batch_size": 8, "saliency_class": "true", "export_representations": True}


def test_values_from_a_file_are_checked_like_flags(tmp_path):
    values = read_config_file(write(tmp_path, 'model = "m.pt"\ntargeted = "sometimes"\n'))
    with pytest.raises(AuditError, match="--targeted must be one of"):
        AuditConfig.from_options(values).check()


# --- relative paths ------------------------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_files_folder(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    write(folder, "cat\ndog\n", "names.txt")
    path = write(folder, 'model = "m.safetensors"\ndata = "images"\narch = "nets/net.py:Net"\n'
                         'classes = "names.txt"\nembeddings = "vectors.txt"\nclass_words = "../words.tsv"\n'
                         'out = "results"\njunit = "results/junit.xml"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    values = read_config_file(Path("..") / "project" / "audit.toml")
    base = elsewhere / ".." / "project"
    assert values == {
        "model": str(base / "m.safetensors"), "data": str(base / "images"), "arch": f"{base / 'nets/net.py'}:Net",
        "classes": str(base / "names.txt"), "embeddings": str(base / "vectors.txt"),
        "class_words": str(base / ".." / "words.tsv"), "out": str(base / "results"),
        "junit": str(base / "results" / "junit.xml"),
    }
    assert Path(values["model"]).resolve() == (folder / "m.safetensors").resolve()
    assert path.exists()


def test_names_and_absolute_paths_stay_as_they_are(tmp_path):
    values = read_config_file(write(tmp_path, 'model = "/abs/m.pt"\ndata = "demo"\n'
                                              'arch = "torchvision.models:resnet18"\nclasses = "cifar10"\n'
                                              'embeddings = "glove-6b-50d"\nlayers = ["conv1", "fc"]\n'))
    assert values == {"model": "/abs/m.pt", "data": "demo", "arch": "torchvision.models:resnet18",
                      "classes": "cifar10", "embeddings": "glove-6b-50d", "layers": "conv1,fc"}


# --- one parser for every option ----------------------------------------------------------------------------


def test_resolved_gives_every_option_parsed():
    config = AuditConfig(model="m.pt", eps="8/255,2/255", input_size="32x16", samples="7", arch_kwargs='{"a": 1}',
                         mean="0.5", std=[0.2, 0.3, 0.4], classes="cat, dog", device="cpu",
                         score_weights="robustness=2,severity=0")
    opts = config.resolved()
    assert opts.eps == [(2 / 255, "2/255"), (8 / 255, "8/255")] and opts.norms == {"Linf"}
    assert opts.input_size == (32, 16) and opts.samples == 7 and opts.arch_kwargs == {"a": 1}
    assert opts.classes == ["cat", "dog"] and str(opts.device) == "cpu"
    assert opts.normalization(3) == ((0.5, 0.5, 0.5), (0.2, 0.3, 0.4))
    assert opts.score_weights["robustness"] == 2.0 and opts.score_weights["severity"] == 0.0
    assert opts.layers == LayerChoice("auto")
    assert config.resolved() == opts  # a value: the runner resolves once and passes it down
    config.samples = "all"
    assert config.resolved().samples is None
    config.layers = " features.2 , features.1,features.2"
    assert config.resolved().layers == LayerChoice("names", ("features.2", "features.1"))


@pytest.mark.parametrize("knob,value,flag", [
    ("eps", "0", "--eps"), ("eps", "-1/255", "--eps"), ("samples", "ten", "--samples"),
    ("input_size", "1x2x3", "--input-size"), ("arch_kwargs", "[1]", "--arch-kwargs"), ("mean", "x", "--mean"),
    ("std", "0", "--std"), ("device", "gpu", "--device"), ("score_weights", "robustness", "--weights"),
    ("permutations", 0, "--permutations"), ("gates", ["nonsense"], "gate"), ("fail_under", 101, "--fail-under"),
])
def test_check_names_the_bad_option(knob, value, flag):
    with pytest.raises(AuditError) as excinfo:
        AuditConfig(model="m.pt", **{knob: value}).check()
    assert flag in one_line_error(excinfo)


@pytest.mark.parametrize("attacks,eps,refused", [
    (["pgd"], "2", True), (["fgsm"], "8/255,1.5", True), (["pgd", "pgdl2"], "2", True), (["apgd"], "255/255", False),
    (["pgd"], "1", False), (["pgdl2"], "2", False), (["cw"], "3", False),
])
def test_linf_budgets_above_one_are_refused(attacks, eps, refused):
    config = AuditConfig(model="m.pt", attacks=attacks, eps=eps)
    if not refused:
        config.check()
        return
    with pytest.raises(AuditError) as excinfo:
        config.check()
    message = one_line_error(excinfo)
    assert "--eps" in message and "L∞" in message and "above 1" in message


def test_l2_budgets_above_the_image_diameter_are_refused():
    opts = AuditConfig(model="m.pt", attacks=["pgdl2"], eps="0.5,3.4", device="cpu").resolved()
    opts.check_budgets(3, (2, 2))  # sqrt(12) = 3.46 bounds every L2 distance between 3x2x2 images
    with pytest.raises(AuditError) as excinfo:
        opts.check_budgets(1, (3, 3))  # sqrt(9) = 3
    assert "--eps 3.4 is above 3" in one_line_error(excinfo)
    assert math.isclose(math.sqrt(3 * 2 * 2), 3.4641016, rel_tol=1e-6)
    AuditConfig(model="m.pt", attacks=["pgd"], eps="0.5", device="cpu").resolved().check_budgets(1, (1, 1))


def test_eps_above_one_fails_before_loading_anything(capsys):
    err = main_error(capsys, "no-such-model.pt", "--attack", "pgd", "--eps", "2")
    assert err.startswith("error: --eps 2 is above 1 for the L∞ attack 'pgd'")


def test_effective_lists_every_option_under_its_file_key():
    config = AuditConfig(model="m.pt", attacks=["fgsm"], gates=["clean.accuracy>=0.5"], out=Path("o"))
    effective = config.effective()
    assert list(effective) == [meta_key(f) for f in option_fields()]
    assert effective["attack"] == ["fgsm"] and effective["gate"] == ["clean.accuracy>=0.5"] and effective["out"] == "o"
    json.dumps(effective)


# --- end to end ----------------------------------------------------------------------------------------------


def test_a_config_file_and_flags_combine_in_a_real_audit(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "net.safetensors").symlink_to(ASSETS / "fashion_cnn.safetensors")
    write(folder, f'model = "net.safetensors"\narch = "{ARCH}"\nclasses = "fashion-mnist"\nattack = "fgsm"\n'
                  'eps = [0.1, "8/255"]\nsamples = 40\nseed = 4\nlayers = "none"\nchecks = false\nhtml = false\n'
                  'out = "results"\nlabel = "from the file"\n')
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    proc = subprocess.run([sys.executable, "-m", "audit", "--config", "../project/audit.toml", "--samples", "10",
                           "--seed", "0"], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((folder / "results" / "report.json").read_text())
    assert not (folder / "results" / "report.html").exists()
    settings = report["settings"]
    assert settings["samples"] == 10 and report["data"]["n_samples"] == 10 and report["seed"] == 0
    assert settings["seed"] == 0 and settings["attack"] == ["fgsm"] and settings["attacks"] == ["fgsm"]
    assert settings["eps"] == ["8/255", "0.1"] and [a["eps_text"] for a in report["attacks"]] == ["8/255", "0.1"]
    assert settings["checks"] is False and settings["label"] == "from the file" and settings["resume"] is False
    assert Path(settings["out"]).resolve() == (folder / "results").resolve()
    assert set(AuditConfig(model="m").effective()) <= set(settings)
    assert report["model"]["label"] == "from the file"
