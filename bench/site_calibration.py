"""Self-calibration on footage without labels (tools/calibrate.py --footage) against ground truth.

    nice -n 5 .venv/bin/python bench/site_calibration.py [--model RUN] [--seeds 11 12 13]
        [--crowd-model RUN] [--crowd-index DIR] [--crowd-set video.KEY=VALUE ...]

1. **Synthetic footage with ground truth** (tools/make_synthetic_video.py: 4 cameras, 60 s, 20
   people of whom 5 never appear, det.txt boxes; one draw per seed), indexed with ``--model``.
   Every crop's person is the ground-truth box it overlaps (IoU >= 0.5 in its frame). The
   self-calibration (:func:`reid.index.site_calibration.calibrate_footage`) sees no labels;
   the reference is calibrated on the labels: impostor pairs are crops of two different
   people, in any cameras; genuine pairs one person's crops in two cameras. Per-pair thresholds
   at false-match rates 1e-2 and 1e-3, both observed on every labelled pair (the reference is
   what labels of this very footage give: its observed rate is the requested one, up to ties). The gallery-level rule (tracks, at
   FPIR 0.1 and 0.01) against the rule :func:`reid.calibration.labelled_gallery_rules` fits on
   the labels, both read for the index's number of tracks and observed as a search meets them:
   each probe against every track mean of the index not of its person (crops of the footage,
   and the query photos, which come from a camera not in the footage; an absent person's photo
   meets every track). The reference rule is fitted on the crops it is then observed with
   (what labels of this very footage would give); the self-calibrated one saw no labels.
   Also checked: how many of the pairs the self-calibration took for two people are two
   people, and how many it dropped as one person tracked twice are one.
2. **The shared crowd clip** (../shared/data/video/crowd.avi, no labels), indexed once with
   ``--crowd-model`` at the library's settings (``--crowd-set`` changes them; the index is
   kept in ``--crowd-index`` and reused): how many impostor pairs the co-occurrence rule yields,
   and the self-calibrated thresholds beside the model's own (its spec's calibration).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reid.utils.quiet import start_tensorflow_quietly  # noqa: E402

CAMERAS, SECONDS, PEOPLE, ABSENT = 4, 60.0, 20, 5
FARS = (1e-2, 1e-3)
FPIRS = (0.1, 0.01)
CROWD = ROOT.parent / "shared" / "data" / "video" / "crowd.avi"


def default_model() -> pathlib.Path:
    """The footage benchmark's model once made, else the demo recipe's."""
    for candidate in (ROOT / "runs" / "footage-bench-model",
                      ROOT / "runs" / "demo-recipe" / "zg800" / "s1"):
        if candidate.exists():
            return candidate
    return ROOT / "runs" / "footage-bench-model"


def _iou(box: Sequence[float], boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


class Labelled(NamedTuple):
    """The footage entries of an index with their ground-truth people."""

    crop_ids: np.ndarray
    crop_pids: np.ndarray  # -1: no ground-truth box overlaps it
    crop_cams: np.ndarray
    crop_tracks: list[tuple[str, int]]
    track_keys: list[tuple[str, int]]
    track_ids: np.ndarray  # the mean entry of each track
    track_pids: np.ndarray  # the majority of its crops' people, -1 unknown


def label_entries(gallery, footage: pathlib.Path, cameras: list[str]) -> Labelled:
    from reid.video.mot import read_mot

    gt = {}
    for camera in cameras:
        for r in read_mot(footage / camera / "gt" / "gt.txt").rows:
            gt.setdefault((camera, r.frame), []).append((r.id, r.corners()))
    entries = gallery.footage_entries(gallery.ids.tolist())
    crops = sorted((e for e in entries.values() if e.kind == "crop"), key=lambda e: e.id)
    pids = []
    for e in crops:
        rows = gt.get((e.camera, e.frame + 1), [])  # MOT frames count from 1
        if not rows:
            pids.append(-1)
            continue
        ious = _iou(e.box, np.array([b for _, b in rows], np.float64))
        pids.append(rows[int(np.argmax(ious))][0] if ious.max() >= 0.5 else -1)
    camid = {c: i for i, c in enumerate(cameras)}
    crop_tracks = [(e.camera, e.track) for e in crops]
    means = sorted((e for e in entries.values() if e.kind == "track"), key=lambda e: e.id)
    track_pids = []
    for e in means:
        own = [p for p, k in zip(pids, crop_tracks) if k == (e.camera, e.track) and p >= 0]
        track_pids.append(max(set(own), key=own.count) if own else -1)
    return Labelled(np.array([e.id for e in crops]), np.array(pids),
                    np.array([camid[e.camera] for e in crops]), crop_tracks,
                    [(e.camera, e.track) for e in means], np.array([e.id for e in means]),
                    np.array(track_pids))


def self_pair_truth(gallery, labelled: Labelled) -> dict[str, int]:
    """How many of the self-calibration's pairs the ground truth agrees with."""
    from reid.index.site_calibration import (MIN_BOX_OVERLAP, boxes_meet,
                                             co_occurring_pairs)

    person = dict(zip(labelled.track_keys, labelled.track_pids.tolist()))
    entries = gallery.footage_entries(gallery.ids.tolist())
    samples: dict = {}
    for e in entries.values():
        samples.setdefault((e.camera, e.track), []).append((e.time, e.box))
    out = {"kept": 0, "kept_same": 0, "dropped": 0, "dropped_same": 0}
    for a, b in co_occurring_pairs(gallery.footage_tracks().values()):
        ka, kb = (a.camera, a.track), (b.camera, b.track)
        same = person.get(ka, -1) >= 0 and person.get(ka) == person.get(kb)
        side = "dropped" if boxes_meet(samples[ka], samples[kb], MIN_BOX_OVERLAP) else "kept"
        out[side] += 1
        out[f"{side}_same"] += int(same)
    return out


def ground_truth_pairs(vectors: np.ndarray, pids: np.ndarray, cams: np.ndarray,
                       people: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(genuine: one person in two cameras, impostor: two people) scores among ``people``."""
    keep = np.isin(pids, people)
    v, p, c = vectors[keep], pids[keep], cams[keep]
    scores = v @ v.T
    upper = np.triu(np.ones_like(scores, bool), 1)
    same = p[:, None] == p[None, :]
    genuine = scores[upper & same & (c[:, None] != c[None, :])]
    impostor = scores[upper & ~same]
    return genuine, impostor


def observed_fpir(rule, probes: np.ndarray, probe_pids: np.ndarray, means: np.ndarray,
                  mean_pids: np.ndarray, fpir: float) -> tuple[float, int]:
    """(share of probes whose best score against the track means not of their person reaches
    the rule's threshold for that many tracks, probes)."""
    scores = probes @ means.T
    hits = []
    for row, pid in zip(scores, probe_pids):
        others = mean_pids != pid
        size = int(others.sum())
        hits.append(bool(row[others].max() >= rule.threshold(size, fpir)))
    return float(np.mean(hits)), len(hits)


def synthetic_draw(model: pathlib.Path, seed: int, work: pathlib.Path, people: int = PEOPLE,
                   absent: int = ABSENT) -> dict:
    from reid.calibration import calibrate, labelled_gallery_rules
    from reid.index.open import open_gallery
    from reid.index.query import embed_queries
    from reid.index.site_calibration import calibrate_footage
    from reid.synthetic.footage import make_synthetic_footage, read_footage_manifest
    from reid.video.ingest import index_footage, video_inputs

    footage, index = work / f"footage-{seed}", work / f"index-{seed}"
    make_synthetic_footage(footage, cameras=CAMERAS, people=people, absent=absent,
                           seconds=SECONDS, seed=seed)
    manifest = read_footage_manifest(footage)
    cameras = [c["name"] for c in manifest["cameras"]]
    inputs = video_inputs([footage / f"{c}.avi" for c in cameras], cameras,
                          [c["start"] for c in manifest["cameras"]],
                          [footage / c / "det" / "det.txt" for c in cameras])
    index_footage(inputs, index, model, progress=False, log=lambda _: None)
    gallery, embedder, _ = open_gallery(index)
    labelled = label_entries(gallery, footage, cameras)
    made = calibrate_footage(gallery, f"seed {seed}")
    site = made.calibration
    truth = self_pair_truth(gallery, labelled)

    vectors = np.asarray(gallery.vectors_of(labelled.crop_ids.tolist()), np.float64)
    known = labelled.crop_pids >= 0
    present = np.unique(labelled.crop_pids[known])
    genuine, impostor = ground_truth_pairs(vectors, labelled.crop_pids, labelled.crop_cams,
                                           present)
    reference = calibrate(genuine, impostor, "ground truth")
    per_pair = {}
    for far in FARS:
        key = f"far={far:g}"
        per_pair[far] = {
            name: None if key not in thresholds else (
                thresholds[key], int(np.sum(impostor >= thresholds[key])), len(impostor),
                int(np.sum(genuine >= thresholds[key])), len(genuine))
            for name, thresholds in (("self", site.thresholds),
                                     ("truth", reference.thresholds))}

    truth_rules = labelled_gallery_rules(vectors[known], labelled.crop_pids[known],
                                         labelled.crop_cams[known], seed=seed)
    means = np.asarray(gallery.vectors_of(labelled.track_ids.tolist()), np.float64)
    tracks = len(labelled.track_keys)
    photos = [footage / p["query"] for p in manifest["identities"]]
    photo_pids = np.array([int(p["id"]) for p in manifest["identities"]])
    photo_vectors = np.asarray(embed_queries(embedder, photos), np.float64)
    gallery_level = {}
    for name, rule in (("self", site.gallery.get("tracks")),
                       ("truth", truth_rules.get("tracks"))):
        for fpir in FPIRS:
            if rule is None or not min(rule.fpirs) <= fpir * (1 + 1e-9):
                gallery_level[(name, fpir)] = None
                continue
            crops = observed_fpir(rule, vectors[known], labelled.crop_pids[known], means,
                                  labelled.track_pids, fpir)
            photo = observed_fpir(rule, photo_vectors, photo_pids, means, labelled.track_pids,
                                  fpir)
            gallery_level[(name, fpir)] = (rule.threshold(tracks, fpir), crops, photo, rule)
    return {"seed": seed, "pairs": made.pairs, "site": site, "truth": truth,
            "per_pair": per_pair, "gallery": gallery_level, "tracks": tracks,
            "labelled": f"{int(known.sum())} of {len(known)} crops",
            "present": len(present)}


def _rate(events: int, pairs: int) -> str:
    return "-" if not pairs else f"{events / pairs:.5f} ({events}/{pairs:,})"


def report_synthetic(draws: list[dict]) -> None:
    print("\n### Synthetic footage: pairs\n")
    print("| seed | tracks | crops with a person | pairs seen at once: kept (one person) | "
          "dropped (one person) | impostor crop pairs | crop-to-track | genuine pairs |")
    print("|---|---|---|---|---|---|---|---|")
    for d in draws:
        p, t = d["pairs"], d["truth"]
        print(f"| {d['seed']} | {p.tracks} | {d['labelled']} | {t['kept']} ({t['kept_same']}) | "
              f"{t['dropped']} ({t['dropped_same']}) | {len(p.impostor):,} | "
              f"{len(p.track_impostor):,} | {len(p.genuine):,} |")
    print("\n### Per pair: requested against observed false-match rate (every labelled pair: "
          "impostors two people in any cameras, genuine one person in two cameras)\n")
    print("| seed | requested | self: threshold | observed FAR | TAR | ground truth: threshold "
          "| observed FAR | TAR |")
    print("|---|---|---|---|---|---|---|---|")
    totals = {(far, name): [0, 0, 0, 0] for far in FARS for name in ("self", "truth")}
    for d in draws:
        for far in FARS:
            cells = []
            for name in ("self", "truth"):
                found = d["per_pair"][far][name]
                if found is None:
                    cells += ["not resolved", "-", "-"]
                    continue
                t, fa, ni, ta, ng = found
                cells += [f"{t:.4f}", _rate(fa, ni), _rate(ta, ng)]
                total = totals[(far, name)]
                for i, v in enumerate((fa, ni, ta, ng)):
                    total[i] += v
            print(f"| {d['seed']} | {far:g} | " + " | ".join(cells) + " |")
    for far in FARS:
        cells = []
        for name in ("self", "truth"):
            fa, ni, ta, ng = totals[(far, name)]
            cells += ["", _rate(fa, ni), _rate(ta, ng)]
        print(f"| all | {far:g} | " + " | ".join(cells) + " |")
    print("\n### Gallery level (tracks): thresholds for the index's tracks, and the share of "
          "probes reported present against the tracks not of their person\n")
    print("| seed | tracks | FPIR | self: threshold | observed (crops) | observed (photos) | "
          "ground truth: threshold | observed (crops) | observed (photos) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for d in draws:
        for fpir in FPIRS:
            cells = []
            for name in ("self", "truth"):
                found = d["gallery"][(name, fpir)]
                if found is None:
                    cells += ["not resolved", "-", "-"]
                else:
                    t, crops, photo, _ = found
                    cells += [f"{t:.4f}", f"{crops[0]:.3f} of {crops[1]}",
                              f"{photo[0]:.3f} of {photo[1]}"]
            print(f"| {d['seed']} | {d['tracks']} | {fpir:g} | " + " | ".join(cells) + " |")
    for d in draws:
        rule = d["site"].gallery.get("tracks")
        truth = d["gallery"].get(("truth", FPIRS[0]))
        print(f"seed {d['seed']}: self rule {'none' if rule is None else rule.describe()} "
              f"(rates {', '.join(f'{f:g}' for f in rule.fpirs) if rule else '-'}); "
              f"ground-truth rule "
              f"{'none' if truth is None else truth[3].describe()}")


def crowd(model: pathlib.Path, index: pathlib.Path, overrides: list[str]) -> None:
    from reid.calibration import CalibrationError, spec_calibration
    from reid.config import config_from_dict
    from reid.index import GalleryIndex, is_gallery_index
    from reid.index.decision import decision_gallery
    from reid.index.open import open_model
    from reid.index.site_calibration import calibrate_footage, format_footage_calibration
    from reid.video.ingest import index_footage, video_inputs

    if not is_gallery_index(index):
        config = config_from_dict({}, "<defaults>", overrides).video
        print(f"indexing {CROWD} with {model} (video settings: {overrides or 'the defaults'})")
        report = index_footage(video_inputs([CROWD], ["crowd"]), index, model, config=config,
                               progress=False, log=lambda _: None)
        print(report.format())
    else:
        print(f"reusing the index {index}")
    gallery = GalleryIndex.load(index)
    size = decision_gallery(gallery)[1]
    try:
        made = calibrate_footage(gallery, str(index))
    except CalibrationError as exc:
        print(f"\n### Crowd clip ({CROWD.name}): {exc}")
        return
    print(f"\n### Crowd clip ({CROWD.name}), model {gallery.model.model_dir}\n")
    print(format_footage_calibration(made, size))
    missing = made.missing()
    print(f"enough for the default decisions: {'yes' if missing is None else 'no: ' + missing}")
    embedder = open_model(gallery, model, where=str(index)).embedder
    own = spec_calibration(embedder.spec, str(model))
    if own is None:
        print("the model's own calibration: none")
        return
    print(f"the model's own calibration ({own.source}):")
    for key, t in own.thresholds.items():
        if key.startswith("far="):
            print(f"  per pair: threshold {t:.4f} at false-match rate {key.split('=')[1]}")
    rule = own.gallery.get("tracks")
    for fpir in FPIRS:
        if rule is not None and min(rule.fpirs) <= fpir * (1 + 1e-9):
            print(f"  gallery of {size:,} tracks: threshold {rule.threshold(size, fpir):.4f} at "
                  f"{fpir:g} of absent people reported present")
    site_scores = np.concatenate([made.pairs.impostor, made.pairs.genuine])
    print(f"crop-pair scores on the clip: impostor median {np.median(made.pairs.impostor):.4f}, "
          f"genuine median {np.median(made.pairs.genuine):.4f}, all from "
          f"{site_scores.min():.4f} to {site_scores.max():.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=pathlib.Path, default=default_model(),
                        help="the model indexing the synthetic footage")
    parser.add_argument("--seeds", type=int, nargs="*", default=[11, 12, 13],
                        help="one synthetic draw per seed (none: the crowd clip only)")
    parser.add_argument("--people", type=int, default=PEOPLE,
                        help=f"people per draw (default {PEOPLE}; more make busier scenes)")
    parser.add_argument("--absent", type=int, default=ABSENT,
                        help=f"of them, never in the footage (default {ABSENT})")
    parser.add_argument("--crowd-model", type=pathlib.Path,
                        help="the model indexing the crowd clip (default: --model)")
    parser.add_argument("--crowd-index", type=pathlib.Path,
                        help="the crowd clip's index, made once and reused (default: "
                             "runs/site-calibration/crowd-<model name>)")
    parser.add_argument("--crowd-set", nargs="*", default=[], metavar="video.KEY=VALUE",
                        help="video settings for indexing the crowd clip")
    args = parser.parse_args(argv)
    start_tensorflow_quietly()
    from reid.utils.provenance import source_commit

    print(f"code {source_commit(ROOT)}; model {args.model}; seeds {args.seeds}; {CAMERAS} "
          f"cameras, {SECONDS:g} s, {args.people} people of whom {args.absent} never appear, "
          f"det.txt boxes")
    draws = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            draws.append(synthetic_draw(args.model, seed, pathlib.Path(tmp), args.people,
                                        args.absent))
            print(f"seed {seed}: indexed, {draws[-1]['pairs'].tracks} tracks", flush=True)
    if draws:
        report_synthetic(draws)
    crowd_model = args.crowd_model or args.model
    slug = "_".join(crowd_model.resolve().parts[-3:])
    index = args.crowd_index or ROOT / "runs" / "site-calibration" / f"crowd-{slug}"
    if CROWD.exists():
        crowd(crowd_model, index, args.crowd_set)
    else:
        print(f"{CROWD}: not found; the crowd clip's part is skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
