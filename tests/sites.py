"""Two NATS sites on loopback for replication tests: a hub with JetStream domain `hub`, and a leaf node
server with domain `leaf` whose link to the hub runs through a TCP relay the test can cut and restore."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from nats_s3.embedded import find_nats_server, free_port

from .support import wait_port

# What the leaf link must not carry between the sites (README, "Replication across sites"): both sides
# have streams of the same names (a replica's bucket stream, the gateway KV, the index snapshots), so
# a publish on one side would also be stored by the other's stream.
LINK_DENY = ["$O.>", "$KV.>", "nats_s3.>", "$JS.EVENT.>"]


class TcpRelay:
    """Forwards connections from its port to a target port; `cut()` drops them all and refuses new
    ones (a broken link), `restore()` accepts again on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> TcpRelay:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                self._close(s)

    def _close(self, s: socket.socket) -> None:
        with self._lock:
            self._conns.discard(s)
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            s.close()

    def cut(self) -> None:
        if self._listener is not None:
            self._close(self._listener)
            self._listener = None
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            self._close(s)

    def restore(self) -> None:
        self.start()


class Site:
    """One nats-server -js with a JetStream domain, a monitoring port and its own store."""

    def __init__(self, name: str, base: Path) -> None:
        self.name = name
        self.port = free_port()
        self.monitor_port = free_port()
        self.leaf_port = free_port()
        self.dir = base / name
        self._leafnodes = ""
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, leafnodes: str | None = None) -> Site:
        """Start (again: with the same ports, store and leafnodes block when `leafnodes` is None)."""
        if leafnodes is not None:
            self._leafnodes = leafnodes
        leafnodes = self._leafnodes
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "server.conf"
        conf.write_text(
            f"server_name: {self.name}\nlisten: 127.0.0.1:{self.port}\nhttp: 127.0.0.1:{self.monitor_port}\n"
            f"jetstream {{ store_dir: {json.dumps(str(self.dir / 'js'))}, domain: {self.name} }}\n"
            f"leafnodes {{ {leafnodes} }}\nlog_file: {json.dumps(str(self.dir / 'server.log'))}\n"
            + ("debug: true\n" if os.environ.get("NATS_S3_SITES_DEBUG") else "")
        )
        self.proc = subprocess.Popen(
            [find_nats_server(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_port("127.0.0.1", self.port)
        return self

    def leaf_connections(self) -> int:
        url = f"http://127.0.0.1:{self.monitor_port}/leafz"
        with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(url, timeout=2) as resp:
            return int(json.load(resp).get("leafnodes") or 0)
        return 0

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class HubAndLeaf:
    """The hub, the leaf and the relay between them."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="nats-s3-sites-"))
        self.hub = Site("hub", self.base)
        self.leaf = Site("leaf", self.base)
        self.relay = TcpRelay(self.hub.leaf_port)

    def start(self) -> HubAndLeaf:
        # no_advertise: the leaf must not learn the hub's own leaf port and reconnect around the relay.
        self.hub.start(f"listen: 127.0.0.1:{self.hub.leaf_port}, no_advertise: true")
        self.relay.start()
        deny = json.dumps(LINK_DENY)
        self.leaf.start(
            f'remotes [{{ url: "nats-leaf://127.0.0.1:{self.relay.port}", '
            f"deny_imports: {deny}, deny_exports: {deny} }}]"
        )
        self.wait_linked()
        return self

    def wait_linked(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.hub.leaf_connections() < 1:
            if time.monotonic() > deadline:
                raise TimeoutError("the leaf node did not connect to the hub")
            time.sleep(0.1)

    def stop(self) -> None:
        self.relay.cut()
        self.leaf.stop()
        self.hub.stop()
        shutil.rmtree(self.base, ignore_errors=True)
