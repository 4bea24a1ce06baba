"""The tools' ``main(argv)``, loaded from tools/*.py, so tests run a command in-process."""

from __future__ import annotations

import importlib.util
import pathlib
from collections.abc import Callable

TOOLS = pathlib.Path(__file__).resolve().parents[1] / "tools"


def tool_main(name: str) -> Callable[[list[str] | None], int]:
    spec = importlib.util.spec_from_file_location(f"tool_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main
