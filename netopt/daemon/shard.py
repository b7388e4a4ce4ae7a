"""Probe workers' wire: schedule → **shard** → probe (worker processes) → rounds back → store …

Pure: which worker runs a probe job (`shard_of`, a hash of the job id) and the frames on the
socketpair between the daemon and each of its probe workers (netopt.daemon.probe_workers).

A frame is a type byte and a body length (`!cI`), then the body:

- `J` (daemon → worker): the worker's job set changed — a pickle of (jobs to add or replace,
  ids to drop). Pickled because both ends are our own code (a parent and the child it started
  with the socketpair); a worker's first `J` is its whole shard.
- `R` (worker → daemon): one slot's rounds, each its job id and its `RoundSummary` (start,
  digest, the RTTs of the answered packets) packed with `struct`: ~100 bytes a one-packet round,
  no object graph to walk on either side.
- `F` (worker → daemon): a task in the worker failed (its name, utf-8): counted by the daemon.
- `S` (worker → daemon): rounds the worker's scheduler skipped since its last `S` (`!I`).

Hashing with blake2b, not the crc32 that places a job's phase (netopt.daemon.schedule), keeps
the shard independent of the phase slot: every worker gets its share of every slot.
"""

from __future__ import annotations

import hashlib
import pickle
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from probes.base import Outcome
from probes.stats import RoundDigest, RoundSummary, RttSummary

HEADER = struct.Struct("!cI")  # type, body length
MAX_BODY_BYTES = 64 << 20  # a frame longer than this is a fault, not data
JOBS, ROUNDS, FAILED, SKIPPED = b"J", b"R", b"F", b"S"
TYPES = frozenset({JOBS, ROUNDS, FAILED, SKIPPED})
OUTCOMES = tuple(o.value for o in Outcome)  # an outcome's index on the wire
_INDEX = {o: i for i, o in enumerate(OUTCOMES)}
_ROUND = struct.Struct("!HqIIBBH")  # id length, start, sent, received, flags, outcomes, rtts
_RTT = struct.Struct("!7d")  # RttSummary: min, avg, p50, p90, p99, max, stddev
_JITTER = struct.Struct("!d")
_OUTCOME = struct.Struct("!BI")
_COUNT = struct.Struct("!I")
_HAS_RTT, _HAS_JITTER = 1, 2


class FrameError(ValueError):
    """A frame that our own peer could not have sent: the worker is faulty and is restarted."""


def shard_of(job_id: str, workers: int) -> int:
    """The worker (0 … workers-1) that runs `job_id`: the same on every run and machine."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    digest = hashlib.blake2b(job_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % workers


def frame(kind: bytes, body: bytes) -> bytes:
    if kind not in TYPES:
        raise ValueError(f"unknown frame type {kind!r}")
    return HEADER.pack(kind, len(body)) + body


def read_header(header: bytes) -> tuple[bytes, int]:
    """(type, body length) of a frame's first `HEADER.size` bytes; FrameError if impossible."""
    kind, length = HEADER.unpack(header)
    if kind not in TYPES:
        raise FrameError(f"unknown frame type {kind!r}")
    if length > MAX_BODY_BYTES:
        raise FrameError(f"frame of {length} bytes (at most {MAX_BODY_BYTES})")
    return kind, length


@dataclass(frozen=True, slots=True)
class JobsDelta:
    """What a worker must change in its job set: jobs added or replaced, and ids dropped."""

    upserts: tuple[object, ...]
    removes: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.upserts or self.removes)


def jobs_delta(had: Mapping[str, object], wanted: Mapping[str, object]) -> JobsDelta:
    """From the jobs a worker has to the ones it should have (frozen dataclasses: equal jobs
    are not sent again)."""
    upserts = tuple(j for i, j in wanted.items() if had.get(i) != j)
    removes = tuple(i for i in had if i not in wanted)
    return JobsDelta(upserts, removes)


def encode_jobs(delta: JobsDelta) -> bytes:
    return frame(JOBS, pickle.dumps((delta.upserts, delta.removes), pickle.HIGHEST_PROTOCOL))


def decode_jobs(body: bytes) -> JobsDelta:
    upserts, removes = pickle.loads(body)  # from our own parent only (socketpair)
    return JobsDelta(tuple(upserts), tuple(removes))


def split(
    jobs: Iterable[Any], workers: int, where: dict[str, int] | None = None
) -> list[dict[str, Any]]:
    """Jobs by worker, each worker's by id. `where` (job id → shard at this `workers`) is a
    cache the caller keeps between calls: each id is hashed once."""
    where = {} if where is None else where
    out: list[dict[str, Any]] = [{} for _ in range(workers)]
    for job in jobs:
        job_id = job.job_id
        index = where.get(job_id)
        if index is None:
            index = where[job_id] = shard_of(job_id, workers)
        out[index][job_id] = job
    return out


def encode_rounds(rounds: Sequence[tuple[str, RoundSummary]]) -> bytes:
    """An `R` frame of (job id, summary) pairs."""
    parts: list[bytes] = [_COUNT.pack(len(rounds))]
    for job_id, s in rounds:
        d, name = s.digest, job_id.encode()
        flags = (_HAS_RTT if d.rtt_ms is not None else 0) | (
            _HAS_JITTER if d.jitter_ms is not None else 0
        )
        outcomes = [(_INDEX[o], n) for o, n in d.outcomes.items()]
        head = _ROUND.pack(len(name), s.started_wall_ns, d.sent, d.received, flags,
                           len(outcomes), len(s.rtts_s))  # fmt: skip
        parts += (head, name)
        if d.rtt_ms is not None:
            r = d.rtt_ms
            parts.append(_RTT.pack(r.min, r.avg, r.p50, r.p90, r.p99, r.max, r.stddev))
        if d.jitter_ms is not None:
            parts.append(_JITTER.pack(d.jitter_ms))
        parts += [_OUTCOME.pack(i, n) for i, n in outcomes]
        parts.append(struct.pack(f"!{len(s.rtts_s)}d", *s.rtts_s))
    return frame(ROUNDS, b"".join(parts))


def decode_rounds(body: bytes) -> list[tuple[str, RoundSummary]]:
    """The pairs of an `R` frame's body; FrameError when it does not parse."""
    try:
        return _decode_rounds(memoryview(body))
    except (struct.error, UnicodeDecodeError, IndexError) as exc:
        raise FrameError(f"bad rounds frame: {exc}") from exc


def _decode_rounds(body: memoryview) -> list[tuple[str, RoundSummary]]:
    (n,), at, out = _COUNT.unpack_from(body), _COUNT.size, []
    for _ in range(n):
        id_len, started, sent, received, flags, n_out, n_rtt = _ROUND.unpack_from(body, at)
        at += _ROUND.size
        job_id = bytes(body[at : at + id_len]).decode()
        at += id_len
        rtt = None
        if flags & _HAS_RTT:
            rtt = RttSummary(*_RTT.unpack_from(body, at))
            at += _RTT.size
        jitter = None
        if flags & _HAS_JITTER:
            (jitter,) = _JITTER.unpack_from(body, at)
            at += _JITTER.size
        outcomes = {}
        for _ in range(n_out):
            i, count = _OUTCOME.unpack_from(body, at)
            outcomes[OUTCOMES[i]] = count
            at += _OUTCOME.size
        rtts = list(struct.unpack_from(f"!{n_rtt}d", body, at))
        at += 8 * n_rtt
        digest = RoundDigest(sent, received, rtt, jitter, outcomes)
        out.append((job_id, RoundSummary(started, digest, rtts)))
    if at != len(body):
        raise FrameError(f"rounds frame: {len(body) - at} bytes left over")
    return out


def encode_failed(task: str) -> bytes:
    return frame(FAILED, task.encode())


def encode_skipped(rounds: int) -> bytes:
    return frame(SKIPPED, _COUNT.pack(rounds))


def decode_skipped(body: bytes) -> int:
    if len(body) != _COUNT.size:
        raise FrameError(f"skipped frame of {len(body)} bytes (expected {_COUNT.size})")
    return int(_COUNT.unpack(body)[0])
