"""`audit compare` decides with a test: McNemar on paired per-sample outcomes, Fisher on counts otherwise, Holm
across the tested rows; each number checked against a separately written computation (literal loops, scipy)."""

import copy
import gzip
import json
import math
import random
from pathlib import Path

import pytest
from rich.console import Console
from scipy.stats import binomtest
from test_score import entry, report

from audit import stats
from audit.cli import main
from audit.errors import AuditError
from reports.compare import beyond_tolerance, compare, comparison_table, same_samples
from reports.gates import evaluate
from reports.schema import unpack_bits, SCHEMA_VERSION, pack_bits
from reports.score import score_report

FIXTURES = Path(__file__).with_name("fixtures") / "reports"


def audited(clean, robust, *, fingerprint="f00d", confidence=0.95):
    """A report over len(clean) samples with its sample's identity and per-sample outcomes: ``clean`` the bits of
    clean correctness, ``robust`` {(attack, eps): bits of samples still robust}."""
    n = len(clean)
    entries = []
    for (name, eps), bits in robust.items():
        e = entry(name, eps, sum(bits) / n, n_attacked=sum(clean), n_success=sum(clean) - sum(bits))
        e["per_sample"] = {"robust": pack_bits(bits)}
        entries.append(e)
    r = report(entries, clean=sum(clean) / n)
    r["clean"].update(n=n, n_correct=sum(clean), per_sample={"correct": pack_bits(clean)})
    r["data"] = {"sample": {"n": n, "indices": f"0-{n - 1}", "fingerprint": fingerprint}}
    r["statistics"] = {"confidence": confidence}
    return r


def rows(comparison):
    return {r["metric"]: r for r in comparison["rows"]}


def literal_tail(b, c):
    """P(X >= b) for X ~ Binomial(b + c, 1/2), summed term by term."""
    n = b + c
    return sum(math.comb(n, k) for k in range(b, n + 1)) / 2 ** n if n else 1.0


def literal_holm(p):
    m = len(p)
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda i: p[i])):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def literal_fisher_worse(k1, n1, k2, n2):
    """P(first row's hits >= k1) under the hypergeometric law of the 2x2 table with fixed margins."""
    hits = k1 + k2
    total = math.comb(n1 + n2, hits)
    return sum(math.comb(n1, x) * math.comb(n2, hits - x) for x in range(k1, min(n1, hits) + 1)) / total


# --- McNemar --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("b, c", [(0, 0), (8, 2), (2, 8), (5, 5), (30, 12), (1, 40), (0, 25)])
def test_mcnemar_is_the_exact_binomial_test_on_the_discordant_pairs(b, c):
    worse, better = stats.mcnemar(b, c, "greater"), stats.mcnemar(b, c, "less")
    if b + c:
        assert worse == binomtest(b, b + c, 0.5, alternative="greater").pvalue
        assert better == binomtest(b, b + c, 0.5, alternative="less").pvalue
    assert worse == pytest.approx(literal_tail(b, c), rel=1e-12)
    assert better == pytest.approx(literal_tail(c, b), rel=1e-12)


def test_a_paired_row_checked_by_hand():
    # 20 samples, all clean-correct. Robust in both: samples 0-4; in the base only: 5-12 (b = 8); in the new only:
    # 13-14 (c = 2); broken in both: 15-19. By hand: P(X >= 8 | X ~ Bin(10, 1/2)) = (45 + 10 + 1) / 1024 =
    # 0.0546875; "better": P(X <= 8) = 1 - (10 + 1) / 1024 = 1013 / 1024. Holm over the two tested rows (the clean
    # accuracy is identical, p = 1): 2 x 0.0546875 = 0.109375, and max(0.109375, 1 x 1) = 1 for the clean row.
    base_bits = [True] * 13 + [False] * 7
    new_bits = [True] * 5 + [False] * 8 + [True] * 2 + [False] * 5
    base, new = audited([True] * 20, {("pgd", 0.1): base_bits}), audited([True] * 20, {("pgd", 0.1): new_bits})
    c = compare(base, new, tolerance=0.01)
    row = rows(c)["robust_accuracy[pgd@0.1]"]
    assert (row["test"], row["b"], row["c"]) == ("mcnemar", 8, 2)
    assert row["p"] == pytest.approx(56 / 1024, rel=1e-12)
    assert row["p_better"] == pytest.approx(1013 / 1024, rel=1e-12)
    assert row["p_adjusted"] == pytest.approx(0.109375, rel=1e-12)
    assert rows(c)["clean.accuracy"]["p_adjusted"] == 1.0 and rows(c)["clean.accuracy"]["verdict"] == "identical"
    assert row["delta"] == pytest.approx(-0.3) and row["difference_ci"][0] < -0.3 < row["difference_ci"][1]
    assert row["beyond_tolerance"] and not row["significant"] and not row["regressed"]
    assert row["verdict"] == "inconclusive" and not c["regressed"] and c["paired"]
    assert c["note"].startswith("paired: both reports audited the same 20 samples")
    loose = rows(compare(base, new, tolerance=0.01, alpha=0.2))["robust_accuracy[pgd@0.1]"]
    assert loose["regressed"] and loose["significant"] and loose["verdict"] == "regressed"


def test_the_paired_path_equals_a_literal_loop_over_two_bit_lists():
    rng = random.Random(7)
    n = 300
    clean_base = [rng.random() < 0.9 for _ in range(n)]
    clean_new = [x if rng.random() < 0.97 else not x for x in clean_base]
    keys = [("pgd", 0.05), ("pgd", 0.1), ("fgsm", 0.1), ("apgd", 0.2)]
    robust_base = {k: [c and rng.random() < 0.6 - 0.1 * i for c in clean_base] for i, k in enumerate(keys)}
    # the new version: most outcomes kept, some flipped; the fgsm row loses robust samples on purpose
    robust_new = {k: [c2 and (x and rng.random() < 0.8 if k[0] == "fgsm" else x if rng.random() < 0.93 else not x)
                      for x, c2 in zip(bits, clean_new, strict=True)] for k, bits in robust_base.items()}
    base, new = audited(clean_base, robust_base), audited(clean_new, robust_new)
    c = compare(base, new, tolerance=0.01)
    got = rows(c)
    pairs = {"clean.accuracy": (clean_base, clean_new)}
    pairs.update({f"robust_accuracy[{a}@{e}]": (robust_base[(a, e)], robust_new[(a, e)]) for a, e in keys})
    literal = {}
    for metric, (x, y) in pairs.items():
        b = c_ = n11 = 0
        for i in range(n):
            if x[i] and not y[i]:
                b += 1
            elif y[i] and not x[i]:
                c_ += 1
            elif x[i] and y[i]:
                n11 += 1
        literal[metric] = (b, c_, n11, n - b - c_ - n11)
        row = got[metric]
        assert (row["b"], row["c"]) == (b, c_) and row["test"] == "mcnemar"
        assert row["base"] == pytest.approx(sum(x) / n) and row["new"] == pytest.approx(sum(y) / n)
        assert row["delta"] == pytest.approx((c_ - b) / n)
        assert row["p"] == pytest.approx(literal_tail(b, c_), rel=1e-9)
        assert row["p_better"] == pytest.approx(literal_tail(c_, b), rel=1e-9)
        assert row["difference_ci"] == pytest.approx(stats.paired_difference_interval(n11, b, c_, n - b - c_ - n11))
    names = list(pairs)
    for key in ("p", "p_better"):
        expected = literal_holm([literal_tail(*literal[m][:2][::1 if key == "p" else -1]) for m in names])
        assert [got[m][f"{key}_adjusted"] for m in names] == pytest.approx(expected, rel=1e-9)
    fgsm = got["robust_accuracy[fgsm@0.1]"]
    assert fgsm["b"] > 3 * fgsm["c"] and fgsm["p_adjusted"] < 0.05 and fgsm["regressed"] and c["regressed"]
    for m in names:  # a regression only where both the tolerance and the test say so
        r = got[m]
        assert r["regressed"] == (r["delta"] < -0.01 and r["p_adjusted"] < 0.05)
        assert r["improved"] == (r["delta"] > 0.01 and r["p_better_adjusted"] < 0.05)


@pytest.mark.parametrize("seed", range(5))
def test_holm_equals_a_literal_implementation(seed):
    rng = random.Random(seed)
    p = [rng.choice([rng.random(), rng.random() / 1000, 0.04, 1.0]) for _ in range(rng.randint(1, 12))]
    assert list(stats.holm(p)) == pytest.approx(literal_holm(p), rel=1e-12)


def test_a_significant_improvement_of_an_adversarially_trained_twin():
    # the demo's shape: 300 images, standard model robust on 9 at eps 0.1, the twin on 199 (nearly all of the 9)
    rng = random.Random(3)
    clean = [True] * 270 + [False] * 30
    base_bits = [i < 9 for i in range(300)]
    new_bits = [i < 199 and (i >= 9 or rng.random() < 0.8) for i in range(300)]
    c = compare(audited(clean, {("pgd", 0.1): base_bits}), audited(clean, {("pgd", 0.1): new_bits}))
    row = rows(c)["robust_accuracy[pgd@0.1]"]
    assert row["p_better_adjusted"] < 1e-6 and row["improved"] and row["verdict"] == "improved"
    assert not row["regressed"] and c["improved"] and not c["regressed"]
    assert row["difference_ci"][0] > 0.5


def test_two_identical_audits_are_no_regression_and_say_identical():
    rng = random.Random(1)
    clean = [rng.random() < 0.9 for _ in range(100)]
    r = audited(clean, {("pgd", 0.1): [x and rng.random() < 0.4 for x in clean]})
    c = compare(r, copy.deepcopy(r))
    assert not c["regressed"] and not c["improved"]
    assert {row["verdict"] for row in c["rows"] if row["test"] == "mcnemar"} == {"identical"}


def test_a_significant_drop_within_the_tolerance_is_named_but_not_a_regression():
    # 1000 samples, 30 lose their robustness and none gain it: p = 2^-30, but 3 points are within a 0.05 tolerance
    base_bits = [i < 500 for i in range(1000)]
    new_bits = [i < 470 for i in range(1000)]
    c = compare(audited([True] * 1000, {("pgd", 0.1): base_bits}),
                audited([True] * 1000, {("pgd", 0.1): new_bits}), tolerance=0.05)
    row = rows(c)["robust_accuracy[pgd@0.1]"]
    assert row["significant"] and not row["regressed"] and row["verdict"] == "worse ≤tol"
    assert row["p"] == pytest.approx(2.0 ** -30)


# --- the unpaired fallback ---------------------------------------------------------------------------------------

def test_other_samples_fall_back_to_fisher_on_the_counts_and_say_so():
    rng = random.Random(5)
    clean = [rng.random() < 0.9 for _ in range(200)]
    base = audited(clean, {("pgd", 0.1): [x and rng.random() < 0.5 for x in clean]})
    new = audited(clean, {("pgd", 0.1): [x and rng.random() < 0.3 for x in clean]}, fingerprint="beef")
    c = compare(base, new)
    assert not c["paired"] and c["note"].startswith("unpaired: the reports audited different samples (other "
                                                    "fingerprint); Fisher's exact test on the counts")
    assert c["note"].endswith("Pairing the same samples would be far more sensitive")
    row = rows(c)["robust_accuracy[pgd@0.1]"]
    k1, k2 = round(base["attacks"][0]["robust_accuracy"] * 200), round(new["attacks"][0]["robust_accuracy"] * 200)
    assert (row["test"], row["b"], row["c"]) == ("fisher", None, None)
    assert row["p"] == pytest.approx(literal_fisher_worse(k1, 200, k2, 200), rel=1e-9)
    assert row["p_better"] == pytest.approx(literal_fisher_worse(k2, 200, k1, 200), rel=1e-9)
    assert row["difference_ci"] == pytest.approx(stats.unpaired_difference_interval(k1, 200, k2, 200))
    assert row["regressed"]  # about 45% vs 27% of 200: significant either way
    clean_row = rows(c)["clean.accuracy"]
    n_correct = sum(clean)  # the same clean outcomes: nothing to find, in either direction
    assert clean_row["test"] == "fisher" and clean_row["verdict"] == "inconclusive"
    assert clean_row["p"] == clean_row["p_better"] == pytest.approx(literal_fisher_worse(n_correct, 200, n_correct,
                                                                                          200))


def test_reports_without_per_sample_outcomes_or_sample_identity_are_unpaired():
    clean = [True] * 50
    base, new = audited(clean, {("pgd", 0.1): [True] * 30 + [False] * 20}), audited(clean, {("pgd", 0.1): [True] * 50})
    old = copy.deepcopy(base)
    del old["attacks"][0]["per_sample"]
    c = compare(old, new)
    assert rows(c)["robust_accuracy[pgd@0.1]"]["test"] == "fisher" and rows(c)["clean.accuracy"]["test"] == "mcnemar"
    assert not c["paired"] and "no per-sample outcomes for robust_accuracy[pgd@0.1]" in c["note"]
    del old["data"]
    assert compare(old, new)["note"].startswith("unpaired: the base report does not record which samples")
    del new["data"]
    assert compare(old, new)["note"].startswith("unpaired: the base and the new reports do not record")


def test_pairing_finds_what_the_unpaired_test_cannot():
    # 10 of 150 robust samples lost, none gained: McNemar p = 2^-10; the same counts unpaired are inconclusive
    base_bits = [i < 150 for i in range(300)]
    new_bits = [i < 140 for i in range(300)]
    base, new = audited([True] * 300, {("pgd", 0.1): base_bits}), audited([True] * 300, {("pgd", 0.1): new_bits})
    paired = rows(compare(base, new))["robust_accuracy[pgd@0.1]"]
    new["data"]["sample"]["indices"] = "1-300"
    unpaired = rows(compare(base, new))["robust_accuracy[pgd@0.1]"]
    assert paired["p"] == pytest.approx(2.0 ** -10) and paired["regressed"]
    assert unpaired["p"] > 0.1 and not unpaired["regressed"] and unpaired["verdict"] == "inconclusive"


def test_counts_that_do_not_give_back_the_value_leave_the_row_untested():
    base = report([entry("pgd", 0.1, 0.1)])
    new = report([entry("pgd", 0.1, 0.089)])  # 8.9 of 100 images: no count
    row = rows(compare(base, new))["robust_accuracy[pgd@0.1]"]
    assert row["test"] == "none" and row["beyond_tolerance"] and not row["regressed"]
    assert row["note"].startswith("not tested") and row["verdict"] == "not tested"


# --- the score's interval ------------------------------------------------------------------------------------------

def scored(value, interval):
    r = report([entry("pgd", 0.1, 0.4)])
    r["score"] = {**score_report(r), "value": value, "interval": interval}
    return r


@pytest.mark.parametrize("base, new, regressed, improved", [
    # d = -10, upper bound -10 + hypot(74 - 70, 80 - 75) = -3.597 < -1
    ((80, [75, 85]), (70, [66, 74]), True, False),
    # d = -4, upper bound -4 + hypot(5, 5) = 3.07
    ((80, [75, 85]), (76, [71, 81]), False, False),
    # the base without an interval: the new interval's top against base - 1 point: 79 vs 79 (not below) ...
    ((80, None), (76, [72, 79]), False, False),
    ((80, None), (76, [72, 78.9]), True, False),  # ... 78.9 < 79
    # better: d = 10, lower bound 10 - hypot(84 - 80... ) -> 90 - 84 = 6, 75 - 70 = 5: 10 - 7.81 = 2.19 > 1
    ((70, [65, 75]), (80, [74, 86]), False, True),
    ((80, [75, 85]), (60, None), False, False),  # no interval in the new report: not tested
])
def test_the_score_regresses_only_when_the_intervals_say_so(base, new, regressed, improved):
    row = rows(compare(scored(*base), scored(*new)))["score.value"]
    assert row["regressed"] is regressed and row["improved"] is improved
    assert row["test"] == ("none" if new[1] is None else "score interval")
    if base[1] and new[1]:
        d = new[0] - base[0]
        assert row["difference_ci"] == pytest.approx([d - math.hypot(new[0] - new[1][0], base[1][1] - base[0]),
                                                      d + math.hypot(new[1][1] - new[0], base[0] - base[1][0])])


def test_untested_families_never_regress_but_say_they_moved():
    base = audited([True] * 100, {("pgd", 0.1): [True] * 50 + [False] * 50})
    new = copy.deepcopy(base)
    new["checks"], base["checks"] = [{"name": "x", "status": "fail", "detail": "", "numbers": {}}], []
    new["attacks"][0]["success_rate"] = 0.9
    r = rows(compare(base, new))
    for m in ("checks.failed", "success_rate[pgd@0.1]"):
        assert r[m]["test"] == "none" and r[m]["beyond_tolerance"] and not r[m]["regressed"]
        assert r[m]["verdict"] == "not tested"


# --- bad input ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [-1, 0, 1, 1.5, math.nan, True])
def test_a_bad_alpha_is_one_line(alpha):
    r = audited([True] * 10, {})
    with pytest.raises(AuditError) as err:
        compare(r, r, alpha=alpha)
    assert "--alpha" in str(err.value) and "\n" not in str(err.value)


def test_an_unreadable_bitset_is_one_line():
    r = audited([True] * 10, {("pgd", 0.1): [True] * 10})
    bad = copy.deepcopy(r)
    bad["attacks"][0]["per_sample"]["robust"] = pack_bits([True] * 30)
    with pytest.raises(AuditError, match="^the new report's per-sample outcomes of robust_accuracy.pgd@0.1. are "
                                         "unreadable: .*$"):
        compare(r, bad)


def test_the_table_fits_80_columns_with_intervals_and_tests():
    rng = random.Random(2)
    clean = [rng.random() < 0.9 for _ in range(300)]
    keys = [("pgd", 8 / 255), ("autoattack-fast", 0.1), ("fgsm", 0.3)]
    base = audited(clean, {k: [x and rng.random() < 0.5 for x in clean] for k in keys})
    new = audited(clean, {k: [x and rng.random() < 0.3 for x in clean] for k in keys})
    console = Console(width=80, record=True, color_system=None)
    comparison = compare(base, new)
    console.print(comparison_table(comparison))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "Holm" in text and "95% interval" in text and "regressed" in text
    row = rows(comparison)[f"robust_accuracy[pgd@{8 / 255}]"]
    assert f"{row['b']}/{row['c']}" in text
    lo, hi = (100 * v for v in row["difference_ci"])
    assert f"[{lo:.1f},{hi:.1f}]" in text


# --- the command ------------------------------------------------------------------------------------------------------

def valid(r):
    """A hand-built report completed into one that passes the schema (as `audit compare` reads it)."""
    r = copy.deepcopy(r)
    r["schema_version"] = SCHEMA_VERSION
    r.setdefault("checks", [])
    r["score"] = score_report(r)
    r["verdict"] = evaluate(r, [])
    return r


@pytest.fixture
def demo_pair(tmp_path):
    """The demo report (300 images, with its per-sample outcomes) and a new version that lost 12 of pgd@0.05's
    robust samples."""
    r = json.loads(gzip.decompress((FIXTURES / "demo-full.json.gz").read_bytes()))
    n = r["clean"]["n"]
    new = copy.deepcopy(r)
    pgd = next(e for e in new["attacks"] if (e["name"], e["eps_text"]) == ("pgd", "0.05"))
    bits = unpack_bits(pgd["per_sample"]["robust"], n)
    lost = [i for i, robust in enumerate(bits) if robust][:12]
    for i in lost:
        bits[i] = False
    pgd["robust_accuracy"], pgd["per_sample"]["robust"] = sum(bits) / n, pack_bits(bits)
    paths = {}
    for key, rep in (("base", r), ("new", new)):
        paths[key] = tmp_path / f"{key}.json"
        paths[key].write_text(json.dumps(valid(rep)))
    return paths


def test_compare_exits_1_on_a_significant_paired_regression(demo_pair, tmp_path, capsys):
    with pytest.raises(SystemExit) as worse:
        main(["compare", str(demo_pair["base"]), str(demo_pair["new"]), "--html", str(tmp_path / "c.html")])
    out, err = capsys.readouterr()
    assert worse.value.code == 1
    assert err.strip() == ("gate failed: 1 metric(s) regressed significantly (one-sided alpha 0.05, Holm) and "
                           "beyond the tolerance: robust_accuracy[pgd@0.05]")
    assert out.splitlines()[0] == ("paired: both reports audited the same 300 samples; McNemar's exact test per "
                                   "row, p Holm-adjusted across the tested rows")
    page = (tmp_path / "c.html").read_text()
    assert "McNemar (paired)" in page and "12 / 0" in page and "interval of the delta" in page
    # p = 2^-12 = 0.000244, Holm-adjusted over the 13 tested rows (the clean accuracy and 12 robust accuracies):
    # 13 x 2^-12 = 0.00317, significant at 0.01 and not at 0.001
    for alpha, exit_code in (("0.01", 1), ("0.001", 0)):
        with pytest.raises(SystemExit) as strict:
            main(["compare", str(demo_pair["base"]), str(demo_pair["new"]), "--alpha", alpha])
        assert strict.value.code == exit_code
    assert "0.003" in capsys.readouterr().out
    with pytest.raises(SystemExit) as same:
        main(["compare", str(demo_pair["base"]), str(demo_pair["base"])])
    assert same.value.code == 0 and "identical" in capsys.readouterr().out


def test_compare_without_pairing_says_so_in_one_line(demo_pair, capsys):
    new = json.loads(demo_pair["new"].read_text())
    new["data"]["sample"]["fingerprint"] = "cd" * 32
    demo_pair["new"].write_text(json.dumps(new))
    with pytest.raises(SystemExit) as code:
        main(["compare", str(demo_pair["base"]), str(demo_pair["new"])])
    out = capsys.readouterr().out.splitlines()
    assert code.value.code == 0  # 12 of ~87 robust images lost: unpaired, that is not significant
    assert out[0] == ("warning: unpaired: the reports audited different samples (other fingerprint); Fisher's "
                      "exact test on the counts, p Holm-adjusted across the tested rows. Pairing the same samples "
                      "would be far more sensitive")


@pytest.mark.parametrize("alpha", ["-1", "1", "1.5", "nan"])
def test_compare_rejects_a_bad_alpha_in_one_line(demo_pair, alpha, capsys):
    with pytest.raises(SystemExit) as code:
        main(["compare", str(demo_pair["base"]), str(demo_pair["new"]), "--alpha", alpha])
    err = capsys.readouterr().err.strip().splitlines()
    assert code.value.code == 2 and len(err) == 1 and err[0].startswith("error: --alpha ")


# --- the terminal table, cell by cell (a hand-made comparison dict) ------------------------------------------------

def table_row(metric, base, new, delta, **fields):
    row = {"metric": metric, "base": base, "new": new, "delta": delta, "note": None, "b": None, "c": None,
           "p_adjusted": None, "p_better_adjusted": None, "difference_ci": None, "verdict": "not tested"}
    row.update(fields)
    return row


def rendered(comparison, styles=False, width=80):
    console = Console(width=width, record=True, color_system=None)
    console.print(comparison_table(comparison))
    return console.export_text(styles=styles).splitlines()


def test_the_table_shows_each_cell_as_written_by_hand():
    # Every cell by hand: shares in % (.1f) and their deltas and intervals in percentage points; the shown p is the
    # Holm-adjusted p of the direction moved (p_better_adjusted for a rise, p_adjusted for a drop or no move),
    # 3 decimals from 0.001 up (0.001 itself included), else one significant digit without the exponent's 0;
    # score.value .1f (71.25 and -2.75 are exact binary halves: rounded to even), components .2f, median norms
    # .3g, checks.failed .0f; a null value is ∞ when the note names that side ∞, else —.
    comparison = {"tolerance": 0.02, "alpha": 0.01, "confidence": 0.9, "rows": [
        table_row("clean.accuracy", 0.9, 0.85, -0.05, b=7, c=2, p_adjusted=0.0898, p_better_adjusted=0.99,
                  difference_ci=[-0.0912, -0.0043], verdict="inconclusive"),
        table_row("robust_accuracy[pgd@0.1]", 0.4, 0.52, 0.12, b=1, c=13, p_adjusted=0.9999,
                  p_better_adjusted=0.00000234, difference_ci=[0.0567, 0.1834], verdict="improved"),
        table_row("robust_accuracy[fgsm@0.3]", 0.5, 0.31, -0.19, p_adjusted=0.001, p_better_adjusted=1.0,
                  difference_ci=[-0.25, -0.125], verdict="regressed"),
        table_row("robust_accuracy[apgd@0.3]", 0.25, 0.25, 0.0, b=3, c=3, p_adjusted=0.656, p_better_adjusted=0.75,
                  difference_ci=[-0.04, 0.04], verdict="inconclusive"),
        table_row("success_rate[pgd@0.1]", 0.5, 0.4, -0.1),
        table_row("median_norm[cw]", 1.2345, None, None, note="∞ means most samples resisted: new ∞"),
        table_row("median_norm[ddn]", None, None, None, note="∞ means most samples resisted: base ∞, new ∞"),
        table_row("median_norm[fab]", None, 0.5, None, note="null in base", verdict="null"),
        table_row("score.value", 71.25, 68.5, -2.75, difference_ci=[-6.04, 0.55], verdict="inconclusive"),
        table_row("score.components.robustness", 0.634, 0.6, -0.034),
        table_row("checks.failed", 0.0, 2.0, 2.0),
    ]}
    assert rendered(comparison) == [
        "compare: tolerance 0.02, one-sided alpha 0.01, p Holm-adjusted across the tested",
        "rows, Δ over its 90% interval                                                   ",
        "                                                                                ",
        "                                                               p                ",
        " metric                     base     new               Δ     b/c   verdict      ",
        " ────────────────────────────────────────────────────────────────────────────── ",
        " clean.accuracy            90.0%   85.0%            -5.0   0.090   inconclusive ",
        "                                             [-9.1,-0.4]     7/2                ",
        " robust_accuracy[pgd@0.1   40.0%   52.0%           +12.0    2e-6   improved     ",
        " ]                                            [5.7,18.3]    1/13                ",
        " robust_accuracy[fgsm@0.   50.0%   31.0%           -19.0   0.001   regressed    ",
        " 3]                                        [-25.0,-12.5]                        ",
        " robust_accuracy[apgd@0.   25.0%   25.0%            +0.0   0.656   inconclusive ",
        " 3]                                           [-4.0,4.0]     3/3                ",
        " success_rate[pgd@0.1]     50.0%   40.0%           -10.0           not tested   ",
        " median_norm[cw]            1.23       ∞               —           not tested   ",
        " median_norm[ddn]              ∞       ∞               —           not tested   ",
        " median_norm[fab]              —     0.5               —           null         ",
        " score.value                71.2    68.5            -2.8           inconclusive ",
        "                                              [-6.0,0.6]                        ",
        " score.components.robust    0.63    0.60           -0.03           not tested   ",
        " ness                                                                           ",
        " checks.failed                 0       2              +2           not tested   ",
        "                                                                                ",
    ]


def test_the_table_of_a_comparison_without_its_levels_or_verdict_words():
    # a comparison dict without confidence, alpha or verdict words (as written before them): the title says the
    # defaults (0.95, 0.05), a regressed row reads "regressed", another row nothing; 4.2e-12 shows as 4e-12
    comparison = {"tolerance": 0.005, "rows": [
        {"metric": "robust_accuracy[pgd@8/255]", "base": 0.625, "new": 0.3125, "delta": -0.3125, "note": None,
         "b": 40, "c": 0, "p_adjusted": 4.2e-12, "p_better_adjusted": 1.0, "difference_ci": [-0.4, -0.2],
         "regressed": True},
        {"metric": "clean.accuracy", "base": 0.5, "new": 0.5, "delta": 0.0, "note": None, "b": 0, "c": 0},
    ]}
    assert rendered(comparison) == [
        "compare: tolerance 0.005, one-sided alpha 0.05, p Holm-adjusted across the      ",
        "tested rows, Δ over its 95% interval                                            ",
        "                                                                                ",
        "                                                                  p             ",
        " metric                        base     new               Δ     b/c   verdict   ",
        " ────────────────────────────────────────────────────────────────────────────── ",
        " robust_accuracy[pgd@8/255]   62.5%   31.2%           -31.2   4e-12   regressed ",
        "                                              [-40.0,-20.0]    40/0             ",
        " clean.accuracy               50.0%   50.0%            +0.0     0/0             ",
        "                                                                                ",
    ]


def test_the_table_styles_the_header_and_the_two_decisive_verdicts_only():
    bold, red, green, plain = "\x1b[1m", "\x1b[1;31m", "\x1b[1;32m", "\x1b[0m"
    comparison = {"tolerance": 0.01, "alpha": 0.05, "confidence": 0.95, "rows": [
        table_row("robust_accuracy[pgd@0.1]", 0.5, 0.3, -0.2, p_adjusted=0.001, p_better_adjusted=1.0,
                  verdict="regressed"),
        table_row("robust_accuracy[fgsm@0.1]", 0.3, 0.5, 0.2, p_adjusted=1.0, p_better_adjusted=0.001,
                  verdict="improved"),
        table_row("clean.accuracy", 0.8, 0.8, 0.0, p_adjusted=1.0, p_better_adjusted=1.0, verdict="inconclusive"),
    ]}
    text = "\n".join(rendered(comparison, styles=True))
    assert f"{bold}metric " in text and f"{bold}verdict " in text  # bold, with the cell's padding
    assert f"{red}regressed{plain}" in text and f"{green}improved{plain}" in text
    assert " inconclusive" in text and "m inconclusive" not in text and "inconclusive\x1b" not in text


def test_a_short_table_keeps_the_metric_column_12_wide_and_names_a_level_with_a_decimal():
    # score.value is 11 characters: the metric column is still 12 wide. 97.5% is written as it is (not 98%);
    # -9.25 and 0.25 are exact binary halves, rounded to even
    comparison = {"tolerance": 0.01, "alpha": 0.05, "confidence": 0.975, "rows": [
        table_row("score.value", 80.0, 75.5, -4.5, difference_ci=[-9.25, 0.25], verdict="inconclusive")]}
    assert rendered(comparison) == [
        "compare: tolerance 0.01, one-sided alpha 0.05, p Holm-adjusted",
        "across the tested rows, Δ over its 97.5% interval             ",
        "                                                              ",
        "                                             p                ",
        " metric         base    new            Δ   b/c   verdict      ",
        " ──────────────────────────────────────────────────────────── ",
        " score.value    80.0   75.5         -4.5         inconclusive ",
        "                              [-9.2,0.2]                      ",
        "                                                              ",
    ]


def test_on_a_narrow_terminal_only_the_metric_name_folds():
    comparison = {"tolerance": 0.01, "alpha": 0.05, "confidence": 0.95, "rows": [
        table_row("robust_accuracy[autoattack-fast@8/255]", 0.5, 0.31, -0.19, p_adjusted=0.001,
                  p_better_adjusted=1.0, b=19, c=0, difference_ci=[-0.25, -0.125], verdict="not tested")]}
    assert rendered(comparison, width=68) == [
        "compare: tolerance 0.01, one-sided alpha 0.05, p Holm-adjusted      ",
        "across the tested rows, Δ over its 95% interval                     ",
        "                                                                    ",
        "                                                     p              ",
        " metric           base     new               Δ     b/c   verdict    ",
        " ────────────────────────────────────────────────────────────────── ",
        " robust_accura   50.0%   31.0%           -19.0   0.001   not tested ",
        " cy[autoattack                   [-25.0,-12.5]    19/0              ",
        " -fast@8/255]                                                       ",
        "                                                                    ",
    ]


# --- the counts behind the unpaired test --------------------------------------------------------------------------

@pytest.mark.parametrize("n, n_correct, tested", [
    (1, 1, True), (100, 0, True), (100, 100, True),  # the ends of 0 <= k <= n, and a single image
    (0, 0, False), (None, 80, False), (100.0, 80, False),  # no n, or not a positive integer
    (100, None, False), (100, 150, False), (100, 80.0, False),  # no k, or not an integer in 0..n
])
def test_the_clean_row_is_tested_only_with_counts_that_make_a_proportion(n, n_correct, tested):
    base = report([entry("pgd", 0.1, 0.4)])
    base["clean"].update(n=n, n_correct=n_correct)
    if tested:
        base["clean"]["accuracy"] = n_correct / n
    new = report([entry("pgd", 0.1, 0.4)])  # 80 of 100
    got = rows(compare(base, new))
    row = got["clean.accuracy"]
    if tested:
        assert row["test"] == "fisher"
        assert row["p"] == pytest.approx(literal_fisher_worse(n_correct, n, 80, 100), rel=1e-9)
        assert row["p_better"] == pytest.approx(literal_fisher_worse(80, 100, n_correct, n), rel=1e-9)
    else:
        assert row["test"] == "none" and row["p"] is None and row["verdict"] == "not tested"
        assert row["note"] == "not tested: the report does not give the counts behind the proportion"
        assert got["robust_accuracy[pgd@0.1]"]["test"] == ("fisher" if n == 100 and isinstance(n, int) else "none")


def literal_wilson(k, n, z):
    p = k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def test_the_unpaired_interval_is_newcombes_at_the_reports_level():
    # 40 of 100 robust in the base, 28 of 100 in the new audit, other samples, confidence 0.9 (z = 1.6449):
    # square-and-add of the two Wilson intervals, written out here
    base, new = report([entry("pgd", 0.1, 0.4)]), report([entry("pgd", 0.1, 0.28)])
    for r in (base, new):
        r["statistics"] = {"confidence": 0.9}
    row = rows(compare(base, new))["robust_accuracy[pgd@0.1]"]
    z = 1.6448536269514722
    (l1, u1), (l2, u2) = literal_wilson(40, 100, z), literal_wilson(28, 100, z)
    d = 0.28 - 0.4
    expected = [d - math.sqrt((0.28 - l2) ** 2 + (u1 - 0.4) ** 2), d + math.sqrt((u2 - 0.28) ** 2 + (0.4 - l1) ** 2)]
    assert row["test"] == "fisher" and row["difference_ci"] == pytest.approx(expected, rel=1e-9)
    assert row["difference_ci"][0] > stats.unpaired_difference_interval(40, 100, 28, 100, 0.95)[0] + 0.01


# --- the rows' fields, the levels, the notes ------------------------------------------------------------------------

ROW_FIELDS = {"metric", "base", "new", "delta", "better", "note", "test", "b", "c", "p", "p_better", "p_adjusted",
              "p_better_adjusted", "difference_ci", "beyond_tolerance", "significant", "regressed", "improved",
              "verdict"}


def test_untested_and_null_rows_carry_every_documented_field_empty():
    base = report([entry("pgd", 0.1, 0.4), entry("fgsm", 0.1, None)])
    new = report([entry("pgd", 0.1, 0.3), entry("fgsm", 0.1, 0.2)])
    got = rows(compare(base, new))
    empty = {"b": None, "c": None, "p": None, "p_better": None, "p_adjusted": None, "p_better_adjusted": None,
             "difference_ci": None, "significant": False, "regressed": False, "improved": False}
    untested, null = got["success_rate[pgd@0.1]"], got["robust_accuracy[fgsm@0.1]"]
    for row in (untested, null, *got.values()):
        assert set(row) == ROW_FIELDS
    assert {k: untested[k] for k in empty} == empty and untested["test"] == "none"
    assert untested["verdict"] == "not tested" and untested["better"] == "lower" and untested["note"] is None
    assert {k: null[k] for k in empty} == empty and null["delta"] is None and not null["beyond_tolerance"]
    assert (null["test"], null["verdict"], null["note"], null["better"]) == ("none", "null", "null in base", "higher")


def test_the_confidence_is_the_new_reports_then_the_bases_then_095():
    def level(b, n):
        base, new = report([entry("pgd", 0.1, 0.4)]), report([entry("pgd", 0.1, 0.3)])
        for r, c in ((base, b), (new, n)):
            if c is not None:
                r["statistics"] = {"confidence": c}
        return compare(base, new)
    assert level(0.8, 0.9)["confidence"] == 0.9 and level(0.8, None)["confidence"] == 0.8
    assert level(None, None)["confidence"] == 0.95
    row = rows(level(0.8, None))["robust_accuracy[pgd@0.1]"]
    assert row["difference_ci"] == pytest.approx(stats.unpaired_difference_interval(40, 100, 30, 100, 0.8))
    with pytest.raises(AuditError, match=r"^the report's statistics\.confidence 1\.5 is not a number strictly "
                                         r"between 0 and 1$"):
        level(None, 1.5)


def test_the_paired_interval_is_at_the_reports_level():
    base_bits = [i < 60 for i in range(100)]
    new_bits = [i < 50 or 90 <= i < 95 for i in range(100)]  # n11 = 50, b = 10, c = 5, n00 = 35
    base = audited([True] * 100, {("pgd", 0.1): base_bits}, confidence=0.8)
    new = audited([True] * 100, {("pgd", 0.1): new_bits}, confidence=0.8)
    row = rows(compare(base, new))["robust_accuracy[pgd@0.1]"]
    assert (row["b"], row["c"]) == (10, 5)
    assert row["difference_ci"] == pytest.approx(stats.paired_difference_interval(50, 10, 5, 35, 0.8))
    assert row["difference_ci"] != pytest.approx(stats.paired_difference_interval(50, 10, 5, 35, 0.95))


def test_a_significant_rise_within_the_tolerance_is_better_but_not_improved():
    base_bits = [i < 470 for i in range(1000)]
    new_bits = [i < 500 for i in range(1000)]
    row = rows(compare(audited([True] * 1000, {("pgd", 0.1): base_bits}),
                       audited([True] * 1000, {("pgd", 0.1): new_bits}), tolerance=0.05))["robust_accuracy[pgd@0.1]"]
    assert row["significant"] and not row["improved"] and row["verdict"] == "better ≤tol"


@pytest.mark.parametrize("base, new, tolerance, regressed, improved", [
    ((80, None), (68, [60, 69.95]), 0.1, True, False),  # upper bound -10.05 < -10 (100 x 0.1 points)
    ((70, None), (80, [65, 90]), 0.01, False, False),  # lower bound -5: not above +1, though the upper is
    ((70, None), (80, [71, 90]), 0.01, False, False),  # lower bound exactly +1: not above it
    ((70, None), (80, [71.5, 90]), 0.01, False, True),
    ((80, [None, 85]), (70, [66, 74]), 0.01, True, False),  # a base end missing counts as half-width 0
    ((80, [75, None]), (90, [86, 94]), 0.01, False, True),
    ((80, [75, 85]), (70, [None, 74]), 0.01, False, False),  # a new end missing: not tested
])
def test_the_score_interval_at_its_edges(base, new, tolerance, regressed, improved):
    row = rows(compare(scored(*base), scored(*new), tolerance=tolerance))["score.value"]
    assert (row["regressed"], row["improved"]) == (regressed, improved)
    assert row["significant"] is (regressed or improved)  # each significant case here is beyond the tolerance
    assert row["test"] == ("none" if None in new[1] else "score interval")


def test_the_note_names_up_to_three_rows_without_per_sample_outcomes():
    keys = [("pgd", 0.1), ("pgd", 0.2), ("fgsm", 0.1), ("fgsm", 0.2)]
    r = audited([True] * 10, {k: [True] * 5 + [False] * 5 for k in keys})
    old = copy.deepcopy(r)
    for e in old["attacks"]:
        del e["per_sample"]
    assert compare(old, r)["note"] == (
        "unpaired: no per-sample outcomes for robust_accuracy[pgd@0.1], robust_accuracy[pgd@0.2], "
        "robust_accuracy[fgsm@0.1] … (a report written before schema 2.0?); Fisher's exact test on the counts, "
        "p Holm-adjusted across the tested rows. Pairing the same samples would be far more sensitive")
    old["attacks"] = old["attacks"][:3]
    assert "robust_accuracy[fgsm@0.1] (a report written" in compare(old, r)["note"]
    base = report([entry("pgd", 0.1, 0.089)])  # 8.9 of 100 images, and no clean count: nothing to test
    base["clean"]["n_correct"] = None
    nothing = compare(base, report([entry("pgd", 0.1, 0.4)]))
    assert nothing["note"] == "no accuracy row to test: the reports share no clean or robust accuracy with counts"
    assert not nothing["paired"]


def test_same_samples_says_what_differs():
    def sample(n=300, indices="0-299", fingerprint="ab"):
        return {"data": {"sample": {"n": n, "indices": indices, "fingerprint": fingerprint}}}
    assert same_samples(sample(), sample()) == (True, None)
    assert same_samples(sample(), sample(n=200)) == (False, "the reports audited different samples (300 vs 200 "
                                                             "images)")
    assert same_samples(sample(), sample(indices="1-300", fingerprint="cd")) == (
        False, "the reports audited different samples (other indices and fingerprint)")
    assert same_samples(sample(fingerprint=None), sample(fingerprint=None)) == (
        False, "the reports do not identify their samples (no n or fingerprint)")
    assert same_samples({"data": {"sample": "0-299"}}, sample()) == (
        False, "the base report does not record which samples were audited")


def test_any_newly_failed_check_is_beyond_the_tolerance_whatever_it_is():
    assert beyond_tolerance("checks.failed", 0.0, 1.0, 1.0) and beyond_tolerance("checks.failed", 0.0, 1.0, 0.0)
    assert not beyond_tolerance("checks.failed", 1.0, 1.0, 0.0) and not beyond_tolerance("checks.failed", 2.0, 1.0, 0)


@pytest.mark.parametrize("tolerance", [-0.1, math.nan, math.inf, "0.1", True, None])
def test_a_bad_tolerance_is_one_line(tolerance):
    r = audited([True] * 10, {})
    with pytest.raises(AuditError, match=r"^tolerance .* is not a non-negative number$"):
        compare(r, r, tolerance=tolerance)


def test_a_zero_tolerance_and_the_alpha_are_kept_and_a_bad_alpha_is_named():
    r = audited([True] * 10, {})
    c = compare(r, r, tolerance=0, alpha=0.2)
    assert (c["tolerance"], c["alpha"], c["only_base"], c["only_new"]) == (0.0, 0.2, [], [])
    with pytest.raises(AuditError, match=r"^--alpha 1\.5 is not a number strictly between 0 and 1$"):
        compare(r, r, alpha=1.5)


def test_a_p_equal_to_alpha_is_not_significant():
    # b = 8, c = 2 of 20 (the hand-checked row above): p = 56/1024, Holm over two rows: 0.109375 exactly
    worse_bits = [True] * 5 + [False] * 8 + [True] * 2 + [False] * 5
    base_bits = [True] * 13 + [False] * 7
    base, new = audited([True] * 20, {("pgd", 0.1): base_bits}), audited([True] * 20, {("pgd", 0.1): worse_bits})
    for a, b in ((base, new), (new, base)):
        row = rows(compare(a, b, alpha=0.109375))["robust_accuracy[pgd@0.1]"]
        assert 0.109375 in (row["p_adjusted"], row["p_better_adjusted"])
        assert not row["significant"] and not row["regressed"] and not row["improved"]
        assert row["verdict"] == "inconclusive"
        row = rows(compare(a, b, alpha=0.109376))["robust_accuracy[pgd@0.1]"]
        assert row["significant"] and row["verdict"] in ("regressed", "improved")


def test_infinite_and_null_values_are_named_in_the_note():
    base = report([entry("pgd", 0.1, None), entry("cw", None, None, curve=[(0.5, 0.3)], median=None),
                   entry("ddn", None, None, curve=[(0.5, 0.3)], median=None),
                   entry("fab", None, None, curve=[(0.5, 0.3)], median=0.4)])
    new = report([entry("pgd", 0.1, None), entry("cw", None, None, curve=[(0.5, 0.3)], median=None),
                  entry("ddn", None, None, curve=[(0.5, 0.3)], median=0.3),
                  entry("fab", None, None, curve=[(0.5, 0.3)], median=None), entry("square", 0.1, 0.2)])
    for r in (base, new):
        for e in r["attacks"]:
            e["eps_text"] = e["eps_text"] if e["eps"] is not None else None
    c = compare(base, new)
    got = rows(c)
    assert got["robust_accuracy[pgd@0.1]"]["note"] == "null in base and new"
    both, one, other = got["median_norm[cw]"], got["median_norm[ddn]"], got["median_norm[fab]"]
    assert (both["note"], both["delta"]) == ("∞ means most samples resisted: base ∞, new ∞", 0.0)
    assert (one["note"], one["delta"]) == ("∞ means most samples resisted: base ∞", None)
    assert (other["note"], other["delta"]) == ("∞ means most samples resisted: new ∞", None)
    assert c["only_base"] == [] and c["only_new"] == ["robust_accuracy[square@0.1]", "success_rate[square@0.1]"]
    assert compare(new, base)["only_base"] == c["only_new"]


def test_an_unreadable_base_bitset_names_the_base():
    r = audited([True] * 10, {("pgd", 0.1): [True] * 10})
    bad = copy.deepcopy(r)
    bad["attacks"][0]["per_sample"]["robust"] = pack_bits([True] * 30)
    with pytest.raises(AuditError, match="^the base report's per-sample outcomes of robust_accuracy"):
        compare(bad, r)
