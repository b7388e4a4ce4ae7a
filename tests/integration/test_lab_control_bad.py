"""The lab's control client (netopt.lab.control, `Lab.status` / `set_link`) against a stage
that is gone or answers badly, on a unix socket in tmp_path: always a `LabError` that names the
lab and the fault, within the deadline; and against the real `Stage.handle`, the right answer."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netopt.errors import LabError
from netopt.lab import api, control
from netopt.lab.api import Lab
from netopt.lab.build import Layout
from netopt.lab.profile import Profile
from netopt.lab.stage import Stage

PROFILE = Profile.model_validate({
    "nodes": [{"name": "a", "role": "region"}, {"name": "b", "role": "pop"}],
    "links": [{"a": "a", "b": "b", "delay_ms": 10}],
})  # fmt: skip
STATE = {"router_ns": Layout.of("t", PROFILE).router_ns, "nodes": Layout.of("t", PROFILE).nodes,
         "profile": PROFILE.model_dump(mode="json")}  # fmt: skip
Answer = Callable[[socket.socket, bytes], None]


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lab:
    monkeypatch.setenv(api.RUN_DIR_ENV, str(tmp_path))
    (tmp_path / "t").mkdir()
    return Lab("t", STATE)


@pytest.fixture
def stage(lab: Lab) -> Iterator[Callable[[Answer], None]]:
    """Start a fake stage at the lab's ctl.sock that answers every request with `answer`."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(answer: Answer) -> None:
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(str(lab.state_dir / "ctl.sock"))
        srv.listen(4)
        srv.settimeout(0.1)

        def serve() -> None:
            with srv:
                while not stop.is_set():
                    try:
                        conn, _ = srv.accept()
                    except TimeoutError:
                        continue
                    with conn:
                        conn.settimeout(5)
                        answer(conn, conn.recv(65536))

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        threads.append(t)

    yield start
    stop.set()
    for t in threads:
        t.join(5)


def send(data: bytes) -> Answer:
    return lambda conn, _req: conn.sendall(data)


def trickle(conn: socket.socket, _req: bytes) -> None:
    for _ in range(30):  # a byte every 0.1 s, never a newline: bounded at 3 s
        try:
            conn.sendall(b" ")
        except OSError:
            return
        time.sleep(0.1)


def endless(conn: socket.socket, _req: bytes) -> None:
    block = b"[" * 65536
    for _ in range(100):  # bounded: 6.4 MB at most
        try:
            conn.sendall(block)
        except OSError:
            return


def reset(conn: socket.socket, _req: bytes) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def real_stage(conn: socket.socket, req: bytes) -> None:
    reply = Stage(STATE, seed=1).handle(json.loads(req))
    conn.sendall(json.dumps(reply).encode() + b"\n")


def test_no_stage_at_all(lab: Lab) -> None:
    with pytest.raises(LabError, match="lab 't': impairment stage not answering"):
        lab.status()


def test_a_stale_socket_file(lab: Lab) -> None:
    (lab.state_dir / "ctl.sock").write_text("")  # not a socket
    with pytest.raises(LabError, match="not answering"):
        lab.stage_counters()


ROW = {"a": "a", "b": "b", "delay_ms": 1.0, "jitter_ms": 0.0, "loss_pct": 0.0, "reorder": False,
       "burst": None, "forwarded": 0, "dropped": 0}  # fmt: skip
BAD = [
    (send(b"\x00\xffnot json\n"), "answered garbage"),
    (send(b"[1, 2]\n"), "a JSON list, not an object"),
    (send(b'{"ok": false, "error": "busy"}\n'), "lab 't': busy"),
    (send(b'{"ok": "yes"}\n'), "request refused"),
    (send(b""), "closed the connection without answering"),
    (send(b'{"ok": true, "directions": "none"}\n'), "without a list of directions"),
    (send(b'{"ok": true, "directions": [7]}\n'), "direction 0 is not an object"),
    (send(b'{"ok": true, "directions": [{"a": "a"}]}\n'), "direction 0 lacks b, "),
    (send(json.dumps({"ok": True, "directions": [{**ROW, "dropped": "x"}]}).encode() + b"\n"),
     "direction 0 is malformed"),
    (send(json.dumps({"ok": True, "directions": [ROW], "late": "x"}).encode() + b"\n"),
     "stage counter late is 'x'"),
    (trickle, "no complete answer within 2 s"),
    (endless, "answered more than 4194304 bytes"),
    (reset, "closed the connection without answering"),  # a unix socket has no RST
]  # fmt: skip


@pytest.mark.parametrize(("answer", "message"), BAD)
def test_a_bad_stage_is_a_lab_error(
    lab: Lab, stage: Callable[[Answer], None], answer: Answer, message: str
) -> None:
    stage(answer)
    with pytest.raises(LabError) as caught:
        lab.status()
    assert message in str(caught.value)


def test_bad_link_parameters_from_the_stage(lab: Lab, stage: Callable[[Answer], None]) -> None:
    bad = {**ROW, "delay_ms": -5}
    stage(send(json.dumps({"ok": True, "directions": [bad]}).encode() + b"\n"))
    with pytest.raises(LabError, match=r"the stage reports \('a', 'b'\)"):
        lab.set_link("a", "b", loss_pct=1)


def test_the_cap_is_a_parameter(lab: Lab, stage: Callable[[Answer], None]) -> None:
    stage(send(b'{"ok": true, "pad": "' + b"x" * 2000 + b'"}\n'))
    with pytest.raises(LabError, match="more than 1000 bytes"):
        control.exchange("t", lab.state_dir / "ctl.sock", {"op": "ping"}, 2, max_bytes=1000)


def test_the_real_stage_answers(lab: Lab, stage: Callable[[Answer], None]) -> None:
    stage(real_stage)
    status = lab.status()
    assert {(x["a"], x["b"]) for x in status["links"]} == {("a", "b")}
    assert status["stage"] == {"unmatched": 0, "late": 0, "late_max_us": 0}
    assert lab.set_link("a", "b", loss_pct=2).loss_pct == 2
