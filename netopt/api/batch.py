"""The ingest wire format, both ends: agent → **batch** (gzip JSON) → `POST /v1/ingest`.

The agent encodes its rounds with `encode_batch`; the daemon validates what arrives against
`IngestBatch` (frozen pydantic models, every field bounded) before anything is stored. Shared
by `netopt.agent` and `netopt.api.ingest`, so neither imports the other.
"""

from __future__ import annotations

import json
import math
import zlib
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from netopt.store.model import RoundRecord

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Ms = Annotated[float | None, Field(default=None, ge=0, le=600_000)]


class IngestRound(BaseModel):
    """One probe round an agent measured (`received` ≤ `sent`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    started_wall_ns: int = Field(ge=0, le=2**63 - 1)
    src: Id
    dst: Id
    kind: Id
    sent: int = Field(ge=0, le=1_000_000)
    received: int = Field(ge=0, le=1_000_000)
    rtt_min_ms: Ms
    rtt_avg_ms: Ms
    rtt_p50_ms: Ms
    rtt_p90_ms: Ms
    rtt_max_ms: Ms
    jitter_ms: Ms

    @field_validator("received")
    @classmethod
    def _received(cls, v: int, info: Any) -> int:
        sent = info.data.get("sent")
        if sent is not None and v > sent:
            raise ValueError(f"received ({v}) cannot exceed sent ({sent})")
        return v

    def record(self) -> RoundRecord:
        return RoundRecord(**self.model_dump())


class IngestBatch(BaseModel):
    """An agent's batch: JSON, usually sent with `Content-Encoding: gzip`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent: Id
    batch_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    spool_depth: int = Field(default=0, ge=0)
    rounds: tuple[IngestRound, ...]


def encode_batch(agent: str, batch_id: str, rounds: list[RoundRecord], spool_depth: int) -> bytes:
    """The agent side: a batch as gzip-compressed JSON."""
    body = {
        "agent": agent,
        "batch_id": batch_id,
        "spool_depth": spool_depth,
        "rounds": [_round_json(r) for r in rounds],
    }
    return zlib.compress(json.dumps(body, separators=(",", ":")).encode(), wbits=31)


def _round_json(r: RoundRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in RoundRecord.__slots__:
        v = getattr(r, k)
        out[k] = None if isinstance(v, float) and not math.isfinite(v) else v
    return out
