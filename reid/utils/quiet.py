"""Holding back what native libraries write straight to file descriptor 2.

TensorFlow's start-up lines and LiteRT's "Created TensorFlow Lite XNNPACK delegate for CPU"
are written by C++ code, below Python's ``sys.stderr``, where no logging setting reaches; none
is something a user of a tool can act on.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def held_stderr() -> Iterator[None]:
    """Send fd 2 to a temporary file for the block. If the block raises, what was held back
    is written out before the error propagates, so a failure still explains itself."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        try:
            os.dup2(held.fileno(), 2)
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def start_tensorflow_quietly() -> None:
    """Import TensorFlow and let it look for GPUs with this process's stderr held back.

    TensorFlow 2.21 writes its start-up lines (oneDNN notices, "Could not find cuda drivers",
    a "CUDA error" from cuInit on a machine without a GPU) through absl before absl's logging is
    initialised, where TF_CPP_MIN_LOG_LEVEL does not reach them; none is something a user of a
    tool can act on. Only the file descriptor is redirected, to a temporary file, for the import
    and the device probe. If either fails, what was held back is written out before the error
    propagates; a native crash in them (which kills the process) would go unexplained. Cheap
    once TensorFlow is loaded (devices are probed once), so any path that may be the first to
    import it can call it.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the C++ INFO and WARNING lines later
    with held_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()
