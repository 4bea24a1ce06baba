"""Match thresholds from genuine and impostor scores: "is this person in the gallery at all?"

A ranked list never says where to stop. A threshold on the cosine score does, and the one a
user can reason about is set by the error rate it allows. Two kinds are calibrated:

* **per pair**: at false-match rate (FAR) 1e-2, one stranger *pair* in a hundred scores above
  it. Right for "are these two crops one person?".
* **per gallery** (:class:`GalleryRule`): at false-positive identification rate (FPIR) 1e-2,
  one person in a hundred who is *not* in a gallery of N entries is reported present. A
  stranger meets all N entries, so this threshold rises with N; it is a line in ln N
  (:mod:`reid.evaluation.open_set`), fitted on galleries of several sizes drawn from the
  calibration data, and applied at query time for the N at hand. Right for "is this person
  anywhere?", the question a search answers. Kept per kind of gallery entry: single
  ``crops``, or ``tracks`` (a track's mean embedding, what a footage index answers with).
 Thresholds are read off the score distributions of labelled pairs
that played no part in choosing the model's weights or recipe's test figures: training's
validation identities (``data.val_ids``), or a user's own labelled images of a new site
(``tools/calibrate.py``). They are stored in the export's spec, beside the weights they belong
to, so every index and query of the model finds them. Pure NumPy.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from reid.errors import ReidError
from reid.evaluation.open_set import (best_impostor_scores, best_per_group, fit_size_rules, fpir_and_dir,
                                      size_grid)
from reid.evaluation.verification import accept_rate, equal_error_rate, threshold_at_far

#: The false-match rates a calibration holds per-pair thresholds for; the first is threshold
#: ``pair``.
CALIBRATED_FARS: tuple[float, ...] = (1e-2, 1e-3)
AUTO_FAR = CALIBRATED_FARS[0]
#: The false-positive identification rates a gallery rule holds lines for; a rate between two
#: of them is interpolated (in log rate), one outside them refused.
CALIBRATED_FPIRS: tuple[float, ...] = (0.2, 0.1, 0.05, 0.02, 0.01)
#: What threshold ``auto`` asks for when no rate is given: 1 in 10 absent people reported
#: present. In an investigation a missed person costs more than a second look at a wrong one;
#: on the demo's validation people 0.1 found 64 % of those present where 0.02 found 39 % (and
#: 0.01 about 4 % of its test people). docs/BENCHMARKS.md, "Gallery-level answers".
DEFAULT_FPIR = 0.1
#: Random galleries drawn per probe and size when fitting a gallery rule.
GALLERY_DRAWS = 20
#: Labelled images that probe when fitting a gallery rule (all of them when fewer).
MAX_PROBES = 3000
#: The score a gallery rule's thresholds approach as N grows: a cosine's largest value.
COSINE_BOUND = 1.0
#: The spec's key.
SPEC_KEY = "calibration"


class CalibrationError(ReidError, ValueError):
    """No usable calibration: the message says which and how to make one."""


def far_key(far: float) -> str:
    """``1e-2 -> 'far=0.01'``: how a calibration names the threshold of a false-match rate."""
    return f"far={far:g}"


def fpir_text(fpir: float) -> str:
    """How a rate is shown and named: ``0.01``."""
    return f"{fpir:g}"


@dataclasses.dataclass(frozen=True)
class GalleryRule:
    """Where to cut a gallery of N entries so that a share ``fpir`` of absent people is
    reported present: per calibrated rate ``bound - threshold(N) = exp(intercept + slope *
    ln N)`` (the bounded extreme-value form, :mod:`reid.evaluation.open_set`), or without a
    ``bound`` (rules stored before it) ``threshold(N) = intercept + slope * ln N``.

    ``sizes``: the smallest and largest gallery measured; beyond the largest the curve is
    extrapolated (docs/BENCHMARKS.md, "Gallery-level answers", says how far that held on
    CUHK03). ``probes``: the probe images (each absent from the galleries it was scored
    against).
    """

    kind: str
    fpirs: tuple[float, ...]
    intercepts: tuple[float, ...]
    slopes: tuple[float, ...]
    sizes: tuple[int, int]
    probes: int
    #: When set, the lines are of ``ln(bound - threshold)``: ``threshold(N) = bound - exp(a_f +
    #: b ln N)``, the best of N scores bounded by ``bound`` (a cosine: 1) nearing it as a power
    #: of N (see :func:`fit_gallery_rule`). None: the lines are of the threshold itself.
    bound: float | None = None

    def threshold(self, gallery_size: int, fpir: float) -> float:
        """The cosine score a best result must reach in a gallery of ``gallery_size``."""
        rates = np.log(np.asarray(self.fpirs))
        lowest, highest = min(self.fpirs), max(self.fpirs)
        if not lowest * (1 - 1e-9) <= fpir <= highest * (1 + 1e-9):
            raise CalibrationError(
                f"fpir {fpir:g}: this calibration ({self.kind}, {self.probes} probes) holds "
                f"rates from {lowest:g} to {highest:g}", field="fpir")
        at = np.log(max(int(gallery_size), 1))
        lines = np.asarray(self.intercepts) + np.asarray(self.slopes) * at
        if self.bound is not None:
            lines = self.bound - np.exp(lines)
        order = np.argsort(rates)
        return float(np.interp(np.log(fpir), rates[order], lines[order]))

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "fpirs": list(self.fpirs),
                "intercepts": list(self.intercepts), "slopes": list(self.slopes),
                "sizes": list(self.sizes), "probes": self.probes,
                **({} if self.bound is None else {"bound": self.bound})}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> GalleryRule:
        rule = cls(str(value["kind"]), tuple(float(f) for f in value["fpirs"]),
                   tuple(float(a) for a in value["intercepts"]),
                   tuple(float(b) for b in value["slopes"]),
                   (int(value["sizes"][0]), int(value["sizes"][1])), int(value["probes"]),
                   None if value.get("bound") is None else float(value["bound"]))
        numbers = rule.fpirs + rule.intercepts + rule.slopes + (rule.bound or 0.0,)
        if (not rule.fpirs or len({len(rule.fpirs), len(rule.intercepts), len(rule.slopes)}) != 1
                or not all(math.isfinite(v) for v in numbers)
                or not all(0 < f < 1 for f in rule.fpirs)):
            raise ValueError(f"gallery rule {rule.kind}: rates, intercepts and slopes must be "
                             f"finite lists of one length, rates in (0, 1)")
        return rule

    def describe(self) -> str:
        return (f"{self.probes} probes against galleries of {self.sizes[0]}-{self.sizes[1]} "
                f"{self.kind}")


def fit_gallery_rule(scores: np.ndarray, impostor: np.ndarray, kind: str,
                     groups: np.ndarray | None = None, draws: int = GALLERY_DRAWS,
                     seed: int = 0) -> GalleryRule | None:
    """A gallery rule from probe x candidate scores (``impostor``: which candidates may stand in
    a gallery without the probe's person; ``groups``: each candidate's person, drawn into a
    gallery with all of that person's entries, see :func:`reid.evaluation.open_set.
    best_per_group`), or None when the probes have too few impostors for two gallery sizes.
    Sizes are counted in entries (a gallery of M people counts as M times the mean entries per
    person). A rate enters when the probes give at least one absent person's false "present"
    at it in every gallery drawn."""
    scores = np.asarray(scores)  # float32 from labelled images: half the memory
    impostor = np.asarray(impostor, bool)
    per_person = 1.0
    smallest = 10
    if groups is not None:
        per_person = len(groups) / len(np.unique(groups))
        scores, impostor = best_per_group(scores, impostor, groups)
        smallest = 2
    available = int(impostor.sum(axis=1).min()) if len(scores) else 0
    if available < 2 * smallest:
        return None
    sizes = size_grid(available, smallest)
    maxima = best_impostor_scores(scores, impostor, sizes, draws, seed)
    fpirs = [f for f in CALIBRATED_FPIRS if len(scores) * f >= 1]
    if not fpirs:
        return None
    # The curve is the large-gallery (extreme-value) form, for scores bounded by 1: fitted on
    # the upper half of the sizes in ln N, where it holds, not on galleries of a few people.
    upper = np.log(sizes) >= (np.log(sizes[0]) + np.log(sizes[-1])) / 2
    if upper.sum() < 2:
        return None
    entries = sizes * per_person
    intercepts, slope = fit_size_rules(maxima[upper], entries[upper], fpirs, bound=COSINE_BOUND)
    return GalleryRule(kind, tuple(fpirs), tuple(float(a) for a in intercepts),
                       (slope,) * len(fpirs),
                       (int(round(entries[0])), int(round(entries[-1]))), len(scores),
                       COSINE_BOUND)


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Thresholds on the cosine score and the figures they were read from.

    ``thresholds`` maps :func:`far_key` of each calibrated rate, and ``"eer"``, to a score; a
    rate the pairs cannot resolve (fewer than ``1 / far`` impostor pairs) is left out.
    ``tar`` holds the true-match rate each threshold gave on the same pairs.
    """

    thresholds: dict[str, float]
    tar: dict[str, float]
    eer: float
    genuine_pairs: int
    impostor_pairs: int
    source: str
    created: str
    #: Gallery-level rules by kind of entry (``crops``, ``tracks``); empty in calibrations
    #: made before they existed.
    gallery: dict[str, GalleryRule] = dataclasses.field(default_factory=dict)

    def threshold(self, far: float = AUTO_FAR) -> float:
        key = far_key(far)
        if key not in self.thresholds:
            raise CalibrationError(
                f"the calibration ({self.source}) has no threshold at false-match rate {far:g}: "
                f"its {self.impostor_pairs} impostor pairs cannot resolve it")
        return self.thresholds[key]

    def to_json(self) -> dict[str, Any]:
        value = dataclasses.asdict(self)
        value["gallery"] = {kind: rule.to_json() for kind, rule in self.gallery.items()}
        return value

    @classmethod
    def from_json(cls, value: Any, where: str) -> Calibration:
        """Read what :meth:`to_json` wrote; a damaged entry is a one-line error naming ``where``."""
        try:
            if not isinstance(value, Mapping):
                raise TypeError(f"expected an object, got {type(value).__name__}")
            thresholds = {str(k): float(v) for k, v in value["thresholds"].items()}
            calibration = cls(thresholds=thresholds,
                              tar={str(k): float(v) for k, v in value["tar"].items()},
                              eer=float(value["eer"]),
                              genuine_pairs=int(value["genuine_pairs"]),
                              impostor_pairs=int(value["impostor_pairs"]),
                              source=str(value["source"]), created=str(value["created"]),
                              gallery={str(kind): GalleryRule.from_json(rule)
                                       for kind, rule in value.get("gallery", {}).items()})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CalibrationError(f"{where}: unreadable calibration ({exc!r}); recalibrate "
                                   f"with tools/calibrate.py") from None
        if not all(math.isfinite(t) for t in thresholds.values()):
            raise CalibrationError(f"{where}: calibration thresholds must be finite numbers")
        return calibration

    def describe(self) -> str:
        return f"{self.source}; {self.genuine_pairs} genuine, {self.impostor_pairs} impostor pairs"


def labelled_gallery_rules(vectors: np.ndarray, pids: np.ndarray, camids: np.ndarray,
                           seed: int = 0) -> dict[str, GalleryRule]:
    """Gallery rules from labelled images: every image a probe, absent from galleries drawn
    from the other people's entries. ``crops``: the entries are the images; ``tracks``: the
    mean embedding of each person's images in each camera, as a footage index keeps a track
    (a person passing one camera). Junk (pid -1) is left out; distractors (pid 0) are
    strangers to everyone, as in ranking."""
    vectors = np.asarray(vectors, np.float32)
    keep = np.asarray(pids) != -1
    vectors = _unit(vectors[keep])
    pids, camids = np.asarray(pids)[keep], np.asarray(camids)[keep]
    # Every image is an entry; at most MAX_PROBES of them (seeded) probe, so that a dataset of
    # Market-1501's size calibrates in a few hundred MB (rates down to 0.01 need hundreds).
    probes = np.arange(len(pids))
    if len(probes) > MAX_PROBES:
        probes = np.sort(np.random.default_rng(seed).choice(probes, MAX_PROBES, replace=False))
    rules: dict[str, GalleryRule] = {}
    crops = fit_gallery_rule(vectors[probes] @ vectors.T, _strangers(pids[probes], pids),
                             "crops", _people(pids), seed=seed)
    if crops is not None:
        rules["crops"] = crops
    groups = sorted({(int(p), int(c)) for p, c in zip(pids, camids)})
    means = _unit(np.stack([vectors[(pids == p) & (camids == c)].mean(axis=0)
                            for p, c in groups]))
    track_pids = np.array([p for p, _ in groups])
    tracks = fit_gallery_rule(vectors[probes] @ means.T, _strangers(pids[probes], track_pids),
                              "tracks", _people(track_pids), seed=seed)
    if tracks is not None:
        rules["tracks"] = tracks
    return rules


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _people(pids: np.ndarray) -> np.ndarray:
    """Each entry's person for drawing galleries; every distractor (pid 0) a person of its
    own, since nothing says which of them are one person."""
    pids = np.asarray(pids, np.int64)
    return np.where(pids == 0, -1 - np.arange(len(pids)), pids)


def _strangers(probe_pids: np.ndarray, entry_pids: np.ndarray) -> np.ndarray:
    """Which entries are another person than each probe (a distractor, pid 0, always is)."""
    probe_pids, entry_pids = np.asarray(probe_pids), np.asarray(entry_pids)
    return (probe_pids[:, None] != entry_pids[None, :]) | (entry_pids[None, :] == 0)


def calibrate(genuine: np.ndarray, impostor: np.ndarray, source: str,
              gallery: Mapping[str, GalleryRule] | None = None) -> Calibration:
    """Thresholds at :data:`CALIBRATED_FARS` and at the equal-error rate of these scores, with
    the ``gallery`` rules fitted on the same data."""
    genuine = np.asarray(genuine, np.float64).ravel()
    impostor = np.asarray(impostor, np.float64).ravel()
    if not len(genuine) or not len(impostor):
        raise CalibrationError(f"{source}: calibration needs both genuine and impostor pairs, "
                               f"got {len(genuine)} and {len(impostor)}")
    thresholds: dict[str, float] = {}
    for far in CALIBRATED_FARS:
        if len(impostor) * far >= 1:
            thresholds[far_key(far)] = threshold_at_far(impostor, far)
    eer, thresholds["eer"] = equal_error_rate(genuine, impostor)
    tar = {key: accept_rate(genuine, t) for key, t in thresholds.items()}
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return Calibration(thresholds, tar, eer, len(genuine), len(impostor), source, created,
                       dict(gallery or {}))


def observed_rates(calibration: Calibration, genuine: np.ndarray, impostor: np.ndarray
                   ) -> dict[str, dict[str, float | None]]:
    """What each calibrated threshold does on other labelled pairs (a test split): the
    false-match rate actually observed there and the true-match rate, by threshold key (None
    where the split has no such pairs)."""
    def rate(scores: np.ndarray, t: float) -> float | None:
        return accept_rate(scores, t) if len(scores) else None

    return {key: {"threshold": t, "far": rate(impostor, t), "tar": rate(genuine, t)}
            for key, t in calibration.thresholds.items()}


def open_set_rates(calibration: Calibration, mated_scores: np.ndarray,
                   mated_correct: np.ndarray, unmated_scores: np.ndarray
                   ) -> dict[str, dict[str, float | None]]:
    """What each calibrated (per-pair) threshold does to whole-gallery answers, by threshold
    key: ``fpir``, the false-positive identification rate (the share of people absent from
    the gallery whose best result still reaches it: they get a "match" instead of "not in the
    gallery"), and ``dir``, the detection and identification rate of those present (best
    result their own and at or above it); None for a side without queries. A stranger meets
    many gallery images, so the FPIR is well above the per-pair rate the threshold was set for.
    """
    def rates(t: float) -> dict[str, float | None]:
        fpir, dir_ = fpir_and_dir(mated_scores, mated_correct, unmated_scores, t)
        return {"threshold": t, "fpir": None if math.isnan(fpir) else fpir,
                "dir": None if math.isnan(dir_) else dir_}

    return {key: rates(t) for key, t in calibration.thresholds.items()}


def spec_calibration(spec: Mapping[str, Any], where: str) -> Calibration | None:
    """The calibration stored in an export's spec, or None when it has none."""
    if SPEC_KEY not in spec:
        return None
    return Calibration.from_json(spec[SPEC_KEY], where)


def with_calibration(spec: Mapping[str, Any], calibration: Calibration) -> dict[str, Any]:
    """``spec`` holding ``calibration``; the one it replaces is kept in ``calibration_history``
    (a user's earlier site calibration is not lost by recalibrating)."""
    updated = dict(spec)
    history = list(updated.get("calibration_history", []))
    if SPEC_KEY in updated:
        history.append(updated[SPEC_KEY])
    updated[SPEC_KEY] = calibration.to_json()
    if history:
        updated["calibration_history"] = history
    return updated


#: A :class:`MatchThreshold`'s origin when the user gave the number.
GIVEN = "given"


@dataclasses.dataclass(frozen=True)
class MatchThreshold:
    """The score at or above which a result is taken for the query's person, and why."""

    value: float
    origin: str
    #: Set when the threshold is gallery-level: the false-positive identification rate it was
    #: read for, at ``gallery_size`` entries.
    fpir: float | None = None
    gallery_size: int | None = None

    def matches(self, score: float) -> bool:
        return score >= self.value

    @property
    def calibrated(self) -> bool:
        """Read off a calibration (its false-match rate was measured), not given by hand."""
        return self.origin != GIVEN


def score_format(threshold: MatchThreshold | None, scores: Iterable[float],
                 least: int = 4) -> Callable[[float], str]:
    """How to print ``scores`` and ``threshold`` side by side so that they read as decided.

    The decision compares the unrounded numbers (:meth:`MatchThreshold.matches`), and must: a
    calibrated threshold sits just above the impostor score it rejects, so deciding on rounded
    numbers would accept the very pairs the calibration excluded. Printed at the same number of
    decimals, an accepted score never reads below the threshold (rounding keeps order), but a
    rejected one can read equal to it: "the best score, 1.0000, is below the match threshold
    1.0000" of a collapsed model. So: the fewest decimals, at least ``least``, at which no
    rejected score prints as the threshold does; past 17, Python's shortest exact form.
    """
    if threshold is None:
        return lambda score: f"{score:.{least}f}"
    rejected = [float(s) for s in scores if not threshold.matches(s)]
    for digits in range(least, 18):
        shown = f"{threshold.value:.{digits}f}"
        if all(f"{s:.{digits}f}" != shown for s in rejected):
            return lambda score, digits=digits: f"{score:.{digits}f}"
    return lambda score: repr(float(score))


#: What ``--threshold`` accepts besides a number.
THRESHOLD_WORDS: tuple[str, ...] = ("auto", "pair", "none")


def check_fpir(fpir: float) -> float:
    """``fpir`` if it is a rate a calibration can hold (within :data:`CALIBRATED_FPIRS`)."""
    if not (isinstance(fpir, (int, float)) and math.isfinite(fpir)
            and min(CALIBRATED_FPIRS) <= fpir <= max(CALIBRATED_FPIRS)):
        raise CalibrationError(f"fpir {fpir}: expected a false-positive identification rate "
                               f"from {min(CALIBRATED_FPIRS):g} to {max(CALIBRATED_FPIRS):g}",
                               field="fpir")
    return float(fpir)


def resolve_threshold(requested: str | None, spec: Mapping[str, Any], where: str,
                      gallery_size: int | None = None, kind: str = "crops",
                      fpir: float | None = None, site: Calibration | None = None
                      ) -> MatchThreshold | None:
    """What a requested match threshold asks for, given the spec of the model that embeds.

    ``auto``: the gallery-level threshold at ``fpir`` (default :data:`DEFAULT_FPIR`) for a
    gallery of ``gallery_size`` entries of ``kind``, an error without a gallery rule.
    ``pair``: the calibrated per-pair threshold at false-match rate :data:`AUTO_FAR`.
    ``none``: no decision. A number: that cosine score (the spec is not read, so a damaged
    calibration does not stand in its way). ``None`` (not given): ``auto`` when the
    calibration has a gallery rule, else ``pair`` when it has that threshold (a model
    calibrated before gallery rules existed answers as it did), else no decision. ``site``:
    a calibration made on the index's own footage (``tools/calibrate.py --footage``), used in
    place of the model's.
    """
    asked = None if requested is None else requested.strip().lower()
    if asked == "none":
        return None
    if asked not in (None, *THRESHOLD_WORDS):
        try:
            value = float(requested)
        except ValueError:
            raise CalibrationError(f"threshold {requested}: expected auto, pair, none or a "
                                   f"cosine score in [-1, 1]", field="threshold") from None
        if not -1.0 <= value <= 1.0:
            raise CalibrationError(f"threshold {requested}: a cosine score lies in [-1, 1]",
                                   field="threshold")
        return MatchThreshold(value, GIVEN)
    asked_fpir = fpir
    fpir = DEFAULT_FPIR if fpir is None else check_fpir(fpir)
    if asked not in (None, "auto") and asked_fpir is not None:
        raise CalibrationError(f"fpir {asked_fpir:g}: a rate of absent people reported present "
                               f"is what threshold auto decides at; threshold {asked} does "
                               f"not use one", field=("fpir", "threshold"))
    calibration = site if site is not None else spec_calibration(spec, where)
    rule = None if calibration is None else calibration.gallery.get(kind)
    pair = calibration is not None and far_key(AUTO_FAR) in calibration.thresholds
    if asked is None:
        if rule is None and not pair:
            return None
        asked = "auto" if rule is not None and gallery_size is not None else "pair"
    if calibration is None:
        raise CalibrationError(
            f"threshold {asked}: {where} has no calibrated match threshold (trained with "
            f"data.val_ids: 0?); calibrate it on labelled crops or on footage "
            f"(tools/calibrate.py), or give a number", field="threshold")
    if asked == "pair":
        return MatchThreshold(calibration.threshold(AUTO_FAR),
                              f"false-match rate {AUTO_FAR:g} per pair, calibrated on "
                              f"{calibration.source}")
    if rule is None:
        raise CalibrationError(
            f"threshold auto: the calibration of {where} ({calibration.source}) has no "
            f"gallery-level rule for {kind} (made before they existed?); recalibrate with "
            f"tools/calibrate.py, or use --threshold pair", field="threshold")
    if gallery_size is None:
        raise ValueError("a gallery-level threshold needs the gallery's size")
    lowest = ""
    if asked_fpir is None and fpir < min(rule.fpirs):
        # Too few calibration probes to resolve the default rate: the lowest they resolve.
        fpir = min(rule.fpirs)
        lowest = " (the lowest rate its calibration resolves)"
    return MatchThreshold(
        rule.threshold(gallery_size, fpir),
        f"{fpir_text(fpir)} of absent people reported present{lowest}, in a gallery of "
        f"{gallery_size:,} {kind}; calibrated on {calibration.source}",
        fpir, gallery_size)


def format_calibration(calibration: Calibration) -> str:
    """The per-pair thresholds, a line each, with the true-match rate each gave; then each
    gallery rule's thresholds at a few gallery sizes (it is read for the N at hand)."""
    lines = [f"calibrated on {calibration.describe()}"]
    for key, t in calibration.thresholds.items():
        what = (f"equal-error rate {calibration.eer:.4f}" if key == "eer"
                else f"false-match rate {key.split('=')[1]}")
        lines.append(f"  threshold {t:.4f} at {what}: true-match rate "
                     f"{calibration.tar[key]:.4f}")
    sizes = (100, 1_000, 10_000)
    for kind, rule in calibration.gallery.items():
        lines.append(f"  gallery-level, {rule.describe()}; threshold at N = "
                     f"{' / '.join(f'{n:,}' for n in sizes)} {kind}:")
        for fpir in rule.fpirs:
            lines.append(f"    FPIR {fpir_text(fpir)}: "
                         f"{' / '.join(f'{rule.threshold(n, fpir):.4f}' for n in sizes)}")
    if not calibration.gallery:
        lines.append("  no gallery-level rule (too few images to draw galleries of two sizes "
                     "from): threshold auto is unavailable, pair remains")
    return "\n".join(lines)


def format_observed_rates(calibrated: Mapping[str, Any]) -> str:
    """What the model's calibrated decisions did on the evaluated split (what
    ``reid.engine.evaluator.calibrated_figures`` counted): each per-pair threshold's rates on
    the pairs, and, with a third of the people left out of the gallery, its FPIR and DIR; then
    the gallery-level decision at each requested FPIR, or a line saying the calibration has
    none."""
    def cell(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    def spread(values: list[float | None], form: str) -> str:
        given = [v for v in values if v is not None]
        if not given:
            return "-"
        low, high = format(min(given), form), format(max(given), form)
        return low if low == high else f"{low}-{high}"

    open_set = calibrated.get("open_set", {})
    draws = len(next(iter(open_set.values()))["per_draw"]["fpir"]) if open_set else 0
    over = f"; open-set figures: means of {draws} draws" if draws > 1 else ""
    lines = [(f"calibrated thresholds ({calibrated['source']}) on these pairs, as queries "
              f"score{over}:")]
    for key, rates in calibrated["rates"].items():
        asked = "equal error" if key == "eer" else f"false-match rate {key.split('=')[1]}"
        line = (f"  {rates['threshold']:.4f} ({asked}): observed false-match rate "
                f"{cell(rates['far'], 5)}, true-match rate {cell(rates['tar'], 4)}")
        if key in open_set:
            line += (f"; a third of the people out of the gallery: FPIR "
                     f"{cell(open_set[key]['fpir'], 4)} (share of them reported present), "
                     f"DIR {cell(open_set[key]['dir'], 4)}")
        lines.append(line)
    gallery = calibrated.get("gallery")
    if gallery is None:
        if open_set:
            lines.append("gallery-level decision: none calibrated (this calibration holds no "
                         "gallery rule for crops: made before they existed, or from too few "
                         "images); recalibrate with tools/calibrate.py")
        return "\n".join(lines)
    runs = gallery["draws"]
    lines.append(f"gallery-level decision ({gallery['rule']}), a third of the identities out "
                 f"of the gallery" + (f", means of {len(runs)} seeded draws:" if len(runs) > 1
                                      else ":"))
    sizes = spread([r["gallery_size"] for r in runs], ",")
    absent = sum(r["absent"] for r in runs)
    for fpir, rates in gallery["rates"].items():
        if rates["threshold"] is None:
            lines.append(f"  requested FPIR {fpir} -> not calibrated: the rule holds rates "
                         f"{min(gallery['rule_fpirs']):g} to {max(gallery['rule_fpirs']):g}")
            continue
        each = rates["per_draw"]
        present = sum(each["reported_present"])
        line = (f"  requested FPIR {fpir} -> observed {cell(rates['fpir'], 3)}, DIR "
                f"{cell(rates['dir'], 3)} (threshold {spread(each['threshold'], '.4f')} for "
                f"N = {sizes}; {present} of {absent:,} left-out queries reported present")
        if len(runs) > 1:
            line += f", per draw {spread(each['fpir'], '.3f')}"
        lines.append(line + ")")
    return "\n".join(lines)
