"""The statistics every report carries: intervals that cover, tests that agree with scipy and with counts done by
hand, per-sample outcomes that survive every way of splitting an audit, and the score's bootstrap interval."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from audit.engine.tallies import AttackTally, ClassCounts, Samples
from audit.stats import (
    alpha_of, binomial_p, bootstrap_interval, check_level, fdr_bh, fisher_worse, holm, images_to_resolve, mcnemar,
    paired_difference_interval, proportion_interval, t_interval, unpaired_difference_interval, z_value,
)
from reports import score as score_module
from reports.schema import index_ranges, pack_bits, pack_norms, parse_ranges, unpack_bits, unpack_norms
from reports.score import robustness, score_report

ROOT = Path(__file__).parents[1]

# --- intervals that cover -----------------------------------------------------------------------------------

# The sample sizes of an audit (the default --samples is 500, the demo's 300). Wilson's coverage oscillates
# with n and p around the nominal level; below about 100 images it dips to 93% for some rates (Brown, Cai &
# DasGupta 2001), which the README says.
COVERAGE_CASES = [(n, p) for n in (300, 500, 1000) for p in (0.1, 0.3, 0.5, 0.7, 0.9)]


@pytest.mark.parametrize(("n", "p"), COVERAGE_CASES)
def test_the_95_percent_interval_covers_the_true_rate_in_94_to_96_percent_of_4000_draws(n, p):
    lo_hi = [proportion_interval(k, n) for k in range(n + 1)]
    draws = np.random.default_rng(20261204).binomial(n, p, 4000)
    covered = np.mean([lo_hi[k][0] <= p <= lo_hi[k][1] for k in draws])
    assert 0.94 <= covered <= 0.96
    # the same property without simulation: the binomial probability of the draws whose interval covers p
    exact = sum(stats.binom.pmf(k, n, p) for k in range(n + 1) if lo_hi[k][0] <= p <= lo_hi[k][1])
    assert 0.94 <= exact <= 0.96


def test_wilson_interval_against_its_formula():
    k, n, z = 109, 300, stats.norm.ppf(0.975)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert proportion_interval(k, n) == pytest.approx([centre - half, centre + half], abs=1e-12)
    assert proportion_interval(0, 20)[0] == 0.0 and proportion_interval(20, 20)[1] == 1.0
    assert proportion_interval(3, 0) is None
    wider = proportion_interval(k, n, 0.99)
    assert wider[0] < centre - half and wider[1] > centre + half


def test_t_interval_against_scipy_on_literal_values():
    values = [0.031, 0.05, 0.047, 0.02, 0.05, 0.049, 0.038]
    expected = stats.t.interval(0.9, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert t_interval(values, 0.9) == pytest.approx(list(expected), rel=1e-12)
    assert t_interval([0.3]) is None
    assert t_interval([0.3, 0.3]) == [0.3, 0.3]


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    values = np.random.default_rng(1).exponential(1.0, 60)
    a, b = bootstrap_interval(values, seed=3), bootstrap_interval(values, seed=3)
    assert a == b and a[0] < values.mean() < a[1]
    assert bootstrap_interval([2.0, 2.0, 2.0]) == [2.0, 2.0] and bootstrap_interval([1.0]) is None


@pytest.mark.parametrize("bad", [1.5, 0.0, 1.0, -1, math.nan, True, "0.9"])
def test_a_level_outside_zero_one_is_refused(bad):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        check_level(bad)


# --- paired and unpaired tests ------------------------------------------------------------------------------

def test_mcnemar_by_hand_and_against_binomtest():
    # 10 samples robust in the base and broken in the new audit, 2 the other way round: under no change each of
    # the 12 discordant samples falls either way with probability 1/2, so P(X >= 10) = (66 + 12 + 1) / 4096
    assert mcnemar(10, 2) == 79 / 4096
    assert mcnemar(2, 10, "less") == 79 / 4096
    for b, c in [(0, 0), (0, 5), (7, 7), (30, 11), (1, 40)]:
        for alternative in ("greater", "less", "two-sided"):
            expected = 1.0 if b + c == 0 else stats.binomtest(b, b + c, 0.5, alternative=alternative).pvalue
            assert mcnemar(b, c, alternative) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError):
        mcnemar(-1, 3)


def literal_newcombe_paired(n11, n10, n01, n00, z=1.959963984540054):
    """Newcombe (1998) method 10 written out from the paper's definitions, for p2 − p1."""
    n = n11 + n10 + n01 + n00
    p1, p2 = (n11 + n10) / n, (n11 + n01) / n

    def wilson(k):
        p = k / n
        c = (p + z * z / (2 * n)) / (1 + z * z / n)
        h = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return c - h, c + h

    (l1, u1), (l2, u2) = wilson(n11 + n10), wilson(n11 + n01)
    denominator = (n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00)
    numerator = n11 * n00 - n10 * n01
    if numerator > n / 2:
        numerator -= n / 2
    elif numerator >= 0:
        numerator = 0
    phi = numerator / math.sqrt(denominator) if denominator else 0.0
    d = p2 - p1
    return (d - math.sqrt((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2),
            d + math.sqrt((u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1) + (p1 - l1) ** 2))


def test_paired_interval_without_pairs_is_none():
    assert paired_difference_interval(0, 0, 0, 0) is None


@pytest.mark.parametrize("table", [
    (30, 10, 5, 55), (120, 2, 40, 138), (0, 0, 0, 7), (50, 0, 0, 50), (3, 9, 1, 0),
    (5, 1, 1, 5),  # numerator 24 > n/2 = 6: reduced to 18 (24 is not above 2n: a "> 2n" rule would zero it)
    (4, 2, 2, 2),  # numerator 4, between n/3 and n/2 = 5: phi = 0 (no reduction below 0, no floor at 1)
    (5, 5, 0, 0),  # every base sample robust: a margin is empty, phi = 0
    (1, 0, 0, 0),  # a single pair
])
def test_paired_difference_interval_against_a_literal_newcombe(table):
    lo, hi = paired_difference_interval(*table)
    expected = literal_newcombe_paired(*table)
    narrower = paired_difference_interval(*table, confidence=0.8)
    z80 = stats.norm.ppf(0.9)
    assert narrower == pytest.approx([max(-1.0, v) if i == 0 else min(1.0, v) for i, v in
                                      enumerate(literal_newcombe_paired(*table, z=z80))], abs=1e-9)
    assert lo == pytest.approx(max(-1.0, expected[0]), abs=1e-9) and hi == pytest.approx(min(1.0, expected[1]), abs=1e-9)
    n11, n10, n01, n00 = table
    assert lo <= (n01 - n10) / sum(table) <= hi


Z95 = 1.959963984540054


def test_one_pair_and_one_sample_each_by_hand():
    # one pair robust in both: Wilson's lower end of 1 of 1 is 1 / (1 + z^2), so the interval is +-z^2 / (1 + z^2)
    half = Z95 ** 2 / (1 + Z95 ** 2)  # 0.7935
    assert paired_difference_interval(1, 0, 0, 0) == pytest.approx([-half, half], rel=1e-12)
    # one sample each, robust in the base only: d = -1, the lower end -1, the upper -1 + sqrt(2) z^2 / (1 + z^2)
    assert unpaired_difference_interval(1, 1, 0, 1) == pytest.approx([-1.0, -1 + math.sqrt(2) * half],
                                                                             rel=1e-12)
    assert unpaired_difference_interval(0, 1, 1, 1) == pytest.approx([1 - math.sqrt(2) * half, 1.0],
                                                                             rel=1e-12)


def test_binomial_p_defaults_and_edges_by_hand():
    assert binomial_p(0, 2) == 0.5  # two-sided at 1/2: P(X = 0) + P(X = 2) = 1/4 + 1/4
    assert binomial_p(1, 1, alternative="greater") == 0.5 and binomial_p(1, 1) == 1.0  # one trial
    # P(X >= 3 | Bin(4, 1/4)) = 4 x (1/4)^3 x 3/4 + (1/4)^4 = 13/256
    assert binomial_p(3, 4, 0.25, "greater") == pytest.approx(13 / 256, rel=1e-12)
    assert binomial_p(0, 0) is None


def test_bootstrap_interval_of_two_values_and_its_defaults():
    two = bootstrap_interval([1.0, 2.0])
    assert two is not None and 1.0 <= two[0] <= two[1] <= 2.0
    values = list(np.random.default_rng(4).random(40))  # 40 values: the resampled means nearly all differ
    direct = stats.bootstrap((np.asarray(values),), np.mean, confidence_level=0.95, n_resamples=2000, method="percentile",
                       rng=np.random.default_rng(0)).confidence_interval
    assert bootstrap_interval(values) == pytest.approx([direct.low, direct.high], rel=1e-12)


def test_mcnemar_refuses_a_negative_count_in_one_line():
    for b, c in ((-1, 3), (3, -1)):
        with pytest.raises(ValueError, match=rf"^discordant counts must be non-negative, got b={b}, c={c}$"):
            mcnemar(b, c)


@pytest.mark.parametrize("confidence", [0.95, 0.8])
def test_unpaired_interval_against_newcombes_square_and_add(confidence):
    for k1, n1, k2, n2 in [(40, 100, 25, 100), (3, 30, 12, 40), (0, 50, 50, 50)]:
        (l1, u1), (l2, u2) = proportion_interval(k1, n1, confidence), proportion_interval(k2, n2, confidence)
        p1, p2 = k1 / n1, k2 / n2
        expected = [max(-1.0, p2 - p1 - math.hypot(p2 - l2, u1 - p1)), min(1.0, p2 - p1 + math.hypot(u2 - p2, p1 - l1))]
        assert unpaired_difference_interval(k1, n1, k2, n2, confidence) == pytest.approx(expected, abs=1e-12)
        assert expected[0] <= p2 - p1 <= expected[1]
    assert unpaired_difference_interval(1, 0, 3, 10) is None and unpaired_difference_interval(1, 10, 0, 0) is None


def test_the_level_and_its_quantile():
    assert z_value(0.95) == pytest.approx(1.959963984540054, rel=1e-12)
    assert z_value(0.8) == pytest.approx(stats.norm.ppf(0.9), rel=1e-12)
    assert alpha_of(0.95) == 0.05 and alpha_of(0.9) == 0.1


def test_fisher_against_scipy():
    expected = stats.fisher_exact([[40, 60], [25, 75]], alternative="greater").pvalue
    assert fisher_worse(40, 100, 25, 100) == pytest.approx(expected, rel=1e-12)


def literal_holm(p):
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def test_holm_and_bh_against_literal_loops_and_scipy():
    rng = np.random.default_rng(5)
    for m in (1, 2, 7, 30):
        p = rng.uniform(0, 0.2, m)
        assert holm(p).tolist() == pytest.approx(literal_holm(list(p)), abs=1e-15)
        assert fdr_bh(p) == pytest.approx(stats.false_discovery_control(p), abs=1e-15)
    assert holm([]).size == 0


def test_images_to_resolve_follows_the_normal_approximation():
    # 0.41 against a gate at 0.40: 1.96² · 0.41 · 0.59 / 0.01² images
    assert images_to_resolve(0.41, 0.40) == math.ceil(stats.norm.ppf(0.975) ** 2 * 0.41 * 0.59 / 0.01 ** 2)
    assert images_to_resolve(0.5, 0.5) is None
    # at that size the interval around 0.41 no longer holds 0.40
    n = images_to_resolve(0.41, 0.40)
    assert proportion_interval(round(0.41 * n), n)[0] > 0.4 - 2e-4


# --- per-sample outcomes --------------------------------------------------------------------------------------

def test_samples_restore_with_their_type_and_refuse_two_parts_at_one_offset():
    restored = Samples.restore(json.loads(json.dumps([[3, [1, 0]], [0, [0, 0, 1]]])), bool)
    assert [values.dtype for _, values in restored.parts] == [np.bool_, np.bool_]
    assert restored.ordered().tolist() == [False, False, True, True, False]
    restored.add(3, np.array([True]))
    with pytest.raises(ValueError, match="same sample"):
        restored.ordered()


def test_bitsets_norms_and_ranges_round_trip():
    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 8, 9, 300):
        bits = rng.random(n) < 0.4
        assert unpack_bits(pack_bits(bits.tolist()), n) == bits.tolist()
    with pytest.raises(ValueError):
        unpack_bits(pack_bits([True] * 9), 8)
    norms = [0.0, 1.5, math.inf, 0.25]
    assert unpack_norms(pack_norms(norms), 4) == norms
    indices = [0, 1, 2, 5, 7, 8, 9, 300]
    assert index_ranges(indices) == "0-2,5,7-9,300" and parse_ranges(index_ranges(indices)) == indices
    assert index_ranges([]) == "" and parse_ranges("") == []


def test_tally_intervals_and_outcomes_against_literal_counts():
    rng = np.random.default_rng(2)
    n, k = 90, 3
    labels = rng.integers(0, k, n)
    clean = rng.random(n) < 0.8
    adv = clean & (rng.random(n) < 0.5)
    goal = clean & ~adv
    linf = rng.uniform(0.01, 0.03, n)
    tally = AttackTally(k)
    outcome = type("Outcome", (), dict(attacked=0, forward=0, backward=0, seconds=0.0, eps_violation=0.0,
                                       box_violation=0.0, record=None))
    for lo in (60, 0, 30):  # batches recorded out of order, as two ranks or a resumed run would
        sl = slice(lo, lo + 30)
        tally.add(labels=labels[sl], clean_correct=clean[sl], adv_correct=adv[sl], goal=goal[sl], linf=linf[sl],
                  l2=10 * linf[sl], outcome=outcome, found=np.ones(30, bool), offset=lo)
    s = tally.summary(["a", "b", "c"], budget_mode="cumulative", confidence=0.9)
    ci = stats.binomtest(int(adv.sum()), n).proportion_ci(0.9, method="wilson")
    assert s["robust_accuracy_ci"] == pytest.approx([ci.low, ci.high], abs=1e-12)
    assert unpack_bits(s["per_sample"]["robust"], n) == adv.tolist()
    fooled = linf[clean & ~adv]  # in data order
    assert s["perturbation"]["linf_mean_ci"] == pytest.approx(
        list(stats.t.interval(0.9, fooled.size - 1, loc=fooled.mean(), scale=stats.sem(fooled))), rel=1e-9)
    rows = {r["class"]: r for r in s["per_class_robust_accuracy"]}
    for c, name in enumerate("abc"):
        hit, total = int(adv[labels == c].sum()), int((labels == c).sum())
        assert rows[name]["accuracy_ci"] == pytest.approx(proportion_interval(hit, total, 0.9))
    counts = ClassCounts(k)
    counts.add(labels[:45], clean[:45], 0)
    with pytest.raises(ValueError, match="recorded for"):
        counts.add(labels[45:], clean[45:])  # without its offset: the outcomes would no longer cover every sample
        counts.per_sample()


# --- the score's interval -------------------------------------------------------------------------------------

def small_report(n=40, seed=0):
    rng = np.random.default_rng(seed)
    clean = rng.random(n) < 0.85
    weak = clean & (rng.random(n) < 0.7)
    strong = weak & (rng.random(n) < 0.6)
    norms = np.where(clean, rng.uniform(0.05, 1.0, n), 0.0)

    def entry(name, eps, robust):
        return {"name": name, "eps": eps, "eps_text": f"{eps:g}", "norm": "Linf", "robust_accuracy": robust.mean(),
                "success_rate": None, "n_attacked": int(clean.sum()), "n_success": int((clean & ~robust).sum()),
                "per_sample": {"robust": pack_bits(robust.tolist())}, "minimal_perturbation": None}

    minimal = {"name": "deepfool", "eps": None, "eps_text": None, "norm": "Linf", "robust_accuracy": None,
               "success_rate": 1.0, "n_attacked": int(clean.sum()), "n_success": int(clean.sum()),
               "per_sample": {"robust": pack_bits([False] * n), "norm": pack_norms(norms.tolist())},
               "minimal_perturbation": {"median": 0.5, "curve": [{"eps": 0.1, "robust_accuracy": (norms > 0.1).mean()},
                                                                 {"eps": 0.2, "robust_accuracy": (norms > 0.2).mean()}]}}
    return {"seed": 7, "statistics": {"confidence": 0.9}, "settings": {}, "analyses": {}, "checks": [],
            "clean": {"accuracy": clean.mean(), "n": n, "per_sample": {"correct": pack_bits(clean.tolist())}},
            "attacks": [entry("fgsm", 0.1, weak), entry("pgd", 0.1, strong), entry("pgd", 0.2, strong & weak),
                        minimal]}, (clean, weak, strong, norms)


def test_score_interval_against_a_literal_resampling_loop(monkeypatch):
    monkeypatch.setattr(score_module, "INTERVAL_RESAMPLES", 60)
    report, (clean, weak, strong, norms) = small_report()
    s = score_report(report, interval=True)
    assert s["value"] is not None and s["interval"][0] <= s["value"] <= s["interval"][1]
    assert "bootstrap" in s["interval_method"] and "60 resamples, seed 7" in s["interval_method"]
    # the same draws, each resample turned into a report the plain score function reads
    rng = np.random.default_rng(7)
    values = []
    for _ in range(60):
        rows = rng.integers(0, len(clean), len(clean))
        resampled = json.loads(json.dumps(report))
        resampled["clean"]["accuracy"] = clean[rows].mean()
        for e, robust in zip(resampled["attacks"][:3], (weak, strong, strong & weak), strict=True):
            e["robust_accuracy"] = robust[rows].mean()
        for point in resampled["attacks"][3]["minimal_perturbation"]["curve"]:
            point["robust_accuracy"] = (norms[rows] > point["eps"]).mean()
        values.append(100 * robustness(resampled)[0])  # only robustness is weighted here: the score is it
    assert s["interval"] == pytest.approx(list(np.quantile(values, [0.05, 0.95])), abs=1e-5)


def test_a_score_no_resample_can_move_takes_the_wilson_ends_of_its_robust_accuracies():
    report, (clean, _, _, _) = small_report()
    n = len(clean)
    report["attacks"] = report["attacks"][:1]  # fgsm at 0.1 alone, and no image stayed robust
    report["attacks"][0].update(robust_accuracy=0.0, per_sample={"robust": pack_bits([False] * n)})
    s = score_report(report, interval=True)
    assert s["value"] == 0.0
    upper = proportion_interval(0, n, 0.9)[1]  # the report's level is 0.9
    assert s["interval"] == pytest.approx([0.0, 100 * upper / clean.mean()], abs=1e-5)
    assert s["interval_method"].startswith("every bootstrap resample gave the same score")


def test_a_score_the_cap_decides_in_every_resample_says_so_with_its_uncapped_interval(monkeypatch):
    monkeypatch.setattr(score_module, "INTERVAL_RESAMPLES", 60)
    report, (clean, weak, _, _) = small_report()
    report["attacks"] = report["attacks"][:1]  # fgsm at 0.1 alone
    report["checks"] = [{"name": "gradient_free_attack", "status": "fail"}]
    free = score_report(dict(report, checks=[]), interval=True)  # the same report without the failed check
    assert free["interval"][0] > 69.9  # every resample above the cap (a precondition of this test)
    s = score_report(report, interval=True)
    assert s["value"] == 69.9 and s["interval"] == [69.9, 69.9] and s["capped"]["applied"]
    low, high = free["interval"]
    assert s["interval_method"] == (
        "a failed validity check caps the score at 69.9, and every one of the 60 bootstrap resamples (seed 7) scored "
        "above the cap, so the score is the cap whatever the sampling and its interval is the cap alone; uncapped, "
        f"the percentile bootstrap interval (confidence 0.9) would be [{low:.1f}, {high:.1f}]")
    report["attacks"][0] = dict(report["attacks"][0], robust_accuracy=0.5,
                                per_sample={"robust": pack_bits((clean & (np.arange(len(clean)) % 2 == 0)).tolist())})
    straddling = score_report(report, interval=True)  # some resamples below the cap: the bootstrap's own interval
    assert straddling["interval_method"].startswith("percentile bootstrap") and straddling["interval"][0] < 69.9


def test_the_score_has_no_interval_without_per_sample_outcomes():
    report, _ = small_report()
    del report["clean"]["per_sample"]
    s = score_report(report, interval=True)
    assert s["interval"] is None and "no per-sample outcomes" in s["interval_method"]
    assert score_report(report)["interval"] is None  # renderers never compute it


# --- bad input ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["1.5", "0", "-0.2"])
def test_a_confidence_outside_zero_one_is_one_line_and_exit_2(value, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "audit", "run", "missing.safetensors", "--data", "demo",
                           "--confidence", value, "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=ROOT, check=False, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and f"--confidence {float(value)!r}" in proc.stderr
    assert "strictly between 0 and 1" in proc.stderr and not (tmp_path / "o").exists()


def test_readme_half_width_table_is_what_the_wilson_interval_gives():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("How many images a question needs"):]
    rows = [line for line in section.splitlines()[:12] if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 6
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        n = int(cells[0].replace(",", ""))
        for cell, rate in zip(cells[1:], (0.5, 0.2, 0.05), strict=True):
            k = round(rate * n)
            lo, hi = proportion_interval(k, n)
            assert float(cell.lstrip("±")) == round(100 * max(k / n - lo, hi - k / n), 1), (n, rate)
