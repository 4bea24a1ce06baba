"""The end-to-end demo behind ``make demo``: data, training, evaluation, index, query, summary.

Each step reuses what an earlier run left (the dataset when complete, the training run through
``resume``), so running the demo twice is cheap and still ends with the full summary.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from collections.abc import Callable
from typing import Any

from reid.config import Config, load_config
from reid.run_layout import RunLayout
from reid.utils.io import atomic_write_text

DEMO_CONFIG = pathlib.Path("configs/synthetic.yaml")


@dataclasses.dataclass(frozen=True)
class DemoPaths:
    """Where the demo writes: the dataset, and the run folder, which also holds the gallery
    index and the ranked-list pictures so that one folder is the whole result."""

    data: pathlib.Path = pathlib.Path("data/synthetic")
    run: pathlib.Path = pathlib.Path("runs/synthetic")

    @property
    def index(self) -> pathlib.Path:
        return self.run / "gallery_index"

    @property
    def pictures(self) -> pathlib.Path:
        return self.run / "queries"

    @property
    def footage(self) -> pathlib.Path:
        return self.data.with_name(self.data.name + "_video")

    @property
    def footage_index(self) -> pathlib.Path:
        return self.run / "footage_index"


def untrained_embedder(cfg: Config, num_classes: int):
    """The model training starts from (same config and seed), as the baseline to beat."""
    import keras

    from reid.modeling import Embedder, build_reid_model

    keras.utils.set_random_seed(cfg.train.seed)
    models = build_reid_model(cfg.model, (cfg.data.height, cfg.data.width, 3), num_classes)
    return Embedder(models.export_model(), {"config_name": cfg.name, "epoch": 0})


def training_speed(history: list[dict[str, Any]]) -> float:
    """Training images per second over every epoch of a run's history (0 when empty)."""
    seconds = sum(h["seconds"] for h in history)
    images = sum(h["images_per_second"] * h["seconds"] for h in history)
    return images / seconds if seconds > 0 else 0.0


#: The demo's synthetic dataset: 260 training identities (60 of them held out for validation
#: and calibration, configs/synthetic.yaml) and 100 test identities. In the demo's 800 steps
#: 200 training identities, each seen more often, learned more than 300 or 600
#: (docs/BENCHMARKS.md); longer runs want more of them. Sixty validate: the drawn people come
#: in look-alike colour groups, and the gallery-level thresholds rest on how many look-alikes
#: the calibration people hold (about 21 pairs among 60, 2 among 20).
DEMO_IDS, DEMO_TEST_IDS = 360, 100


def run_demo(config_path: pathlib.Path = DEMO_CONFIG, paths: DemoPaths | None = None,
             overrides: tuple[str, ...] = (), synthetic_ids: int = DEMO_IDS,
             synthetic_test_ids: int = DEMO_TEST_IDS, progress: bool = True,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every step and return the metrics; ``log`` receives the human-readable report."""
    from reid.data import load_dataset
    from reid.synthetic.crops import generate_dataset
    from reid.calibration import format_observed_rates, spec_calibration
    from reid.engine.evaluator import (calibrated_figures, evaluate_embedder,
                                       features_as_queried_and_scored, format_metrics,
                                       score_features)
    from reid.engine.trainer import Trainer, prepare_run_dir, training_dataset
    from reid.modeling import Embedder

    paths = paths or DemoPaths()
    run = RunLayout(paths.run)
    started = time.perf_counter()
    seconds: dict[str, float] = {}  # each step's wall time, for the summary and bench/demo.py
    lap = [started]

    def step_done(name: str) -> None:
        now = time.perf_counter()
        seconds[name] = now - lap[0]
        lap[0] = now

    # Re-ranking is always shown: the summary has a row for it.
    cfg = load_config(config_path, [f"data.root={paths.data}", *overrides, "eval.rerank=true"])

    log("== 1. synthetic pedestrians")
    # Drawn at Market-1501's 128x64 whatever the training size: the pipeline resizes, and the
    # ranked-list pictures show the crops at their full size.
    summary = generate_dataset(paths.data, ids=synthetic_ids, test_ids=synthetic_test_ids, seed=0)
    log(summary.text())
    dataset = load_dataset(cfg.data)
    step_done("data")

    log("== 2. untrained model (the starting point)")
    untrained = evaluate_embedder(untrained_embedder(cfg, dataset.num_train_pids), dataset,
                                  cfg.eval, progress=progress)
    log(format_metrics({"untrained": untrained}))
    step_done("untrained")

    log(f"== 3. training {config_path} -> {paths.run}")
    resume = run.has_checkpoints
    trainer = Trainer(cfg, training_dataset(dataset, cfg),
                      prepare_run_dir(paths.run, cfg, resume), progress=progress, log=log)
    result = trainer.fit(resume=resume)
    step_done("training")

    log("== 4. trained model")
    # The trainer's last validation is this evaluation (same model, data and settings); a run
    # that was already complete has none, so it is evaluated from its exported model, through
    # Keras as training validated it: a conversion agrees to 1e-7, but a barely trained model's
    # near-ties can still rank differently, and a second run must print the same figures.
    embedder = Embedder.load(result.model_dir, runtime="keras")
    plain, scored = features_as_queried_and_scored(embedder, dataset, cfg.eval, progress)
    trained = score_features(scored, cfg.eval)
    rows = {"untrained": untrained, "untrained + re-ranking": untrained["rerank"],
            "trained": trained, "trained + re-ranking": trained["rerank"]}
    table = format_metrics(rows)
    log(table)
    calibration = spec_calibration(embedder.spec, str(result.model_dir))
    threshold_lines = []
    if calibration is not None:
        trained["calibrated"] = calibrated_figures(calibration, plain)
        threshold_lines = format_observed_rates(trained["calibrated"]).splitlines()
        log("\n".join(threshold_lines))
    step_done("trained")

    search = _index_and_query(result.model_dir, dataset, paths, log, progress)
    step_done("index_and_query")
    footage_lines, footage_scores = _footage(result.model_dir, paths, log,
                                             dataset.train[0].path)
    step_done("footage")
    seconds["total"] = time.perf_counter() - started

    metrics = {"untrained": untrained, "trained": trained, "seconds": seconds,
               "train_images_per_second": training_speed(result.history),
               "footage": {"idf1": footage_scores.mean_idf1,
                           "identity_switches": footage_scores.switches,
                           "track_map": footage_scores.track_map,
                           "track_rank1": footage_scores.track_rank1}}
    atomic_write_text(paths.run / "demo_metrics.json",
                      json.dumps(metrics, indent=1, default=float))
    log("")
    log("== summary")
    log(table)
    for line in threshold_lines:
        log(line)
    log(f"dataset:  {paths.data}")
    log(f"model:    {result.model_dir}  (TensorBoard logs: {run.logs})")
    for line in search + footage_lines:
        log(line)
    log(f"time:     {seconds['total']:.0f} s in all, training {seconds['training']:.0f} s "
        f"(this run; {metrics['train_images_per_second']:.0f} training images/s)")
    log("")
    log("each step by hand:")
    log(f"  python tools/make_synthetic.py --out {paths.data} --ids {synthetic_ids} "
        f"--test-ids {synthetic_test_ids}")
    log(f"  python tools/train.py --config {config_path} --output {paths.run}")
    log(f"  python tools/evaluate.py --model {paths.run} --data-root {paths.data} --rerank")
    log(f"  python tools/build_index.py --model {paths.run} "
        f"--images {paths.data}/bounding_box_test --index {paths.index}")
    log(f"  python tools/query.py --index {paths.index} --image {paths.data}/query/<file>.jpg "
        f"--top-k 10 --save-grid query.png")
    log(f"  python tools/make_synthetic_video.py --out {paths.footage}")
    log(f"  python tools/index_video.py --model {paths.run} --index {paths.footage_index} "
        f"--video {paths.footage}/{{A,B,C}}.avi --detections "
        f"{paths.footage}/{{A,B,C}}/det/det.txt")
    log(f"  python tools/query.py --index {paths.footage_index} --image "
        f"{paths.footage}/queries/<file>.jpg --save-sheet sheet.png --save-timeline timeline.png")
    log(f"  tensorboard --logdir {run.logs}")
    return metrics


def _index_and_query(model_dir, dataset, paths: DemoPaths, log, progress: bool = True,
                     num_queries: int = 3) -> list[str]:
    """Index the gallery, query it with the first few query images, save the ranked pictures."""
    from reid.index.build import build_gallery
    from reid.index.decision import match_threshold
    from reid.index.open import open_gallery
    from reid.index.query import format_results, query_gallery, save_results_grid

    log(f"== 5. gallery index -> {paths.index}")
    gallery_dir = pathlib.Path(dataset.root) / "bounding_box_test"
    report = build_gallery([gallery_dir], paths.index, model_dir, overwrite=True,
                           progress=progress, log=log)
    log(report.format())
    gallery, embedder, model_dir = open_gallery(paths.index)
    # One query per person, so the picture shows different people rather than one in 3 cameras;
    # the last is a training identity, who is nowhere in the gallery.
    first_of_each = {r.pid: r.path for r in reversed(dataset.query)}
    images = [first_of_each[pid] for pid in sorted(first_of_each)[:num_queries]]
    images.append(dataset.train[0].path)
    threshold = match_threshold(gallery, embedder.spec, str(model_dir))
    log(f"== 6. querying with {len(images)} images (other cameras only), the last of a person "
        f"who is not in the gallery")
    results = query_gallery(gallery, embedder, images, k=10, exclude_same_camera=True,
                            threshold=threshold)
    log(format_results([results[0], results[-1]], gallery.count))
    if threshold is not None and threshold.fpir is not None:
        log(f"(the threshold is read for this gallery's {gallery.count:,} images: at most "
            f"{threshold.fpir:g} of the people who are not in it are reported present; the "
            f"summary measures how many are)")
    paths.pictures.mkdir(parents=True, exist_ok=True)
    pictures = paths.pictures / "ranked_lists.png"
    save_results_grid(results, pictures)
    return [f"index:    {paths.index} ({gallery.count} images)",
            f"pictures: {pictures} (query, then its top 10; green = same person; faded, "
            f"behind the red bar: below the match threshold)"]


#: Query photos of the footage step: people who walk past more than one camera.
FOOTAGE_QUERIES = 2


def _footage(model_dir, paths: DemoPaths, log, absent_photo: str) -> tuple[list[str], Any]:
    """Synthetic footage of three cameras, indexed with its oracle detections (a COCO detector
    hardly fires on drawn people), queried by photo, and by ``absent_photo``, a person who is
    not in it; tracks and answers scored against its ground truth."""
    import shutil

    from reid.index.appearances import answer_text, format_appearances
    from reid.index.decision import match_threshold
    from reid.index.footage_pictures import render_sheet, render_timeline, save_picture
    from reid.index.open import open_gallery
    from reid.index.query import query_footage
    from reid.video.ingest import index_footage, video_inputs
    from reid.video.scoring import (answer_check_text, score_answers, score_footage,
                                    track_people)
    from reid.synthetic.footage import make_synthetic_footage, read_footage_manifest

    log(f"== 7. camera footage -> {paths.footage}, indexed in {paths.footage_index}")
    summary = make_synthetic_footage(paths.footage)
    log(summary.text())
    manifest = read_footage_manifest(paths.footage)
    cameras = [c["name"] for c in manifest["cameras"]]
    # The demo's own index, rebuilt each run: the model may have changed since the last.
    shutil.rmtree(paths.footage_index, ignore_errors=True)
    tracks_dir = paths.run / "footage_tracks"
    inputs = video_inputs([paths.footage / f"{c}.avi" for c in cameras], cameras,
                          [c["start"] for c in manifest["cameras"]],
                          [paths.footage / c / "det" / "det.txt" for c in cameras])
    index_footage(inputs, paths.footage_index, model_dir, progress=False, save_tracks=tracks_dir,
                  log=log)
    scores = score_footage(paths.footage_index, tracks_dir,
                           {c: paths.footage / c / "gt" / "gt.txt" for c in cameras})
    log(scores.format())
    gallery, embedder, model_dir = open_gallery(paths.footage_index)
    seen_twice = [person for person in manifest["identities"] if len(person["cameras"]) > 1]
    asked = seen_twice[:FOOTAGE_QUERIES]
    # And a person who never walked past these cameras: one of the crop gallery's people.
    images = [paths.footage / person["query"] for person in asked] + [absent_photo]
    threshold = match_threshold(gallery, embedder.spec, str(model_dir))
    results = query_footage(gallery, embedder, images, top_k=8, threshold=threshold)
    log(format_appearances(results, gallery))
    people = track_people(tracks_dir, {c: paths.footage / c / "gt" / "gt.txt" for c in cameras})
    # The absent photo's person is none of the footage's: any id it does not use.
    pids = [int(person["id"]) for person in asked] + [-1]
    checks = [answer_check_text(pid, score_answers(
        {pid: [((a.camera, a.track), bool(a.match)) for a in r.appearances]}, people,
        {-1})) for pid, r in zip(pids, results)]
    log("against the footage's ground truth:\n" + "\n".join(f"  {c}" for c in checks))
    paths.pictures.mkdir(parents=True, exist_ok=True)
    sheet, timeline = paths.pictures / "footage_sheet.png", paths.pictures / "footage_timeline.png"
    videos = gallery.footage_videos()
    save_picture(render_sheet(results, paths.footage_index, {v.video: v for v in videos}),
                 sheet)
    save_picture(render_timeline(results, videos), timeline)
    return [f"footage:  {paths.footage_index} ({len(cameras)} cameras, "
            f"{len(gallery.footage_tracks())} tracks); {scores.format().splitlines()[1]}",
            *(f"  {name}: {answer_text(r)}; truth: {check}"
              for name, r, check in zip([*(f"photo {i + 1}" for i in range(len(asked))),
                                         "absent"], results, checks)),
            f"pictures: {sheet} and {timeline} (who was seen when and where)"], scores
