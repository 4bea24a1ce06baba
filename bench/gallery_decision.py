"""Does the gallery-level decision keep its false-positive identification rate at the gallery's
size? Before (the per-pair threshold) and after, on a trained run's test split.

    .venv/bin/python bench/gallery_decision.py --run runs/cuhk03
        [--data-root ../shared/data/cuhk03] [--draws 5] [--json runs/gallery_decision.json]

The run's export holds the rules its training calibrated on its validation identities
(``data.val_ids``; resume a run trained before gallery rules existed to calibrate them). The
test split's queries search its gallery with a seeded third of the test identities left out,
``--draws`` times; then again with every crop of the training split added to the gallery as a
distractor (other people, so N grows and nothing else changes), to show the rule follows N.
For each requested FPIR the table gives the rule's threshold for that N, the FPIR observed (the
share of left-out people whose best result reaches it) and DIR (the share of present people
whose best result is their own and reaches it), means over the draws with the per-draw values in
the JSON; beside them the per-pair threshold (false-match rate 1e-2 per pair, the decision
before gallery rules), and the "oracle" DIR at a threshold set on each draw's own left-out
people, which no calibration can beat. Embeddings are computed as queries embed (no flip) and
cached in ``runs/<run>/gallery_decision_features.npz``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def embed(run: pathlib.Path, data_root: str, cache: pathlib.Path):
    """(test features, training crops' embeddings, their cameras), cached."""
    from reid.engine.evaluator import Features

    if cache.is_file():
        with np.load(cache) as saved:
            features = Features(*(saved[f.name] for f in dataclasses.fields(Features)))
            return features, saved["distractors"], saved["distractor_camids"]
    from reid.utils.quiet import start_tensorflow_quietly

    start_tensorflow_quietly()
    from reid.config import load_config
    from reid.data import load_dataset
    from reid.engine.evaluator import features_of_records
    from reid.modeling import Embedder, resolve_model_dir

    cfg = load_config(run / "config.yaml", [f"data.root={data_root}"])
    dataset = load_dataset(cfg.data)
    embedder = Embedder.load(resolve_model_dir(run), "auto")
    plain = dataclasses.replace(cfg.eval, flip=False)
    features = features_of_records(embedder, dataset.query, dataset.gallery, plain, True)
    train = features_of_records(embedder, dataset.train[:1], dataset.train, plain, True)
    np.savez(cache, **dataclasses.asdict(features), distractors=train.gallery,
             distractor_camids=train.g_camids)
    return features, train.gallery, train.g_camids


def embed_validation(run: pathlib.Path, data_root: str, cache: pathlib.Path):
    """The run's validation split (the identities its training held out), as queries embed."""
    from reid.engine.evaluator import Features

    if cache.is_file():
        return Features.load(cache)
    from reid.utils.quiet import start_tensorflow_quietly

    start_tensorflow_quietly()
    from reid.config import load_config
    from reid.data import load_dataset
    from reid.engine.evaluator import features_of_records
    from reid.engine.trainer import training_dataset
    from reid.modeling import Embedder, resolve_model_dir

    cfg = load_config(run / "config.yaml", [f"data.root={data_root}"])
    held = training_dataset(load_dataset(cfg.data, splits=("train",)), cfg)
    embedder = Embedder.load(resolve_model_dir(run), "auto")
    features = features_of_records(embedder, held.query, held.gallery,
                                   dataclasses.replace(cfg.eval, flip=False), True)
    features.save(cache)
    return features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=pathlib.Path, required=True)
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data" / "cuhk03"))
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()
    from reid.calibration import far_key, spec_calibration
    from reid.engine.evaluator import calibrated_figures
    from reid.modeling import resolve_model_dir
    from reid.modeling.spec import read_spec

    started = time.perf_counter()
    model_dir = resolve_model_dir(args.run)
    calibration = spec_calibration(read_spec(model_dir), str(model_dir))
    if calibration is None or "crops" not in calibration.gallery:
        sys.exit(f"{model_dir}: no gallery rule in its calibration; resume the run "
                 f"(tools/train.py --resume) to calibrate one")
    features, distractors, distractor_camids = embed(
        args.run, args.data_root, args.run / "gallery_decision_features.npz")
    with_distractors = dataclasses.replace(
        features, gallery=np.concatenate([features.gallery, distractors]),
        g_pids=np.concatenate([features.g_pids, np.zeros(len(distractors), np.int64)]),
        g_camids=np.concatenate([features.g_camids, distractor_camids]))
    # What each rate costs in present people missed, on validation (where the default rate
    # is chosen): the DIR at the threshold set on the validation split's own absent people.
    from reid.calibration import CALIBRATED_FPIRS

    validation = embed_validation(args.run, args.data_root,
                                  args.run / "gallery_decision_validation.npz")
    on_validation = calibrated_figures(calibration, validation, seed=0, draws=args.draws,
                                       fpirs=CALIBRATED_FPIRS)["gallery"]["rates"]
    print("validation split, a third of its people left out, DIR at each FPIR (threshold set "
          "on its own absent people): " + ", ".join(
              f"{key} -> {rate['oracle_dir']:.3f}" if rate["oracle_dir"] is not None
              else f"{key} -> -" for key, rate in on_validation.items()))
    rule = calibration.gallery["crops"]
    print(f"model: {model_dir}; gallery rule: {rule.describe()}; calibrated on "
          f"{calibration.source}")
    pair = far_key(1e-2)
    results = {"validation": on_validation}
    for name, feats in (("test gallery", features),
                        ("test gallery + training crops as distractors", with_distractors)):
        figures = calibrated_figures(calibration, feats, seed=0, draws=args.draws)
        results[name] = figures
        draws = figures["gallery"]["draws"]
        sizes = ", ".join(f"{d['gallery_size']:,}" for d in draws)
        print(f"\n{name}: N = {sizes} crops after "
              f"leaving out a third ({draws[0]['present']} present and {draws[0]['absent']} "
              f"absent queries in the first draw)")
        print("| decision | threshold | requested FPIR | observed FPIR (draws) | DIR | "
              "oracle DIR |")
        print("|---|---|---|---|---|---|")
        before = figures["open_set"][pair]
        print(f"| per pair, FAR 1e-2 (before) | {before['threshold']:.4f} | - | "
              f"{before['fpir']:.3f} ({', '.join(f'{v:.3f}' for v in before['per_draw']['fpir'])})"
              f" | {before['dir']:.3f} | - |")
        for key, rate in figures["gallery"]["rates"].items():
            if rate["fpir"] is None:
                continue
            observed = ", ".join(f"{v:.3f}" for v in rate["per_draw"]["fpir"])
            oracle = "-" if rate["oracle_dir"] is None else f"{rate['oracle_dir']:.3f}"
            print(f"| gallery rule (after) | {rate['threshold']:.4f} | {key} | "
                  f"{rate['fpir']:.3f} ({observed}) | {rate['dir']:.3f} | {oracle} |")
    print(f"\n{time.perf_counter() - started:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
