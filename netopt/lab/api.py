"""The lab as other code and tests use it: `Lab.up(profile)`, `lab.exec(node, argv)`, ….

State lives in ``/run/netopt-lab/<name>/`` (``state.json`` with the layout, profile and stage
PID; ``ctl.sock``, the stage's control socket), so `Lab.attach(name)` in another process can
``down``, ``status`` and ``set`` a lab that `up` made.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from netopt.errors import LabError
from netopt.lab import build, control
from netopt.lab.profile import LinkParams, Profile, load_profile, parse_profile
from netopt.validation import parse_model

RUN_DIR_ENV = "NETOPT_LAB_RUN_DIR"
NAME_ENV = "NETOPT_LAB_NAME"
DEFAULT_NAME = "netopt"
LAB_NAME_PATTERN = re.compile(r"^[a-z0-9]{1,16}$")
SETTABLE = ("delay_ms", "jitter_ms", "loss_pct", "reorder", "burst")


def run_dir() -> Path:
    return Path(os.environ.get(RUN_DIR_ENV, "/run/netopt-lab"))


def default_name() -> str:
    return os.environ.get(NAME_ENV) or DEFAULT_NAME


def check_name(name: str) -> str:
    if not LAB_NAME_PATTERN.match(name):
        raise LabError(f"lab name {name!r}: use 1-16 lowercase letters or digits (no '-')")
    return name


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError(
            "netopt lab needs root: it creates network namespaces, veth pairs and a TUN device "
            "(run it as root, e.g. with sudo)"
        )
    if not os.path.exists("/dev/net/tun"):
        raise LabError("netopt lab needs /dev/net/tun (TUN support) and there is none here")
    if shutil.which("ip") is None:
        raise LabError("netopt lab needs the `ip` command (Debian package iproute2)")


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    run_dir().mkdir(parents=True, exist_ok=True)
    with open(run_dir() / f"{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _as_profile(profile: Profile | str | Path | dict[str, Any]) -> Profile:
    if isinstance(profile, Profile):
        return Profile.model_validate(profile.model_dump())  # re-run cross-field checks
    if isinstance(profile, dict):
        return parse_profile(profile, "profile")
    return load_profile(profile)


def _digest(profile: Profile) -> str:
    return hashlib.sha256(profile.model_dump_json().encode()).hexdigest()[:16]


class Lab:
    """A running lab, by name. Create with `up`, find with `attach`."""

    def __init__(self, name: str, state: dict[str, Any]) -> None:
        self.name = name
        self.state = state
        self.profile = Profile.model_validate(state["profile"])
        self._nodes = {n["name"]: n for n in state["nodes"]}

    @property
    def state_dir(self) -> Path:
        return run_dir() / self.name

    # --- life cycle ----------------------------------------------------------------------

    @classmethod
    def up(cls, profile: Profile | str | Path | dict[str, Any], name: str | None = None) -> Lab:
        """Build the lab (cleaning a stale one of that name first); nothing half-built on error."""
        model = _as_profile(profile)  # every problem reported before anything is touched
        name = check_name(name or default_name())
        require_root()
        with _locked(name):
            existing = cls._healthy(name)
            if existing is not None and existing.state.get("digest") == _digest(model):
                return existing
            state_dir = run_dir() / name
            build.destroy(name, state_dir)
            state_dir.mkdir(parents=True, exist_ok=True)
            layout = build.Layout.of(name, model)
            state: dict[str, Any] = {
                "name": name,
                "router_ns": layout.router_ns,
                "nodes": layout.nodes,
                "profile": model.model_dump(mode="json"),
                "digest": _digest(model),
                "owner_pid": os.getpid(),
                "stage_pid": None,
            }
            try:
                state["stage_pid"] = build.build(layout, state_dir, state)
                (state_dir / "state.json").write_text(json.dumps(state, indent=1))
            except BaseException:
                build.destroy(name, state_dir)
                raise
        return cls(name, state)

    @classmethod
    def attach(cls, name: str | None = None) -> Lab:
        name = check_name(name or default_name())
        path = run_dir() / name / "state.json"
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            raise LabError(f"no lab named {name!r} is up (no {path})") from None
        except (OSError, ValueError) as exc:
            raise LabError(f"cannot read {path}: {exc}") from None
        return cls(name, state)

    @classmethod
    def _healthy(cls, name: str) -> Lab | None:
        try:
            lab = cls.attach(name)
            pid = lab.state.get("stage_pid")
            if not isinstance(pid, int) or not build.is_stage(pid, lab.state_dir):
                return None
            if not all(os.path.exists(f"/run/netns/{ns}") for ns in lab.namespaces()):
                return None
            lab._control({"op": "ping"})
            return lab
        except LabError:
            return None

    @staticmethod
    def teardown(name: str | None = None) -> None:
        """Remove lab `name` (all its namespaces, processes and state); fine if none is up."""
        name = check_name(name or default_name())
        require_root()
        with _locked(name):
            build.destroy(name, run_dir() / name)

    def down(self) -> None:
        Lab.teardown(self.name)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # --- where things are ----------------------------------------------------------------

    @property
    def nodes(self) -> list[str]:
        return list(self._nodes)

    def _node(self, node: str) -> dict[str, str]:
        try:
            found: dict[str, str] = self._nodes[node]
        except KeyError:
            raise LabError(f"lab {self.name!r} has no node {node!r}") from None
        return found

    def address(self, node: str) -> str:
        return self._node(node)["address"]

    def netns(self, node: str) -> str:
        return self._node(node)["netns"]

    def namespaces(self) -> list[str]:
        return [self.state["router_ns"]] + [n["netns"] for n in self._nodes.values()]

    def exec(self, node: str, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run `argv` inside `node` (kwargs go to subprocess.run)."""
        return subprocess.run(["ip", "netns", "exec", self.netns(node), *argv], **kwargs)

    def popen(self, node: str, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen(["ip", "netns", "exec", self.netns(node), *argv], **kwargs)

    # --- live control ----------------------------------------------------------------------

    def _control(self, request: dict[str, Any], timeout_s: float = 2.0) -> dict[str, Any]:
        return control.exchange(self.name, self.state_dir / "ctl.sock", request, timeout_s)

    def _status_rows(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        reply = self._control({"op": "status"})
        return reply, control.directions(self.name, reply, tuple(LinkParams.model_fields))

    def _directions_of(self, a: str, b: str) -> list[tuple[str, str]]:
        self._node(a)
        self._node(b)
        if a == b:
            raise LabError(f"a link needs two different nodes, got {a!r} twice")
        link = self.profile.link_for(a, b)
        if link is not None and link.directed:
            return [(link.a, link.b)]
        return [(a, b), (b, a)]

    def set_link(self, a: str, b: str, **changes: Any) -> LinkParams:
        """Change the a–b link live (both directions unless the profile made it directed)."""
        unknown = sorted(set(changes) - set(SETTABLE))
        if unknown:
            raise LabError(f"cannot set {', '.join(unknown)}; settable: {', '.join(SETTABLE)}")
        pairs = self._directions_of(a, b)
        current = self._current_params(pairs[0])
        merged = {**current.model_dump(), **changes}
        params = _validated_params(merged, f"lab set {a} {b}")
        self._control({"op": "set", "params": params.model_dump(mode="json"), "directions": pairs})
        return params

    def _current_params(self, pair: tuple[str, str]) -> LinkParams:
        for row in self._status_rows()[1]:
            if (row["a"], row["b"]) == pair:
                try:
                    return LinkParams.model_validate({k: row[k] for k in LinkParams.model_fields})
                except ValueError as exc:
                    raise LabError(f"lab {self.name!r}: the stage reports {pair}: {exc}") from None
        return self.profile.directed_params()[pair]

    def status(self) -> dict[str, Any]:
        """``{"nodes": [...], "links": [...]}``; a symmetric link sums both directions."""
        reply, rows = self._status_rows()
        out = summarize(self.state, self.profile, rows)
        out["stage"] = self._counters(reply)
        return out

    def stage_counters(self) -> dict[str, int]:
        """The stage's own health: packets with no lab link, packets released > 1 ms late."""
        return self._counters(self._control({"op": "status"}))

    def _counters(self, reply: dict[str, Any]) -> dict[str, int]:
        return {
            k: control.counter(self.name, reply, k) for k in ("unmatched", "late", "late_max_us")
        }


def _validated_params(data: dict[str, Any], source: str) -> LinkParams:
    return parse_model(LinkParams, data, source)


def summarize(
    state: dict[str, Any], profile: Profile, directions: list[dict[str, Any]]
) -> dict[str, Any]:
    rows = {(d["a"], d["b"]): d for d in directions}
    nodes = [
        {"name": n["name"], "role": n["role"], "address": n["address"]} for n in state["nodes"]
    ]
    links: list[dict[str, Any]] = []
    done: set[tuple[str, str]] = set()
    for (a, b), row in rows.items():
        if (a, b) in done:
            continue
        link = profile.link_for(a, b)
        directed = link is not None and link.directed
        pairs = [(a, b)] if directed else [(a, b), (b, a)]
        done.update(pairs)
        parts = [rows[p] for p in pairs if p in rows]
        entry = {k: row[k] for k in ("a", "b", *LinkParams.model_fields)}
        entry["directed"] = directed
        entry["default"] = link is None and not row.get("configured", False)
        entry["forwarded"] = sum(p["forwarded"] for p in parts)
        entry["dropped"] = sum(p["dropped"] for p in parts)
        links.append(entry)
    return {"nodes": nodes, "links": links}
