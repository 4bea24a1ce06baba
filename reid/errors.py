"""The errors a user can cause and fix, as one family: the ground floor, importing nothing.

Every error the project raises on purpose derives from :class:`ReidError`: a bad config, a
missing or unreadable file, a dataset, image, model, index or video the code refuses, arguments
that do not go together. Its message names the file, key or value and says what to do, in the
library's own terms; the tools print it as one line ``error: ...`` and exit with status 1 (and
write the flags their user typed for the values it names, :mod:`reid.cli`), the service answers
it with a 4xx. Anything else is a bug and keeps its traceback.

Each package keeps its own subclass beside the code that raises it (``ConfigError`` in
:mod:`reid.config`, ``GalleryError`` in :mod:`reid.index.errors`, ...). Most subclasses are
also ``ValueError`` or ``RuntimeError``, as they were before this family existed, so callers
that catch those keep working.
"""

from __future__ import annotations

from collections.abc import Sequence


class ReidError(Exception):
    """Something the user caused and can fix; the message says what and how.

    ``field``: the name (or names) of the value the message is about, as the library calls it
    (a parameter's name such as ``threshold``, ``start_time`` or ``run_dir``), so that a caller
    that takes the value under another name can say which of its own it was: a tool writes the
    flag its user typed. A message about a value starts with that value's name (underscores
    read as spaces, ``start time: ...``); a field named elsewhere is one the message asks for.
    """

    def __init__(self, message: str = "", *, field: str | Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.fields: tuple[str, ...] = (field,) if isinstance(field, str) else tuple(field or ())


class UsageError(ReidError, ValueError):
    """Arguments that cannot be used as given: one missing, two that exclude each other, a
    value out of range. ``field`` names them."""
