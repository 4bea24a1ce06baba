"""The tools' shared exit (an expected error is one stderr line and status 1; a bug is not hidden)
and their quiet TensorFlow start."""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys

import pytest

from reid.calibration import CalibrationError
from reid.cli import run_tool
from reid.config import ConfigError
from reid.engine.checkpoint import CheckpointError
from reid.errors import ReidError


def test_success_is_status_0(capsys):
    assert run_tool(print, "done") == 0
    assert capsys.readouterr().out == "done\n"


@pytest.mark.parametrize("error", [ConfigError("run.yaml: train.epochs: expected int"),
                                   CheckpointError("stopped"), FileNotFoundError("gone")])
def test_an_expected_error_is_one_line_and_status_1(capsys, error):
    def fail(_):
        raise error

    assert run_tool(fail, None) == 1
    captured = capsys.readouterr()
    assert captured.err == f"error: {error}\n" and captured.out == ""


@pytest.mark.parametrize("bug", [KeyError("x"), ValueError("x"), RuntimeError("x")])
def test_a_bug_keeps_its_traceback(bug):
    def fail(_):
        raise bug

    with pytest.raises(type(bug)):
        run_tool(fail, None)


def test_the_library_names_values_and_the_tool_writes_its_flags(capsys):
    """The library's message names a value as the library calls it; the tool's line names the
    flag its user typed, where the message starts with it and after it for the others."""
    args = argparse.Namespace(threshold="2", start_time=None, resume=False, output=None)

    def fail_with(error):
        def work(_):
            raise error

        assert run_tool(work, args, flags={"run_dir": "--output"}) == 1
        return capsys.readouterr().err

    assert fail_with(CalibrationError("threshold 2: a cosine score lies in [-1, 1]",
                                      field="threshold")) == (
        "error: --threshold 2: a cosine score lies in [-1, 1]\n")
    assert fail_with(ReidError("start time: give every time with a UTC offset",
                               field="start_time")) == (
        "error: --start-time: give every time with a UTC offset\n")
    assert fail_with(ReidError("runs/a: already holds a training run; resume it or choose "
                               "another run folder", field=("resume", "run_dir"))) == (
        "error: runs/a: already holds a training run; resume it or choose another run folder "
        "(--resume, --output)\n")
    # A value this tool does not take keeps the library's name; a word that only begins like
    # the field ("thresholds") is not the field.
    assert fail_with(ReidError("fps: expected a positive frame rate, got 0", field="fps")) == (
        "error: fps: expected a positive frame rate, got 0\n")
    assert fail_with(ReidError("thresholds are missing", field="threshold")) == (
        "error: thresholds are missing (--threshold)\n")
    # Errors cross process boundaries (the supervisor, the service's workers) with their fields.
    error = pickle.loads(pickle.dumps(ReidError("a", field=("b", "c"))))
    assert str(error) == "a" and error.fields == ("b", "c")


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
