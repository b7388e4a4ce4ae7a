"""The live display of a campaign: a rich table per target on a terminal, plain lines otherwise.

campaign (Progress after each cycle) → **live** → the consultant's screen. On a TTY a rich
`Live` table (per PoP and kind: RTT of the last round, loss so far, jitter, state) with
progress and ETA; when stdout is not a terminal (CI, a pipe) one plain line per cycle.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from netopt.assess.campaign import Progress
from probes.stats import round_stats


def rows(progress: Progress) -> list[tuple[str, str, str, str, str, str]]:
    """(pop, kind, rtt, loss so far, jitter, state) per probed target."""
    out = []
    for key, tot in sorted(progress.totals.items()):
        pop, kind = key
        st = round_stats(progress.latest[key])
        rtt = "–" if st.rtt_ms is None else f"{st.rtt_ms.p50:.2f} ms"
        loss = f"{100 * (1 - tot[1] / tot[0]):.1f} %" if tot[0] else "–"
        jit = "–" if st.jitter_ms is None else f"{st.jitter_ms:.1f} ms"
        state = progress.notes.get(key, "answering" if tot[1] else "no answer yet")
        out.append((pop, kind, rtt, loss, jit, state))
    for key, note in sorted(progress.notes.items()):
        if key not in progress.totals:
            out.append((key[0], key[1], "–", "–", "–", note))
    return out


def _eta(progress: Progress) -> str:
    left = max(0.0, progress.planned_s - progress.elapsed_s)
    pct = min(100.0, 100 * progress.elapsed_s / progress.planned_s) if progress.planned_s else 100
    done, planned = progress.elapsed_s, progress.planned_s
    return f"{pct:3.0f} % — {done:.0f} s of {planned:.0f} s, ETA {left:.0f} s"


class PlainDisplay:
    """One line per cycle, for logs and CI."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out

    def __enter__(self) -> PlainDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, progress: Progress) -> None:
        parts = [f"{p}/{k} rtt {r} loss {lo} jitter {j}" for p, k, r, lo, j, _ in rows(progress)
                 if k in ("voice", "icmp")]  # fmt: skip
        print(f"[{_eta(progress)}] cycle {progress.cycle}: " + "; ".join(parts),
              file=self.out, flush=True)  # fmt: skip


class RichDisplay:
    """A rich Live table, refreshed after every cycle."""

    def __init__(self, site: str) -> None:
        from rich.live import Live

        self.site = site
        self.live = Live(self._table(Progress(planned_s=0.0)), refresh_per_second=4)

    def _table(self, progress: Progress) -> Any:
        from rich.table import Table

        t = Table(title=f"netopt assess {self.site}: {_eta(progress)}")
        for col in ("PoP", "probe", "RTT (last)", "loss so far", "jitter", "state"):
            t.add_column(col)
        for row in rows(progress):
            t.add_row(*row)
        return t

    def __enter__(self) -> RichDisplay:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def update(self, progress: Progress) -> None:
        self.live.update(self._table(progress))


def display_for(site: str, out: TextIO = sys.stdout) -> PlainDisplay | RichDisplay:
    return RichDisplay(site) if out.isatty() else PlainDisplay(out)
