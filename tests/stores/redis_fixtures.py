"""Throwaway Redis topologies for the RedisStore tests: a 3-node cluster and a Sentinel.

Built on the single-server helpers of :mod:`tests.stores.redis_servers`. Every
process listens on free loopback ports, keeps its files in a pytest temporary
directory and persists nothing; the fixtures in ``conftest.py`` start them and
always tear them down. Nothing here knows about sessions or stores.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from .redis_servers import (
    REDIS_SERVER,
    RedisServer,
    cli,
    free_cluster_port,
    free_port,
    wait_for_port,
)

__all__ = ["RedisClusterNodes", "RedisSentinel"]


class RedisClusterNodes:
    """A Redis Cluster of ``size`` masters and no replicas.

    Nodes keep their ``nodes.conf``, so after :meth:`stop` and :meth:`start`
    they form the same cluster again on the same ports (empty: no persistence).
    """

    def __init__(self, directory: Path, size: int = 3) -> None:
        self.nodes = [
            RedisServer(
                directory / f"node{index}",
                free_cluster_port(),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(directory / f"nodes-{index}.conf"),
                "--cluster-node-timeout",
                "2000",
            )
            for index in range(size)
        ]
        self._created = False

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def start(self) -> None:
        for node in self.nodes:
            if node.process is None:
                node.start()
        if not self._created:
            cli(
                self.ports[0],
                "--cluster",
                "create",
                *[f"127.0.0.1:{port}" for port in self.ports],
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            )
            self._created = True
        self.wait_ok()

    def wait_ok(self, timeout: float = 20.0) -> None:
        """Wait until every node reports ``cluster_state:ok``."""
        deadline = time.monotonic() + timeout
        for port in self.ports:
            while "cluster_state:ok" not in cli(port, "CLUSTER", "INFO"):
                if time.monotonic() > deadline:
                    raise RuntimeError("the Redis cluster did not become ready")
                time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class RedisSentinel:
    """One master and one Sentinel monitoring it under :attr:`name`."""

    name = "sessions"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.master = RedisServer(directory / "master")
        self.port = free_port()
        self.config = directory / "sentinel.conf"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.master.process is None:
            self.master.start()
        if self.process is None:
            # Sentinel rewrites its config file with what it learns, so it
            # gets a fresh one on every start.
            self.directory.mkdir(parents=True, exist_ok=True)
            self.config.write_text(
                f"port {self.port}\n"
                "bind 127.0.0.1\n"
                f"dir {self.directory}\n"
                f"sentinel monitor {self.name} 127.0.0.1 {self.master.port} 1\n"
                f"sentinel down-after-milliseconds {self.name} 5000\n"
            )
            assert REDIS_SERVER is not None
            # redis-server wants the config file first, then --sentinel.
            self.process = subprocess.Popen(
                [REDIS_SERVER, str(self.config), "--sentinel"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wait_for_port(self.port)

    def stop_sentinel(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        self.stop_sentinel()
        self.master.stop()
