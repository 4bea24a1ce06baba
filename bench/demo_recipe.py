"""Choose the demo's recipe on validation draws, never on the demo's own test split.

    .venv/bin/python bench/demo_recipe.py --draws 1 2 3 \
        --variant base= --variant k8=data.ids_per_batch=8,data.images_per_id=8 [...]
        [--output runs/demo-recipe] [--no-progress]

The demo (``make demo``) draws its synthetic dataset with seed 0 and promises a trained mAP on
that draw's test split. Scoring candidate recipes there would choose the recipe on the test
split, so this script draws other datasets of the same shape (``--draws``: generator seeds, 0
refused), trains every ``--variant`` (``NAME=SECTION.KEY=VALUE,...`` overrides of
configs/synthetic.yaml; ``NAME=`` is the config as it is) on each, and scores each run on its
own draw's held-out identities, which no run trained on. It prints one row per variant: mAP on
each draw, the mean and the worst, steps and training images/s.

Runs are kept in ``--output`` (one folder per variant and draw) and resumed or reused, so an
interrupted screen goes on where it stopped and new variants can be added to an old screen.
Variants are trained draw by draw (every variant on the first draw, then the second), so the
first comparison arrives early.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys

from reid.cli import run_tool

ROOT = pathlib.Path(__file__).resolve().parents[1]


def parse_variant(text: str) -> tuple[str, tuple[str, ...]]:
    """``NAME=KEY=VALUE,KEY=VALUE`` -> (NAME, overrides)."""
    name, sep, rest = text.partition("=")
    if not sep or not name.replace("-", "").replace("_", "").isalnum():
        raise argparse.ArgumentTypeError(f"expected NAME=SECTION.KEY=VALUE,..., got {text!r}")
    return name, tuple(o for o in rest.split(",") if o)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, nargs="+", default=[1, 2, 3],
                        help="generator seeds of the validation draws (not 0, the demo's own)")
    parser.add_argument("--variant", type=parse_variant, action="append", required=True,
                        help="NAME=SECTION.KEY=VALUE,... (NAME= for configs/synthetic.yaml as is)")
    parser.add_argument("--output", type=pathlib.Path, default=ROOT / "runs" / "demo-recipe")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if 0 in args.draws:
        parser.error("--draws 0 is the demo's own draw, whose test split the promise is "
                     "measured on: choose on other draws")
    return run_tool(screen, args, tensorflow=True)


def score_run(run: pathlib.Path, config_path: pathlib.Path, data: pathlib.Path,
              overrides: tuple[str, ...], progress: bool) -> dict:
    """Train (or resume) one variant on one draw and score it on the draw's held-out split."""
    from reid.engine.commands import run_evaluation, run_training
    from reid.run_layout import RunLayout
    from reid.utils.io import atomic_write_text

    scored = run / "recipe_score.json"
    if scored.exists():
        return json.loads(scored.read_text())
    resume = RunLayout(run).has_checkpoints
    result = run_training(config_path, run, [f"data.root={data}", *overrides], resume,
                          progress=progress)
    metrics = run_evaluation(result.model_dir, data, progress=progress, runtime="keras")
    history = result.history
    seconds = sum(h["seconds"] for h in history)
    images = sum(h["images_per_second"] * h["seconds"] for h in history)
    row = {"mAP": float(metrics["mAP"]), "rank1": float(metrics["rank1"]),
           "epochs": len(history), "images_per_second": images / seconds if seconds else 0.0,
           "train_seconds": seconds}
    atomic_write_text(scored, json.dumps(row, indent=1) + "\n")  # read back as the run's score
    return row


def screen(args: argparse.Namespace) -> None:
    from reid.demo import DEMO_CONFIG, DEMO_IDS, DEMO_TEST_IDS
    from reid.synthetic.crops import generate_dataset

    config_path = ROOT / DEMO_CONFIG
    results: dict[str, dict[int, dict]] = {name: {} for name, _ in args.variant}
    for seed in args.draws:
        data = args.output / f"data-s{seed}"
        generate_dataset(data, ids=DEMO_IDS, test_ids=DEMO_TEST_IDS, seed=seed)
        for name, overrides in args.variant:
            row = score_run(args.output / name / f"s{seed}", config_path, data, overrides,
                            not args.no_progress)
            results[name][seed] = row
            print(f"{name} draw {seed}: mAP {row['mAP']:.3f} (rank-1 {row['rank1']:.3f}), "
                  f"{row['train_seconds']:.0f} s at {row['images_per_second']:.0f} images/s",
                  flush=True)
    print()
    print("| variant | overrides | " + " | ".join(f"draw {s}" for s in args.draws)
          + " | mean | worst |")
    print("|---|---|" + "---|" * len(args.draws) + "---|---|")
    for name, overrides in args.variant:
        maps = [results[name][s]["mAP"] for s in args.draws]
        print(f"| {name} | {' '.join(overrides) or '(as is)'} | "
              + " | ".join(f"{m:.3f}" for m in maps)
              + f" | {statistics.fmean(maps):.3f} | {min(maps):.3f} |")


if __name__ == "__main__":
    sys.exit(main())
