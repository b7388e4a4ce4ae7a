"""sip_options against a real Kamailio, tcp_connect against a real listener, voice against a
real `netopt reflector` — all on loopback, every process stopped by PID."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from probes._sip_wire import options_request
from probes.base import Outcome, ProbeOptions, Target, make_prober
from probes.stats import round_stats
from tests.procs import stop
from tests.sip import free_udp_tcp_port

KAMAILIO_CFG = """#!KAMAILIO
debug=1
log_stderror=yes
children=1
tcp_children=1
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
listen=udp:127.0.0.1:{busy}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "sl.so"
loadmodule "pv.so"
request_route {{
    if ($Rp == {busy}) {{ sl_send_reply("486", "Busy Here"); exit; }}
    if ($rm == "OPTIONS") {{ sl_send_reply("200", "OK"); exit; }}
    sl_send_reply("405", "Method Not Allowed");
}}
"""
FAST = ProbeOptions(count=4, interval_s=0.02, timeout_s=2.0)


def _free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_udp_sip(
    port: int,
    proc: subprocess.Popen[Any] | None = None,
    log: Path | None = None,
    deadline_s: float = 30.0,
) -> None:
    end = time.monotonic() + deadline_s
    said = "" if log is None else f": {log.read_text()[-3000:]}"
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            said = "" if log is None else f": {log.read_text()[-3000:]}"
            raise AssertionError(f"kamailio exited {proc.returncode}{said}")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            s.settimeout(0.3)
            probe = options_request(
                f"127.0.0.1:{port}", "UDP", s.getsockname(), "ready", "z9hG4bKr", 1
            )
            try:
                s.sendto(probe, ("127.0.0.1", port))
                s.recvfrom(4096)
                return
            except OSError:
                time.sleep(0.1)
    said = "" if log is None else f": {log.read_text()[-3000:]}"
    raise AssertionError(f"kamailio did not answer in {deadline_s:g} s{said}")


@pytest.fixture(scope="module")
def kamailio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    binary = shutil.which("kamailio") or "/usr/sbin/kamailio"
    if not Path(binary).exists():
        pytest.skip("needs kamailio (Debian package kamailio; make test installs it)")
    run = tmp_path_factory.mktemp("kamailio")
    port = free_udp_tcp_port()  # Kamailio listens on both: a port taken on TCP stops it
    busy = next(p for p in iter(free_udp_tcp_port, None) if p != port)
    cfg = run / "kamailio.cfg"
    cfg.write_text(KAMAILIO_CFG.format(port=port, busy=busy))
    log = (run / "kamailio.log").open("w")
    proc = subprocess.Popen([binary, "-f", str(cfg), "-DD", "-E", "-m", "64", "-M", "8",
                             "-Y", str(run)], stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        _wait_udp_sip(port, proc, run / "kamailio.log")
        yield port, busy
    finally:
        stop(proc, 10)
        log.close()


@pytest.mark.neighbour
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_sip_options_200(kamailio: tuple[int, int], transport: str) -> None:
    port, _busy = kamailio
    opts = ProbeOptions(count=4, interval_s=0.02, timeout_s=2.0, transport=transport)
    result = await make_prober("sip_options").probe(Target("127.0.0.1", port), opts)
    assert [(s.outcome, s.status) for s in result.samples] == [(Outcome.OK, 200)] * 4
    assert round_stats(result).statuses == {"200": 4}


@pytest.mark.neighbour
async def test_sip_non_2xx_is_bad_status_not_loss(kamailio: tuple[int, int]) -> None:
    _port, busy = kamailio
    result = await make_prober("sip_options").probe(Target("127.0.0.1", busy), FAST)
    assert [(s.outcome, s.status) for s in result.samples] == [(Outcome.BAD_STATUS, 486)] * 4
    stats = round_stats(result)
    assert stats.loss_ratio == 0 and stats.outcomes == {"bad_status": 4}


async def test_sip_closed_ports() -> None:
    udp = await make_prober("sip_options").probe(Target("127.0.0.1", _free_port()), FAST)
    assert {s.outcome for s in udp.samples} == {Outcome.REFUSED}
    tcp_opts = ProbeOptions(count=2, interval_s=0.01, timeout_s=1.0, transport="tcp")
    port = _free_port(socket.SOCK_STREAM)
    tcp = await make_prober("sip_options").probe(Target("127.0.0.1", port), tcp_opts)
    assert {s.outcome for s in tcp.samples} == {Outcome.REFUSED}


async def test_tcp_connect_open_and_closed() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        ok = await make_prober("tcp_connect").probe(Target("127.0.0.1", port), FAST)
    assert [s.outcome for s in ok.samples] == [Outcome.OK] * 4
    assert all((s.rtt_ns or 0) > 0 for s in ok.samples)
    closed = await make_prober("tcp_connect").probe(Target("127.0.0.1", _free_port(1)), FAST)
    assert {s.outcome for s in closed.samples} == {Outcome.REFUSED}


@pytest.fixture(scope="module")
def reflector() -> Iterator[int]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "netopt", "reflector", "--listen",
                             f"127.0.0.1:{port}"], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None and "listening" in proc.stdout.readline()
        yield port
    finally:
        stop(proc, 5)


def test_voice_cli_reports_jitter_late_loss_and_mos(reflector: int) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "netopt", "probe", "voice", f"127.0.0.1:{reflector}",
         "--duration", "1", "--codec", "G729", "--json"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    doc = json.loads(out)
    assert doc["kind"] == "voice" and doc["sent"] == 50 and doc["received"] == 50
    assert doc["jitter_ms"] is not None and doc["ipdv_ms"]["pairs"] == 49
    assert doc["late_pct"] == 0
    assert doc["mos"] is None or 1.0 <= doc["mos"] <= 4.5


async def test_voice_stream_is_50_packets_per_second(reflector: int) -> None:
    opts = ProbeOptions(count=25, interval_s=1.0, timeout_s=1.0, codec="g711", dscp=46)
    result = await make_prober("voice").probe(Target("127.0.0.1", reflector), opts)
    span_ms = (result.samples[-1].sent_ns - result.samples[0].sent_ns) / 1e6
    assert result.received == 25
    # 24 gaps of 20 ms (never earlier than scheduled); interval_s = 1 would have taken 24 s
    assert 24 * 20 - 1 <= span_ms < 5000
