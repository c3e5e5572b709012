"""The demo's defaults and README's demo table, tied to each other and to a real audit of the shipped models."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from audit import run_audit
from audit.cli import demo_cmd
from audit.demo import demo_configs

README = Path(__file__).resolve().parents[1] / "README.md"
N_IMAGES = 300  # the shipped demo set: 30 real Fashion-MNIST test images per class


def demo_table() -> dict[str, dict]:
    """README's demo table: per row (clean, fgsm, pgd, apgd), its budgets and the two models' percentages."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## The demo"):]
    rows = {}
    for line in section.splitlines():
        if rows and not line.startswith("|"):
            break  # the end of the first table
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) != 4 or cells[0] == "attack" or set(cells[0]) <= {"-"}:
            continue

        def numbers(cell):
            return [float(v) for v in re.findall(r"\d+(?:\.\d+)?", cell)]

        rows[cells[0]] = {"budgets": cells[1].split(" / ") if cells[1] != "—" else [],
                          "standard": numbers(cells[2]), "adversarial": numbers(cells[3])}
    return rows


def test_demo_defaults_are_the_readme_tables_rows_and_columns():
    defaults = {name: p.default.default for name, p in inspect.signature(demo_cmd).parameters.items()
                if name != "ctx"}  # the typer context, not an option
    assert defaults["attack"] == ["fgsm", "pgd", "apgd"]
    assert defaults["eps"] == "0.05,0.1,0.2,0.3"
    assert defaults["samples"] == "all" and defaults["steps"] is None and defaults["seed"] == 0
    table = demo_table()
    assert list(table) == ["clean", *defaults["attack"]]
    for attack in defaults["attack"]:
        assert table[attack]["budgets"] == defaults["eps"].split(",")


def test_readme_demo_numbers_are_what_an_audit_of_the_shipped_models_gives():
    # PGD-40 at eps 0.1 only: the whole table takes 70 s. At 0.3 reached directly (not after 0.05 and 0.2, as
    # in the demo's cascade) random starts fall differently and the number moves by up to two images.
    table, eps = demo_table(), "0.1"
    column = table["pgd"]["budgets"].index(eps)
    one_image = 100 / N_IMAGES + 0.05  # one image, plus the table's rounding to one decimal
    configs = demo_configs(attacks=["pgd"], eps=eps, steps=None, samples="all", seed=0)
    for key, config in configs.items():
        config.layers, config.checks = "none", False  # the attack numbers only: analyses do not change them
        result = run_audit(config)
        assert result.clean["n"] == N_IMAGES and result.attacks[0]["steps"] == 40
        assert 100 * result.clean["accuracy"] == pytest.approx(table["clean"][key][0], abs=one_image)
        robust = 100 * result.attacks[0]["robust_accuracy"]
        assert robust == pytest.approx(table["pgd"][key][column], abs=one_image), key
