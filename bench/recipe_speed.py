"""Training images/s of recipe candidates, side by side in one process.

    .venv/bin/python bench/recipe_speed.py [--config configs/synthetic.yaml] [--steps 12]
        [--rounds 3] [--variant NAME=SECTION.KEY=VALUE,SECTION.KEY=VALUE ...]

Builds one trainer per variant (the config plus the variant's overrides) on the demo's
synthetic data, warms each step up, then times ``--steps`` steps of every variant in turn for
``--rounds`` rounds and keeps each one's best: a change in machine load hits all of them alike,
so the printed ratios to the first variant hold even on a busy machine, where the absolute
figures do not. This is how the demo's input size and last stride were chosen
(docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

from reid.cli import run_tool
from reid.errors import UsageError

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_VARIANTS = (
    "96x48 stride 1=data.height=96,data.width=48,model.last_stride=1",
    "96x48 stride 2=data.height=96,data.width=48,model.last_stride=2",
    "80x40 stride 2=data.height=80,data.width=40,model.last_stride=2",
    "64x32 stride 1=data.height=64,data.width=32,model.last_stride=1",
    "64x32 stride 2=data.height=64,data.width=32,model.last_stride=2",
    "128x64 stride 2=data.height=128,data.width=64,model.last_stride=2",
)


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``"name=a.b=1,c.d=2"`` -> ``("name", ["a.b=1", "c.d=2"])``."""
    name, sep, overrides = text.partition("=")
    if not sep or not name.strip():
        raise UsageError(f"--variant {text!r}: expected NAME=SECTION.KEY=VALUE[,...]")
    return name.strip(), [o for o in overrides.split(",") if o]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=pathlib.Path, default=ROOT / "configs" / "synthetic.yaml")
    parser.add_argument("--data", type=pathlib.Path,
                        default=pathlib.Path(tempfile.gettempdir()) / "reid-bench-synthetic")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variant", action="append", default=None,
                        help="NAME=overrides, comma-separated (default: the demo's candidates)")
    return run_tool(measure, parser.parse_args(argv), tensorflow=True)


def measure(args: argparse.Namespace) -> None:
    from reid.config import load_config
    from reid.data import load_dataset
    from reid.synthetic.crops import generate_dataset
    from reid.engine.trainer import Trainer

    variants = dict(parse_variant(v) for v in (args.variant or DEFAULT_VARIANTS))
    generate_dataset(args.data, ids=200, cameras=4, images_per_id=20, seed=0)
    runs = {}
    for name, overrides in variants.items():
        cfg = load_config(args.config, [f"data.root={args.data}", *overrides])
        with tempfile.TemporaryDirectory() as run_dir:
            trainer = Trainer(cfg, load_dataset(cfg.data), run_dir, progress=False)
        step = trainer.compiled_step(frozen=False)
        batches = list(trainer.input.epoch(0).take(args.steps + 3))
        for images, labels in batches[:3]:  # tracing and warm-up
            float(step(images, labels)["loss"])
        runs[name] = (step, batches[3:])
    best = dict.fromkeys(runs, 0.0)
    for _ in range(args.rounds):
        for name, (step, batches) in runs.items():
            start = time.perf_counter()
            for images, labels in batches:
                terms = step(images, labels)
            float(terms["loss"])  # wait for the last step
            images_done = sum(int(images.shape[0]) for images, _ in batches)
            best[name] = max(best[name], images_done / (time.perf_counter() - start))
    first = next(iter(best.values()))
    for name, speed in best.items():
        print(f"{name:<24} {speed:8.1f} images/s   ratio {speed / first:5.2f}")


if __name__ == "__main__":
    sys.exit(main())
