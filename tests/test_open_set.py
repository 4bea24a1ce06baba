"""Gallery-level decisions (reid.evaluation.open_set, reid.calibration's gallery rules), checked
against independent references: brute-force loops, closed forms of i.i.d. scores, hand-worked
rules and specs. NumPy only, no model."""

from __future__ import annotations

import json
import math
import random
from itertools import product

import numpy as np
import pytest

from reid.calibration import (DEFAULT_FPIR, GIVEN, Calibration, CalibrationError, GalleryRule,
                              calibrate, resolve_threshold, with_calibration)
from reid.evaluation.open_set import (best_impostor_scores, fit_size_rule, fpir_and_dir,
                                      size_grid)

# --- FPIR and DIR -----------------------------------------------------------------------------


def brute_fpir_dir(mated, correct, unmated, t):
    """The definitions, one query at a time: an absent person is reported present when their
    best score reaches t; a present one is found when their best is their own and reaches t."""
    present = sum(1 for s in unmated if s >= t)
    found = sum(1 for s, ok in zip(mated, correct) if ok and s >= t)
    return (present / len(unmated) if unmated else math.nan,
            found / len(mated) if mated else math.nan)


def test_fpir_and_dir_hand_worked_with_ties_at_the_threshold():
    mated = [0.9, 0.8, 0.8, 0.5, 0.7]
    correct = [True, False, True, True, False]
    unmated = [0.8, 0.79, 0.3, 0.8]
    # At 0.8: both unmated 0.8 reach it (a tie is reported present); of the present, 0.9 and
    # the right 0.8 are found, the wrong 0.8 is not (its best is someone else).
    assert fpir_and_dir(mated, correct, unmated, 0.8) == (0.5, 0.4)
    # Just above 0.8 the ties fall out on both sides.
    assert fpir_and_dir(mated, correct, unmated, float(np.nextafter(0.8, 1))) == (0.0, 0.2)
    # A wrong best result never counts, however high: at 0.6 the wrong 0.7 is not found
    # (three of the four absent people are reported present).
    assert fpir_and_dir(mated, correct, unmated, 0.6) == (0.75, 0.4)
    fpir, dir_ = fpir_and_dir([], [], unmated, 0.5)
    assert fpir == 0.75 and math.isnan(dir_)
    assert math.isnan(fpir_and_dir(mated, correct, [], 0.5)[0])
    with pytest.raises(ValueError, match="mated_correct: 2 values for 5 scores"):
        fpir_and_dir(mated, correct[:2], unmated, 0.5)


def test_fpir_and_dir_against_a_loop():
    rng = np.random.default_rng(0)
    for _ in range(50):
        # Two decimals: many ties, and thresholds on the scores themselves.
        mated = np.round(rng.uniform(0, 1, rng.integers(1, 30)), 2)
        correct = rng.random(len(mated)) < 0.6
        unmated = np.round(rng.uniform(0, 1, rng.integers(1, 30)), 2)
        for t in [*np.unique(np.concatenate([mated, unmated])), -1.0, 0.555, 2.0]:
            assert fpir_and_dir(mated, correct, unmated, t) == brute_fpir_dir(
                mated.tolist(), correct.tolist(), unmated.tolist(), t)


# --- best impostor scores against galleries of N ----------------------------------------------

def probes_with_impostors(rng, probes=4, candidates=12, impostors=8):
    """Scores with ``impostors`` impostor candidates per probe at random places; the others
    score 10, above every impostor, so that one of them counted would show."""
    scores = np.full((probes, candidates), 10.0)
    mask = np.zeros((probes, candidates), bool)
    for i in range(probes):
        places = rng.choice(candidates, impostors, replace=False)
        mask[i, places] = True
        scores[i, places] = rng.uniform(0, 1, impostors)
    return scores, mask


def test_best_impostor_of_every_impostor_is_the_best_and_others_never_count():
    rng = np.random.default_rng(1)
    scores, mask = probes_with_impostors(rng)
    draws = 5
    maxima = best_impostor_scores(scores, mask, np.array([1, 3, 8]), draws, seed=3)
    assert maxima.shape == (3, 4 * draws)
    best = [max(s for s, m in zip(row, keep) if m) for row, keep in zip(scores, mask)]
    # A gallery of all 8 impostors: each probe's best impostor, in every draw (probe-major).
    assert maxima[2].tolist() == [b for b in best for _ in range(draws)]
    assert maxima.max() < 10  # a non-impostor never entered a gallery
    # The best of a growing gallery never falls (the first N of one shuffled order).
    assert np.all(np.diff(maxima, axis=0) >= 0)
    with pytest.raises(ValueError, match="the fewest has 8"):
        best_impostor_scores(scores, mask, np.array([5, 9]), 1)


def test_best_of_n_matches_drawing_n_without_replacement_by_brute_force():
    rng = np.random.default_rng(2)
    scores, mask = probes_with_impostors(rng)
    draws, size = 4000, 3
    maxima = best_impostor_scores(scores, mask, np.array([1, size]), draws, seed=5)
    loop = random.Random(7)
    for i in range(len(scores)):
        impostors = [float(s) for s, m in zip(scores[i], mask[i]) if m]
        brute = [max(loop.sample(impostors, size)) for _ in range(draws)]
        ours = maxima[1, i * draws:(i + 1) * draws]
        # Two means of 4,000 draws each: within 5 standard errors of their difference.
        error = math.sqrt((np.var(brute) + np.var(ours)) / draws)
        assert abs(np.mean(ours) - np.mean(brute)) < 5 * error, i
        # And both near the exact mean: the k-th smallest of 8 is the best of 3 drawn in
        # C(k-1, 2) of the C(8, 3) galleries.
        ranked = sorted(impostors)
        exact = sum(v * math.comb(k, size - 1) for k, v in enumerate(ranked)) / math.comb(8, size)
        assert abs(np.mean(ours) - exact) < 5 * math.sqrt(np.var(ours) / draws), i
        # A gallery of one: any impostor, equally likely.
        assert abs(np.mean(maxima[0, i * draws:(i + 1) * draws]) - np.mean(impostors)) < (
            5 * np.std(impostors) / math.sqrt(draws))


# --- a gallery-size rule checked on resampled galleries ---------------------------------------


def test_size_rule_on_iid_exponential_scores_holds_at_ten_times_the_largest_gallery():
    """Scores i.i.d. Exp(1): the best of N is below t with probability (1 - e^-t)^N, so the
    threshold at FPIR f is exactly -ln(1 - (1 - f)^(1/N)), close to a line in ln N. A rule
    fitted on galleries of 10-40 must give close to the requested FPIR at N = 400, checked on
    freshly drawn galleries of 400 and against the closed form. (10,000 probes: over 30 seeds
    the observed/requested ratio at 0.01 spread 0.8-1.4, its log's standard deviation 0.13,
    so 2x is over 5 deviations away.)"""
    rng = np.random.default_rng(0)
    scores = rng.exponential(size=(10_000, 100))
    sizes = size_grid(40)
    assert sizes.tolist() == [10, 14, 20, 28, 40]
    maxima = best_impostor_scores(scores, np.ones_like(scores, bool), sizes, draws=4, seed=1)
    big = 10 * sizes[-1]
    fresh = np.concatenate([rng.exponential(size=(5_000, big)).max(axis=1) for _ in range(8)])
    for fpir in (0.1, 0.01):
        intercept, slope = fit_size_rule(maxima, sizes, fpir)
        # On the fitted sizes the line is near the closed form's thresholds ...
        exact = -np.log(1 - (1 - fpir) ** (1 / sizes))
        assert np.abs(intercept + slope * np.log(sizes) - exact).max() < 0.15, fpir
        t = intercept + slope * math.log(big)
        closed = 1 - (1 - math.exp(-t)) ** big
        observed = float(np.mean(fresh >= t))  # 40,000 galleries of 400 drawn afresh
        assert fpir / 2 <= observed <= 2 * fpir, (fpir, observed)
        assert fpir / 2 <= closed <= 2 * fpir, (fpir, closed)
        # The brute force agrees with the closed form within its sampling error.
        assert abs(observed - closed) < 5 * math.sqrt(closed * (1 - closed) / len(fresh))


# --- the stored rule --------------------------------------------------------------------------

RULE = GalleryRule("crops", (0.1, 0.01), (0.5, 0.7), (0.01, 0.02), (10, 500), 300)


def test_gallery_rule_reads_its_lines_interpolates_in_log_rate_and_refuses_outside():
    n = 1_000
    assert RULE.threshold(n, 0.1) == pytest.approx(0.5 + 0.01 * math.log(n))
    assert RULE.threshold(n, 0.01) == pytest.approx(0.7 + 0.02 * math.log(n))
    # Halfway between the rates in log rate (sqrt(0.1 * 0.01)): halfway between the lines.
    mid = (0.5 + 0.01 * math.log(n) + 0.7 + 0.02 * math.log(n)) / 2
    assert RULE.threshold(n, math.sqrt(0.1 * 0.01)) == pytest.approx(mid)
    # A quarter of the way in log rate from 0.1 towards 0.01.
    quarter = 0.1 * 0.1 ** 0.25
    assert RULE.threshold(n, quarter) == pytest.approx(
        0.75 * (0.5 + 0.01 * math.log(n)) + 0.25 * (0.7 + 0.02 * math.log(n)))
    # Rates stored in any order read alike; a gallery of 0 entries reads as one.
    flipped = GalleryRule("crops", (0.01, 0.1), (0.7, 0.5), (0.02, 0.01), (10, 500), 300)
    assert flipped.threshold(n, 0.03) == pytest.approx(RULE.threshold(n, 0.03))
    assert RULE.threshold(0, 0.1) == RULE.threshold(1, 0.1) == pytest.approx(0.5)
    for outside in (0.2, 0.005):
        with pytest.raises(CalibrationError, match=f"fpir {outside:g}: .* holds rates from "
                                                   f"0.01 to 0.1"):
            RULE.threshold(n, outside)


# --- resolve_threshold's words ----------------------------------------------------------------

IMPOSTOR = np.arange(1000) / 1000
GENUINE = 0.5 + np.arange(100) / 200
TRACKS = GalleryRule("tracks", (0.2, 0.01), (0.4, 0.6), (0.03, 0.03), (10, 200), 300)


def test_resolve_threshold_words_with_a_gallery_rule():
    c = calibrate(GENUINE, IMPOSTOR, "site A", {"crops": RULE, "tracks": TRACKS})
    spec = json.loads(json.dumps(with_calibration({}, c)))  # as spec.json holds it
    # Default (nothing asked) and auto: the gallery level at 1e-2 for the N at hand.
    for asked in (None, "auto", " AUTO "):
        t = resolve_threshold(asked, spec, "m", gallery_size=1_000)
        assert t.value == pytest.approx(RULE.threshold(1_000, DEFAULT_FPIR))
        assert (t.fpir, t.gallery_size) == (DEFAULT_FPIR, 1_000) and t.calibrated
        assert "in a gallery of 1,000 crops" in t.origin and "site A" in t.origin
    t = resolve_threshold("auto", spec, "m", gallery_size=50, kind="tracks", fpir=0.05)
    assert t.value == pytest.approx(TRACKS.threshold(50, 0.05))
    assert (t.fpir, t.gallery_size) == (0.05, 50)
    # The rule follows N: a bigger gallery asks for a higher score.
    assert resolve_threshold("auto", spec, "m", gallery_size=100_000).value > t.value
    # pair: the per-pair threshold at false-match rate 1e-2, whatever the gallery.
    pair = resolve_threshold("pair", spec, "m", gallery_size=1_000)
    assert pair.value == c.threshold(1e-2) and pair.fpir is None and pair.gallery_size is None
    assert "false-match rate 0.01 per pair" in pair.origin
    # The default without a gallery's size (nothing to read a rule for) is the pair threshold.
    assert resolve_threshold(None, spec, "m").value == c.threshold(1e-2)
    with pytest.raises(ValueError, match="needs the gallery's size"):
        resolve_threshold("auto", spec, "m")
    assert resolve_threshold("none", spec, "m", gallery_size=10) is None
    given = resolve_threshold("0.25", spec, "m", gallery_size=10)
    assert (given.value, given.origin, given.fpir, given.calibrated) == (0.25, GIVEN, None, False)
    # A site's own calibration stands in for the model's.
    site = calibrate(GENUINE, IMPOSTOR, "site B", {"crops": TRACKS})
    t = resolve_threshold("auto", spec, "m", gallery_size=100, site=site)
    assert t.value == pytest.approx(TRACKS.threshold(100, DEFAULT_FPIR)) and "site B" in t.origin
    # Rates outside the calibrated range are refused by name, as is a rate the rule lacks.
    for bad in (0.5, 0.001, float("nan")):
        with pytest.raises(CalibrationError, match="^fpir"):
            resolve_threshold("auto", spec, "m", gallery_size=10, fpir=bad)
    with pytest.raises(CalibrationError, match="fpir 0.2: .* holds rates from 0.01 to 0.1"):
        resolve_threshold("auto", spec, "m", gallery_size=10, fpir=0.2)


def test_resolve_threshold_words_without_a_gallery_rule():
    old = with_calibration({}, calibrate(GENUINE, IMPOSTOR, "site A"))  # made before rules
    # As it answered before gallery rules existed: the per-pair threshold.
    for asked in (None, "pair"):
        t = resolve_threshold(asked, old, "m", gallery_size=1_000)
        assert t.value == calibrate(GENUINE, IMPOSTOR, "x").threshold(1e-2) and t.fpir is None
    with pytest.raises(CalibrationError, match="no gallery-level rule for crops .*"
                                               "recalibrate with tools/calibrate.py"):
        resolve_threshold("auto", old, "m", gallery_size=1_000)
    # No calibration at all: nothing by default; a word that needs one says how to make it.
    assert resolve_threshold(None, {}, "m", gallery_size=1_000) is None
    for asked in ("auto", "pair"):
        with pytest.raises(CalibrationError, match=f"threshold {asked}: m has no calibrated "
                                                   f"match threshold"):
            resolve_threshold(asked, {}, "m", gallery_size=1_000)
    # A number needs no calibration, even a damaged one; a bad one is named.
    assert resolve_threshold("-0.5", {"calibration": "garbage"}, "m").value == -0.5
    for bad in ("1.5", "high"):
        with pytest.raises(CalibrationError, match=f"^threshold {bad}"):
            resolve_threshold(bad, {}, "m")


# --- the calibration's JSON -------------------------------------------------------------------


def test_calibration_round_trip_with_gallery_rules_and_an_old_one_without():
    c = calibrate(GENUINE, IMPOSTOR, "site A", {"crops": RULE, "tracks": TRACKS})
    stored = json.loads(json.dumps(c.to_json()))
    assert stored["gallery"]["crops"]["intercepts"] == [0.5, 0.7]
    back = Calibration.from_json(stored, "spec.json")
    assert back == c and back.gallery["tracks"].threshold(77, 0.05) == TRACKS.threshold(77, 0.05)
    old = {k: v for k, v in stored.items() if k != "gallery"}  # written before rules existed
    assert Calibration.from_json(old, "spec.json").gallery == {}
    assert Calibration.from_json(old, "spec.json").thresholds == c.thresholds
    for damage, value in product(("intercepts", "fpirs"), ([0.5], [0.5, float("inf")])):
        rule = {**stored["gallery"]["crops"], damage: value}
        with pytest.raises(CalibrationError, match="m/spec.json: unreadable calibration"):
            Calibration.from_json({**stored, "gallery": {"crops": rule}}, "m/spec.json")


def test_a_bounded_rule_nears_its_bound_as_a_power_of_n():
    """``bound``: the lines are of ln(bound - threshold), so threshold(N) = 1 - e^a N^b, worked
    by hand; read back from JSON unchanged, and an old rule (no bound) stays linear."""
    from reid.calibration import GalleryRule

    rule = GalleryRule("crops", (0.1, 0.01), (np.log(0.2), np.log(0.1)), (-0.5, -0.5),
                       (10, 100), 500, 1.0)
    for n in (1, 100, 10_000):
        assert rule.threshold(n, 0.1) == pytest.approx(1 - 0.2 * n ** -0.5)
        assert rule.threshold(n, 0.01) == pytest.approx(1 - 0.1 * n ** -0.5)
    # Between the rates, in log rate, between the two thresholds.
    middle = rule.threshold(100, np.sqrt(0.1 * 0.01))
    assert middle == pytest.approx((rule.threshold(100, 0.1) + rule.threshold(100, 0.01)) / 2)
    assert GalleryRule.from_json(rule.to_json()) == rule
    linear = GalleryRule.from_json({k: v for k, v in rule.to_json().items() if k != "bound"})
    assert linear.bound is None and linear.threshold(100, 0.1) == pytest.approx(
        np.log(0.2) - 0.5 * np.log(100))
