"""The tools' shared exit (an expected error is one stderr line and status 1; a bug is not hidden)
and their quiet TensorFlow start."""

from __future__ import annotations

import os
import subprocess
import sys

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


def test_tensorflow_starts_without_chatter_and_stderr_comes_back():
    code = ("import sys\n"
            "from reid.utils.quiet import start_tensorflow_quietly\n"
            "start_tensorflow_quietly()\n"
            "import tensorflow as tf\n"
            "print(int(tf.reduce_sum(tf.ones(3))))\n"
            "print('after', file=sys.stderr)\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "3\n"
    assert done.stderr == "after\n"  # TensorFlow's start-up lines are gone, ours are not


def test_what_tensorflow_wrote_is_shown_when_its_start_fails(monkeypatch, capfd):
    import tensorflow as tf

    from reid.utils.quiet import start_tensorflow_quietly

    def probe_fails():
        os.write(2, b"native: why the probe failed\n")
        raise RuntimeError("no devices")

    monkeypatch.setattr(tf.config, "list_physical_devices", probe_fails)
    with pytest.raises(RuntimeError, match="no devices"):
        start_tensorflow_quietly()
    assert "native: why the probe failed" in capfd.readouterr().err
