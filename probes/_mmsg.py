"""Many datagrams per system call: Linux `sendmmsg(2)` / `recvmmsg(2)` over numpy buffers.

Python's socket module sends and reads one datagram per call; at thousands of probe packets a
second the per-call cost (the wrapper, a bytes object and an ancillary-data list per packet)
is most of a prober's CPU. Here the `struct mmsghdr` vectors, the packets, the addresses and
the control buffers live in numpy arrays laid out exactly as the kernel reads them, so one
call moves a whole burst and the caller parses the result with array operations.

The layouts are taken from ctypes' own view of the C structures (not hard-coded offsets), so
they hold on any Linux ABI ctypes knows. `available()` says whether libc has the calls.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
from typing import Any

import numpy as np
import numpy.typing as npt

MSG_DONTWAIT = socket.MSG_DONTWAIT
NAME_BYTES = 32  # room for a sockaddr_in6 (28 bytes), 8-byte aligned


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.c_void_p),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", _Msghdr), ("len", ctypes.c_uint)]


def _dtype(struct: type[ctypes.Structure], kinds: dict[str, str]) -> np.dtype[np.void]:
    names = [f[0] for f in struct._fields_]
    fields = {name: (kinds[name], getattr(struct, name).offset) for name in names}
    return np.dtype(
        {"names": list(fields), "formats": [f[0] for f in fields.values()],
         "offsets": [f[1] for f in fields.values()], "itemsize": ctypes.sizeof(struct)}
    )  # fmt: skip


_P, _S = f"u{ctypes.sizeof(ctypes.c_void_p)}", f"u{ctypes.sizeof(ctypes.c_size_t)}"
IOVEC = _dtype(_Iovec, {"base": _P, "len": _S})
# struct mmsghdr flattened: the msghdr's fields at their offsets, then msg_len
_HDR = {f[0]: getattr(_Msghdr, f[0]).offset for f in _Msghdr._fields_}
MMSGHDR = np.dtype(
    {
        "names": ["name", "namelen", "iov", "iovlen", "control", "controllen", "flags", "len"],
        "formats": [_P, "u4", _P, _S, _P, _S, "i4", "u4"],
        "offsets": [*_HDR.values(), _Mmsghdr.len.offset],
        "itemsize": ctypes.sizeof(_Mmsghdr),
    }
)

_sendmmsg: Any
_recvmmsg: Any
try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _sendmmsg = _libc.sendmmsg
    _recvmmsg = _libc.recvmmsg
except (OSError, AttributeError):  # not Linux/glibc-like: callers fall back to one per call
    _sendmmsg = _recvmmsg = None
else:
    _sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    _sendmmsg.restype = ctypes.c_int
    _recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int,
                          ctypes.c_void_p]  # fmt: skip
    _recvmmsg.restype = ctypes.c_int


def available() -> bool:
    return _sendmmsg is not None and _recvmmsg is not None


def _address(a: npt.NDArray[np.generic]) -> int:
    return int(a.ctypes.data)


_Bytes = npt.NDArray[np.uint8]


def _vector(
    rows: int, size: int
) -> tuple[_Bytes, _Bytes, npt.NDArray[np.void], npt.NDArray[np.void]]:
    """`rows` buffers of `size` bytes and as many address buffers, and the iovec and mmsghdr
    arrays pointing at them, one message per row (the iovec array must outlive the call)."""
    data = np.zeros((rows, size), np.uint8)
    names = np.zeros((rows, NAME_BYTES), np.uint8)
    at = np.arange(rows, dtype=np.uint64)
    iov = np.zeros(rows, IOVEC)
    iov["base"] = _address(data) + at * size
    iov["len"] = size
    hdr = np.zeros(rows, MMSGHDR)
    hdr["name"] = _address(names) + at * NAME_BYTES
    hdr["iov"] = _address(iov) + at * IOVEC.itemsize
    hdr["iovlen"] = 1
    return data, names, iov, hdr


class RecvBuffers:
    """`slots` receive buffers of `size` bytes, with sender addresses and `control` bytes of
    ancillary data each; `recv` fills the first n and says n."""

    def __init__(self, slots: int, size: int, control: int) -> None:
        self.slots, self.size = slots, size
        self.data, self.names, self._iov, self.hdr = _vector(slots, size)
        self.control = np.zeros((slots, control), np.uint8)
        self.hdr["control"] = _address(self.control) + np.arange(slots, dtype=np.uint64) * control
        self.hdr["namelen"] = NAME_BYTES
        self.hdr["controllen"] = control
        self._pristine = self.hdr.copy()  # the kernel writes back lengths: restored per call
        self._used = 0
        self._hdr_at = _address(self.hdr)

    def recv(self, fd: int, flags: int = 0) -> int:
        """Read up to `slots` datagrams without blocking; 0 when there is none."""
        assert _recvmmsg is not None
        used = self._used
        if used:
            self.hdr[:used] = self._pristine[:used]
        n: int = _recvmmsg(fd, self._hdr_at, self.slots, flags | MSG_DONTWAIT, None)
        if n >= 0:
            self._used = n
            return n
        err = ctypes.get_errno()
        if err in (errno.EAGAIN, errno.EINTR):
            return 0
        raise OSError(err, os.strerror(err))

    @property
    def lengths(self) -> npt.NDArray[np.uint32]:
        return self.hdr["len"]


class SendVector:
    """`rows` datagrams of `size` bytes (`packets`), each to its own address (`names`)."""

    def __init__(self, rows: int, size: int, namelen: int) -> None:
        self.rows, self.size = rows, size
        self.packets, self.names, self._iov, self.hdr = _vector(rows, size)
        self.hdr["namelen"] = namelen
        self._hdr_at = _address(self.hdr)

    def send(self, fd: int, start: int, stop: int) -> int:
        """Send rows `start`…`stop`−1 in one call: how many left, or −errno when row `start`
        itself was refused (the kernel stops at the first datagram it refuses; the caller
        marks it and goes on from the next)."""
        assert _sendmmsg is not None
        n: int = _sendmmsg(fd, self._hdr_at + start * MMSGHDR.itemsize, stop - start, 0)
        return n if n >= 0 else -ctypes.get_errno()


def sockaddr(family: int, address: str) -> bytes:
    """A `struct sockaddr_in`/`sockaddr_in6` (port 0) as the kernel reads it."""
    packed = socket.inet_pton(family, address)
    head = struct.pack("=H", family) + bytes(2)  # sa_family in host order, port 0
    if family == socket.AF_INET6:
        return head + bytes(4) + packed + bytes(4)  # flowinfo, address, scope id
    return head + packed + bytes(8)
