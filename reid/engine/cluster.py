"""The cluster of a multi-worker run, as ``TF_CONFIG`` names it, read without TensorFlow.

A worker checks what it can before TensorFlow starts the cluster (an unparsable ``TF_CONFIG``,
an address without a port, its own port taken) and, when the cluster does not form in time,
says which peers it cannot reach and why. Nothing here imports TensorFlow: the process that
supervises a worker (:mod:`reid.engine.supervisor`) uses it too.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import socket

from reid.config import ConfigError
from reid.errors import ReidError

TF_CONFIG = "TF_CONFIG"


class ClusterError(ReidError, RuntimeError):
    """The workers ``TF_CONFIG`` names could not form a cluster; the message says which."""


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The workers ``TF_CONFIG`` names and this process's place among them."""

    #: Every worker's host:port, the chief (when the cluster names one) first: index = worker.
    addresses: tuple[str, ...]
    worker: int

    @property
    def workers(self) -> int:
        return len(self.addresses)

    @property
    def who(self) -> str:
        """This process in messages: ``worker 0 of 2``."""
        return f"worker {self.worker} of {self.workers}"

    @property
    def peers(self) -> list[str]:
        """The other workers' addresses."""
        return [a for i, a in enumerate(self.addresses) if i != self.worker]


def split_address(address: str) -> tuple[str, int]:
    """(host, port) of ``host:port`` (``[v6]:port`` too); ValueError when there is no port."""
    host, colon, port = address.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is not host:port")
    return host.removeprefix("[").removesuffix("]"), int(port)


def parse_tf_config(text: str | None) -> Cluster:
    """The cluster ``TF_CONFIG`` describes; a ConfigError naming what is wrong otherwise. A
    ``chief`` task counts as worker 0."""
    if not text:
        raise ConfigError(f"train.strategy multi_worker: the {TF_CONFIG} environment variable "
                          f"is not set; it names the workers and this one (docs/DISTRIBUTED.md)")
    try:
        spec = json.loads(text)
        cluster, task = spec["cluster"], spec["task"]
        jobs = {job: cluster.get(job, []) for job in ("chief", "worker")}
        kind, index = str(task["type"]), int(task["index"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{TF_CONFIG}: expected JSON with cluster.worker (a list of "
                          f"host:port) and task.type/task.index ({type(exc).__name__}: "
                          f"{exc})") from None
    for job, addresses in jobs.items():
        if not isinstance(addresses, list):
            raise ConfigError(f"{TF_CONFIG}: cluster.{job}: expected a list of host:port "
                              f"addresses, got {json.dumps(addresses)}")
        for address in addresses:
            try:
                split_address(address if isinstance(address, str) else "")
            except ValueError:
                raise ConfigError(f"{TF_CONFIG}: cluster.{job}: {json.dumps(address)} is not "
                                  f"host:port (every worker needs its port)") from None
    chiefs, workers = jobs["chief"], jobs["worker"]
    if kind not in ("chief", "worker") or not 0 <= index < len(chiefs if kind == "chief"
                                                               else workers):
        raise ConfigError(f"{TF_CONFIG}: task {kind} {index} is not in the cluster "
                          f"({len(chiefs)} chief, {len(workers)} worker)")
    if len(chiefs) > 1:
        raise ConfigError(f"{TF_CONFIG}: at most one chief, got {len(chiefs)}")
    return Cluster(tuple(chiefs + workers), index if kind == "chief" else len(chiefs) + index)


def check_tf_config(text: str | None) -> tuple[int, int]:
    """(this worker's index, the number of workers) from ``TF_CONFIG``
    (:func:`parse_tf_config`)."""
    cluster = parse_tf_config(text)
    return cluster.worker, cluster.workers


def check_own_port_free(cluster: Cluster) -> None:
    """A ConfigError naming the port when this worker's port is taken on this machine:
    TensorFlow's server listens there on every interface (and fails with an obscure error)."""
    _, port = split_address(cluster.addresses[cluster.worker])
    with socket.socket() as probe:
        # As TensorFlow's server does: a connection closed lately (TIME_WAIT) does not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError as exc:
            raise ConfigError(f"{TF_CONFIG}: {cluster.who} listens on port {port} "
                              f"({cluster.addresses[cluster.worker]}), which is in use on this "
                              f"machine ({exc.strerror}); stop what holds it or name another "
                              f"port") from None


def unresolved_hosts(cluster: Cluster) -> list[str]:
    """The peers' addresses whose host name does not resolve (yet)."""
    missing = []
    for address in cluster.peers:
        try:
            socket.getaddrinfo(split_address(address)[0], None)
        except OSError:
            missing.append(address)
    return missing


def peer_state(address: str, timeout: float = 2.0) -> str | None:
    """Why ``address`` cannot be reached (``host not found``, ``connection refused``, ...), or
    None when something accepts connections there."""
    host, port = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror:
        return "host not found"
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as exc:
        return (exc.strerror or type(exc).__name__).lower()


def cluster_not_formed(cluster: Cluster, seconds: float) -> str:
    """The one line that ends a worker whose cluster did not form within ``seconds``: the
    peers it cannot reach, each with the reason, or else that they answer but did not join.
    Probes the peers, for up to 2 s."""
    peers = cluster.peers
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(16, len(peers)))) as pool:
        states = dict(zip(peers, pool.map(peer_state, peers)))
    unreachable = [f"{address} ({state})" for address, state in states.items() if state]
    line = f"{cluster.who}: the cluster did not form within {seconds:g} s: "
    if unreachable:
        line += f"cannot reach {', '.join(unreachable)}"
    else:
        line += (f"{', '.join(peers)} accept{'s' if len(peers) == 1 else ''} connections but "
                 f"did not join (another program on the port, or a worker started with another "
                 f"{TF_CONFIG}?)")
    return f"{line}; start every worker {TF_CONFIG} names, or raise train.cluster_timeout_seconds"


def local_tf_configs(workers: int) -> list[str]:
    """Each worker's ``TF_CONFIG`` for a cluster of ``workers`` processes on this machine, on
    free loopback ports (a port may still be taken between this call and the workers' start;
    tests and benchmarks only)."""
    sockets = [socket.socket() for _ in range(workers)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        addresses = [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    finally:
        for s in sockets:
            s.close()
    return [json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker",
                                                                   "index": index}})
            for index in range(workers)]
