"""Loading models safely in every supported format, the [0,1]-pixel wrapper, and the probe."""

from __future__ import annotations

import collections
import contextlib
import hashlib
import importlib
import inspect
import io
import os
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from audit.errors import AuditError
from audit.model.audited import AuditedModel, eval_mode
from audit.model.loading import load_model
from audit.model.probing import expected_channels, probe
from audit.options import parse_arch_kwargs, parse_stats, resolve_device

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

class TinyNet(torch.nn.Module):
    """A micro network; also written out as a user's architecture file (ARCH_SOURCE, class Net)."""

    def __init__(self, num_classes: int = 3, width: int = 4):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, width, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(width)
        self.fc = torch.nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


# The same network as a user's --arch file: its class is called Net there, beside a factory that builds no network.
ARCH_SOURCE = (
    "import torch\n\n\n"
    + inspect.getsource(TinyNet).replace("class TinyNet", "class Net")
    + "\n\ndef not_a_network():\n    return 42\n"
)


# A lazy module, as transformers' is: attribute access imports, and a failed import surfaces as its own
# ModuleNotFoundError (hasattr does not catch it). squeezenet1_1 needs torchvision, imported only then.
LAZY_MODULE = """
def __getattr__(name):
    try:
        if name == "squeezenet1_1":
            import torchvision.models
            return torchvision.models.squeezenet1_1
        import a_package_that_is_not_installed_xyz
    except Exception as exc:
        raise ModuleNotFoundError(f"Could not import module {name!r}. Are its requirements installed?") from exc
"""


class Wrap(torch.nn.Module):
    """A network built from a function of its input, for probe cases."""

    def __init__(self, fn, in_channels: int = 3):
        super().__init__()
        self.conv = torch.nn.Conv2d(in_channels, 4, 3)
        self.fn = fn

    def forward(self, x):
        return self.fn(self.conv(x).mean((2, 3)))


class MakesMarker:
    """Unpickling this creates a file: the stand-in for arbitrary code in a malicious checkpoint."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message
    return message


@pytest.fixture
def arch_file(tmp_path: Path) -> Path:
    path = tmp_path / "nets.py"
    path.write_text(ARCH_SOURCE)
    return path


@pytest.fixture
def net() -> TinyNet:
    torch.manual_seed(0)
    model = TinyNet()
    model.bn.running_mean.uniform_(-0.5, 0.5)  # make every buffer distinctive so the round trip is checked
    model.bn.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def same_outputs(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> bool:
    with eval_mode(a), eval_mode(b), torch.no_grad():
        return torch.allclose(a(x), b(x), atol=1e-6)


# --- weight files ----------------------------------------------------------------------------------------


def test_safetensors_with_a_file_arch(tmp_path, arch_file, net, images):
    path = tmp_path / "weights.bin"  # the extension says nothing: the content decides
    save_file(net.state_dict(), path)
    loaded = load_model(path, arch=f"{arch_file}:Net")
    assert (loaded.format, loaded.load_policy, loaded.arch) == (
        "safetensors",
        "weights only, no code executed",
        f"{arch_file}:Net",
    )
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.path == str(path)
    assert same_outputs(loaded.module, net, images)


def test_safetensors_with_a_dotted_arch(tmp_path, monkeypatch, net, images):
    (tmp_path / "user_nets_for_audit.py").write_text(ARCH_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "w.safetensors"
    save_file(net.state_dict(), path)
    loaded = load_model(path, arch="user_nets_for_audit:Net", arch_kwargs={"num_classes": 3})
    assert loaded.format == "safetensors"
    assert same_outputs(loaded.module, net, images)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_state_dict_pt(tmp_path, net, images, zip_format, arch_file):
    path = tmp_path / "w.pt"
    torch.save(net.state_dict(), path, _use_new_zipfile_serialization=zip_format)
    loaded = load_model(path, arch=f"{arch_file}:Net")
    assert (loaded.format, loaded.load_policy) == ("state_dict", "weights only, no code executed")
    assert same_outputs(loaded.module, net, images)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"state_dict": sd, "epoch": 7, "best_acc": 0.9},
        lambda sd: {"model_state_dict": sd, "optimizer_state_dict": {"state": {}, "param_groups": []}},
        lambda sd: {"model": sd, "args": ["--lr", "0.1"]},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
        lambda sd: {f"_orig_mod.module.{k}": v for k, v in sd.items()},
    ],
    ids=["state_dict", "model_state_dict", "model", "module-prefix", "wrapped-prefix", "compiled-ddp"],
)
def test_wrapped_state_dicts(tmp_path, net, images, wrap, arch_file):
    path = tmp_path / "ckpt.pth"
    torch.save(wrap(net.state_dict()), path)
    loaded = load_model(path, arch=f"{arch_file}:Net")
    assert loaded.format == "state_dict"
    assert same_outputs(loaded.module, net, images)


def test_state_dict_needs_arch(tmp_path, net):
    path = tmp_path / "w.pt"
    torch.save(net.state_dict(), path)
    with pytest.raises(AuditError) as excinfo:
        load_model(path)
    message = one_line(excinfo)
    assert "holds only weights" in message and "--arch torchvision.models:resnet18" in message


def test_arch_kwargs_without_arch(tmp_path, net):
    path = tmp_path / "w.pt"
    torch.save(net.state_dict(), path)
    with pytest.raises(AuditError, match="--arch-kwargs needs --arch"):
        load_model(path, arch_kwargs={"num_classes": 3})


def test_torchvision_arch_goes_through_the_guarded_import(tmp_path, monkeypatch):
    import audit.model.torchvision_door as door

    calls = []
    real = door.import_torchvision
    monkeypatch.setattr(door, "import_torchvision", lambda: calls.append(1) or real())
    torchvision = real()
    weights = torchvision.models.squeezenet1_1(num_classes=5).state_dict()
    path = tmp_path / "squeeze.safetensors"
    save_file(weights, path)
    loaded = load_model(path, arch="torchvision.models:squeezenet1_1", arch_kwargs={"num_classes": 5})
    assert calls and type(loaded.module).__name__ == "SqueezeNet"


def test_mismatched_weights_name_shapes_and_suggest_num_classes(tmp_path, arch_file):
    path = tmp_path / "w.pt"
    torch.save(TinyNet(num_classes=10).state_dict(), path)
    with pytest.raises(AuditError) as excinfo:
        load_model(path, arch=f"{arch_file}:Net")
    message = one_line(excinfo)
    assert "fc.weight: checkpoint 10x4, model 3x4" in message and "fc.bias: checkpoint 10, model 3" in message
    assert """--arch-kwargs '{"num_classes": 10}'""" in message


def test_missing_and_unexpected_keys_are_counted(tmp_path, arch_file, net):
    weights = net.state_dict()
    weights["head.weight"] = weights.pop("fc.weight")
    path = tmp_path / "w.pt"
    torch.save(weights, path)
    with pytest.raises(AuditError) as excinfo:
        load_model(path, arch=f"{arch_file}:Net")
    message = one_line(excinfo)
    assert "1 missing key (fc.weight)" in message and "1 unexpected key (head.weight)" in message


@pytest.mark.parametrize(
    ("spec", "kwargs", "expected"),
    [
        ("no_colon_here", {}, "is not of the form package.module:callable"),
        ("torch.nn:", {}, "is not of the form"),
        ("surely_not_a_module_xyz:Net", {}, "cannot import surely_not_a_module_xyz"),
        ("{dir}/missing.py:Net", {}, "does not exist"),
        ("{file}:Nope", {}, "has no attribute 'Nope'"),
        ("{file}:Net", {"colours": 3}, "TypeError"),
        ("{file}:not_a_network", {}, "returned a int, not a torch.nn.Module"),
        ("{file}:torch", {}, "is a module, not a class or function"),
        ("{broken}:Net", {}, "running"),
        ("{lazy}:Model", {}, "looking up Model in {lazy} failed (ModuleNotFoundError: Could not import module 'Model'"),
        ("{lazy}:Model.from_pretrained", {}, "looking up Model.from_pretrained in {lazy} failed"),
    ],
)
def test_arch_errors(tmp_path, arch_file, net, spec, kwargs, expected):
    broken = tmp_path / "broken.py"
    broken.write_text("raise ImportError('needs timm')\n")
    lazy = tmp_path / "lazy.py"
    lazy.write_text(LAZY_MODULE)
    expected = expected.format(lazy=lazy)
    path = tmp_path / "w.safetensors"
    save_file(net.state_dict(), path)
    spec = spec.format(dir=tmp_path, file=arch_file, broken=broken, lazy=lazy)
    with pytest.raises(AuditError) as excinfo:
        load_model(path, arch=spec, arch_kwargs=kwargs)
    assert expected in one_line(excinfo)


# --- archives that hold their network ----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript(tmp_path, net, images, how, arch_file):
    scripted = torch.jit.script(net) if how == "script" else torch.jit.trace(net, images)
    path = tmp_path / "model.bin"
    torch.jit.save(scripted, path)
    loaded = load_model(path)
    assert (loaded.format, loaded.load_policy, loaded.arch) == (
        "torchscript",
        "TorchScript archive (no Python code executed)",
        None,
    )
    assert same_outputs(loaded.module, net, images)
    assert expected_channels(loaded.module) == 3
    with pytest.raises(AuditError) as excinfo:
        load_model(path, arch=f"{arch_file}:Net")
    assert "--arch is only used with weight files" in one_line(excinfo)


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_advice_works_as_written(tmp_path, monkeypatch, net, images, how, arch_file):
    from audit.analyses.layers import candidate_layers

    scripted = torch.jit.script(net) if how == "script" else torch.jit.trace(net, images)
    path = tmp_path / "scripted.pt"
    torch.jit.save(scripted, path)
    with pytest.raises(AuditError) as hooking:
        candidate_layers(load_model(path).module, images)
    with pytest.raises(AuditError) as with_arch:
        load_model(path, arch=f"{arch_file}:Net")
    recipes = []
    for message, model_name in ((one_line(hooking), "MODEL"), (one_line(with_arch), str(path))):
        assert "--arch" in message.split("`")[2]
        recipes.append(message.split("`")[1].replace(model_name, str(path)))
    assert recipes[0] == recipes[1]
    monkeypatch.chdir(tmp_path)
    exec(recipes[0], {"torch": torch})  # the advice, run as the user would
    loaded = load_model(tmp_path / "weights.pt", arch=f"{arch_file}:Net")
    assert (loaded.format, loaded.load_policy) == ("state_dict", "weights only, no code executed")
    assert same_outputs(loaded.module, net, images)
    assert [info.name for info in candidate_layers(loaded.module, images)]  # its layers can now be hooked


@pytest.fixture(scope="module")
def exported_file(tmp_path_factory) -> tuple[Path, TinyNet]:
    torch.manual_seed(2)
    model = TinyNet().eval()
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, (torch.rand(2, 3, 8, 8),), dynamic_shapes={"x": {0: batch}})
    path = tmp_path_factory.mktemp("export") / "model.pt2"
    torch.export.save(program, path)
    return path, model


def test_torch_export_needs_trust_then_loads(exported_file, images):
    path, model = exported_file
    with pytest.raises(AuditError) as excinfo:
        load_model(path)
    message = one_line(excinfo)
    assert "refusing to load" in message and "--trust-model" in message and "torch.export" in message
    loaded = load_model(path, trust_model=True)
    assert (loaded.format, loaded.load_policy) == (
        "torch.export",
        "torch.export program, trusted by --trust-model",
    )
    assert same_outputs(loaded.module, model, images)
    assert expected_channels(loaded.module) == 3
    audited = AuditedModel(loaded.module, None, None)
    audited.eval()  # an exported module refuses eval() itself; the wrapper must not
    assert probe(audited, images, 3).num_outputs == 3


def test_torch_export_with_fixed_batch_is_explained(tmp_path, net, images):
    path = tmp_path / "fixed.pt2"
    torch.export.save(torch.export.export(net, (images[:1],)), path)
    audited = AuditedModel(load_model(path, trust_model=True).module, None, None)
    with pytest.raises(AuditError) as excinfo:
        probe(audited, images, None)
    assert "fixed batch size" in one_line(excinfo)


def craft_pt2(exported: Path, marker: Path, crafted: Path) -> Path:
    """A copy of an exported program whose sample inputs, when unpickled, create ``marker``."""
    payload = io.BytesIO()
    torch.save((MakesMarker(marker),), payload)
    with zipfile.ZipFile(exported) as src, zipfile.ZipFile(crafted, "w") as dst:
        for info in src.infolist():
            replace = info.filename.endswith("sample_inputs/model.pt")
            dst.writestr(info, payload.getvalue() if replace else src.read(info))
    return crafted


def test_crafted_pt2_is_refused_without_running_it(tmp_path, exported_file):
    # torch.export.load falls back to a full unpickling of the sample inputs: a .pt2 can carry code
    marker = tmp_path / "pwned"
    crafted = craft_pt2(exported_file[0], marker, tmp_path / "crafted.pt2")
    with pytest.raises(AuditError, match="--trust-model"):
        load_model(crafted)
    assert not marker.exists()


def test_crafted_pt2_runs_its_payload_once_trusted(tmp_path, exported_file):
    # what the refusal protects from: with --trust-model, loading the same file executes the payload
    marker = tmp_path / "pwned"
    crafted = craft_pt2(exported_file[0], marker, tmp_path / "crafted.pt2")
    # the payload stands where the sample inputs belong, so the load itself may fail afterwards
    with contextlib.suppress(AuditError):
        load_model(crafted, trust_model=True)
    assert marker.exists()


# --- full pickles ------------------------------------------------------------------------------------------


def test_full_pickle_refused_without_trust_and_loaded_with_it(tmp_path, net, images, arch_file):
    path = tmp_path / "model.pt"
    torch.save(net, path)
    with pytest.raises(AuditError) as excinfo:
        load_model(path)
    message = one_line(excinfo)
    assert message.startswith(f"refusing to load {path}: it is a full pickled model")
    assert "TinyNet" in message and "pass --trust-model (nothing in the file was executed)" in message
    loaded = load_model(path, trust_model=True)
    assert (loaded.format, loaded.load_policy) == ("pickle", "full pickle, trusted by --trust-model")
    assert same_outputs(loaded.module, net, images)
    with pytest.raises(AuditError, match="--arch is only used with weight files"):
        load_model(path, arch=f"{arch_file}:Net", trust_model=True)


def test_trusted_checkpoint_wrapping_a_network(tmp_path, net, images):
    path = tmp_path / "ckpt.pt"
    torch.save({"model": net, "epoch": 3}, path)
    loaded = load_model(path, trust_model=True)
    assert loaded.format == "pickle" and same_outputs(loaded.module, net, images)


def _project_with_its_own_module(tmp_path: Path, module: str) -> Path:
    """A folder holding ``module.py`` (class Net), as the folder a model was saved from."""
    folder = tmp_path / "project"
    folder.mkdir(exist_ok=True)
    (folder / f"{module}.py").write_text(ARCH_SOURCE)
    return folder


def _pickle_from(folder: Path, module: str, out: Path) -> TinyNet:
    """torch.save of the network class ``module.Net`` (its pickle names ``module``), leaving no import behind."""
    sys.path.insert(0, str(folder))
    try:
        network = importlib.import_module(module).Net().eval()
        torch.save(network, out)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(module, None)
    return network


def test_trusted_pickle_and_arch_module_import_from_the_current_folder(tmp_path, monkeypatch, images):
    folder = _project_with_its_own_module(tmp_path, "saved_here_net_a")
    (folder / "saved_here_net_b.py").write_text(ARCH_SOURCE)
    network = _pickle_from(folder, "saved_here_net_a", folder / "model.pt")
    save_file(network.state_dict(), folder / "w.safetensors")
    monkeypatch.chdir(folder)
    # the audit script's sys.path: its own folder first, never the current one
    monkeypatch.setattr(sys, "path", [p for p in sys.path if os.path.abspath(p or os.curdir) != str(folder)])
    before = list(sys.path)
    try:
        assert same_outputs(load_model("model.pt", trust_model=True).module, network, images)
        assert same_outputs(load_model("w.safetensors", arch="saved_here_net_b:Net").module, network, images)
    finally:
        sys.modules.pop("saved_here_net_a", None)
        sys.modules.pop("saved_here_net_b", None)
    assert sys.path == before  # the current folder was importable only while the user's code was imported


def _tv_pickle(folder: Path) -> list[str]:
    from audit.model.torchvision_door import models

    torch.save(models().squeezenet1_1(num_classes=5).eval(), folder / "squeeze.pt")
    return ["squeeze.pt", "--trust-model"]


def _lazy_arch(folder: Path) -> list[str]:
    from audit.model.torchvision_door import models

    (folder / "lazy_models.py").write_text(LAZY_MODULE)
    save_file(models().squeezenet1_1(num_classes=5).state_dict(), folder / "squeeze.safetensors")
    return ["squeeze.safetensors", "--arch", "lazy_models:squeezenet1_1", "--arch-kwargs", '{"num_classes": 5}']


def _own_pickle(folder: Path) -> list[str]:
    _pickle_from(folder, "saved_here_net_c", folder / "model.pt")
    return ["model.pt", "--trust-model"]


@pytest.mark.parametrize("make", [_own_pickle, _tv_pickle, _lazy_arch], ids=["own-class", "torchvision", "lazy"])
def test_the_audit_script_loads_from_the_folder_that_saved_the_model(tmp_path, make):
    """The installed ``audit`` script (not ``python -m``) in a fresh interpreter, run from the project folder: the
    classes a trusted pickle names come from that folder, and torchvision, imported by unpickling or by a lazy
    module's attribute, goes through the torchvision door."""
    folder = _project_with_its_own_module(tmp_path, "saved_here_net_c")
    args = make(folder)
    script = tmp_path / "bin" / "audit"  # what pip writes for the console script audit = audit.cli:main
    script.parent.mkdir()
    script.write_text("import sys\nfrom audit.cli import main\nif __name__ == '__main__':\n    sys.exit(main())\n")
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), "layers", *args], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "--layers auto picks" in proc.stdout


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_malicious_pickle_is_never_executed(tmp_path, zip_format, arch_file):
    marker = tmp_path / "pwned"
    path = tmp_path / "innocent.pt"
    torch.save(
        {"weights": torch.zeros(2), "x": MakesMarker(marker)}, path, _use_new_zipfile_serialization=zip_format
    )
    assert not marker.exists()
    with pytest.raises(AuditError) as excinfo:
        load_model(path, arch=f"{arch_file}:Net")
    message = one_line(excinfo)
    assert "refusing to load" in message and "--trust-model" in message
    assert not marker.exists()


# --- files that are not models -----------------------------------------------------------------------------


def write(name: str, data: bytes):
    def make(directory: Path) -> Path:
        (directory / name).write_bytes(data)
        return directory / name

    return make


def truncated(directory: Path) -> Path:
    buffer = io.BytesIO()
    torch.save(TinyNet().state_dict(), buffer)
    return write("t.pt", buffer.getvalue()[: len(buffer.getvalue()) // 2])(directory)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: d / "nope.pt", "does not exist"),
        (lambda d: d, "is a directory"),
        (write("e.pt", b""), "the file is empty"),
        (write("g.pt", random.Random(0).randbytes(4096)), "is not a model file"),
        (write("t.txt", b"hello, world\n" * 20), "is not a model file"),
        (truncated, "is not a model file"),
        (write("s.safetensors", b"\x10" + bytes(7) + b"{not json}xxxxxx"), "safetensors:"),
    ],
    ids=["missing", "directory", "empty", "garbage", "text", "truncated", "bad-safetensors"],
)
def test_unreadable_files(tmp_path, make, expected):
    with pytest.raises(AuditError) as excinfo:
        load_model(make(tmp_path))
    assert expected in one_line(excinfo)


@pytest.mark.parametrize("content", [[1, 2, 3], torch.zeros(3), {}], ids=["list", "tensor", "empty-dict"])
def test_torch_files_without_a_network(tmp_path, content, arch_file):
    path = tmp_path / "x.pt"
    torch.save(content, path)
    with pytest.raises(AuditError, match="neither a network nor a state_dict"):
        load_model(path, arch=f"{arch_file}:Net")


# --- command-line values -----------------------------------------------------------------------------------


def test_parse_arch_kwargs():
    assert parse_arch_kwargs(None) == {} and parse_arch_kwargs("  ") == {}
    assert parse_arch_kwargs('{"num_classes": 10, "pretrained": false}') == {
        "num_classes": 10,
        "pretrained": False,
    }
    for bad, expected in [("{num_classes: 10}", "not valid JSON"), ("[10]", "must be a JSON object")]:
        with pytest.raises(AuditError) as excinfo:
            parse_arch_kwargs(bad)
        assert expected in one_line(excinfo)


def test_parse_stats():
    assert parse_stats(None, 3, "--mean") is None and parse_stats("", 3, "--std") is None
    assert parse_stats("0.485,0.456,0.406", 3, "--mean") == (0.485, 0.456, 0.406)
    assert parse_stats(" 0.5 ", 3, "--std") == (0.5, 0.5, 0.5)
    assert parse_stats("[0.1, 0.2]", 2, "--mean") == (0.1, 0.2)
    assert parse_stats("-1", 1, "--mean") == (-1.0,)
    for text, channels, expected in [
        ("0.1,0.2", 3, "has 2 values but the images have 3 channels"),
        ("0.1,x,0.3", 3, "'x' is not a number"),
        ("0.2,0,0.2", 3, "must be > 0"),
        ("nan", 3, "finite"),
    ]:
        with pytest.raises(AuditError) as excinfo:
            parse_stats(text, channels, "--std")
        assert expected in one_line(excinfo)


def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    for spec in ("cuda", "cuda:1", "CUDA:0"):
        with pytest.raises(AuditError) as excinfo:
            resolve_device(spec)
        assert "was asked for, but no CUDA GPU is available" in one_line(excinfo)
    for spec in ("gpu", "cuda:x", "tpu"):
        with pytest.raises(AuditError, match="is not understood"):
            resolve_device(spec)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(AuditError, match="only 2 CUDA"):
        resolve_device("cuda:2")


# --- the network in pixel space ----------------------------------------------------------------------------


class Echo(torch.nn.Module):
    def forward(self, x):
        return x


def test_audited_model_normalizes_exactly(images):
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    audited = AuditedModel(Echo(), mean, std)
    assert audited.mean.shape == (1, 3, 1, 1) and {n for n, _ in audited.named_buffers()} == {"mean", "std"}
    expected = images.clone()
    for c in range(3):
        expected[:, c] = (images[:, c] - mean[c]) / std[c]
    assert torch.equal(audited(images), expected)
    assert torch.equal(AuditedModel(Echo(), None, None)(images), images)
    assert torch.equal(AuditedModel(Echo(), (0.5,) * 3, None)(images), images - 0.5)


def test_audited_model_picks_the_logits(images):
    logits = torch.randn(4, 3)
    Pair = collections.namedtuple("Pair", ["features", "logits"])
    cases = [
        ({"logits": logits, "aux": 1}, None),
        ({"out": logits, "aux": torch.zeros(1)}, "out"),
        ((logits, torch.zeros(4, 7)), None),
        ((torch.zeros(4, 7), logits), 1),
        ([torch.zeros(4, 7), logits], "1"),
        (Pair(torch.zeros(4, 7), logits), None),
    ]
    for output, key in cases:
        audited = AuditedModel(Wrap(lambda _, out=output: out), None, None, key)
        assert torch.equal(audited(images), logits), (output, key)
    for output, key, expected in [
        ({"out": logits, "aux": logits}, None, "without a 'logits' entry ('out': Tensor, 'aux': Tensor)"),
        ({"out": logits}, "pred", "'pred' is not in the model's output dict"),
        (("text", logits), None, "is a str, not a tensor"),
        ((logits,), 3, "give an index 0..0"),
    ]:
        with pytest.raises(AuditError) as excinfo:
            AuditedModel(Wrap(lambda _, out=output: out), None, None, key)(images)
        assert expected in one_line(excinfo)


# --- eval mode ---------------------------------------------------------------------------------------------


def test_eval_mode_restores_every_flag_even_on_error(net):
    model = torch.nn.Sequential(net, torch.nn.Dropout(), torch.nn.Sequential(torch.nn.BatchNorm1d(3)))
    model.train()
    model[0].bn.eval()
    model[2][0].eval()
    before = [m.training for m in model.modules()]
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert [m.training for m in model.modules()] == before
    with pytest.raises(RuntimeError, match="boom"), eval_mode(model):
        raise RuntimeError("boom")
    assert [m.training for m in model.modules()] == before
    scripted = torch.jit.script(TinyNet())
    scripted.bn.eval()
    with eval_mode(scripted):
        assert not scripted.training and not scripted.conv.training
    assert (scripted.training, scripted.bn.training, scripted.conv.training) == (True, False, True)


# --- probe ---------------------------------------------------------------------------------------------------


def explode(z):
    raise ValueError("custom layer broke")


def run_probe(fn, images, num_classes=None, in_channels=3):
    return probe(AuditedModel(Wrap(fn, in_channels), None, None), images, num_classes)


def test_probe_plain_logits(images, net):
    net.train()
    result = probe(AuditedModel(net, (0.5,) * 3, (0.25,) * 3), images, 3)
    assert (result.num_outputs, result.output_kind, result.output_type) == (3, "logits", "tensor")
    assert result.deterministic and result.warnings == []
    assert net.training and net.bn.training  # the user's mode is back


def test_probe_output_kinds(images):
    probs = run_probe(lambda z: torch.softmax(z, 1), images)
    assert probs.output_kind == "probabilities"
    assert probs.warnings == [
        (
            "the model outputs probabilities (rows sum to 1): gradient attacks on probabilities underperform; "
            "export the logits if you can"
        )
    ]
    logp = run_probe(lambda z: torch.log_softmax(z, 1), images)
    assert (logp.output_kind, logp.warnings) == ("log-probabilities", [])
    wrapped = probe(AuditedModel(Wrap(lambda z: {"logits": z}), None, None), images, 4)
    assert wrapped.output_type == "dict[logits]"
    assert run_probe(lambda z: (z, z.sum()), images).output_type == "tuple[0]"


def test_probe_stochastic(images):
    result = run_probe(lambda z: z + torch.randn_like(z), images)
    assert not result.deterministic
    assert result.warnings[0].startswith(
        "the model is stochastic in eval mode (two identical calls differ by"
    )


@pytest.mark.parametrize(
    ("fn", "num_classes", "expected"),
    [
        (lambda z: z / 0.0 * 0.0, None, "NaN/inf on clean inputs"),
        (lambda z: z, 10, "the model has 4 outputs but --classes names 10 classes"),
        (lambda z: z[:, 0], None, "output of shape 4 for a batch of 4 images"),
        (lambda z: z[:1], None, "output of shape 1x4 for a batch of 4 images"),
        (lambda z: z.argmax(1, keepdim=True).repeat(1, 4), None, "not float scores"),
        (explode, None, "the model failed on a batch of shape 4x3x8x8 (ValueError: custom layer broke)"),
    ],
    ids=["nan", "class-count", "1-d", "batch", "integers", "forward-raises"],
)
def test_probe_rejects(images, fn, num_classes, expected):
    with pytest.raises(AuditError) as excinfo:
        run_probe(fn, images, num_classes)
    assert expected in one_line(excinfo)


def test_probe_names_the_expected_input(images):
    with pytest.raises(AuditError) as excinfo:
        run_probe(lambda z: z, images[:, :1], in_channels=3)
    message = one_line(excinfo)
    assert message.startswith("the model does not accept inputs of shape 1x8x8 (")
    assert message.endswith("its first layer expects 3 channels: set --input-size / --channels")
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    with pytest.raises(AuditError, match="first layer is a Linear that expects 784 values"):
        probe(AuditedModel(mlp, None, None), images, None)
    assert expected_channels(mlp) is None and expected_channels(Wrap(None, 1)) == 1


def test_expected_channels_sees_conv2d_subclasses():
    from torch import nn

    from audit.model.probing import expected_channels

    class SamePaddingConv(nn.Conv2d):
        pass

    net = nn.Sequential(SamePaddingConv(3, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    assert expected_channels(net) == 3
    assert expected_channels(torch.jit.script(net)) == 3
