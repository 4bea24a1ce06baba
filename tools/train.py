"""Train a re-id model: tools/train.py --config configs/X.yaml [--output runs/NAME] [--set k=v ...]"""

from __future__ import annotations

import argparse
import functools
import os
import pathlib
import sys

from reid.cli import (add_no_progress_option, add_overrides_option, error_line, run_tool,
                      tool_flags)
from reid.engine.cluster import TF_CONFIG, Cluster, cluster_not_formed, parse_tf_config
from reid.engine.supervisor import Supervision, supervise, worker_command

#: The library's names of this tool's values whose flags are not their own names.
FLAGS = {"run_dir": "--output"}


def build_parser() -> argparse.ArgumentParser:
    """The command line of this tool; docs/CLI.md is generated from it."""
    parser = argparse.ArgumentParser(description=__doc__.split(":")[0])
    parser.add_argument("--config", type=pathlib.Path,
                        help="YAML config (not needed with --resume: the run folder has it)")
    parser.add_argument("--output", type=pathlib.Path,
                        help="run folder (default runs/<config name>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --output where it stopped")
    add_overrides_option(parser, "override config values, e.g. train.epochs=3 model.alpha=0.5")
    add_no_progress_option(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    supervision = Supervision.from_environment()  # this process is a supervised worker
    if supervision is None:
        cluster = multi_worker_cluster(args)
        if cluster is not None:
            # TensorFlow holds a waiting worker deaf to signals and timers: a process of
            # its own bounds the wait and ends the worker on SIGINT and SIGTERM.
            argv = sys.argv[1:] if argv is None else argv
            flags = tool_flags(args, FLAGS)
            return supervise(worker_command(__file__, argv), cluster.who,
                             functools.partial(cluster_not_formed, cluster),
                             lambda error: error_line(error, flags))
    return run_tool(functools.partial(train, supervision=supervision), args, tensorflow=True,
                    flags=FLAGS)


def multi_worker_cluster(args: argparse.Namespace) -> Cluster | None:
    """The cluster of a multi_worker run, read before TensorFlow starts; None for any other
    run, and when the config or TF_CONFIG is wrong (the run itself then says so)."""
    from reid.engine.commands import training_config

    try:
        cfg, _ = training_config(args.config, args.output, args.set, args.resume)
        if cfg.train.strategy != "multi_worker":
            return None
        return parse_tf_config(os.environ.get(TF_CONFIG))
    except (ValueError, OSError):
        return None


def train(args: argparse.Namespace, supervision: Supervision | None = None) -> None:
    from reid.engine.commands import run_training

    result = run_training(args.config, args.output, args.set, args.resume,
                          progress=not args.no_progress, supervision=supervision)
    print(f"run folder: {result.run_dir}")
    if result.model_dir:
        print(f"exported embedding model: {result.model_dir}")


if __name__ == "__main__":
    sys.exit(main())
