"""Convert a trained model for a faster runtime: LiteRT (float32, float16, int8) or ONNX.

  tools/export.py --model runs/NAME --format litert [--quantize float16|int8]
  tools/export.py --model runs/NAME --format onnx

The converted model is written beside the export (runs/NAME/model/), with a record of the
parity measured against the Keras model on a sample of real crops (the run's query and gallery
images, or --images), and the speed measured on the way. Every tool that embeds then takes
--runtime; its default, auto, uses the fastest float32 conversion present.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from reid.cli import run_tool


def build_parser() -> argparse.ArgumentParser:
    """The command line of this tool; docs/CLI.md is generated from it."""
    parser = argparse.ArgumentParser(description="Convert an exported model for LiteRT or ONNX.")
    parser.add_argument("--model", type=pathlib.Path, required=True,
                        help="run folder (its model/ export) or exported model folder")
    parser.add_argument("--format", choices=("litert", "onnx"), required=True,
                        help="litert (ai-edge-litert) or onnx (onnxruntime; needs reid[onnx])")
    parser.add_argument("--quantize", choices=("float16", "int8"),
                        help="LiteRT only: float16 weights, or int8 weights and activations "
                             "(calibrated on training images); a quantized export has its own "
                             "fingerprint, so index with it to query with it")
    parser.add_argument("--images", nargs="+", metavar="DIR_OR_GLOB",
                        help="crops to check the conversion on (default: the run's query and "
                             "gallery images)")
    parser.add_argument("--calibration", nargs="+", metavar="DIR_OR_GLOB",
                        help="crops to calibrate int8 on, at least 100 different ones (default: "
                             "the run's training images)")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_tool(export, build_parser().parse_args(argv), tensorflow=True)


def export(args: argparse.Namespace) -> None:
    from reid.engine.commands import run_export

    print(run_export(args.model, args.format, args.quantize, args.images, args.calibration))


if __name__ == "__main__":
    sys.exit(main())
