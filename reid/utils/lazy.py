"""A package's public names, imported from their modules on first use (PEP 562).

A package whose ``__init__`` imports its heavy modules (TensorFlow, FAISS) makes every light
module in it heavy too, because importing ``package.light`` runs ``package/__init__.py``
first. With the names resolved lazily, ``from package import Name`` still works and the light
modules stay light.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package``: ``homes`` maps a public name to its module."""

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(homes[name]), name)

    return __getattr__
