"""Accuracy on a real dataset: train a config, evaluate with and without re-ranking, record a row.

    .venv/bin/python bench/accuracy.py [--config configs/cuhk03.yaml]
        [--data-root ../shared/data/cuhk03]
        [--weights ../shared/weights/mobilenet_v2_1.0_imagenet_no_top.weights.h5 | null]
        [--output runs/bench-cuhk03-imagenet] [--set section.key=value ...]
        [--record docs/BENCHMARKS.md] [--label TEXT]

Trains ``--config`` on ``--data-root`` (resuming the run in ``--output`` when it has
checkpoints, so an interrupted benchmark goes on where it stopped), evaluates the final model on
the query/gallery split with and without k-reciprocal re-ranking, prints the figures and appends
one row to the "Accuracy" table of ``--record``: mAP, rank-1/5/10 and mINP both ways, input size,
epochs, initialisation, wall-clock training time, commit. ``--weights`` replaces the config's
``model.weights`` (ImageNet weights from a local file on a machine without internet, or ``null``
for the random-initialisation row that measures what pretraining is worth).
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import sys

from reid.cli import run_tool
from reid.utils.provenance import source_commit


ROOT = pathlib.Path(__file__).resolve().parents[1]
SECTION = "## Accuracy on real data (`bench/accuracy.py`)"
HEADER = ("| date | commit | config | data | init | input | epochs | training min | mAP | rank-1 | "
          "rank-5 | rank-10 | mINP | re-ranked mAP | re-ranked rank-1 | re-ranked mINP |\n"
          "|" + "---|" * 16)


def format_row(label: str, cfg, data_root: str, train_minutes: float, metrics: dict) -> str:
    """One Markdown table row; figures as the evaluation printed them, to 3 decimals."""
    init = cfg.model.weights if cfg.model.weights in (None, "imagenet") else "imagenet (file)"
    rr = metrics.get("rerank", {})
    cells = [datetime.date.today().isoformat(), source_commit(ROOT), label, data_root,
             "random" if init is None else init, f"{cfg.data.height}x{cfg.data.width}",
             str(cfg.train.epochs), f"{train_minutes:.0f}"]
    cells += [f"{metrics[k]:.3f}" for k in ("mAP", "rank1", "rank5", "rank10", "mINP")]
    cells += [f"{rr[k]:.3f}" if k in rr else "-" for k in ("mAP", "rank1", "mINP")]
    return "| " + " | ".join(cells) + " |"


def append_row(record: pathlib.Path, row: str) -> None:
    """Add ``row`` at the end of the accuracy table of ``record``, creating it when missing."""
    from reid.utils.io import atomic_write_text

    text = record.read_text() if record.exists() else "# Benchmarks\n"
    if SECTION not in text:
        text = text.rstrip("\n") + f"\n\n{SECTION}\n\n{HEADER}\n"
    head, rest = text.split(SECTION, 1)
    lines = rest.split("\n")
    end = next(i for i, line in enumerate(lines) if line.startswith("|"))
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    lines.insert(end, row)
    atomic_write_text(record, head + SECTION + "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=pathlib.Path, default=ROOT / "configs" / "cuhk03.yaml")
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data" / "cuhk03"))
    parser.add_argument("--weights", default=str(ROOT.parent / "shared" / "weights" /
                                                 "mobilenet_v2_1.0_imagenet_no_top.weights.h5"),
                        help="imagenet, null (random initialisation) or a .weights.h5 file")
    parser.add_argument("--output", type=pathlib.Path, default=None,
                        help="run folder (default runs/bench-<config>-<init>)")
    parser.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--record", type=pathlib.Path, default=ROOT / "docs" / "BENCHMARKS.md")
    parser.add_argument("--label", default=None, help="what the row calls the run")
    parser.add_argument("--no-progress", action="store_true")
    return run_tool(train_evaluate_record, parser.parse_args(argv), tensorflow=True)


def train_evaluate_record(args: argparse.Namespace) -> None:
    from reid.config import load_config
    from reid.engine.commands import run_evaluation, run_training
    from reid.engine.evaluator import format_metrics
    from reid.run_layout import RunLayout

    weights = "null" if args.weights.lower() in ("null", "none", "random") else args.weights
    overrides = [f"data.root={args.data_root}", f"model.weights={weights}", *args.set]
    progress = not args.no_progress
    cfg = load_config(args.config, overrides)
    init = "random" if cfg.model.weights is None else "imagenet"
    output = args.output or ROOT / "runs" / f"bench-{cfg.name}-{init}"
    resume = RunLayout(output).has_checkpoints
    result = run_training(args.config, output, overrides, resume, progress=progress)
    # Summed per epoch from the run's history, so a resumed run counts its earlier part.
    train_minutes = sum(r.get("seconds", 0.0) for r in result.history) / 60
    metrics = run_evaluation(result.model_dir, pathlib.Path(args.data_root), rerank=True,
                             progress=progress)
    print(format_metrics({"trained": metrics, "trained + re-ranking": metrics["rerank"]}))
    label = args.label or f"{args.config.stem}" + (f" ({' '.join(args.set)})" if args.set else "")
    row = format_row(label, cfg, args.data_root if not os.path.isabs(args.data_root)
                     else os.path.relpath(args.data_root, ROOT), train_minutes, metrics)
    append_row(args.record, row)
    print(f"training {train_minutes:.1f} min; row added to {args.record}:\n{row}")


if __name__ == "__main__":
    sys.exit(main())
