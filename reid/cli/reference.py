"""The generated references: docs/CLI.md from the tools' own argument parsers, docs/CONFIG.md
from the config's fields, so neither can drift.

Every ``tools/NAME.py`` has a module-level ``build_parser()`` that its ``main()`` parses with;
this module loads each tool by file path (the tools are scripts, not a package), asks it for
its parser and renders purpose, usage and every option with its help and default. A test
compares the result with docs/CLI.md, and :func:`config_reference_document` with
docs/CONFIG.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
from typing import Any

from reid.config import config_reference

#: Usage lines are wrapped at this width whatever the terminal, so the file is reproducible.
USAGE_WIDTH = 100
NO_DEFAULT = "—"


def load_tool(path: pathlib.Path) -> tuple[argparse.ArgumentParser, str]:
    """(the tool's parser, its module docstring). The module is executed but not registered in
    ``sys.modules``, and its ``main()`` is not called."""
    spec = importlib.util.spec_from_file_location(f"reid_tool_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"{path}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    build = getattr(module, "build_parser", None)
    if not callable(build):
        raise ValueError(f"{path}: has no build_parser() function to document")
    parser = build()
    if not isinstance(parser, argparse.ArgumentParser):
        raise ValueError(f"{path}: build_parser() returned {type(parser).__name__}, "
                         f"expected an argparse.ArgumentParser")
    parser.prog = f"python tools/{path.name}"
    return parser, module.__doc__ or ""


def documented_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """Every option and argument but ``-h/--help``, in the order they were added (argparse has
    no public accessor; ``_actions`` has been stable since Python 3.2)."""
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell: ``|`` would end the cell, ``<`` start an HTML
    tag (hiding ``runs/<name>``) and ``*`` start emphasis."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace("*", "\\*")


def _invocation(action: argparse.Action) -> str:
    """How the option is written: flags plus its argument, as in ``--help``."""
    if isinstance(action.metavar, tuple):  # one name per argument, e.g. ("OLD", "NEW")
        metavar = " ".join(action.metavar)
        return " ".join([", ".join(action.option_strings), metavar]).strip()
    if action.metavar is not None:
        metavar = str(action.metavar)
    elif action.choices is not None:
        metavar = "{" + ",".join(str(c) for c in action.choices) + "}"
    else:
        metavar = action.dest if not action.option_strings else action.dest.upper()
    nargs = action.nargs
    if nargs == 0:
        value = ""
    elif nargs is None:
        value = metavar
    elif nargs == "?":
        value = f"[{metavar}]"
    elif nargs == "*":
        value = f"[{metavar} ...]"
    elif nargs == "+":
        value = f"{metavar} [{metavar} ...]"
    elif isinstance(nargs, int):
        value = " ".join([metavar] * nargs)
    else:
        value = "..."
    flags = ", ".join(action.option_strings) if action.option_strings else ""
    return " ".join(part for part in (flags, value) if part)


def _help(action: argparse.Action, prog: str) -> str:
    """The help text with ``%(default)s``-style fields filled in, as ``--help`` shows it."""
    params: dict[str, Any] = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
    params["prog"] = prog
    if params.get("choices") is not None:
        params["choices"] = ", ".join(str(c) for c in params["choices"])
    return " ".join((action.help or "").split()) % params


def _default(action: argparse.Action) -> str:
    if action.required:
        return "required"
    if action.nargs == 0:
        return "off" if action.default is False else f"`{action.default}`"
    default = action.default
    if default is None or default == [] or default is argparse.SUPPRESS:
        return NO_DEFAULT
    if isinstance(default, (list, tuple)):
        default = " ".join(str(v) for v in default)
    return f"`{default}`"


def _notes(module_doc: str) -> list[str]:
    """Prose paragraphs of the module docstring after its first (the purpose); indented
    paragraphs are usage sketches, which the generated usage line replaces."""
    paragraphs = [p for p in module_doc.strip().split("\n\n")[1:] if p.strip()]
    return [" ".join(p.split()) for p in paragraphs if not p.startswith((" ", "\t"))]


def tool_reference(name: str, parser: argparse.ArgumentParser, module_doc: str = "") -> str:
    """The Markdown section of one tool: purpose, notes, usage and the table of options."""
    parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=USAGE_WIDTH)
    usage = parser.format_usage().strip()
    purpose = (parser.description or "").strip().split("\n\n")[0]
    lines = [f"## `{name}`", "", " ".join(purpose.split()), ""]
    for note in _notes(module_doc):
        lines += [note, ""]
    lines += ["```text", usage, "```", ""]
    actions = documented_actions(parser)
    if actions:
        lines += ["| option | default | meaning |", "|---|---|---|"]
        for action in actions:
            lines.append(f"| `{_invocation(action)}` | {_default(action)} | "
                         f"{_cell(_help(action, parser.prog))} |")
        lines.append("")
    return "\n".join(lines)


def tool_paths(tools_dir: pathlib.Path) -> list[pathlib.Path]:
    """The tools to document: every ``*.py`` directly in ``tools_dir``, sorted by name."""
    paths = sorted(p for p in pathlib.Path(tools_dir).glob("*.py") if not p.name.startswith("_"))
    if not paths:
        raise ValueError(f"{tools_dir}: no tools (*.py) to document")
    return paths


def _anchor(name: str) -> str:
    """GitHub's heading anchor: lower case, punctuation but ``-`` and ``_`` dropped."""
    return "".join(c for c in name.lower() if c.isalnum() or c in "-_")


def cli_reference_document(tools_dir: pathlib.Path) -> str:
    """The whole docs/CLI.md for the tools in ``tools_dir``."""
    sections, index = [], []
    for path in tool_paths(tools_dir):
        parser, doc = load_tool(path)
        purpose = " ".join((parser.description or "").strip().split("\n\n")[0].split())
        index.append(f"- [`{path.name}`](#{_anchor(path.name)}): {purpose}")
        sections.append(tool_reference(path.name, parser, doc))
    intro = [
        "# Command-line reference",
        "",
        "Generated by `python tools/cli_reference.py --write` from the argument parsers of",
        "`tools/*.py`; a test fails when this file and the code disagree.",
        "",
        "Run the tools from the repository root with the project's Python (`.venv/bin/python`,",
        "or `python` in the activated virtualenv); relative paths are taken from the working",
        "directory. `--set` takes any number of `section.key=value` config overrides (values",
        "are YAML; keys in [CONFIG.md](CONFIG.md)). A tool that fails prints one line",
        "`error: ...` and exits with status 1; a mistake on the command line exits with 2;",
        "a warning (the run goes on) is one line `warning: ...`.",
        "",
    ]
    return "\n".join(intro + index + [""] + sections).rstrip("\n") + "\n"


def config_reference_document() -> str:
    """The whole docs/CONFIG.md: an introduction (how the tools take keys) and the table of
    every key, :func:`reid.config.config_reference`."""
    return ("# Configuration reference\n\n"
            "Generated by `python tools/config_reference.py --write` from `reid/config.py`;\n"
            "a test fails when this file and the code disagree.\n\n"
            "Every key is optional; a YAML file sets some, `--set section.key=value` overrides\n"
            "them. Relative paths are taken from the working directory.\n\n"
            + config_reference() + "\n")
