"""Serve a gallery index over HTTP, with a web page, the model loaded once.

  tools/serve.py --index GALLERY [--host 127.0.0.1] [--port 8000] [--runtime auto]
                 [--token TOKEN] [--max-upload-mb 10] [--max-pixels 40000000]

Open http://127.0.0.1:8000/ for the page; the JSON API is under /api (its reference at
/api/docs). Binding to any address but the loopback needs a token (--token, or the
REID_SERVE_TOKEN environment variable), which every API call must then carry as
``Authorization: Bearer TOKEN`` (the page takes it from its address: /?token=TOKEN).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import pathlib
import sys

# One OpenBLAS thread (numpy's, used to resize a query): requests already run side by side,
# and its idle threads spin on the cores they need. Under 8 clients on 2 cores: p99 118-124 ->
# 67-68 ms (docs/BENCHMARKS.md, "Search service load"). Must be set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from reid.utils.cli import add_runtime_option, run_tool

TOKEN_VARIABLE = "REID_SERVE_TOKEN"


def build_parser() -> argparse.ArgumentParser:
    """The command line of this tool; docs/CLI.md is generated from it."""
    from reid.serve.app import DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_BYTES

    parser = argparse.ArgumentParser(description="Serve a gallery index over HTTP, with a page.")
    parser.add_argument("--index", type=pathlib.Path, required=True, help="gallery index folder")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; any "
                             "other needs a token)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    add_runtime_option(parser)
    parser.add_argument("--token",
                        help=f"the token API calls must carry (default: ${TOKEN_VARIABLE}); "
                             f"required when --host is not a loopback address")
    parser.add_argument("--max-upload-mb", type=float,
                        default=DEFAULT_MAX_UPLOAD_BYTES / 2 ** 20,
                        help="largest query image accepted, in MiB (default %(default)g)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="most pixels a query image may have (default %(default)d)")
    return parser


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    return run_tool(serve, build_parser().parse_args(argv), tensorflow=False)


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from reid.serve.app import ServeLimits, create_app

    token = args.token or os.environ.get(TOKEN_VARIABLE) or None
    if not is_loopback(args.host) and token is None:
        raise ValueError(f"--host {args.host}: other machines could reach the index; give a "
                         f"token (--token or ${TOKEN_VARIABLE}) that every API call must carry")
    if not 0 < args.port < 65536:
        raise ValueError(f"--port: expected 1-65535, got {args.port}")
    if not args.max_upload_mb > 0 or args.max_pixels < 1:
        raise ValueError("--max-upload-mb and --max-pixels: expected positive limits")
    if args.runtime in ("auto", "keras"):  # Keras may serve: start TensorFlow quietly first
        from reid.utils.quiet import start_tensorflow_quietly

        start_tensorflow_quietly()
    limits = ServeLimits(int(args.max_upload_mb * 2 ** 20), args.max_pixels)
    app = create_app(args.index, args.runtime, token, limits)
    live = app.state.live
    where = f"http://{args.host}:{args.port}/" + ("?token=..." if token else "")
    print(f"serving {args.index} ({live.current().count} entries, runtime "
          f"{live.embedder.runtime}) at {where}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    sys.exit(main())
