"""Pushing route tables to a Kamailio: ... RouteTable → publish → **pusher** → Kamailio.

`KamailioPusher.publish(table)` is a daemon publisher: it only keeps the newest table and
wakes the pusher's task, so planning never waits on a proxy and a burst of tables costs one
push (coalescing). The task (`run`, one per proxy, in the daemon's task group):

1. renders the dispatcher lines (`netopt.push.kamailio`); an unchanged or empty list is not
   pushed (an empty table is never loaded);
2. writes the file atomically (temporary file in the same directory, fsync, rename) in a
   thread;
3. calls `dispatcher.reload`; "Ongoing reload" (a second reload within Kamailio's
   `reload_delta`) → waits `reload_delta_s` and pushes the newest table then;
4. calls `dispatcher.list` and compares it with what was written;
5. on any failure, restores the last good file, reloads it, and reports (log line,
   `netopt_push_total{proxy,outcome}`).

Every `verify_interval_s` without a new table it checks what Kamailio has loaded (a restarted
or reloaded-by-hand Kamailio), and pushes again when it differs (outcome `drift`).

Fencing (several controllers on one PostgreSQL, netopt.daemon.leader): `fence()` is asked
before the file is written and again right before each reload; it gives the fencing token
(the lease generation), stamped into the file as a `# netopt fencing token: N` comment line
(Kamailio skips `#` lines), or None when this controller no longer holds the lease: the push
is refused and counted (outcome `fenced`). Kamailio cannot check a token itself, so what is
left is the window between the last check and the reload (see docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from netopt.config import Config
from netopt.core.decide import RouteTable
from netopt.errors import PushError
from netopt.push import rpc
from netopt.push.answers import pop_targets
from netopt.push.config import KamailioProxy
from netopt.push.kamailio import (
    DsLine,
    differences,
    dispatcher_lines,
    loaded_lines,
    render_addresses,
    render_dispatcher,
    set_comments,
)

log = logging.getLogger("netopt.push")
OUTCOMES = ("ok", "retry", "drift", "rolled_back", "failed", "fenced")
Rpc = Callable[[str, list[Any] | None], Awaitable[Any]]
Fence = Callable[[], Awaitable[int | None]]
TOKEN_LINE = "# netopt fencing token: "


async def no_fence() -> int | None:
    """One controller (SQLite store): always allowed, no token written."""
    return 0


def stamped(text: str, token: int) -> str:
    """`text` with the fencing token as a comment line after the header (token 0: none)."""
    text = "".join(x for x in text.splitlines(True) if not x.startswith(TOKEN_LINE))
    if token <= 0:
        return text
    head, sep, rest = text.partition("\n")
    return f"{head}{sep}{TOKEN_LINE}{token}\n{rest}"


def token_of(text: str) -> int | None:
    """The fencing token a pushed file carries (None: none)."""
    for line in text.splitlines():
        if line.startswith(TOKEN_LINE):
            with contextlib.suppress(ValueError):
                return int(line.removeprefix(TOKEN_LINE))
    return None


def write_atomic(path: str, text: str) -> None:
    """Replace `path` with `text` so a reader sees the old file or the new one, never half."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class KamailioPusher:
    """One Kamailio: coalescing, verified, rolled-back pushes (see the module docstring)."""

    def __init__(
        self,
        proxy: KamailioProxy,
        config: Config,
        registry: CollectorRegistry | None = None,
        *,
        rpc_call: Rpc | None = None,
        counter: Counter | None = None,
        fence: Fence = no_fence,
    ) -> None:
        self.proxy = proxy
        self._fence = fence
        self.config = config
        self.pops = pop_targets(config)
        self._rpc = rpc_call or self._http_rpc
        self.pushes = counter or Counter(
            "netopt_push_total", "Pushes of route tables to SIP proxies, by outcome.",
            ("proxy", "outcome"), registry=registry,
        )  # fmt: skip
        for outcome in OUTCOMES:
            self.pushes.labels(proxy.id, outcome)
        self._pending: RouteTable | None = None
        self._wake = asyncio.Event()
        self.desired: tuple[DsLine, ...] = ()  # what the newest table asks for
        self._desired_text = ""
        self.loaded: tuple[DsLine, ...] | None = None  # last verified as loaded
        self._good_text: str | None = None
        self.last_error: str | None = None
        self._addresses_due = False

    # --- the daemon's side: never blocks ----------------------------------------------------
    def publish(self, table: RouteTable) -> None:
        self._pending = table
        self._wake.set()

    def reconfigure(self, config: Config) -> None:
        """Take a reloaded config (regions → sets, PoP SIP URIs); applies from the next table."""
        self.config = config
        self.pops = pop_targets(config)
        self._addresses_due = self.proxy.address_file is not None

    # --- the task ------------------------------------------------------------------------------
    async def run(self) -> None:
        self._good_text = await asyncio.to_thread(_read, self.proxy.dispatcher_file)
        self._addresses_due = self.proxy.address_file is not None
        while True:
            if self._addresses_due:  # kept due while another controller leads
                self._addresses_due = not await self._push_addresses()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.proxy.verify_interval_s):
                    await self._wake.wait()
            self._wake.clear()
            table, self._pending = self._pending, None
            if table is not None:
                self._want(table)
            if self.desired and self.desired != self.loaded:
                await self.push()
            elif self.desired:
                await self.check()

    def _want(self, table: RouteTable) -> None:
        lines = dispatcher_lines(table, self.config, self.proxy, self.pops)
        if lines:  # never push an empty table
            self.desired = lines
            comments = set_comments(table, self.config, self.proxy)
            self._desired_text = render_dispatcher(lines, comments)

    async def check(self) -> None:
        """Compare what Kamailio has loaded with what it should have; push again if not."""
        try:
            loaded = loaded_lines(await self._rpc("dispatcher.list", None))
        except PushError as exc:
            self._report("check_failed", str(exc))
            self.loaded = None
            return
        if differences(self.desired, loaded):
            self.pushes.labels(self.proxy.id, "drift").inc()
            log.warning("push_drift proxy=%s: loaded table differs, pushing again", self.proxy.id)
            self.loaded = None
            await self.push()

    async def push(self) -> bool:
        """Write, reload, verify the desired lines; roll back on failure. True when loaded."""
        lines, text = self.desired, self._desired_text
        token = await self._fence()
        if token is None:
            return self._fenced()
        try:
            await asyncio.to_thread(write_atomic, self.proxy.dispatcher_file, stamped(text, token))
            if await self._fence() != token:  # right before the reload: still ours?
                return self._fenced()
            await self._reload_and_verify(lines)
        except rpc.RpcError as exc:
            if "ongoing reload" in exc.message.lower():
                self.pushes.labels(self.proxy.id, "retry").inc()
                log.info("push_retry proxy=%s after_s=%g: %s", self.proxy.id,
                         self.proxy.reload_delta_s, exc)  # fmt: skip
                await asyncio.sleep(self.proxy.reload_delta_s)
                self._wake.set()  # the loop pushes the newest desired table
                return False
            await self._rollback(str(exc))
            return False
        except (PushError, OSError) as exc:
            await self._rollback(str(exc))
            return False
        self.loaded, self._good_text, self.last_error = lines, text, None
        self.pushes.labels(self.proxy.id, "ok").inc()
        log.info("push_ok proxy=%s sets=%d lines=%d", self.proxy.id,
                 len({d.set_id for d in lines}), len(lines))  # fmt: skip
        return True

    def _fenced(self) -> bool:
        """Not the leader (any more): nothing reloaded; the leader pushes its own table."""
        self.loaded = None
        self.pushes.labels(self.proxy.id, "fenced").inc()
        log.warning("push_fenced proxy=%s: this controller does not hold the lease", self.proxy.id)
        return False

    async def _reload_and_verify(self, lines: tuple[DsLine, ...]) -> None:
        await self._rpc("dispatcher.reload", None)
        loaded = loaded_lines(await self._rpc("dispatcher.list", None))
        diff = differences(lines, loaded)
        if diff:
            raise PushError("loaded table differs from the written one: " + "; ".join(diff[:5]))

    async def _rollback(self, why: str) -> None:
        self.loaded = None
        if self._good_text is None:
            self._report("failed", f"{why}; no earlier file to restore")
            return
        token = await self._fence()
        if token is None:  # the new leader owns the file now: leave it alone
            self._fenced()
            return
        try:
            good = stamped(self._good_text, token)
            await asyncio.to_thread(write_atomic, self.proxy.dispatcher_file, good)
            try:
                await self._rpc("dispatcher.reload", None)
            except rpc.RpcError as exc:  # the failed push's own reload is within reload_delta
                if "ongoing reload" not in exc.message.lower():
                    raise
                await asyncio.sleep(self.proxy.reload_delta_s)
                await self._rpc("dispatcher.reload", None)
        except (PushError, OSError) as exc:
            self._report("failed", f"{why}; restoring the last good file failed too: {exc}")
            return
        self._report("rolled_back", f"{why}; restored the last good file")

    async def _push_addresses(self) -> bool:
        """Write the address file and reload it; False when fenced (not the leader)."""
        assert self.proxy.address_file is not None
        text = render_addresses(self.config, self.proxy)
        if await self._fence() is None:
            return False
        try:
            await asyncio.to_thread(write_atomic, self.proxy.address_file, text)
            await self._rpc("permissions.addressReload", None)
        except (PushError, OSError) as exc:  # Kamailio reads the file when it starts anyway
            log.warning("push_addresses_failed proxy=%s error=%s", self.proxy.id, exc)
        return True

    def _report(self, outcome: str, message: str) -> None:
        self.last_error = message
        if outcome in OUTCOMES:
            self.pushes.labels(self.proxy.id, outcome).inc()
        log.error("push_%s proxy=%s error=%s", outcome, self.proxy.id, message)

    async def _http_rpc(self, method: str, params: list[Any] | None) -> Any:
        p = self.proxy
        return await rpc.call(p.rpc_url, method, params, timeout_s=p.timeout_s, netns=p.netns)


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError:
        return None


def make_pushers(
    config: Config, registry: CollectorRegistry, fence: Fence = no_fence
) -> list[KamailioPusher]:
    """One pusher per configured proxy, sharing one `netopt_push_total` counter."""
    if not config.proxies:
        return []
    counter = Counter(
        "netopt_push_total", "Pushes of route tables to SIP proxies, by outcome.",
        ("proxy", "outcome"), registry=registry,
    )  # fmt: skip
    return [KamailioPusher(p, config, counter=counter, fence=fence) for p in config.proxies]
