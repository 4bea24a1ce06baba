"""The project's scripts as modules: tools' ``main(argv)`` run in-process, benches' functions."""

from __future__ import annotations

import importlib.util
import pathlib
from collections.abc import Callable
from types import ModuleType

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_script(folder: str, name: str) -> ModuleType:
    """``folder/name.py`` of the repository, imported afresh under a name of its own."""
    spec = importlib.util.spec_from_file_location(f"{folder}_{name}", ROOT / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tool_main(name: str) -> Callable[[list[str] | None], int]:
    return load_script("tools", name).main


def load_bench(name: str) -> ModuleType:
    return load_script("bench", name)
