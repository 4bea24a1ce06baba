"""A multi-worker worker ends when its cluster does not form, and on SIGINT or SIGTERM.

TensorFlow waits for the cluster in C++ holding the GIL, deaf to signals: tools/train.py runs
the worker under a supervising process (reid/engine/supervisor.py). The supervisor is tested
with a stand-in worker that is just as deaf (its stop signals blocked), without TensorFlow;
two real ``tools/train.py`` workers, started together, show the whole thing once. Every
process is bounded in time by a guard timeout and killed by its id.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from reid.config import ConfigError
from reid.engine.cluster import (Cluster, check_own_port_free, cluster_not_formed,
                                 parse_tf_config, peer_state)

ROOT = pathlib.Path(__file__).resolve().parents[1]
GUARD_SECONDS = 120


def closed_port() -> int:
    """A loopback port where nothing listens (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def listening() -> socket.socket:
    """A loopback port that accepts connections but is no TensorFlow worker (as an HTTP
    server's would)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s


def address(port: int) -> str:
    return f"127.0.0.1:{port}"


def test_own_port_in_use_is_refused_naming_it(listening):
    taken = listening.getsockname()[1]
    cluster = Cluster((address(taken), address(closed_port())), worker=0)
    with pytest.raises(ConfigError, match=f"worker 0 of 2 listens on port {taken} "
                                          f"\\(127.0.0.1:{taken}\\), which is in use"):
        check_own_port_free(cluster)
    free = closed_port()
    check_own_port_free(Cluster((address(free), address(taken)), worker=0))


def test_peers_that_cannot_be_reached_are_named_with_the_reason(listening):
    refused, answering = address(closed_port()), address(listening.getsockname()[1])
    assert peer_state(refused) == "connection refused"
    assert peer_state("nosuchhost.invalid:2222") == "host not found"  # RFC 6761: never exists
    assert peer_state(answering) is None
    cluster = Cluster((refused, address(closed_port()), answering, "nosuchhost.invalid:2222"),
                      worker=1)
    line = cluster_not_formed(cluster, 7.0)
    assert line.startswith(f"worker 1 of 4: the cluster did not form within 7 s: cannot reach "
                           f"{refused} (connection refused), nosuchhost.invalid:2222 (host not "
                           f"found); ")
    assert answering not in line and "train.cluster_timeout_seconds" in line


def test_peers_that_answer_but_do_not_join_are_named(listening):
    answering = address(listening.getsockname()[1])
    line = cluster_not_formed(Cluster((address(closed_port()), answering), worker=0), 3)
    assert f"within 3 s: {answering} accepts connections but did not join" in line


def test_tf_config_with_a_chief_gives_every_address_and_this_workers_place():
    cluster = parse_tf_config(json.dumps({"cluster": {"chief": ["c:1"], "worker": ["a:2", "b:3"]},
                                          "task": {"type": "worker", "index": 1}}))
    assert cluster.addresses == ("c:1", "a:2", "b:3") and cluster.worker == 2
    assert cluster.peers == ["c:1", "a:2"] and cluster.who == "worker 2 of 3"


# -- the supervisor, with a stand-in worker ------------------------------------------------

#: A worker as deaf as one that TensorFlow holds: SIGINT and SIGTERM blocked. It writes its pid
#: and each report to files, so that the test knows how far it got.
WORKER = textwrap.dedent("""
    import os, pathlib, signal, sys, time
    from reid.engine.supervisor import Supervision

    folder = pathlib.Path(sys.argv[1])
    supervision = Supervision.from_environment()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    (folder / "pid").write_text(str(os.getpid()))
    for step in sys.argv[2:]:
        if step.startswith("exit"):
            sys.exit(int(step[4:]))
        if step == "waiting":
            supervision.waiting(float(os.environ["WAIT_SECONDS"]))
        elif step == "formed":
            supervision.formed()
        elif step == "training":
            supervision.training("runs/x")
        (folder / step).write_text("")
    time.sleep(600)
""")

#: The supervisor, as tools/train.py runs it (Ctrl-C handled as in a terminal, whatever the
#: test runner's parent did with SIGINT).
SUPERVISOR = textwrap.dedent("""
    import signal, sys
    from reid.engine.supervisor import supervise
    from reid.cli import error_line

    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(supervise([sys.executable, *sys.argv[1:]], "worker 0 of 2",
                       lambda seconds: f"no cluster within {seconds:g} s",
                       lambda error: error_line(error, {"resume": "--resume",
                                                        "run_dir": "--output"})))
""")


def start_supervisor(tmp_path: pathlib.Path, steps: list[str], wait_seconds: float = 600
                     ) -> subprocess.Popen:
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    return subprocess.Popen([sys.executable, "-c", SUPERVISOR, str(worker), str(tmp_path),
                             *steps], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env={**os.environ,
                                                      "WAIT_SECONDS": str(wait_seconds)})


def wait_for(path: pathlib.Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + GUARD_SECONDS
    while not path.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)


def ended(pid: int) -> bool:
    """The process is gone, or dead and not yet reaped (an orphan waits for init)."""
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def finish(process: subprocess.Popen) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=GUARD_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, err


def test_a_worker_whose_cluster_does_not_form_is_ended_with_the_reason(tmp_path):
    process = start_supervisor(tmp_path, ["waiting"], wait_seconds=0.5)
    code, err = finish(process)
    assert code == 1
    assert err.splitlines() == ["error: no cluster within 0.5 s"]
    assert ended(int((tmp_path / "pid").read_text()))


@pytest.mark.parametrize("steps, sent, message", [
    (["waiting"], signal.SIGTERM,
     "error: worker 0 of 2: stopped by SIGTERM while waiting for the cluster"),
    (["waiting", "formed", "training"], signal.SIGINT,
     "error: worker 0 of 2: stopped by SIGINT; start every worker again, resuming runs/x "
     "(--resume, --output)"),
])
def test_a_stop_signal_ends_a_deaf_worker_at_once(tmp_path, steps, sent, message):
    process = start_supervisor(tmp_path, steps)
    wait_for(tmp_path / steps[-1], process)
    process.send_signal(sent)
    code, err = finish(process)
    assert code == 128 + sent
    assert err.splitlines() == [message]
    assert ended(int((tmp_path / "pid").read_text()))


def test_the_run_ends_with_the_workers_status(tmp_path):
    process = start_supervisor(tmp_path, ["waiting", "formed", "exit3"], wait_seconds=0.5)
    assert finish(process) == (3, "")  # the deadline was cleared when the cluster formed


def test_a_worker_does_not_outlive_a_killed_supervisor(tmp_path):
    process = start_supervisor(tmp_path, ["waiting"])
    wait_for(tmp_path / "waiting", process)
    process.kill()
    finish(process)
    pid = int((tmp_path / "pid").read_text())
    deadline = time.monotonic() + GUARD_SECONDS
    while not ended(pid):  # the kernel kills it (PR_SET_PDEATHSIG)
        assert time.monotonic() < deadline
        time.sleep(0.05)


# -- tools/train.py ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_lonely_workers(tmp_path_factory) -> dict[str, tuple[int, str, str, str]]:
    """Two real workers whose peer is a closed port, started together (TensorFlow's start-up
    is most of their time): one with a cluster timeout of 3 s; one with the default 600 s that
    is sent SIGTERM once it waits. Each: (exit status, stdout, stderr, the peer's address)."""
    from reid.synthetic.crops import generate_dataset

    folder = tmp_path_factory.mktemp("lonely")
    data = folder / "data"
    generate_dataset(data, ids=4, cameras=2, images_per_id=4, seed=1, height=64, width=32)
    config = folder / "tiny.json"
    config.write_text(json.dumps({"data": {"root": str(data), "height": 64, "width": 32},
                                  "model": {"alpha": 0.35, "weights": None},
                                  "train": {"strategy": "multi_worker"}}))
    processes = {}
    for name, timeout in (("timeout", 3), ("sigterm", 600)):
        tf_config = {"cluster": {"worker": [address(closed_port()), address(closed_port())]},
                     "task": {"type": "worker", "index": 0}}
        out, err = (open(folder / f"{name}.{stream}", "w+") for stream in ("out", "err"))
        processes[name] = (subprocess.Popen(
            [sys.executable, str(ROOT / "tools" / "train.py"), "--config", str(config),
             "--output", str(folder / name), "--no-progress",
             "--set", f"train.cluster_timeout_seconds={timeout}"],
            stdout=out, stderr=err, cwd=folder,
            env={**os.environ, "TF_CONFIG": json.dumps(tf_config)}), out, err,
            tf_config["cluster"]["worker"][1])
    results = {}
    try:
        process, out, _, _ = processes["sigterm"]
        deadline = time.monotonic() + GUARD_SECONDS
        while "waiting up to 600 s" not in (folder / "sigterm.out").read_text():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.0)  # inside TensorFlow's wait by now
        process.send_signal(signal.SIGTERM)
        for name, (process, out, err, peer) in processes.items():
            process.wait(timeout=GUARD_SECONDS)
            out.seek(0)
            err.seek(0)
            results[name] = (process.returncode, out.read(), err.read(), peer)
    finally:
        for process, out, err, _ in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
            out.close()
            err.close()
    return results


def test_a_worker_whose_peer_never_comes_up_ends_naming_it(two_lonely_workers):
    code, out, err, peer = two_lonely_workers["timeout"]
    assert "worker 0 of 2: waiting up to 3 s for every worker TF_CONFIG names" in out
    assert code == 1, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"error: worker 0 of 2: the cluster did not form within 3 s: cannot reach {peer} "
        f"(connection refused); start every worker TF_CONFIG names, or raise "
        f"train.cluster_timeout_seconds")


def test_sigterm_ends_a_worker_waiting_for_its_cluster(two_lonely_workers):
    code, _, err, _ = two_lonely_workers["sigterm"]
    assert code == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == ("error: worker 0 of 2: stopped by SIGTERM while "
                                            "waiting for the cluster")
