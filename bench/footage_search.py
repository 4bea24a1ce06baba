"""Tracking and cross-camera search on synthetic footage, against its ground truth.

    .venv/bin/python bench/footage_search.py [--model runs/synthetic] [--cameras 4]
                                             [--people 12] [--seconds 20] [--seed 5]

1. Draws synthetic footage (tools/make_synthetic_video.py) into a temporary folder.
2. Trackers on its det.txt (what a good detector would find): ByteTrack, the project's choice,
   against OC-SORT and SORT from the same library, with motmetrics' IDF1 and identity switches.
3. Indexes the footage with ``tools/index_video.py``'s library call (det.txt detections) and
   scores tracking and cross-camera search at track level (:mod:`reid.video.scoring`), then
   answers each person's query photo and reports, over the people seen by some camera, the
   mean average precision of their tracks among the appearances (photo -> footage).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reid.utils.quiet import start_tensorflow_quietly  # noqa: E402


def average_precision(good: np.ndarray) -> float:
    """AP of one ranked list: the mean of the precision at each correct answer."""
    hits = np.flatnonzero(good)
    return float(np.mean((np.arange(len(hits)) + 1) / (hits + 1))) if len(hits) else 0.0


def compare_trackers(footage: pathlib.Path, cameras: list[str], fps: float,
                     size: tuple[int, int]) -> dict[str, dict]:
    import supervision as sv
    import trackers

    from reid.video.detector import MotDetectionFile
    from reid.video.measure import tracking_metrics
    from reid.video.mot import MotRow, read_mot

    makers = {
        "bytetrack": lambda: trackers.ByteTrackTracker(
            frame_rate=fps, track_activation_threshold=0.4, high_conf_det_threshold=0.4),
        "ocsort": lambda: trackers.OCSORTTracker(frame_rate=fps),
        "sort": lambda: trackers.SORTTracker(frame_rate=fps),
    }
    out = {}
    for name, make in makers.items():
        idf1, switches = [], 0
        for camera in cameras:
            gt = read_mot(footage / camera / "gt" / "gt.txt").rows
            det = MotDetectionFile(footage / camera / "det" / "det.txt", 40)
            tracker, rows = make(), []
            frames = max(r.frame for r in gt)
            blank = np.zeros((size[1], size[0], 3), np.uint8)  # boxes are clipped to it
            for f in range(frames):
                d = det.detect(blank, f)
                found = tracker.update(sv.Detections(xyxy=d.boxes, confidence=d.scores),
                                       timestamp=f / fps)
                rows += [MotRow.from_corners(f + 1, int(i) + 1, *b)
                         for b, i in zip(found.xyxy, found.tracker_id) if i >= 0]
            m = tracking_metrics(gt, rows)
            idf1.append(m["idf1"])
            switches += int(m["num_switches"])
        out[name] = {"idf1": float(np.mean(idf1)), "switches": switches}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=pathlib.Path, default=ROOT / "runs" / "synthetic")
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--people", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    start_tensorflow_quietly()
    from reid.index.decision import match_threshold
    from reid.index.open import open_gallery
    from reid.index.query import query_footage
    from reid.utils.provenance import source_commit
    from reid.video.ingest import index_footage, video_inputs
    from reid.video.measure import track_identities
    from reid.video.mot import read_mot
    from reid.video.scoring import score_footage
    from reid.synthetic.footage import make_synthetic_footage, read_footage_manifest

    print(f"code {source_commit(ROOT)}; model {args.model}")
    with tempfile.TemporaryDirectory() as tmp:
        footage = pathlib.Path(tmp) / "footage"
        print(make_synthetic_footage(footage, cameras=args.cameras, people=args.people,
                                     seconds=args.seconds, seed=args.seed).text())
        manifest = read_footage_manifest(footage)
        cameras = [c["name"] for c in manifest["cameras"]]
        print("\n| tracker (det.txt) | IDF1 | identity switches |\n|---|---|---|")
        for name, m in compare_trackers(footage, cameras, float(manifest["fps"]),
                                        (manifest["width"], manifest["height"])).items():
            print(f"| {name} | {m['idf1']:.3f} | {m['switches']} |")

        index, tracks_dir = pathlib.Path(tmp) / "index", pathlib.Path(tmp) / "tracks"
        inputs = video_inputs([footage / f"{c}.avi" for c in cameras], cameras,
                              [c["start"] for c in manifest["cameras"]],
                              [footage / c / "det" / "det.txt" for c in cameras])
        index_footage(inputs, index, args.model, progress=False, save_tracks=tracks_dir,
                      log=lambda _: None)
        scores = score_footage(index, tracks_dir,
                               {c: footage / c / "gt" / "gt.txt" for c in cameras})
        print()
        print(scores.format())

        # Photo -> footage: each person's query photo against every appearance.
        gallery, embedder, model_dir = open_gallery(index)
        person_of = {}
        for camera in cameras:
            people = track_identities(read_mot(footage / camera / "gt" / "gt.txt").rows,
                                      read_mot(tracks_dir / f"{camera}.txt").rows)
            person_of.update({(camera, t - 1): p for t, p in people.items()})
        total = len(gallery.footage_tracks())
        threshold = match_threshold(gallery, embedder.spec, str(model_dir))
        people = manifest["identities"]
        results = query_footage(gallery, embedder, [footage / p["query"] for p in people],
                                top_k=total, threshold=threshold)
        aps, top1, true_appearances, matched = [], [], 0, 0
        for person, result in zip(people, results):
            good = np.array([person_of.get((a.camera, a.track)) == person["id"]
                             for a in result.appearances], bool)
            if not good.any():
                continue
            aps.append(average_precision(good))
            top1.append(bool(good[0]))
            true_appearances += int(good.sum())
            matched += sum(bool(a.match) for a, g in zip(result.appearances, good) if g)
        wrong = sum(bool(a.match) for person, result in zip(people, results)
                    for a in result.appearances
                    if person_of.get((a.camera, a.track)) != person["id"])
        shown = "none" if threshold is None else f"{threshold.value:.3f}"
        print(f"photo -> footage: mAP {np.mean(aps):.3f}, rank-1 {np.mean(top1):.3f} over "
              f"{len(aps)} people; at the calibrated threshold ({shown}) {matched} of "
              f"{true_appearances} true appearances match, and {wrong} wrong ones")
    return 0


if __name__ == "__main__":
    sys.exit(main())
