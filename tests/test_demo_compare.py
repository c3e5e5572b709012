"""`audit compare` on real audits of the shipped demo twins (300 Fashion-MNIST test images, PGD-40 and FGSM at
eps 0.1, 0.2, 0.3; the attack numbers only, as the analyses do not change them): the adversarially trained
twin's improvement is significant on every robust-accuracy row, and two audits of one model that differ only in
PGD's random starts (`--seed`) are paired on the same images and show no significant regression."""

from __future__ import annotations

import pytest

from audit import run_audit
from audit.demo import demo_configs
from reports.compare import compare
from reports.schema import unpack_bits

EPS = "0.1,0.2,0.3"


@pytest.fixture(scope="module")
def demo_audits() -> dict:
    out = {}
    for seed, keys in ((0, ("standard", "adversarial")), (7, ("adversarial",))):
        configs = demo_configs(attacks=["fgsm", "pgd"], eps=EPS, steps=None, samples="all", seed=seed)
        for key in keys:
            config = configs[key]
            config.layers, config.checks, config.threads = "none", False, 1
            out[(key, seed)] = run_audit(config).to_dict()
    return out


def robust_rows(comparison: dict) -> list[dict]:
    return [r for r in comparison["rows"] if r["metric"].startswith("robust_accuracy[")]


def test_the_adversarially_trained_twin_is_significantly_more_robust_on_every_row(demo_audits):
    base, new = demo_audits[("standard", 0)], demo_audits[("adversarial", 0)]
    assert base["data"]["sample"] == new["data"]["sample"] and base["data"]["sample"]["n"] == 300
    comparison = compare(base, new)
    assert comparison["paired"] is True
    rows = robust_rows(comparison)
    assert len(rows) == 6  # fgsm and pgd at three budgets
    for row in rows:
        assert row["test"] == "mcnemar" and row["improved"] and not row["regressed"], row["metric"]
        assert row["p_better_adjusted"] < 1e-6, row["metric"]
        # the discordant counts are the per-sample outcomes, counted directly
        n = base["clean"]["n"]
        entry = {(e["name"], e["eps_text"]): e for e in base["attacks"]}
        other = {(e["name"], e["eps_text"]): e for e in new["attacks"]}
        key = tuple(row["metric"][len("robust_accuracy["):-1].split("@"))
        was = unpack_bits(entry[key]["per_sample"]["robust"], n)
        now = unpack_bits(other[key]["per_sample"]["robust"], n)
        assert (row["b"], row["c"]) == (sum(w and not v for w, v in zip(was, now, strict=True)),
                                        sum(v and not w for w, v in zip(was, now, strict=True)))
        assert row["difference_ci"][0] > 0


def test_two_audits_of_one_model_with_new_random_starts_are_no_regression(demo_audits):
    first, second = demo_audits[("adversarial", 0)], demo_audits[("adversarial", 7)]
    assert first["data"]["sample"] == second["data"]["sample"]  # the same images, paired
    comparison = compare(first, second)
    assert comparison["paired"] is True and not comparison["regressed"]
    rows = robust_rows(comparison)
    assert not any(r["significant"] for r in rows)
    # the random starts did move some samples: the test saw discordant pairs and found them balanced
    assert sum(r["b"] + r["c"] for r in rows) > 0
    assert all(r["p_adjusted"] > 0.05 for r in rows)
