"""Doing things inside a named network namespace without a process per namespace.

A socket belongs to the namespace it was created in, for its whole life. So a prober that
wants to probe "from" a lab region asks `socket_in(ns, ...)`: a short-lived thread enters the
namespace with setns(2) (Python 3.11 has no os.setns), creates the socket and exits; the
caller's threads never change namespace. `run_in(ns, fn)` does the same for any callable
(used by the builder to write per-namespace sysctls).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

from netopt.errors import LabError

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"
T = TypeVar("T")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.setns.restype = ctypes.c_int


def netns_path(netns: str) -> str:
    if not netns or "/" in netns or netns in (".", ".."):
        raise LabError(f"not a network namespace name: {netns!r}")
    return os.path.join(NETNS_DIR, netns)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def run_in(netns: str, fn: Callable[[], T]) -> T:
    """Call `fn()` in a fresh thread that has entered `netns`; return its result or raise."""
    path = netns_path(netns)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise LabError(f"network namespace {netns!r} does not exist") from None
    except PermissionError:
        raise LabError(f"cannot open {path}: entering a namespace needs root") from None
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            _setns(fd)  # this thread only; it ends right after, so nothing else runs there
            result.append(fn())
        except BaseException as exc:  # handed to the caller's thread below
            error.append(exc)

    try:
        thread = threading.Thread(target=body, name=f"netns-{netns}", daemon=True)
        thread.start()
        thread.join()
    finally:
        os.close(fd)
    if error:
        exc = error[0]
        if isinstance(exc, PermissionError):
            raise LabError(f"entering network namespace {netns!r} needs root") from exc
        raise exc
    return result[0]


def socket_in(
    netns: str,
    family: int = socket.AF_INET,
    type: int = socket.SOCK_DGRAM,
    proto: int = 0,
) -> socket.socket:
    """A socket created inside `netns`; it keeps sending and receiving there."""
    return run_in(netns, lambda: socket.socket(family, type, proto))


def write_sysctl(netns: str, settings: dict[str, str]) -> None:
    """Write ``net.*`` sysctls inside `netns` (``/proc/sys/net`` follows the thread's netns)."""

    def apply() -> None:
        for key, value in settings.items():
            path = "/proc/sys/" + key.replace(".", "/")
            with open(path, "w", encoding="ascii") as f:
                f.write(value)

    run_in(netns, apply)


def exists(netns: str) -> bool:
    return os.path.exists(netns_path(netns))
