"""Embed a dataset's query and gallery and score them under the Market-1501 protocol.

Training (periodic validation) and ``tools/evaluate.py`` both go through here, so a number in
TensorBoard and a number in the evaluation table are computed the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from reid.calibration import (Calibration, CalibrationError, GalleryRule, calibrate, fpir_text,
                              labelled_gallery_rules, observed_rates, open_set_rates)
from reid.config import EvalConfig
from reid.data.records import ImageRecord, ReidDataset
from reid.evaluation import (alpha_query_expansion, embedding_spread, evaluate_rank,
                             flip_average, pairwise_distance, re_ranking)
from reid.evaluation.errors import EvaluationError
from reid.evaluation.open_set import fpir_and_dir
from reid.evaluation.verification import (OPEN_SET_LEFT_OUT, REPORTED_FPIRS, dir_at_far,
                                          open_set_gallery_size, open_set_split, open_set_top1,
                                          pair_scores)
from reid.utils.io import atomic_path


@dataclasses.dataclass(frozen=True)
class Features:
    """Query and gallery embeddings with their identities and cameras (an ``.npz`` on disk)."""

    query: np.ndarray
    gallery: np.ndarray
    q_pids: np.ndarray
    g_pids: np.ndarray
    q_camids: np.ndarray
    g_camids: np.ndarray

    def save(self, path) -> None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **dataclasses.asdict(self))

    @classmethod
    def load(cls, path) -> Features:
        """Read an ``.npz`` with the six arrays; the error names the file and what is missing."""
        try:
            loaded = np.load(path)
        except (OSError, EOFError, ValueError) as exc:  # ValueError: not a NumPy file at all
            raise EvaluationError(f"{path}: cannot read features: not an .npz archive of "
                                  f"arrays ({exc})") from None
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise EvaluationError(f"{path}: cannot read features: a single array, not an .npz "
                                  f"archive (evaluation saves one)", field="save_features")
        try:
            with loaded as data:
                missing = [f.name for f in dataclasses.fields(cls) if f.name not in data.files]
                if missing:
                    raise EvaluationError(f"{path}: missing arrays {', '.join(missing)} "
                                          f"(expected query, gallery, q_pids, g_pids, q_camids, "
                                          f"g_camids)")
                return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})
        except (OSError, EOFError) as exc:
            raise EvaluationError(f"{path}: cannot read features ({exc})") from None


def _embed(embedder, records: Sequence[ImageRecord], batch_size: int, mirrored: bool,
           progress: bool) -> np.ndarray:
    from reid.data.pipeline import eval_dataset

    height, width = embedder.input_size
    paths = [r.path for r in records]
    return embedder.embed_batches(eval_dataset(paths, height, width, batch_size, flip=mirrored),
                                  progress)


def embed_records(embedder, records: Sequence[ImageRecord], batch_size: int, flip: bool = False,
                  progress: bool = True) -> np.ndarray:
    """Embeddings of ``records`` in order; with ``flip`` the mean of image and mirror image."""
    feats = _embed(embedder, records, batch_size, False, progress)
    if flip:
        feats = flip_average(feats, _embed(embedder, records, batch_size, True, progress))
    return feats


def extract_features(embedder, dataset: ReidDataset, cfg: EvalConfig,
                     progress: bool = True) -> Features:
    return features_of_records(embedder, dataset.query, dataset.gallery, cfg, progress)


def features_of_records(embedder, query: Sequence[ImageRecord], gallery: Sequence[ImageRecord],
                        cfg: EvalConfig, progress: bool = True) -> Features:
    """Embeddings and labels of any query/gallery pair of record lists, not only a dataset's."""
    def ids(records, field):
        return np.array([getattr(r, field) for r in records], dtype=np.int64)

    return Features(embed_records(embedder, query, cfg.batch_size, cfg.flip, progress),
                    embed_records(embedder, gallery, cfg.batch_size, cfg.flip, progress),
                    ids(query, "pid"), ids(gallery, "pid"), ids(query, "camid"),
                    ids(gallery, "camid"))


def features_as_queried_and_scored(embedder, dataset: ReidDataset, cfg: EvalConfig,
                                   progress: bool = True) -> tuple[Features, Features]:
    """(features as a query embeds images: no flip; features as ``cfg`` scores them), sharing
    the unflipped pass. Thresholds are calibrated on the first: queries and indexes never flip."""
    plain = features_of_records(embedder, dataset.query, dataset.gallery,
                                dataclasses.replace(cfg, flip=False), progress)
    if not cfg.flip:
        return plain, plain
    scored = dataclasses.replace(
        plain,
        query=flip_average(plain.query, _embed(embedder, dataset.query, cfg.batch_size, True,
                                               progress)),
        gallery=flip_average(plain.gallery, _embed(embedder, dataset.gallery, cfg.batch_size,
                                                   True, progress)))
    return plain, scored


def calibrate_features(features: Features, source: str) -> Calibration:
    """Per-pair match thresholds from every pair of ``features`` the ranking protocol scores
    (:func:`reid.evaluation.verification.pair_scores`), and gallery-level rules with every
    image, query or gallery, a probe (:func:`reid.calibration.labelled_gallery_rules`)."""
    genuine, impostor = pair_scores(features.query, features.gallery, features.q_pids,
                                    features.g_pids, features.q_camids, features.g_camids)
    rules = labelled_gallery_rules(np.concatenate([features.query, features.gallery]),
                                   np.concatenate([features.q_pids, features.g_pids]),
                                   np.concatenate([features.q_camids, features.g_camids]))
    return calibrate(genuine, impostor, source, rules)


def calibrated_figures(calibration: Calibration, features: Features, seed: int = 0,
                       draws: int = 1, fpirs: Sequence[float] = REPORTED_FPIRS
                       ) -> dict[str, Any]:
    """What a model's calibrated decisions do on ``features`` (unflipped, as queries are
    embedded), a query's best result against a gallery from which a seeded third of the
    identities is left out (``draws`` draws, seeds ``seed``, ``seed + 1``, ...):

    * ``rates``: each per-pair threshold's false-match and true-match rate on the pairs
      (:func:`reid.calibration.observed_rates`);
    * ``open_set``: each per-pair threshold's FPIR (the share of left-out people whose best
      result reaches it) and DIR (:func:`reid.calibration.open_set_rates`), means over the draws;
    * ``gallery``: when the calibration holds a gallery rule for crops, its threshold for the
      gallery's N at each requested rate in ``fpirs``, and the FPIR and DIR observed there
      (:func:`gallery_figures`).

    The per-draw values are kept beside the means: one draw at FPIR 1e-2 rests on a handful of
    left-out queries. ``open_set`` and ``gallery`` are absent when the split has too few
    identities to leave some out.
    """
    if draws < 1:
        raise ValueError(f"draws {draws}: expected at least one draw of the left-out identities")
    labels = (features.q_pids, features.g_pids, features.q_camids, features.g_camids)
    figures: dict[str, Any] = {"source": calibration.source, "rates": observed_rates(
        calibration, *pair_scores(features.query, features.gallery, *labels))}
    try:
        splits = [open_set_split(features.g_pids, OPEN_SET_LEFT_OUT, seed + d)
                  for d in range(draws)]
    except ValueError:  # too few identities to leave some out
        return figures
    tops = [open_set_top1(features.query, features.gallery, *labels, left_out)
            for left_out in splits]
    per_draw = [open_set_rates(calibration, *top) for top in tops]
    figures["open_set"] = {
        key: {"threshold": t,
              **{name: _mean([d[key][name] for d in per_draw]) for name in ("fpir", "dir")},
              "per_draw": {name: [d[key][name] for d in per_draw] for name in ("fpir", "dir")}}
        for key, t in calibration.thresholds.items()}
    rule = calibration.gallery.get("crops")
    if rule is not None:
        figures["gallery"] = gallery_figures(
            rule, [(seed + d, open_set_gallery_size(features.g_pids, left_out), *top)
                   for d, (left_out, top) in enumerate(zip(splits, tops))], fpirs)
    return figures


def gallery_figures(rule: GalleryRule,
                    draws: Sequence[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]],
                    fpirs: Sequence[float] = REPORTED_FPIRS) -> dict[str, Any]:
    """A gallery rule checked on open-set draws: for each draw (seed, N, mated best scores,
    whether each is right, unmated best scores) and requested rate, the rule's threshold for
    that N, the FPIR observed (the share of unmated queries whose best score reaches it) and
    the DIR (:func:`reid.evaluation.open_set.fpir_and_dir`); beside them ``oracle_dir``, the
    DIR at the threshold set on that draw's unmated queries themselves (the best a threshold
    could do; None when they are fewer than ``1 / fpir``). A rate outside the rule's is None
    throughout. Means over the draws, and the per-draw values."""
    rates: dict[str, Any] = {}
    for fpir in fpirs:
        rows: dict[str, list] = {name: [] for name in
                                 ("threshold", "fpir", "dir", "oracle_dir", "reported_present")}
        for _, size, mated, correct, unmated in draws:
            try:
                threshold: float | None = rule.threshold(size, fpir)
            except CalibrationError:  # a rate the calibration data could not resolve
                threshold = None
            observed, found = (None, None) if threshold is None else (
                fpir_and_dir(mated, correct, unmated, threshold))
            enough = len(mated) and len(unmated) * fpir >= 1
            rows["threshold"].append(threshold)
            rows["fpir"].append(_finite(observed))
            rows["dir"].append(_finite(found))
            rows["oracle_dir"].append(dir_at_far(mated, correct, unmated, fpir)[0]
                                      if enough else None)
            rows["reported_present"].append(
                None if threshold is None else int(np.count_nonzero(unmated >= threshold)))
        rates[fpir_text(fpir)] = {
            **{name: _mean(rows[name]) for name in ("threshold", "fpir", "dir", "oracle_dir")},
            "per_draw": rows}
    return {"kind": rule.kind, "rule": rule.describe(), "rule_fpirs": list(rule.fpirs),
            "left_out": OPEN_SET_LEFT_OUT,
            "draws": [{"seed": s, "gallery_size": size, "present": len(mated),
                       "absent": len(unmated)} for s, size, mated, _, unmated in draws],
            "rates": rates}


def _finite(value: float | None) -> float | None:
    """None for a figure a side without queries cannot give (NaN), so that JSON holds null."""
    return None if value is None or not np.isfinite(value) else float(value)


def _mean(values: Sequence[float | None]) -> float | None:
    """The mean of the values a draw could give, None when none could."""
    given = [v for v in values if v is not None]
    return float(np.mean(given)) if given else None


def _summary(result: dict[str, Any]) -> dict[str, float]:
    cmc = result["cmc"]
    return {"mAP": float(result["mAP"]), "rank1": float(cmc[0]),
            "rank5": float(cmc[min(4, len(cmc) - 1)]), "rank10": float(cmc[min(9, len(cmc) - 1)]),
            "mINP": float(result["mINP"]), "num_valid_queries": int(result["num_valid_queries"])}


def score_features(features: Features, cfg: EvalConfig) -> dict[str, Any]:
    """mAP, rank-1/5/10 and mINP; a ``"rerank"`` entry with the same keys when ``cfg.rerank``;
    ``"embedding_spread"`` of all the features (see :mod:`reid.evaluation.collapse`)."""
    query, gallery = features.query, features.gallery
    spread = embedding_spread(np.concatenate([query, gallery]))
    if cfg.query_expansion > 0:
        query = alpha_query_expansion(query, gallery, cfg.query_expansion, cfg.qe_alpha)
    args = (features.q_pids, features.g_pids, features.q_camids, features.g_camids)
    distmat = pairwise_distance(query, gallery, metric=cfg.distance)
    metrics: dict[str, Any] = _summary(evaluate_rank(distmat, *args, max_rank=cfg.max_rank))
    metrics.update(num_query=len(query), num_gallery=len(gallery), embedding_spread=spread)
    if cfg.rerank:
        reranked = re_ranking(query, gallery, cfg.rerank_k1, cfg.rerank_k2, cfg.rerank_lambda)
        metrics["rerank"] = _summary(evaluate_rank(reranked, *args, max_rank=cfg.max_rank))
    return metrics


def evaluate_embedder(embedder, dataset: ReidDataset, cfg: EvalConfig,
                      progress: bool = True) -> dict[str, Any]:
    return score_features(extract_features(embedder, dataset, cfg, progress), cfg)


def format_metrics(rows: dict[str, dict[str, Any]]) -> str:
    """A small table, one row per named result (e.g. "trained", "trained + re-ranking")."""
    header = f"{'':<24} {'mAP':>7} {'rank-1':>7} {'rank-5':>7} {'rank-10':>7} {'mINP':>7}"
    lines = [header]
    for name, m in rows.items():
        lines.append(f"{name:<24} {m['mAP']:>7.4f} {m['rank1']:>7.4f} {m['rank5']:>7.4f} "
                     f"{m['rank10']:>7.4f} {m['mINP']:>7.4f}")
    return "\n".join(lines)


def format_verification(summary: dict[str, Any]) -> str:
    """Two lines: TAR at each reported FAR and the EER; open-set DIR at the threshold set on
    the left-out queries themselves, labelled as the oracle's figure it is (``-`` where the
    split is too small for the figure)."""
    def cell(key: str) -> str:
        value = summary.get(key)
        return "-" if value is None else f"{value:.4f}"

    tars = "  ".join(f"TAR@FAR {k.split('far')[1]} {cell(k)}" for k in summary
                     if k.startswith("tar@far"))
    dirs = ", ".join(f"DIR {cell(k)} at FPIR {k.split('fpir')[1]}" for k in summary
                     if k.startswith("dir@fpir"))
    return (f"verification ({summary['genuine_pairs']} genuine, {summary['impostor_pairs']} "
            f"impostor pairs): {tars}  EER {cell('eer')}\nopen set, a third of the identities "
            f"out of the gallery: {dirs} with the threshold set on the left-out queries "
            f"themselves (an oracle's figure, not a calibrated one)")
