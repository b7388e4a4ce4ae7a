"""netopt.daemon.shard: which worker runs a job, and the frames between daemon and workers."""

from __future__ import annotations

import dataclasses
import math
import struct
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netopt.daemon import shard
from netopt.daemon.probing import ProbeJob
from probes.base import Outcome, ProbeOptions, Target
from probes.stats import RoundDigest, RoundSummary, RttSummary


def job(i: int, count: int = 1) -> ProbeJob:
    return ProbeJob("icmp", "src", f"p{i}", Target(f"127.1.0.{i % 250 + 1}", name=f"p{i}"),
                    ProbeOptions(count=count), 1.0, None)  # fmt: skip


def test_shard_is_deterministic_in_range_and_spread() -> None:
    ids = [f"icmp:src->p{i}" for i in range(10_000)]
    for workers in (1, 2, 3, 7):
        shards = [shard.shard_of(i, workers) for i in ids]
        assert shards == [shard.shard_of(i, workers) for i in ids]
        counts = Counter(shards)
        assert set(counts) == set(range(workers))
        mean = len(ids) / workers
        assert all(abs(n - mean) < 0.15 * mean for n in counts.values()), counts


def test_shard_known_values_do_not_move() -> None:
    """A job stays on its worker across restarts and releases (blake2b, not hash())."""
    assert [shard.shard_of(f"icmp:src->p{i}", 3) for i in range(12)] == [
        0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2
    ]  # fmt: skip
    assert shard.shard_of("icmp:lagos->fra", 1) == 0
    with pytest.raises(ValueError, match="workers must be at least 1"):
        shard.shard_of("x", 0)


def test_shard_is_not_the_phase_slot() -> None:
    """Every worker gets jobs of every phase slot (the phase hash is crc32 on 10 slots)."""
    from netopt.daemon.schedule import phase_s

    by_phase: dict[float, set[int]] = {}
    for i in range(2_000):
        job_id = f"icmp:src->p{i}"
        by_phase.setdefault(phase_s(job_id, 1.0), set()).add(shard.shard_of(job_id, 2))
    assert len(by_phase) == 10 and all(s == {0, 1} for s in by_phase.values())


def test_split_puts_every_job_on_its_shard() -> None:
    jobs = [job(i) for i in range(500)]
    parts = shard.split(jobs, 3)
    assert sum(len(p) for p in parts) == 500
    for index, part in enumerate(parts):
        assert all(shard.shard_of(i, 3) == index for i in part)
    where: dict[str, int] = {}
    assert shard.split(jobs, 3, where) == parts and len(where) == 500
    where[jobs[0].job_id] = 2  # the cache is trusted: it is the caller's, for this count
    assert jobs[0].job_id in shard.split(jobs, 3, where)[2]


def test_jobs_delta_sends_only_what_changed() -> None:
    had = {j.job_id: j for j in (job(1), job(2), job(3))}
    escalated = job(2, count=25)
    wanted = {j.job_id: j for j in (job(1), escalated, job(4))}
    delta = shard.jobs_delta(had, wanted)
    assert set(delta.upserts) == {escalated, job(4)}
    assert delta.removes == (job(3).job_id,)
    assert not shard.jobs_delta(wanted, dict(wanted))
    frame = shard.encode_jobs(delta)
    kind, length = shard.read_header(frame[: shard.HEADER.size])
    assert kind == shard.JOBS and length == len(frame) - shard.HEADER.size
    assert shard.decode_jobs(frame[shard.HEADER.size :]) == delta


floats = st.floats(allow_nan=False, allow_infinity=False, min_value=0, max_value=1e6)
summaries = st.builds(
    RoundSummary,
    started_wall_ns=st.integers(0, 2**63 - 1),
    digest=st.builds(
        RoundDigest,
        sent=st.integers(0, 10_000),
        received=st.integers(0, 10_000),
        rtt_ms=st.none() | st.builds(RttSummary, *([floats] * 7)),
        jitter_ms=st.none() | floats,
        outcomes=st.dictionaries(st.sampled_from(list(Outcome)), st.integers(0, 10_000)),
    ),
    rtts_s=st.lists(floats, max_size=50),
)
ids = st.text(min_size=1, max_size=80)


@given(st.lists(st.tuples(ids, summaries), max_size=20))
def test_rounds_frame_round_trips(rounds: list[tuple[str, RoundSummary]]) -> None:
    frame = shard.encode_rounds(rounds)
    kind, length = shard.read_header(frame[: shard.HEADER.size])
    assert kind == shard.ROUNDS and length == len(frame) - shard.HEADER.size
    assert shard.decode_rounds(frame[shard.HEADER.size :]) == rounds


def test_rounds_frame_keeps_outcome_enum_keys_and_none() -> None:
    digest = RoundDigest(5, 0, None, None, {Outcome.TIMEOUT: 5})
    body = shard.encode_rounds([("icmp:a->b", RoundSummary(7, digest, []))])[shard.HEADER.size :]
    [(job_id, back)] = shard.decode_rounds(body)
    assert job_id == "icmp:a->b" and back.digest.outcomes == {"timeout": 5}
    assert back.digest.rtt_ms is None and back.digest.jitter_ms is None


def test_a_one_packet_round_is_compact() -> None:
    rtt = RttSummary(*([0.01] * 7))
    s = RoundSummary(1, RoundDigest(1, 1, rtt, 0.0, {"ok": 1}), [1e-5])
    assert len(shard.encode_rounds([("icmp:src->p1234", s)])) < 150


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x00\x00\x00\x01", "bad rounds frame"),
        (shard.encode_rounds([])[shard.HEADER.size :] + b"x", "1 bytes left over"),
    ],
)
def test_bad_rounds_frame_is_a_frame_error(body: bytes, message: str) -> None:
    with pytest.raises(shard.FrameError, match=message):
        shard.decode_rounds(body)


def test_bad_headers_and_small_frames() -> None:
    with pytest.raises(shard.FrameError, match="unknown frame type"):
        shard.read_header(struct.pack("!cI", b"Z", 0))
    with pytest.raises(shard.FrameError, match="at most"):
        shard.read_header(struct.pack("!cI", b"R", shard.MAX_BODY_BYTES + 1))
    with pytest.raises(ValueError, match="unknown frame type"):
        shard.frame(b"Q", b"")
    assert shard.decode_skipped(shard.encode_skipped(12)[shard.HEADER.size :]) == 12
    with pytest.raises(shard.FrameError, match="skipped frame of 3 bytes"):
        shard.decode_skipped(b"abc")
    assert shard.encode_failed("probe_slot")[shard.HEADER.size :] == b"probe_slot"


def test_nan_rtt_survives() -> None:
    s = RoundSummary(1, RoundDigest(1, 1, None, None, {}), [math.nan])
    [(_, back)] = shard.decode_rounds(shard.encode_rounds([("j", s)])[shard.HEADER.size :])
    assert math.isnan(back.rtts_s[0]) and dataclasses.replace(back, rtts_s=[]).digest == s.digest
