"""The ingest wire format: what an agent encodes, the daemon decodes to the same rounds."""

from __future__ import annotations

import json
import zlib

import pytest
from pydantic import ValidationError

from netopt.api.batch import IngestBatch, encode_batch
from netopt.store.model import RoundRecord


def rnd(i: int, **kw: object) -> RoundRecord:
    base: dict[str, object] = dict(
        started_wall_ns=1_700_000_000_000_000_000 + i, src="lagos", dst="jnb", kind="icmp",
        sent=10, received=9, rtt_min_ms=20.0, rtt_avg_ms=21.5, rtt_p50_ms=21.0, rtt_p90_ms=23.0,
        rtt_max_ms=24.0, jitter_ms=1.25,
    )  # fmt: skip
    base.update(kw)
    return RoundRecord(**base)  # type: ignore[arg-type]


def decode(body: bytes) -> IngestBatch:
    return IngestBatch.model_validate(json.loads(zlib.decompress(body, wbits=31)))


def test_a_batch_round_trips_gzip_json() -> None:
    rounds = [rnd(1), rnd(2, received=0, rtt_min_ms=None, rtt_avg_ms=None, rtt_p50_ms=None,
                       rtt_p90_ms=None, rtt_max_ms=None, jitter_ms=None)]  # fmt: skip
    batch = decode(encode_batch("agent-a", "agent-a:s1:1-2", rounds, spool_depth=7))
    assert (batch.agent, batch.batch_id, batch.spool_depth) == ("agent-a", "agent-a:s1:1-2", 7)
    assert [r.record() for r in batch.rounds] == rounds


def test_non_finite_values_travel_as_null() -> None:
    batch = decode(encode_batch("a", "b", [rnd(1, rtt_max_ms=float("inf"))], 0))
    assert batch.rounds[0].rtt_max_ms is None


def test_received_above_sent_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="received"):
        decode(encode_batch("a", "b", [rnd(1, received=11)], 0))
