"""The modeling package's error, in a module of its own so that light modules (the runtimes,
the embedder) can raise it without importing Keras."""


class ModelError(ValueError):
    """A model cannot be built, loaded or exported; the message names the file or setting."""
