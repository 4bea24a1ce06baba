"""The conventions every ``tools/*.py`` follows, written once (docs/CLI.md states them).

A tool that fails for a reason its user can fix prints one line ``error: ...`` on stderr and
exits with status 1 (a warning is one line ``warning: ...``); ``--set`` takes config overrides
and ``--no-progress`` silences progress bars; the two reference tools print a generated
document or write it with ``--write`` (:mod:`reid.cli.reference`).

The top floor: the only part of ``reid`` that knows command-line flags, imported by ``tools/``,
``bench/`` and the tests, never by the rest of the package. The library names the values its
errors are about (:class:`reid.errors.ReidError`); :func:`error_line` writes them as the flags
the user typed.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import TextIO, TypeVar

from reid.errors import ReidError
from reid.utils.io import atomic_write_text
from reid.utils.quiet import start_tensorflow_quietly

#: What a user can cause and fix: every error the project raises on purpose (bad config, missing
#: or unreadable files, refused data, a damaged index) is a ReidError, and the disk's are
#: OSErrors. Anything else is a bug, and keeps its traceback.
EXPECTED_ERRORS = (ReidError, OSError)

ToolArgs = TypeVar("ToolArgs")


def run_tool(work: Callable[[ToolArgs], object], args: ToolArgs, *,
             tensorflow: bool = False, flags: Mapping[str, str] | None = None) -> int:
    """``work(args)``, as a tool's exit status: 0, or 1 after the one-line error.

    ``tensorflow``: the work uses TensorFlow, which is started first, quietly. ``flags``: the
    library's names of values (:attr:`reid.errors.ReidError.fields`) -> this tool's flags, for
    the names that are not simply its options' (``run_dir`` -> ``--output``); see
    :func:`error_line`.
    """
    try:
        with warnings.catch_warnings():  # restores the usual display when the work ends
            warnings.showwarning = show_warning
            if tensorflow:
                start_tensorflow_quietly()
            work(args)
    except EXPECTED_ERRORS as exc:
        print(f"error: {error_line(exc, tool_flags(args, flags))}", file=sys.stderr)
        return 1
    return 0


def tool_flags(args: object, flags: Mapping[str, str] | None = None) -> dict[str, str]:
    """The flags of a tool's parsed ``args`` by the names of their values (``start_time`` ->
    ``--start-time``), and ``flags`` over them."""
    names = vars(args) if isinstance(args, argparse.Namespace) else {}
    return {**{name: "--" + name.replace("_", "-") for name in names}, **(flags or {})}


def error_line(error: BaseException, flags: Mapping[str, str]) -> str:
    """``error``'s message, naming the values it is about as the user gave them: a field the
    message starts with (``threshold 2: a cosine score lies in [-1, 1]``) is written as its
    flag (``--threshold 2: ...``), the flags of the others follow the message in brackets
    (``...; resume it or choose another run folder (--resume, --output)``). Fields without a
    flag in this tool are left as the library wrote them."""
    text = str(error)
    named = [f for f in getattr(error, "fields", ()) if f in flags]
    for field in named:
        subject = field.replace("_", " ")
        if text.startswith(subject) and text[len(subject):len(subject) + 1] in ("", " ", ":"):
            text = flags[field] + text[len(subject):]
            named.remove(field)
            break
    if named:
        text += f" ({', '.join(dict.fromkeys(flags[f] for f in named))})"
    return text


def show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: TextIO | None = None, line: str | None = None) -> None:
    """A library's warning (``warnings.warn``: an unreadable image skipped, a damaged
    conversion passed over) as a tool prints its own: one line ``warning: ...`` on stderr,
    not Python's ``file:line: UserWarning: ...`` and the source line under it."""
    print(f"warning: {message}", file=sys.stderr if file is None else file)


def add_overrides_option(parser: argparse.ArgumentParser, help: str,
                         metavar: str = "SECTION.KEY=VALUE") -> None:
    """``--set``: config overrides, any number, read by :func:`reid.config.load_config`."""
    parser.add_argument("--set", nargs="*", default=[], metavar=metavar, help=help)


def add_runtime_option(parser: argparse.ArgumentParser) -> None:
    """``--runtime``: which runtime embeds (see :meth:`reid.modeling.Embedder.load`)."""
    from reid.modeling.spec import RUNTIME_CHOICES

    parser.add_argument("--runtime", choices=RUNTIME_CHOICES, default="auto",
                        help="what embeds the images: auto (the fastest float32 conversion of "
                             "the model present, made by tools/export.py or training, else "
                             "Keras), keras, or a converted export by name")


def add_lock_timeout_option(parser: argparse.ArgumentParser) -> None:
    """``--lock-timeout``: how long a writer of a gallery index waits for another one."""
    from reid.index.versioned_folder import DEFAULT_LOCK_TIMEOUT

    def seconds(text: str) -> float:
        value = float(text)
        if not value >= 0:
            raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text}")
        return value

    parser.add_argument("--lock-timeout", type=seconds, default=DEFAULT_LOCK_TIMEOUT,
                        metavar="SECONDS",
                        help="how long to wait while another process writes the index "
                             f"(default {DEFAULT_LOCK_TIMEOUT:g})")


def add_no_progress_option(parser: argparse.ArgumentParser, help: str = "no progress bars"
                           ) -> None:
    parser.add_argument("--no-progress", action="store_true", help=help)


def reference_parser(description: str, default: pathlib.Path) -> argparse.ArgumentParser:
    """The command line of a tool that generates a reference document (docs/CLI.md, ...)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--write", type=pathlib.Path, nargs="?", const=default,
                        help=f"write the reference to this file (default {default})")
    return parser


def print_or_write(text: str, path: pathlib.Path | None) -> None:
    """A generated document to stdout, or atomically to ``path``."""
    if path is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(path, text)
