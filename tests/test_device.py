"""The audit on any device: where each torchrun process runs (CPU), how often the hot loop moves results to the CPU
(CPU), and the CUDA runs themselves (marked ``cuda``: skipped without a GPU; scripts/gpu_check.sh runs them).

The transfer count: every explicit round trip from a tensor to Python (``Tensor.cpu``, ``item``, ``tolist``,
``numpy``, and ``bool``/``int``/``float``/``index`` of a tensor) made inside one batch of the pre-pass or of the
attacking pass is counted. On a GPU each is a synchronisation. Their number per batch must not grow with the
batch size (audit.engine: results go to the CPU per batch and budget, never per sample).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from audit import AuditConfig, run_audit
from audit.demo import ARCH, ASSETS
from audit.engine.audit_pass import AuditPass
from audit.options import Placement, placement
from audit.errors import AuditError

WEIGHTS = str(ASSETS / "fashion_cnn.safetensors")
ROUND_TRIPS = ("cpu", "item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__")

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (scripts/gpu_check.sh)")


def config(**kw) -> AuditConfig:
    base = dict(model=WEIGHTS, arch=ARCH, data="demo", classes="fashion-mnist", attacks=["pgd"], eps="0.05,0.1",
                steps=3, samples=32, batch_size=8, permutations=20, checks=False, device="cpu", threads=1)
    return AuditConfig(**{**base, **kw})


# --- where each process runs ---------------------------------------------------------------------------------


def test_placement_of_a_single_process():
    one = dict(world_size=1, local_rank=0)
    assert placement("cpu", **one, gpus=4) == Placement("cpu", "gloo")
    assert placement("auto", **one, gpus=0) == Placement("cpu", "gloo")
    assert placement("auto", **one, gpus=2) == Placement("cuda", "nccl")  # the current GPU, as before
    assert placement("cuda", **one, gpus=2) == Placement("cuda:0", "nccl")
    assert placement("CUDA:1", **one, gpus=2) == Placement("cuda:1", "nccl")
    assert placement("cuda", **one, gpus=2).gpu == 0 and placement("auto", **one, gpus=2).gpu is None
    with pytest.raises(AuditError, match="only 2 CUDA"):
        placement("cuda:2", **one, gpus=2)
    with pytest.raises(AuditError, match="no CUDA GPU is available .this torch is a CPU-only build"):
        placement("cuda", **one, gpus=0, cuda_build=False)
    with pytest.raises(AuditError, match="not understood"):
        placement("gpu", **one, gpus=2)


def test_placement_under_torchrun_one_gpu_per_process():
    for local in range(4):
        for spec in ("cuda", "auto"):
            where = placement(spec, world_size=8, local_rank=local, gpus=4)
            assert where == Placement(f"cuda:{local}", "nccl") and where.gpu == local
        assert placement("cpu", world_size=8, local_rank=local, gpus=4) == Placement("cpu", "gloo")
        assert placement("auto", world_size=8, local_rank=local, gpus=0) == Placement("cpu", "gloo")
    with pytest.raises(AuditError, match=r"process 4 on this node, which has only 4 CUDA GPU.*--nproc-per-node 4"):
        placement("cuda", world_size=8, local_rank=4, gpus=4)
    with pytest.raises(AuditError, match=r"cuda:1 under torchrun: each process takes the GPU of its local rank"):
        placement("cuda:1", world_size=2, local_rank=0, gpus=2)
    with pytest.raises(AuditError, match="no GPU is visible"):
        placement("cuda", world_size=2, local_rank=0, gpus=0)


def test_resolve_device_follows_the_local_rank_under_torchrun(monkeypatch):
    from audit.options import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("auto") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(AuditError, match="under torchrun"):
        resolve_device("cuda:0")


def test_an_audit_forks_the_random_state_of_its_own_gpu_only(monkeypatch):
    """Forking a GPU's random state creates a CUDA context on it: under torchrun each rank forks its own GPU's
    state only, never every GPU's (which would put every rank on every GPU); on the CPU no GPU's."""
    from audit.engine.runner import _cuda_devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert _cuda_devices("cuda") == [2]
    assert _cuda_devices("auto") == [2]
    assert _cuda_devices("cpu") == []
    assert _cuda_devices("cuda:0") == []  # refused by the audit itself, with its own line
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert _cuda_devices("cuda:3") == [3]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _cuda_devices("auto") == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal where no GPU is")
def test_the_demo_on_a_missing_gpu_is_one_line(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "audit", "demo", "--device", "cuda", "--out", str(out)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1 and "no CUDA GPU is available" in proc.stderr
    assert not out.exists()


# --- the hot loop's round trips to the CPU -------------------------------------------------------------------


def round_trips_per_batch(monkeypatch, **kw) -> list[int]:
    """Round trips (ROUND_TRIPS) made inside each batch of the pre-pass and the attacking pass of an audit."""
    counts: list[int] = []
    inside = [False]

    def counting(original):
        def call(self, *args, **kwargs):
            if inside[0]:
                counts[-1] += 1
            return original(self, *args, **kwargs)
        return call

    def one_batch(original):
        def call(self, *args, **kwargs):
            counts.append(0)
            inside[0] = True
            try:
                return original(self, *args, **kwargs)
            finally:
                inside[0] = False
        return call

    with monkeypatch.context() as patch:
        for name in ROUND_TRIPS:
            patch.setattr(torch.Tensor, name, counting(getattr(torch.Tensor, name)))
        for name in ("prepare", "batch"):
            patch.setattr(AuditPass, name, one_batch(getattr(AuditPass, name)))
        result = run_audit(config(**kw))
    assert {"saliency", "semantics"} <= set(result.analyses)
    return counts


def test_round_trips_to_the_cpu_per_batch_do_not_grow_with_the_batch_size(monkeypatch):
    small = round_trips_per_batch(monkeypatch, batch_size=4)
    large = round_trips_per_batch(monkeypatch, batch_size=16)
    # both analyses (layers auto) and the attack ran: a pre-pass and an attacking pass of 32 / B batches each
    assert len(small) == 2 * 8 and len(large) == 2 * 2
    assert min(small) > 0  # the counting sees the loop's transfers (about 15 per pre-pass batch, 130 per batch)
    # A round trip per sample adds at least 12 per batch of 16 over a batch of 4; what varies by batch
    # (the saliency examples, at most 2 per attack run over the whole audit) adds far less.
    assert max(large) - max(small) < 12, (small, large)
    assert max(large[:2]) - max(small[:8]) < 12, (small, large)  # the pre-pass alike


# --- on a GPU (scripts/gpu_check.sh) -------------------------------------------------------------------------
# A CUDA audit need not give the CPU's numbers: torchattacks' PGD draws its random start on the audit's device
# (another generator than the CPU's), and GPU kernels round differently, which can move an image that sits on a
# decision boundary. The margin is set from the spread between two seeds on the CPU: the demo's 24 robust
# accuracies (seed 0 against seed 1) differ by at most 7 of its 300 images (PGD at eps 0.3 on the adversarially
# trained CNN; FGSM and most budgets not at all).

MARGIN = 0.04  # robust accuracy, CUDA vs CPU: 12 of the demo's 300 images
CLEAN_MARGIN = 1 / 300  # clean accuracy: one image on a boundary


def on_cuda(test):
    return pytest.mark.cuda(pytest.mark.skipif(not torch.cuda.is_available(),
                                               reason="needs a CUDA GPU (scripts/gpu_check.sh)")(test))


def accuracies(result) -> dict:
    return {(e["name"], e["eps"]): e["robust_accuracy"] for e in result.attacks}


@on_cuda
def test_the_demo_on_cuda_gives_the_cpus_robust_accuracies():
    from audit.demo import demo_configs

    settings = dict(attacks=["fgsm", "pgd", "apgd"], eps="0.05,0.1,0.2,0.3", steps=None, samples="all", seed=0)
    for key, on_cpu in demo_configs(**settings).items():
        cpu_result = run_audit(on_cpu)
        gpu_result = run_audit(demo_configs(**settings, device="cuda")[key])
        assert cpu_result.device == "cpu" and gpu_result.device.startswith("cuda")
        assert abs(gpu_result.clean["accuracy"] - cpu_result.clean["accuracy"]) <= CLEAN_MARGIN + 1e-12, key
        cpu_acc, gpu_acc = accuracies(cpu_result), accuracies(gpu_result)
        assert cpu_acc.keys() == gpu_acc.keys()
        for entry, value in cpu_acc.items():
            assert abs(gpu_acc[entry] - value) <= MARGIN + 1e-12, (key, entry, value, gpu_acc[entry])
        for entry in gpu_result.attacks:  # the attacks stay inside their threat model on the GPU too
            assert entry["checks"]["max_eps_violation"] <= 1e-6 and entry["checks"]["max_box_violation"] <= 1e-6


@on_cuda
def test_both_analyses_the_ensemble_and_the_checks_on_cuda():
    settings = dict(model=str(ASSETS / "fashion_cnn_adv.safetensors"), attacks=["autoattack-fast"], eps="0.1",
                    steps=10, samples=60, batch_size=20, checks=True, permutations=50)
    cpu_result, gpu_result = run_audit(config(**settings)), run_audit(config(**settings, device="cuda"))
    n = gpu_result.clean["n"]
    for (entry, value), other in zip(accuracies(cpu_result).items(), accuracies(gpu_result).values(), strict=True):
        assert abs(other - value) <= 2 / n + 1e-12, entry  # the ensemble draws its starts on the CPU
    ensemble = gpu_result.attacks[0]["ensemble"]
    assert [c["name"] for c in ensemble["components"]] == ["apgd-ce", "apgd-t", "square"]
    assert [c["name"] for c in gpu_result.checks] == [c["name"] for c in cpu_result.checks]
    for section in ("saliency", "semantics"):
        cpu_layers = cpu_result.analyses[section]["layers"]
        gpu_layers = gpu_result.analyses[section]["layers"]
        assert [la["name"] for la in gpu_layers] == [la["name"] for la in cpu_layers]
        assert all(la["adversarial"] for la in gpu_layers)
    for cpu_layer, gpu_layer in zip(cpu_result.analyses["saliency"]["layers"],
                                    gpu_result.analyses["saliency"]["layers"], strict=True):
        # the clean entropy profile: the same maps up to rounding (a pixel may change its grey level)
        assert gpu_layer["clean"]["mean"] == pytest.approx(cpu_layer["clean"]["mean"], abs=0.05)
    for cpu_layer, gpu_layer in zip(cpu_result.analyses["semantics"]["layers"],
                                    gpu_result.analyses["semantics"]["layers"], strict=True):
        assert gpu_layer["clean"]["two_vs_two"] == pytest.approx(cpu_layer["clean"]["two_vs_two"], abs=0.02)


class Interrupted(Exception):
    pass


@on_cuda
def test_an_interrupted_cuda_audit_resumes(tmp_path, monkeypatch):
    settings = dict(device="cuda", attacks=["pgd", "deepfool"], samples=48, batch_size=8)
    whole = run_audit(config(**settings))
    done, original = [0], AuditPass.batch

    def two_batches_then_stop(self, *args):
        if done[0] == 2:
            raise Interrupted
        done[0] += 1
        return original(self, *args)

    with monkeypatch.context() as patch:
        patch.setattr(AuditPass, "batch", two_batches_then_stop)
        with pytest.raises(Interrupted):
            run_audit(config(**settings), state_dir=str(tmp_path))
    resumed = run_audit(config(**settings, resume=True), state_dir=str(tmp_path))
    n = whole.clean["n"]
    assert resumed.clean == whole.clean
    for (entry, value), other in zip(accuracies(whole).items(), accuracies(resumed).values(), strict=True):
        if value is not None:  # a GPU's backward may round differently from run to run: 2 images at most
            assert abs(other - value) <= 2 / n + 1e-12, entry
    assert {"saliency", "semantics"} <= set(resumed.analyses)
