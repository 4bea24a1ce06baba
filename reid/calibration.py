"""Match thresholds from genuine and impostor scores: "is this person in the gallery at all?"

A ranked list never says where to stop. A threshold on the cosine score does, and the one a
user can reason about is set by the false-match rate it allows: at FAR 1e-2, one stranger pair
in a hundred scores above it. Thresholds are read off the score distributions of labelled pairs
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
from reid.evaluation.verification import accept_rate, equal_error_rate, threshold_at_far

#: The false-match rates a calibration holds thresholds for; the first is threshold ``auto``.
CALIBRATED_FARS: tuple[float, ...] = (1e-2, 1e-3)
AUTO_FAR = CALIBRATED_FARS[0]
#: The spec's key.
SPEC_KEY = "calibration"


class CalibrationError(ReidError, ValueError):
    """No usable calibration: the message says which and how to make one."""


def far_key(far: float) -> str:
    """``1e-2 -> 'far=0.01'``: how a calibration names the threshold of a false-match rate."""
    return f"far={far:g}"


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

    def threshold(self, far: float = AUTO_FAR) -> float:
        key = far_key(far)
        if key not in self.thresholds:
            raise CalibrationError(
                f"the calibration ({self.source}) has no threshold at false-match rate {far:g}: "
                f"its {self.impostor_pairs} impostor pairs cannot resolve it")
        return self.thresholds[key]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

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
                              source=str(value["source"]), created=str(value["created"]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CalibrationError(f"{where}: unreadable calibration ({exc!r}); recalibrate "
                                   f"with tools/calibrate.py") from None
        if not all(math.isfinite(t) for t in thresholds.values()):
            raise CalibrationError(f"{where}: calibration thresholds must be finite numbers")
        return calibration

    def describe(self) -> str:
        return f"{self.source}; {self.genuine_pairs} genuine, {self.impostor_pairs} impostor pairs"


def calibrate(genuine: np.ndarray, impostor: np.ndarray, source: str) -> Calibration:
    """Thresholds at :data:`CALIBRATED_FARS` and at the equal-error rate of these scores."""
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
    return Calibration(thresholds, tar, eer, len(genuine), len(impostor), source, created)


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
    key: the share of people absent from the gallery whose best result still reaches it (they
    get a "match" instead of "no match in the gallery"), and the detection and identification
    rate of those present (best result their own and at or above it). A stranger meets many
    gallery images, so the first is well above the per-pair rate the threshold was set for.
    """
    mated_scores = np.asarray(mated_scores, np.float64)
    mated_correct = np.asarray(mated_correct, bool)
    unmated_scores = np.asarray(unmated_scores, np.float64)
    return {key: {"threshold": t,
                  "stranger_match_rate": (float(np.mean(unmated_scores >= t))
                                          if len(unmated_scores) else None),
                  "dir": (float(np.mean(mated_correct & (mated_scores >= t)))
                          if len(mated_scores) else None)}
            for key, t in calibration.thresholds.items()}


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


def resolve_threshold(requested: str | None, spec: Mapping[str, Any], where: str
                      ) -> MatchThreshold | None:
    """What a requested match threshold asks for, given the spec of the model that embeds.

    ``None`` (not given): the calibrated threshold when the model has one, else no match
    decision at all, as before calibration existed. ``auto``: the calibrated false-match-rate
    :data:`AUTO_FAR` threshold, an error without one. ``none``: no decision. A number: that
    cosine score (the spec is not read, so a damaged calibration does not stand in its way).
    """
    asked = None if requested is None else requested.strip().lower()
    if asked == "none":
        return None
    if asked not in (None, "auto"):
        try:
            value = float(requested)
        except ValueError:
            raise CalibrationError(f"threshold {requested}: expected auto, none or a cosine "
                                   f"score in [-1, 1]", field="threshold") from None
        if not -1.0 <= value <= 1.0:
            raise CalibrationError(f"threshold {requested}: a cosine score lies in [-1, 1]",
                                   field="threshold")
        return MatchThreshold(value, GIVEN)
    calibration = spec_calibration(spec, where)
    if asked is None and (calibration is None or far_key(AUTO_FAR) not in calibration.thresholds):
        return None
    if calibration is None:
        raise CalibrationError(
            f"threshold auto: {where} has no calibrated match threshold (trained with "
            f"data.val_ids: 0?); calibrate it on labelled crops (tools/calibrate.py), or give a "
            f"number", field="threshold")
    return MatchThreshold(calibration.threshold(AUTO_FAR),
                          f"false-match rate {AUTO_FAR:g} per pair, calibrated on "
                          f"{calibration.source}")


def format_calibration(calibration: Calibration) -> str:
    """The thresholds, a line each, with the true-match rate each gave."""
    lines = [f"calibrated on {calibration.describe()}"]
    for key, t in calibration.thresholds.items():
        what = (f"equal-error rate {calibration.eer:.4f}" if key == "eer"
                else f"false-match rate {key.split('=')[1]}")
        lines.append(f"  threshold {t:.4f} at {what}: true-match rate "
                     f"{calibration.tar[key]:.4f}")
    return "\n".join(lines)


def format_observed_rates(calibrated: Mapping[str, Any]) -> str:
    """What the model's calibrated thresholds did on the evaluated split (``observed_rates``)."""
    def cell(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [f"calibrated thresholds ({calibrated['source']}) on these pairs, as queries score:"]
    open_set = calibrated.get("open_set", {})
    for key, rates in calibrated["rates"].items():
        asked = "equal error" if key == "eer" else f"false-match rate {key.split('=')[1]}"
        line = (f"  {rates['threshold']:.4f} ({asked}): observed false-match rate "
                f"{cell(rates['far'], 5)}, true-match rate {cell(rates['tar'], 4)}")
        if key in open_set:
            absent = cell(open_set[key]["stranger_match_rate"], 4)
            line += (f"; with a third of the people out of the gallery, {absent} of them "
                     f"matched anyway, DIR {cell(open_set[key]['dir'], 4)}")
        lines.append(line)
    return "\n".join(lines)
