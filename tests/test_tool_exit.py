"""The tools' shared exit: an expected error is one stderr line and status 1; a bug is not hidden."""

from __future__ import annotations

import pytest

from reid.config import ConfigError
from reid.utils.cli import run_tool


def test_success_is_status_0(capsys):
    assert run_tool(print, "done") == 0
    assert capsys.readouterr().out == "done\n"


@pytest.mark.parametrize("error", [ConfigError("run.yaml: train.epochs: expected int"),
                                   RuntimeError("stopped"), FileNotFoundError("gone")])
def test_an_expected_error_is_one_line_and_status_1(capsys, error):
    def fail(_):
        raise error

    assert run_tool(fail, None) == 1
    captured = capsys.readouterr()
    assert captured.err == f"error: {error}\n" and captured.out == ""


def test_a_bug_keeps_its_traceback():
    def bug(_):
        raise KeyError("x")

    with pytest.raises(KeyError):
        run_tool(bug, None)
