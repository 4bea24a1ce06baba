"""The modeling package's error, in a module of its own so that light modules (the runtimes,
the embedder) can raise it without importing Keras."""

from reid.errors import ReidError


class ModelError(ReidError, ValueError):
    """A model cannot be built, loaded or exported; the message names the file or setting."""


def first_line(exc: BaseException) -> str:
    """The first line of a library's error message (or its type), for a one-line error."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
