"""Footage pipeline speed: read, detect, track, choose crops, embed, for every frame.

    .venv/bin/python bench/video_speed.py [--video ../shared/data/video/crowd.avi]
                                          [--model runs/bench-cuhk03-val] [--runtime auto]

The target (issue 19): at least real time for 10 fps 480x360 footage on 2 cores, every frame.
Real footage, because detection and embedding cost grows with the people found: the shared
crowd clip (1280x720, about 30-40 people in view), and the same clip scaled to 480x360 (written
once as MJPG into a temporary folder; its decode cost is MJPG's, the original's is H.264's).
Each case runs :func:`reid.video.ingest.process_video` (nothing is committed to an index) and
prints frames/s, each stage's share, detections per frame and tracks. Cases alternate round
by round, so a slower or busier machine affects them alike; the figure is the best round.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reid.utils.quiet import start_tensorflow_quietly  # noqa: E402

#: (name, frame size or None for the original, video config overrides)
CASES = (
    ("480x360, whole frame", (480, 360), {"tiles": [1, 1]}),
    ("1280x720, whole frame", None, {"tiles": [1, 1]}),
    ("1280x720, 3x2 tiles", None, {"tiles": [3, 2]}),
)
REAL_TIME_FPS = 10.0


def scaled_copy(video: pathlib.Path, size: tuple[int, int], folder: pathlib.Path) -> pathlib.Path:
    import cv2

    out = folder / f"{video.stem}-{size[0]}x{size[1]}.avi"
    source = cv2.VideoCapture(str(video))
    fps = source.get(cv2.CAP_PROP_FPS)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    while True:
        ok, frame = source.read()
        if not ok:
            break
        writer.write(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
    writer.release()
    source.release()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=pathlib.Path,
                        default=ROOT.parent / "shared" / "data" / "video" / "crowd.avi")
    parser.add_argument("--model", type=pathlib.Path, default=ROOT / "runs" / "bench-cuhk03-val",
                        help="run or model folder (a CUHK03 model: 256x128 input)")
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    if not args.video.is_file():
        print(f"error: {args.video}: video not found", file=sys.stderr)
        return 1
    start_tensorflow_quietly()
    from reid.config import VideoConfig
    from reid.modeling import load_model
    from reid.modeling.runtime import usable_cores
    from reid.utils.provenance import source_commit
    from reid.video.ingest import STAGES, VideoInput, process_video

    embedder, model_dir, note = load_model(args.model, args.runtime)
    print(note)
    print(f"code {source_commit(ROOT)}, {usable_cores()} cores")
    best: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        videos = {size: (scaled_copy(args.video, size, folder) if size else args.video)
                  for _, size, _ in CASES}
        for round_ in range(args.rounds):
            for name, size, overrides in CASES:
                config = dataclasses.replace(VideoConfig(), **overrides)
                item = VideoInput(videos[size], "bench")
                report = process_video(item, embedder, config, folder / f"index-{round_}",
                                       progress=False).report
                fps = report.frames / report.seconds
                print(f"round {round_ + 1}: {name}: {fps:.1f} frames/s")
                if name not in best or fps > best[name].frames / best[name].seconds:
                    best[name] = report
    print()
    print("| footage | frames/s | real time at 10 fps | " + " | ".join(STAGES)
          + " | detections/frame | tracks (indexed) |")
    print("|---|---|---|" + "---|" * len(STAGES) + "---|---|")
    for name, _, _ in CASES:
        r = best[name]
        fps = r.frames / r.seconds
        total = sum(r.stage_seconds.values()) or 1.0
        shares = " | ".join(f"{100 * r.stage_seconds[s] / total:.0f}%" for s in STAGES)
        print(f"| {name} | {fps:.1f} | {fps / REAL_TIME_FPS:.2f}x | {shares} | "
              f"{r.detections / r.frames:.1f} | {r.tracks} ({r.indexed_tracks}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
