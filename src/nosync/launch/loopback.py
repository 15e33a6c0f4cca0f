"""A single-machine run's c10d stores listen on loopback only.

A TCPStore server binds every interface (IPv4 and IPv6), whatever host name it is given, and
answers anyone who reaches it, without authentication.  A run on one machine needs no other
interface, so its two stores - the launcher's rendezvous store and the one rank 0 hosts for
the process group - are started on a socket bound to ``127.0.0.1`` and handed to torch through
``TCPStore(master_listen_fd=)``.  torch then finds them by port (``multi_tenant=True``, the
way its rendezvous and ``env://`` create their stores) instead of binding new ones.

Multi-node runs (an external ``torchrun``) bind where torch binds: see the README's reliability
section for what that exposes and how to restrict it.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch.distributed as dist

HOST = "127.0.0.1"
# set by the local launcher for its ranks: rank 0 hosts the process group's store itself (on
# loopback) instead of reusing the agent's, which torch would start on every interface
ENV = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1", "NOSYNC_LOOPBACK_STORE": "1"}

_held: list[LoopbackServer] = []  # a rank's own server lives as long as its process


@dataclass
class LoopbackServer:
    """A TCPStore server on a socket bound to loopback (the store owns the socket's fd)."""

    port: int
    store: dist.TCPStore | None

    def close(self) -> None:
        self.store = None  # the server stops with its last store object, closing the socket


def serve(port: int) -> LoopbackServer:
    """A store server on ``127.0.0.1:port`` (0: any free port), reused by every ``TCPStore``
    of this process on that port (``multi_tenant=True``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
        sock.listen(1024)
        store = dist.TCPStore(
            HOST, sock.getsockname()[1], is_master=True, multi_tenant=True,
            master_listen_fd=sock.fileno(), wait_for_workers=False,
        )  # fmt: skip
    except BaseException:
        sock.close()
        raise
    port = sock.getsockname()[1]
    sock.detach()  # the store closes the fd when it stops; the socket object must not too
    return LoopbackServer(port, store)


def rendezvous_server(port: int) -> LoopbackServer:
    """The launcher's rendezvous store, before torch's elastic agent would start its own."""
    return serve(port)


def host_worker_store() -> None:
    """In a rank of a local launch: rank 0 starts the process group's store on loopback, at the
    port the agent chose, before ``env://`` would start it on every interface."""
    if os.environ.get("NOSYNC_LOOPBACK_STORE") != "1" or os.environ.get("RANK") != "0":
        return
    _held.append(serve(int(os.environ["MASTER_PORT"])))
