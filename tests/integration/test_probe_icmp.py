"""ICMP prober on loopback: real sockets, kernel timestamps, many rounds on one socket, and
the batched path (`probe_many`: a burst per system call) against the same neighbours."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from probes import _icmp_wire as wire
from probes.base import Outcome, ProbeOptions, ProbeSetupError, Target, make_prober
from probes.icmp import IcmpProber

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="raw ICMP sockets need root")
FAST = ProbeOptions(count=5, interval_s=0.01, timeout_s=1.0)


async def test_loopback_round_has_kernel_timed_rtts() -> None:
    prober = make_prober("icmp")
    try:
        result = await prober.probe(Target("127.0.0.1"), FAST)
    finally:
        await prober.close()
    assert [s.outcome for s in result.samples] == [Outcome.OK] * 5
    assert all(0 < (s.rtt_ns or 0) < 100_000_000 for s in result.samples)
    assert result.foreign == {}


async def test_ipv6_loopback() -> None:
    prober = IcmpProber()
    try:
        result = await prober.probe(Target("::1"), FAST)
    finally:
        await prober.close()
    assert result.received == 5


async def test_many_targets_pipelined_on_one_socket() -> None:
    prober = IcmpProber()
    opts = ProbeOptions(count=50, interval_s=0, timeout_s=1.0, dscp=46)
    try:
        results = await asyncio.gather(
            *(prober.probe(Target(f"127.0.0.{i}"), opts) for i in range(1, 21))
        )
        assert len(prober._channels) == 1
    finally:
        await prober.close()
    assert sum(r.received for r in results) == 20 * 50
    assert all(r.foreign == {} for r in results)


async def test_overlapping_rounds_to_one_target_each_get_their_own_replies() -> None:
    """Escalated bursts (netopt.daemon.bursts) overlap on one path: rounds to the same target,
    started 10 ms apart on one socket, must not take each other's replies."""
    prober = IcmpProber()
    opts = ProbeOptions(count=5, interval_s=0.02, timeout_s=1.0)

    async def later(i: int) -> Any:
        await asyncio.sleep(0.01 * i)
        return await prober.probe(Target("127.0.0.1"), opts)

    try:
        results = await asyncio.gather(*(later(i) for i in range(8)))
    finally:
        await prober.close()
    assert [r.received for r in results] == [5] * 8
    assert all(r.foreign == {} for r in results)
    assert all(0 < (s.rtt_ns or 0) < 100_000_000 for r in results for s in r.samples)


async def test_socket_factory_is_used() -> None:
    calls: list[tuple[int, int, int]] = []

    def factory(family: int, type_: int, proto: int) -> socket.socket:
        calls.append((family, type_, proto))
        return socket.socket(family, type_, proto)

    prober = IcmpProber(socket_factory=factory)
    try:
        assert (await prober.probe(Target("127.0.0.1"), FAST)).received == 5
    finally:
        await prober.close()
    assert calls == [(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)]


def _ping_group_range() -> tuple[int, int]:
    with open("/proc/sys/net/ipv4/ping_group_range") as f:
        lo, hi = (int(x) for x in f.read().split())
    return lo, hi


async def test_datagram_socket_when_raw_is_refused() -> None:
    def no_raw(family: int, type_: int, proto: int) -> socket.socket:
        if type_ == socket.SOCK_RAW:
            raise PermissionError(1, "Operation not permitted")
        return socket.socket(family, type_, proto)

    lo, hi = _ping_group_range()
    prober = IcmpProber(socket_factory=no_raw)
    try:
        if not lo <= os.getgid() <= hi:
            with pytest.raises(ProbeSetupError, match="ping_group_range"):
                await prober.probe(Target("127.0.0.1"), FAST)
            return
        assert (await prober.probe(Target("127.0.0.1"), FAST)).received == 5
    finally:
        await prober.close()


def test_cli_json_summary() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "netopt", "probe", "icmp", "127.0.0.1", "-c", "10", "-i", "0.01",
         "--json"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    doc = json.loads(out)
    assert doc["target"] == "127.0.0.1" and doc["sent"] == 10 and doc["received"] == 10
    assert doc["loss_pct"] == 0
    assert set(doc["rtt_ms"]) == {"min", "avg", "p50", "p90", "p99", "max", "stddev"}
    assert doc["rtt_ms"]["min"] > 0 and doc["jitter_ms"] is not None


def test_cli_text_summary() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "netopt", "probe", "icmp", "127.0.0.1", "-c", "3", "-i", "0.01"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    assert "3 packets transmitted, 3 received, 0% packet loss" in out
    assert "rtt min/avg/max/stddev" in out


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def unreachable_router() -> Iterator[str]:
    """Namespace `src` behind a router that answers 198.18.251.0/24 with ICMP unreachable."""
    tag = f"nopt-ic{os.getpid() % 100000}"
    src, rtr = f"{tag}-s", f"{tag}-r"
    try:
        for ns in (src, rtr):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("link", "add", "ics0", "netns", src, "type", "veth", "peer", "icr0", "netns", rtr)
        _ip("-n", src, "addr", "add", "198.18.252.1/30", "dev", "ics0")
        _ip("-n", rtr, "addr", "add", "198.18.252.2/30", "dev", "icr0")
        _ip("-n", src, "link", "set", "ics0", "up")
        _ip("-n", rtr, "link", "set", "icr0", "up")
        _ip("-n", src, "route", "add", "default", "via", "198.18.252.2")
        _ip("-n", rtr, "route", "add", "unreachable", "198.18.251.0/24")
        _ip("-n", rtr, "route", "add", "blackhole", "198.18.250.0/24")  # silence: timeouts
        # forward, and answer every packet (the default rate limit allows ~1 error/s per peer)
        subprocess.run(["ip", "netns", "exec", rtr, "sysctl", "-qw", "net.ipv4.ip_forward=1",
                        "net.ipv4.icmp_ratelimit=0"], check=True)  # fmt: skip
        subprocess.run(["ip", "netns", "exec", src, "sysctl", "-qw",
                        "net.ipv4.ping_group_range=0 2147483647"], check=True)  # fmt: skip
        yield src
    finally:
        for ns in (src, rtr):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _in_namespace(ns: str, raw: bool) -> Callable[[int, int, int], socket.socket]:
    """Sockets opened in `ns`; without `raw`, as if raw sockets were refused (ping sockets)."""
    from netopt.lab.netns import socket_in

    def factory(family: int, type_: int, proto: int) -> socket.socket:
        if type_ == socket.SOCK_RAW and not raw:
            raise PermissionError(1, "Operation not permitted")
        return socket_in(ns, family, type_, proto)

    return factory


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "ping-socket"])
async def test_icmp_unreachable_is_an_outcome_not_loss(unreachable_router: str, raw: bool) -> None:
    prober = IcmpProber(socket_factory=_in_namespace(unreachable_router, raw))
    opts = ProbeOptions(count=3, interval_s=0.05, timeout_s=1.0)
    try:
        unreachable = await prober.probe(Target("198.18.251.9"), opts)
        router = await prober.probe(Target("198.18.252.2"), opts)
    finally:
        await prober.close()
    assert [s.outcome for s in unreachable.samples] == [Outcome.UNREACHABLE] * 3
    assert all(s.rtt_ns is not None and s.rtt_ns > 0 for s in unreachable.samples)
    assert router.received == 3  # the same socket still works for a reachable target


def test_without_privilege_the_cli_says_how_to_grant_it() -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv (util-linux) to drop privileges")
    done = subprocess.run(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
         "netopt", "probe", "icmp", "127.0.0.1", "-c", "1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if "netopt:" not in done.stderr:
        pytest.skip(f"the checkout is not usable by an unprivileged user: {done.stderr[-200:]}")
    with open("/proc/sys/net/ipv4/ping_group_range") as f:
        lo, hi = (int(x) for x in f.read().split())
    if lo <= 65534 <= hi:
        pytest.skip("ping sockets are allowed for nobody here")
    assert done.returncode == 1
    assert "CAP_NET_RAW" in done.stderr and "ping_group_range" in done.stderr
    assert "Traceback" not in done.stderr


# --- the batched path ---------------------------------------------------------------------
async def test_batch_to_many_targets_matches_every_reply_in_target_order() -> None:
    prober = IcmpProber()
    targets = [Target(f"127.0.{i}.{j}") for i in range(2) for j in range(1, 26)] + [
        Target("::1"), Target("127.0.0.1")
    ]  # fmt: skip
    opts = ProbeOptions(count=4, interval_s=0.01, timeout_s=1.0)
    try:
        results = await prober.probe_many(targets, opts)
        again = await prober.probe_many(targets, opts)  # the send vectors come from the cache
        summed = await prober.summaries_many(targets, opts)
    finally:
        await prober.close()
    assert [r.target for r in results] == targets
    assert len(summed) == len(targets)
    for s in summed:  # from the batch's arrays, without Sample objects
        assert s.digest.sent == s.digest.received == 4 and len(s.rtts_s) == 4
        assert s.digest.outcomes == {"ok": 4} and s.started_wall_ns > 0
    for r in (*results, *again):
        assert [s.outcome for s in r.samples] == [Outcome.OK] * 4 and r.foreign == {}
        assert [s.seq for s in r.samples] == [0, 1, 2, 3]
        assert all(0 < (s.rtt_ns or 0) < 100_000_000 for s in r.samples)
        sent = [s.sent_ns for s in r.samples]
        assert sent == sorted(sent) and len(set(sent)) == 4  # paced: one burst each
    assert prober.foreign_totals() == {}


async def test_batch_takes_kernel_tx_timestamps() -> None:
    """Packet i of 50 targets leaves in one call: with kernel TX stamps every target's send
    time is its own, later for later targets; without them all share the time of the call."""
    targets = [Target(f"127.0.3.{j}") for j in range(1, 51)]
    opts = ProbeOptions(count=1, interval_s=0.01, timeout_s=1.0)
    stamped, plain = IcmpProber(), IcmpProber(tx_timestamps=False)
    try:
        with_stamps = await stamped.probe_many(targets, opts)
        without = await plain.probe_many(targets, opts)
    finally:
        await stamped.close()
        await plain.close()
    assert len({r.samples[0].sent_ns for r in without}) == 1
    sent = [r.samples[0].sent_ns for r in with_stamps]
    assert len(set(sent)) > 1 and sent == sorted(sent)


async def test_batch_flood_mode_and_a_single_target_take_the_per_round_path() -> None:
    prober = IcmpProber()
    try:
        flood = await prober.probe_many(
            [Target("127.0.0.1"), Target("127.0.0.2")], ProbeOptions(count=20, interval_s=0)
        )
        single = await prober.probe_many([Target("127.0.0.1")], FAST)
        assert prober._batch_channels == {}
    finally:
        await prober.close()
    assert [r.received for r in flood] == [20, 20] and single[0].received == 5


async def _until(condition: Callable[[], bool], what: str, deadline_s: float = 2.0) -> None:
    """Wait, polling every millisecond, until `condition()` holds; fail naming `what`."""
    try:
        async with asyncio.timeout(deadline_s):
            while not condition():  # noqa: ASYNC110 - the prober's state offers no event to await
                await asyncio.sleep(0.001)
    except TimeoutError:
        pytest.fail(f"not within {deadline_s:g} s: {what}")


async def _running_batch(prober: IcmpProber) -> tuple[Any, Any]:
    """The one batch channel of `prober` and the batch running on it, once it exists."""
    await _until(lambda: bool(prober._batch_channels), "the batch channel is open")
    (channel,) = prober._batch_channels.values()
    await _until(lambda: any(b is not None for b in channel.batches), "a batch is registered")
    (batch,) = [b for b in channel.batches if b is not None]
    return channel, batch


async def test_batch_counts_replies_that_do_not_belong() -> None:
    """Forged echo replies injected while a batch runs: a wrong nonce, a wrong source, a
    duplicate of a real reply; each is counted on the round it names, none resolves it."""
    prober = IcmpProber()
    opts = ProbeOptions(count=3, interval_s=0.1, timeout_s=1.0)
    try:
        task = asyncio.create_task(
            prober.probe_many([Target("127.0.5.1"), Target("127.0.5.2")], opts)
        )
        channel, batch = await _running_batch(prober)
        seq0 = int(batch.seqs[0])  # target 0, packet 0
        # the duplicate below is one only once the real reply to packet 0 has been read
        await _until(lambda: bool(channel.received[seq0]), "the reply to packet 0 is read")

        def reply(seq: int, nonce: int, source: str) -> None:
            body = wire.payload(nonce, opts.size)
            packet = bytearray(wire.echo_request(socket.AF_INET, channel.ident, seq, body))
            packet[0] = wire.ECHO_REPLY_V4
            packet[2:4] = b"\0\0"
            packet[2:4] = (~wire.internet_sum(packet) & 0xFFFF).to_bytes(2, "little")
            sender = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            try:
                sender.bind((source, 0))
                sender.sendto(bytes(packet), ("127.0.0.1", 0))
            finally:
                sender.close()

        reply(seq0, batch.nonce ^ 1, "127.0.5.1")  # wrong nonce
        reply(seq0, batch.nonce, "127.0.5.9")  # right packet, wrong source
        reply(seq0, batch.nonce, "127.0.5.1")  # a duplicate of the answer already in
        results = await task
    finally:
        await prober.close()
    assert [r.received for r in results] == [3, 3]
    assert results[0].foreign == {"wrong_nonce": 1, "wrong_source": 1, "duplicate": 1}
    assert results[1].foreign == {}


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "ping-socket"])
async def test_batch_unreachable_timeout_and_answer_in_one_batch(
    unreachable_router: str, raw: bool
) -> None:
    """Through a router: two targets answered with ICMP unreachable (the slow path: raw
    socket errors, a ping socket's error queue), one silently dropped (timeouts), one that
    answers — in one batch, each with its own outcome."""
    prober = IcmpProber(socket_factory=_in_namespace(unreachable_router, raw))
    # the router's routing errors are limited to a burst of 5 per source (ip_rt_error_burst)
    opts = ProbeOptions(count=2, interval_s=0.05, timeout_s=0.5)
    targets = [Target(a) for a in ("198.18.251.9", "198.18.250.7", "198.18.252.2", "198.18.251.10")]
    try:
        results = await prober.probe_many(targets, opts)
    finally:
        await prober.close()
    outcomes = [[s.outcome for s in r.samples] for r in results]
    assert outcomes == [
        [Outcome.UNREACHABLE] * 2, [Outcome.TIMEOUT] * 2, [Outcome.OK] * 2,
        [Outcome.UNREACHABLE] * 2,
    ]  # fmt: skip
    assert all(s.rtt_ns and s.rtt_ns > 0 for s in results[0].samples)
    assert all(s.received_ns is None for s in results[1].samples)


async def test_a_large_slot_is_split_into_batches_in_target_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import probes.icmp

    monkeypatch.setattr(probes.icmp, "MAX_BATCH_PACKETS", 40)  # 10 targets of 4 packets
    targets = [Target(f"127.0.9.{i}") for i in range(1, 60)]
    prober = IcmpProber()
    try:
        results = await prober.probe_many(targets, ProbeOptions(count=4, interval_s=0.01))
    finally:
        await prober.close()
    assert [r.target for r in results] == targets
    assert [r.received for r in results] == [4] * len(targets)


async def test_a_read_booked_before_close_does_nothing_after_it() -> None:
    """Replies seen just before shutdown book a read on the next tick; once the channel is
    closed that read must not touch the closed (or reused) descriptor."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    prober = IcmpProber()
    try:
        task = asyncio.create_task(
            prober.probe_many(
                [Target("127.0.5.1"), Target("127.0.5.2")], ProbeOptions(count=2, timeout_s=1.0)
            )
        )
        channel, _ = await _running_batch(prober)
        channel._on_readable()  # as if a reply had just come in: a read on the next tick
        await prober.close()
        await asyncio.sleep(0.05)  # past the tick the read was booked for
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        loop.set_exception_handler(None)
    assert errors == []
