"""`POST /v1/ingest` and `POST /v1/admin/reload` against a real daemon app on loopback."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netopt.api.batch import encode_batch
from netopt.daemon.wiring import Daemon
from netopt.store import RoundRecord
from tests.daemon_app import daemon_with_app, served

TOKEN_A = "agent-a-token-0123456789"
TOKEN_B = "agent-b-token-0123456789"
ADMIN = "admin-token-0123456789ab"


def config_dict(tmp: Path) -> dict[str, Any]:
    return {
        "regions": [{"id": "lagos", "address": "127.0.0.1"}],
        "pops": [
            {"id": "fra", "role": "core", "address": "127.0.0.2"},
            {"id": "jnb", "role": "edge", "address": "127.0.0.3"},
        ],
        "destinations": ["fra"],
        "store": {"url": f"sqlite:///{tmp / 'netopt.db'}"},
        "api": {"listen": "127.0.0.1:0", "admin_token": ADMIN, "read_token": "reader-0123456789ab"},
        "agents": [
            {"id": "agent-a", "site": "lagos", "token": TOKEN_A},
            {"id": "agent-b", "site": "jnb", "token": TOKEN_B},
        ],
        "ingest": {"max_body_bytes": 64 * 1024, "max_inflated_bytes": 512 * 1024},
    }


def rnd(i: int, src: str = "lagos", dst: str = "fra") -> RoundRecord:
    t = int((time.time() - 5) * 1e9) + i * 1000
    return RoundRecord(t, src, dst, "icmp", 5, 5, 1.0, 1.2, 1.1, 1.5, 2.0, 0.1)


class Client:
    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url, self.session = url, session

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        async with self.session.post(self.url + path, data=body, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    async def ingest(self, body: bytes, token: str | None = TOKEN_A, gz: bool = True):  # type: ignore[no-untyped-def]
        headers = {"Content-Encoding": "gzip"} if gz else {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return await self.post("/v1/ingest", body, headers)


@pytest.fixture
async def daemon_client(tmp_path: Path) -> AsyncIterator[tuple[Daemon, Client, Path]]:
    async with (
        daemon_with_app(config_dict(tmp_path), tmp_path) as (daemon, app, path),
        served(app) as url,
        aiohttp.ClientSession() as session,
    ):
        yield daemon, Client(url, session), path


async def test_ingest_stores_once_and_feeds_the_window(daemon_client) -> None:  # type: ignore[no-untyped-def]
    daemon, client, _ = daemon_client
    rounds = [rnd(i) for i in range(20)]
    body = encode_batch("agent-a", "agent-a:s1:1-20", rounds, spool_depth=20)
    status, answer = await client.ingest(body)
    assert status == 200, answer
    assert answer == {"batch_id": "agent-a:s1:1-20", "rounds": 20, "stored": 20, "duplicate": False}
    assert daemon.store.count("rounds") == 20  # durable before the answer
    status, answer = await client.ingest(body)  # the ack was lost; the agent sends again
    assert status == 200 and answer["duplicate"] is True and answer["stored"] == 0
    assert daemon.store.count("rounds") == 20
    (stats,) = daemon.window.stats(int(time.time() * 1e9))
    assert (stats.src, stats.dst, stats.samples) == ("lagos", "fra", 100)  # counted once
    text = daemon.metrics.exposition().decode()
    assert 'netopt_ingest_batches_total{outcome="stored"} 1.0' in text
    assert 'netopt_ingest_batches_total{outcome="duplicate"} 1.0' in text
    assert 'netopt_spool_depth{agent="agent-a"} 20.0' in text
    assert 'netopt_agent_last_seen_timestamp_seconds{agent="agent-a"}' in text


async def test_ingest_refuses_what_it_must(daemon_client) -> None:  # type: ignore[no-untyped-def]
    daemon, client, _ = daemon_client
    good = encode_batch("agent-a", "b1", [rnd(1)], 0)
    assert (await client.ingest(good, token=None))[0] == 401
    status, body = await client.ingest(good, token="x" * 24)
    assert status == 401 and body["error"] == "wrong token"
    status, body = await client.ingest(encode_batch("ghost", "b1", [rnd(1)], 0), token=TOKEN_B)
    assert status == 403 and "unknown agent 'ghost'" in body["error"]
    status, body = await client.ingest(good, token=TOKEN_B)  # agent-b's token, agent-a's batch
    assert status == 403
    status, body = await client.ingest(encode_batch("agent-a", "b2", [rnd(1, src="jnb")], 0))
    assert status == 403 and body["error"].startswith("rounds[0].src:")
    bad = json.loads(gzip.decompress(good))
    bad["rounds"][0]["sent"] = -1
    status, body = await client.ingest(gzip.compress(json.dumps(bad).encode()))
    assert status == 400 and "rounds[0].sent" in body["error"]
    bad["rounds"][0]["sent"], bad["rounds"][0]["received"] = 1, 2
    status, body = await client.ingest(gzip.compress(json.dumps(bad).encode()))
    assert status == 400 and "received (2) cannot exceed sent (1)" in body["error"]
    status, body = await client.ingest(b"{not json", gz=False)
    assert status == 400 and "not JSON" in body["error"]
    status, body = await client.ingest(b"\x1f\x8bgarbage")
    assert status == 400 and "gzip" in body["error"]
    status, body = await client.ingest(b"x" * (65 * 1024), gz=False)
    assert status == 413
    bomb = gzip.compress(b" " * (600 * 1024))  # small on the wire, huge inflated
    status, body = await client.ingest(bomb)
    assert status == 413 and "inflates" in body["error"]
    assert daemon.store.count("rounds") == 0
    assert (await client.ingest(good))[0] == 200  # and the server is fine
    async with client.session.get(client.url + "/v1/routes") as resp:
        assert resp.status == 401  # the API's own read token still guards the rest


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
round_like = st.fixed_dictionaries(
    {}, optional={k: json_values for k in ("started_wall_ns", "src", "dst", "kind", "sent",
                                            "received", "rtt_p50_ms", "jitter_ms", "extra")},
)  # fmt: skip
batch_like = st.fixed_dictionaries(
    {}, optional={"agent": st.sampled_from(["agent-a", "ghost", ""]) | json_values,
                  "batch_id": json_values, "spool_depth": json_values,
                  "rounds": st.lists(round_like, max_size=3) | json_values},
)  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.binary(max_size=300) | batch_like.map(lambda d: json.dumps(d).encode()),
       gz=st.booleans())  # fmt: skip
async def test_generated_bodies_never_disturb_the_server(
    daemon_client, body: bytes, gz: bool
) -> None:  # type: ignore[no-untyped-def]
    _, client, _ = daemon_client
    status, answer = await client.ingest(gzip.compress(body) if gz else body)
    assert status in (200, 400, 403, 413), answer
    assert isinstance(answer, dict) and (status == 200 or answer["error"])


async def test_admin_reload_validates_then_swaps(daemon_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    daemon, client, path = daemon_client
    assert (await client.post("/v1/admin/reload", b"", {}))[0] == 401
    original = daemon.config
    path.write_text(yaml.safe_dump({**config_dict(tmp_path), "destinations": ["ams"]}))
    status, body = await client.post("/v1/admin/reload", b"", {"Authorization": f"Bearer {ADMIN}"})
    assert status == 400 and "destinations[0]: unknown pop 'ams'" in body["problems"]
    assert daemon.config is original
    assert "netopt_config_last_reload_successful 0.0" in daemon.metrics.exposition().decode()
    good = config_dict(tmp_path)
    good["probes"] = [{"kind": "icmp", "from": "lagos", "to": ["fra"], "interval_s": 60,
                       "timeout_s": 0.5}]  # fmt: skip
    path.write_text(yaml.safe_dump(good))
    status, body = await client.post("/v1/admin/reload", b"", {"Authorization": f"Bearer {ADMIN}"})
    assert status == 200 and body["reloaded"] is True
    assert len(daemon.config.probes) == 1
    assert "netopt_config_last_reload_successful 1.0" in daemon.metrics.exposition().decode()
