"""The documentation stays true: docs/CLI.md matches the tools, the README's and docs/GUIDE.md's
commands name real options, their links resolve, and the README's Python API snippets run
against a tiny real setup."""

from __future__ import annotations

import pathlib
import re
import shutil

import keras
import pytest

from reid.cli.reference import (cli_reference_document, documented_actions, load_tool,
                                      tool_paths)

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"
README = ROOT / "README.md"
API_HEADING = "## Python API"


def test_docs_cli_reference_is_current():
    docs = ROOT / "docs" / "CLI.md"
    assert docs.read_text() == cli_reference_document(TOOLS), (
        "docs/CLI.md is stale: run python tools/cli_reference.py --write")


@pytest.mark.parametrize("path", tool_paths(TOOLS), ids=lambda p: p.stem)
def test_every_tool_option_has_help(path):
    parser, _ = load_tool(path)
    assert parser.description, f"{path.name}: the parser has no description"
    missing = [a.option_strings or a.dest for a in documented_actions(parser) if not a.help]
    assert not missing, f"{path.name}: options without help text: {missing}"


def readme_commands(document: pathlib.Path = README) -> list[tuple[str, str]]:
    """(tool name, rest of the command) for every ``python tools/NAME.py ...`` in a guide,
    continuation lines joined; a trailing ``# comment`` or the end of inline code ends it."""
    text = document.read_text().replace("\\\n", " ")
    return [(m.group(1), re.split(r" #|`", m.group(2))[0])
            for m in re.finditer(r"python tools/(\w+)\.py([^\n]*)", text)]


@pytest.mark.parametrize("document", [README, ROOT / "docs" / "GUIDE.md"],
                         ids=lambda p: p.name)
def test_readme_commands_use_real_tools_and_options(document):
    commands = readme_commands(document)
    assert len(commands) >= 8
    for name, rest in commands:
        path = TOOLS / f"{name}.py"
        assert path.is_file(), f"{document.name} names tools/{name}.py, which does not exist"
        parser, _ = load_tool(path)
        known = {s for a in parser._actions for s in a.option_strings}
        unknown = sorted(set(re.findall(r"(?<![\w-])--[a-z][\w-]*", rest)) - known)
        assert not unknown, (f"{document.name}: tools/{name}.py has no option {unknown}: "
                             f"{rest.strip()}")


def readme_api_blocks() -> list[str]:
    text = README.read_text()
    assert f"\n{API_HEADING}\n" in text, f"README.md has no '{API_HEADING}' section"
    section = text.split(f"\n{API_HEADING}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_every_readme_python_block_is_in_the_tested_api_section():
    everywhere = re.findall(r"```python\n", README.read_text())
    assert len(readme_api_blocks()) == len(everywhere) >= 2


def heading_anchor(title: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped (``_`` and
    ``-`` kept), spaces made hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def markdown_headings(path: pathlib.Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)  # '# x' in code: none
    return {heading_anchor(m.group(1))
            for m in re.finditer(r"^#{1,6} (.+)$", text, re.MULTILINE)}


DOCUMENTS = [README, ROOT / "data" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(document):
    """Every relative link (and picture) of the guides names a file of the repository, and an
    anchor names a heading of that file."""
    text = re.sub(r"```.*?```", "", document.read_text(), flags=re.DOTALL)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (document.parent / path).resolve() if path else document
        if not file.is_file():
            broken.append(f"{target} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in markdown_headings(file):
            broken.append(f"{target} (no heading #{anchor} in {file.name})")
    assert not broken, f"{document.relative_to(ROOT)}: broken links: {broken}"


def test_readme_api_snippets_run(tmp_path, monkeypatch):
    """The snippets run in order, in one namespace, in a folder laid out as the README says:
    a Market-1501-layout dataset in data/market1501, a run folder runs/market1501 holding an
    exported (untrained, tiny) model, and a query image person.jpg."""
    from reid.config import ModelConfig
    from reid.synthetic.crops import generate_dataset
    from reid.modeling import build_reid_model, export_embedder

    data = tmp_path / "data" / "market1501"
    generate_dataset(data, ids=4, images_per_id=4, seed=3, height=64, width=32, workers=1)
    keras.utils.set_random_seed(0)
    models = build_reid_model(ModelConfig(alpha=0.35, weights=None), (64, 32, 3), num_classes=2)
    export_embedder(models.embedding_model, tmp_path / "runs" / "market1501" / "model")
    shutil.copy(sorted((data / "query").glob("*.jpg"))[0], tmp_path / "person.jpg")
    monkeypatch.chdir(tmp_path)

    namespace: dict = {}
    for number, block in enumerate(readme_api_blocks(), start=1):
        exec(compile(block, f"README.md, Python API block {number}", "exec"), namespace)
    assert (tmp_path / "galleries" / "market").is_dir()
