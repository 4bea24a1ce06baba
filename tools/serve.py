"""Serve a gallery index over HTTP, with a web page, the model loaded once.

  tools/serve.py --index GALLERY [--host 127.0.0.1] [--port 8000] [--runtime auto]
                 [--token TOKEN] [--audit-log FILE] [--allowed-host NAME ...]
                 [--max-upload-mb 10] [--max-pixels 24000000] [--decode-memory-mb 1024]
                 [--upload-timeout 60] [--max-connections 64]

Open http://127.0.0.1:8000/ for the page; the JSON API is under /api (its reference at
/api/docs). Binding to any address but the loopback needs a token (--token, or the
REID_SERVE_TOKEN environment variable), which every API call must then carry as
``Authorization: Bearer TOKEN`` (the page asks for it in a form and keeps it in its memory,
never in its address), and an audit log (--audit-log) that every search is appended to.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import pathlib
import socket
import sys

# One OpenBLAS thread (numpy's, used to resize a query): requests already run side by side,
# and its idle threads spin on the cores they need. Under 8 clients on 2 cores: p99 118-124 ->
# 67-68 ms (docs/BENCHMARKS.md, "Search service load"). Must be set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from reid.cli import add_runtime_option, run_tool
from reid.errors import UsageError

TOKEN_VARIABLE = "REID_SERVE_TOKEN"
#: Connections (and requests in progress) served at once; more are answered 503.
DEFAULT_MAX_CONNECTIONS = 64


def build_parser() -> argparse.ArgumentParser:
    """The command line of this tool; docs/CLI.md is generated from it."""
    from reid.serve.app import (DEFAULT_DECODE_MEMORY_BYTES, DEFAULT_MAX_PIXELS,
                                DEFAULT_MAX_UPLOAD_BYTES, DEFAULT_UPLOAD_SECONDS)

    parser = argparse.ArgumentParser(description="Serve a gallery index over HTTP, with a page.")
    parser.add_argument("--index", type=pathlib.Path, required=True, help="gallery index folder")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; any "
                             "other needs a token and an audit log)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    add_runtime_option(parser)
    parser.add_argument("--token",
                        help=f"the token API calls must carry (default: ${TOKEN_VARIABLE}); "
                             f"required when --host is not a loopback address")
    parser.add_argument("--audit-log", type=pathlib.Path, metavar="FILE",
                        help="append a JSON line per search to FILE (time, client address, "
                             "the query image's SHA-256 or entry id, number of results, "
                             "match or not); required when --host is not a loopback address, "
                             "off on the loopback unless given")
    parser.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                        help="a name the server may be reached by, besides its IP addresses, "
                             "--host, localhost (on the loopback or 0.0.0.0) and this "
                             "machine's name (on 0.0.0.0); requests naming another in their "
                             "Host header are refused (DNS rebinding); repeatable")
    parser.add_argument("--max-upload-mb", type=float,
                        default=DEFAULT_MAX_UPLOAD_BYTES / 2 ** 20,
                        help="largest query image accepted, in MiB (default %(default)g)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="most pixels a query image may have (default %(default)d)")
    parser.add_argument("--decode-memory-mb", type=float,
                        default=DEFAULT_DECODE_MEMORY_BYTES / 2 ** 20,
                        help="memory the uploads being decoded may take together, in MiB, "
                             "at about 32 bytes a pixel; more wait their turn (default "
                             "%(default)g)")
    parser.add_argument("--upload-timeout", type=float, default=DEFAULT_UPLOAD_SECONDS,
                        metavar="SECONDS",
                        help="a request's body must arrive within this time, or it is "
                             "answered 408 and its connection closed (default %(default)g)")
    parser.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS,
                        help="connections served at once; more are answered 503 (default "
                             "%(default)d)")
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


def check_args(args: argparse.Namespace, token: str | None) -> None:
    """Refuse what would expose the index or cannot work, before anything loads."""
    if not is_loopback(args.host) and token is None:
        raise UsageError(f"--host {args.host}: other machines could reach the index; give a "
                         f"token (--token or ${TOKEN_VARIABLE}) that every API call must carry")
    if not is_loopback(args.host) and args.audit_log is None:
        raise UsageError(f"--host {args.host}: other machines could search the index; give "
                         f"--audit-log FILE, where every search is logged")
    if not 0 < args.port < 65536:
        raise UsageError(f"--port: expected 1-65535, got {args.port}")
    if not args.max_upload_mb > 0 or args.max_pixels < 1 or not args.decode_memory_mb > 0:
        raise UsageError("--max-upload-mb, --max-pixels and --decode-memory-mb: expected "
                         "positive limits")
    if not args.upload_timeout > 0 or args.max_connections < 1:
        raise UsageError("--upload-timeout and --max-connections: expected positive numbers")
    if args.audit_log is not None:
        index = args.index.resolve()
        log = args.audit_log.resolve()
        if log == index or index in log.parents:  # a writer refuses a folder holding others
            raise UsageError(f"--audit-log {args.audit_log}: inside the index folder; give a "
                             f"file outside it")
        if args.audit_log.is_dir():
            raise UsageError(f"--audit-log {args.audit_log}: is a folder; give a file")
        if not log.parent.is_dir():
            raise UsageError(f"--audit-log {args.audit_log}: its folder {log.parent} does not "
                             f"exist")


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from reid.serve.app import ServeLimits, create_app
    from reid.serve.guard import allowed_hosts, head_timed_protocol

    token = args.token or os.environ.get(TOKEN_VARIABLE) or None
    check_args(args, token)
    if args.runtime in ("auto", "keras"):  # Keras may serve: start TensorFlow quietly first
        from reid.utils.quiet import start_tensorflow_quietly

        start_tensorflow_quietly()
    limits = ServeLimits(int(args.max_upload_mb * 2 ** 20), args.max_pixels,
                         int(args.decode_memory_mb * 2 ** 20), args.upload_timeout)
    names = list(args.allowed_host)
    if args.host in ("0.0.0.0", "::"):  # reached by this machine's name too
        names.append(socket.gethostname())
    app = create_app(args.index, args.runtime, token, limits,
                     hosts=allowed_hosts(args.host, names), audit_log=args.audit_log)
    live = app.state.live
    where = f"http://{args.host}:{args.port}/"
    print(f"serving {args.index} ({live.current().count} entries, runtime "
          f"{live.embedder.runtime}) at {where}" + (" (the page asks for the token)"
                                                    if token else ""), flush=True)
    if args.audit_log is not None:
        print(f"logging every search to {args.audit_log}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                limit_concurrency=args.max_connections, http=head_timed_protocol())


if __name__ == "__main__":
    sys.exit(main())
