"""The daemon's configuration: YAML → frozen pydantic models (config → schedule → probe ...).

Unknown keys are rejected; defaults live here; cross-field rules (duplicate ids, unknown
references, timeouts not shorter than intervals) are checked in one validator so every
problem is reported at once, each as ``path: message``. See deploy/netopt.example.yaml.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from netopt.core.budget import BudgetPolicy, budget_problem
from netopt.core.decide import Policy
from netopt.errors import ConfigError
from netopt.push.config import ProxyConfig
from netopt.store.model import Retention
from netopt.validation import load_model, parse_model
from probes.base import PROBERS
from topology.model import Link, Pop, Region, Topology

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _probe_kind(value: str) -> str:
    if value not in PROBERS:
        raise ValueError(f"unknown probe kind {value!r}; known: {', '.join(sorted(PROBERS))}")
    return value


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError("not an IP address") from None


class Location(_Model):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class RegionConfig(_Model):
    id: Id
    name: str = ""
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    location: Location | None = None
    prefixes: tuple[str, ...] = ()
    e164: tuple[str, ...] = ()
    address: str | None = None  # a representative address, for probes towards the region
    netns: str | None = None  # run this site's probes inside this network namespace (lab)
    weight: float = Field(default=1.0, ge=0)
    budget_pps: float | None = Field(default=None, gt=0)  # adaptive probes from here, packets/s

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        return None if v is None else _ip(v)

    @field_validator("prefixes")
    @classmethod
    def _prefixes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for p in v:
            try:
                out.append(str(ipaddress.ip_network(p, strict=False)))
            except ValueError:
                raise ValueError(f"{p!r} is not an IP prefix") from None
        return tuple(out)

    @field_validator("e164")
    @classmethod
    def _e164(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for p in v:
            if not (p.startswith("+") and p[1:].isdigit() and 1 <= len(p) - 1 <= 15):
                raise ValueError(f"{p!r} is not an E.164 prefix like '+234'")
        return v


class PopConfig(_Model):
    id: Id
    name: str = ""
    role: Literal["edge", "relay", "core"]
    location: Location | None = None  # for the overview map (netopt_site_info)
    address: str
    sip_uri: str | None = None
    media_addr: str | None = None
    rtpengine_set: int | None = Field(default=None, ge=0)
    relay_delay_ms: float = Field(default=0.0, ge=0)
    capacity_calls: int | None = Field(default=None, gt=0)
    netns: str | None = None
    budget_pps: float | None = Field(default=None, gt=0)  # adaptive probes from here, packets/s

    @field_validator("address", "media_addr")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        return None if v is None else _ip(v)

    @field_validator("sip_uri")
    @classmethod
    def _sip_uri(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("sip:", "sips:")):
            raise ValueError("must start with 'sip:' or 'sips:'")
        return v


class BackboneLink(_Model):
    a: Id
    b: Id
    rtt_ms: float = Field(ge=0)
    jitter_ms: float = Field(default=0.0, ge=0)
    loss_pct: float = Field(default=0.0, ge=0, le=100)


class ProbeConfig(_Model):
    kind: str
    from_: Id = Field(alias="from")
    to: tuple[Id, ...] = Field(min_length=1)
    interval_s: float = Field(default=1.0, gt=0)
    count: int = Field(default=5, ge=1, le=10_000)
    timeout_s: float = Field(default=1.0, gt=0)  # left out: see _default_timeout
    packet_interval_s: float = Field(default=0.02, ge=0)
    dscp: int = Field(default=46, ge=0, le=63)
    port: int | None = Field(default=None, ge=1, le=65535)
    codec: Literal["g711", "g729", "g729a", "opus"] | None = None  # voice: payload per 20 ms
    transport: Literal["udp", "tcp", "icmp"] = "udp"  # sip_options: udp|tcp; traceroute: all
    clock_synced: bool = False  # stamp/voice: the reflector's clock is synced (one-way delays)
    # adaptive: the rate follows netopt.core.budget (1 packet a second, escalated where a route
    # is in doubt); fixed: `count` packets every `interval_s`. Left out: adaptive for a group
    # that names neither `count` nor `interval_s`, fixed for one that does (it asked for a shape)
    rate: Literal["adaptive", "fixed"] | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def adaptive(self) -> bool:
        if self.rate is not None:
            return self.rate == "adaptive"
        return not {"count", "interval_s"} & self.model_fields_set

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        return _probe_kind(v)

    @model_validator(mode="before")
    @classmethod
    def _default_timeout(cls, data: object) -> object:
        """A left-out `timeout_s` is half the interval, at most 1 s, so that a group naming
        only kind, from and to (interval 1 s) is valid: a 0.5 s timeout."""
        if isinstance(data, dict) and "timeout_s" not in data:
            try:
                interval_s = float(data.get("interval_s", 1.0))
            except (TypeError, ValueError):
                return data  # the field's own validation names the bad interval
            if interval_s > 0:
                data = {**data, "timeout_s": min(1.0, interval_s / 2)}
        return data

    @model_validator(mode="after")
    def _timeout(self) -> ProbeConfig:
        if self.timeout_s >= self.interval_s:
            raise ValueError(
                f"timeout_s ({self.timeout_s}) must be shorter than interval_s ({self.interval_s})"
            )
        # a voice stream is paced at 20 ms whatever packet_interval_s says
        step_s, step = (0.02, "20 ms") if self.kind == "voice" else (self.packet_interval_s, "")
        round_s = (self.count - 1) * step_s + self.timeout_s
        if round_s >= self.interval_s:
            what = f"(count-1)*{step or 'packet_interval_s'} + timeout_s"
            raise ValueError(
                f"a round lasts {what} = {round_s:g} s, "
                f"which must be shorter than interval_s ({self.interval_s})"
            )
        return self

    @model_validator(mode="after")
    def _per_kind(self) -> ProbeConfig:
        if self.kind == "tcp_connect" and self.port is None:
            raise ValueError("kind tcp_connect needs a port (the TCP port to connect to)")
        if self.kind == "sip_options" and self.transport not in ("udp", "tcp"):
            raise ValueError(
                f"kind sip_options: transport must be udp or tcp, not {self.transport!r}"
            )
        return self


class StoreConfig(_Model):
    url: str = "sqlite:///netopt.db"
    raw_retention_days: float = Field(default=7.0, gt=0)  # raw rounds
    minute_retention_days: float = Field(default=31.0, gt=0)  # 1-minute rollups, decisions
    hour_retention_days: float = Field(default=400.0, gt=0)  # 1-hour rollups
    flush_interval_s: float = Field(default=0.5, gt=0, le=60)
    max_pending_rounds: int = Field(default=100_000, ge=100)  # kept while the disk refuses
    pool_size: int = Field(default=4, ge=2, le=100)  # PostgreSQL: connections per controller

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v.startswith(("postgresql://", "postgres://")):
            if len(v.split("://", 1)[1]) == 0:
                raise ValueError("postgresql:// needs at least a host: postgresql://HOST/DB")
            return v
        if not v.startswith("sqlite:///") or v == "sqlite:///":
            scheme = v.split("://", 1)[0] if "://" in v else v
            raise ValueError(
                f"unknown store {scheme!r}: use sqlite:///PATH or "
                "postgresql://USER@HOST:PORT/DATABASE"
            )
        return v

    @property
    def sqlite_path(self) -> str:
        return self.url.removeprefix("sqlite:///")

    def retention(self) -> Retention:
        return Retention(
            raw_days=self.raw_retention_days,
            minute_days=self.minute_retention_days,
            hour_days=self.hour_retention_days,
            batch_ids_days=max(self.raw_retention_days, 31.0),
        )


class HaConfig(_Model):
    """High availability (PostgreSQL store only; see netopt.daemon.leader)."""

    lease_interval_s: float = Field(default=2.0, ge=0.2, le=60)  # renew, poll, step down
    name: str = Field(default="controller", pattern=r"^[A-Za-z0-9_.-]{1,64}$")  # lease name


class AgentAuth(_Model):
    """An agent the controller accepts batches from: its id, its site, its bearer token."""

    id: Id
    site: Id  # every round it sends must start at this site
    token: str = Field(min_length=16, repr=False)


class IngestConfig(_Model):
    max_body_bytes: int = Field(default=1 << 20, ge=1024)  # compressed, as sent
    max_inflated_bytes: int = Field(default=16 << 20, ge=1024)  # after gunzip
    max_rounds_per_batch: int = Field(default=10_000, ge=1)


class ProbingConfig(_Model):
    # >1: the probe jobs run in that many worker processes, sharded by a hash of the job id
    # (netopt.daemon.probe_workers); 1: on the daemon's own loop
    workers: int = Field(default=1, ge=1, le=64)


class ApiConfig(_Model):
    listen: str = "127.0.0.1:8080"
    read_token: str | None = Field(default=None, min_length=16, repr=False)  # None: open reads
    admin_token: str | None = Field(default=None, min_length=16, repr=False)  # None: no admin
    workers: int = Field(default=1, ge=1, le=64)  # >1: that many API processes (api/workers)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:8080")
        _ip(host.strip("[]"))
        return v

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class PlannerConfig(_Model):
    window_s: float = Field(default=60.0, gt=0)
    min_replan_interval_s: float = Field(default=1.0, ge=0)
    target_mos: float = Field(default=4.0, ge=1, le=5)
    margin_mos: float = Field(default=0.2, ge=0)
    codec: str = "g711"
    # which probe kinds measure a path for planning (pooled where several do); the others
    # (tcp_connect, sip_options, traceroute) are exported as metrics but plan nothing
    kinds: tuple[str, ...] = Field(default=("voice", "stamp", "udp_echo", "icmp"), min_length=1)
    # plan with what each path's change detector accepted, and take its alarm on the route in
    # force as evidence enough to switch (netopt/core/evidence.py); false = windows only
    detect_changes: bool = True

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_probe_kind(kind) for kind in v)


class DecideConfig(_Model):
    """Stability of decisions (netopt/core/decide.py): hysteresis, hold-down, damping, staleness."""

    windows_to_switch: int = Field(default=3, ge=1)
    hold_down_s: float = Field(default=60.0, ge=0)
    flap_penalty: float = Field(default=1000.0, ge=0)
    suppress_threshold: float = Field(default=2000.0, gt=0)
    reuse_threshold: float = Field(default=750.0, gt=0)
    half_life_s: float = Field(default=900.0, gt=0)
    max_suppress_s: float = Field(default=3600.0, ge=0)
    stale_after_s: float = Field(default=30.0, gt=0)
    expire_after_s: float = Field(default=300.0, gt=0)
    # a challenger's gain must survive its loss difference moved against it by this many
    # standard errors (topology/uncertainty.py); 0 = point estimates only
    confidence_z: float = Field(default=2.0, ge=0)
    # a window counts towards windows_to_switch only when its data is this much newer than the
    # last counted one; None = planner.window_s / windows_to_switch
    evidence_s: float | None = Field(default=None, ge=0)
    default_entry: dict[str, Id | None] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _order(self) -> DecideConfig:
        if self.reuse_threshold >= self.suppress_threshold:
            raise ValueError("reuse_threshold must be below suppress_threshold")
        if self.expire_after_s < self.stale_after_s:
            raise ValueError("expire_after_s must not be shorter than stale_after_s")
        return self


class TracerouteConfig(_Model):
    """Degradation-triggered traceroute (netopt/daemon/trace.py): a path turning poor is traced."""

    enabled: bool = True
    cooldown_s: float = Field(default=300.0, ge=0)  # per path, between two traces
    max_hops: int = Field(default=16, ge=1, le=64)
    attempts: int = Field(default=2, ge=1, le=10)  # probes per hop
    timeout_s: float = Field(default=1.0, gt=0, le=30)
    transport: Literal["udp", "tcp", "icmp"] = "icmp"
    dscp: int = Field(default=46, ge=0, le=63)
    keep: int = Field(default=100, ge=1, le=10_000)  # traces kept in memory (GET /v1/traces)
    loss_pct: float = Field(default=1.2, ge=0, le=100)  # poor path: window loss above this
    rtt_ms: float = Field(default=320.0, gt=0)  # ... or window RTT above this
    rtt_jump_ms: float = Field(default=50.0, gt=0)  # ... or RTT this far above its best window
    min_samples: int = Field(default=20, ge=1)  # packets a window needs before it is judged


class Config(_Model):
    regions: tuple[RegionConfig, ...] = ()
    pops: tuple[PopConfig, ...] = Field(min_length=1)
    destinations: tuple[Id, ...] = Field(min_length=1)
    backbone: tuple[BackboneLink, ...] = ()
    probes: tuple[ProbeConfig, ...] = ()
    probing: ProbingConfig = ProbingConfig()
    store: StoreConfig = StoreConfig()
    api: ApiConfig = ApiConfig()
    ha: HaConfig = HaConfig()
    planner: PlannerConfig = PlannerConfig()
    decide: DecideConfig = DecideConfig()
    proxies: tuple[ProxyConfig, ...] = ()
    agents: tuple[AgentAuth, ...] = ()
    ingest: IngestConfig = IngestConfig()
    traceroute: TracerouteConfig = TracerouteConfig()

    @model_validator(mode="after")
    def _references(self) -> Config:
        problems = _reference_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # --- views ---------------------------------------------------------------------------
    @property
    def region_ids(self) -> frozenset[str]:
        return frozenset(r.id for r in self.regions)

    def sites(self) -> tuple[RegionConfig | PopConfig, ...]:
        return (*self.regions, *self.pops)

    def site(self, site_id: str) -> RegionConfig | PopConfig:
        for s in self.sites():
            if s.id == site_id:
                return s
        raise KeyError(site_id)

    def to_policy(self) -> Policy:
        d, p = self.decide, self.planner
        evidence_s = p.window_s / d.windows_to_switch if d.evidence_s is None else d.evidence_s
        return Policy(
            margin_mos=p.margin_mos,
            **d.model_dump(exclude={"default_entry", "evidence_s"}),
            evidence_s=evidence_s,
            codec=p.codec,
            default_entry=dict(d.default_entry),
        )

    def to_topology(self) -> Topology:
        return Topology(
            regions=tuple(Region(id=r.id, name=r.name, weight=r.weight) for r in self.regions),
            pops=tuple(
                Pop(
                    id=p.id,
                    role=p.role,
                    relay_delay_ms=p.relay_delay_ms,
                    capacity_calls=p.capacity_calls,
                )
                for p in self.pops
            ),
            destinations=self.destinations,
            backbone=tuple(
                Link(a=b.a, b=b.b, rtt_ms=b.rtt_ms, jitter_ms=b.jitter_ms, loss_pct=b.loss_pct)
                for b in self.backbone
            ),
        )


def _reference_problems(cfg: Config) -> list[str]:
    """Duplicate ids and references to unknown ids, each as `path: message`."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    groups: tuple[tuple[str, tuple[RegionConfig | PopConfig, ...]], ...] = (
        ("regions", cfg.regions),
        ("pops", cfg.pops),
    )
    for kind, items in groups:
        for i, item in enumerate(items):
            if item.id in seen:
                problems.append(f"{kind}[{i}].id: duplicate id {item.id!r} (also {seen[item.id]})")
            else:
                seen[item.id] = f"{kind}[{i}]"
    pop_ids = {p.id for p in cfg.pops}
    for i, d in enumerate(cfg.destinations):
        if d not in pop_ids:
            problems.append(f"destinations[{i}]: unknown pop {d!r}")
    for i, link in enumerate(cfg.backbone):
        for end in ("a", "b"):
            ref = getattr(link, end)
            if ref not in pop_ids:
                problems.append(f"backbone[{i}].{end}: unknown pop {ref!r}")
    for region, entry in cfg.decide.default_entry.items():
        if region != "*" and region not in {r.id for r in cfg.regions}:
            problems.append(f"decide.default_entry.{region}: unknown region {region!r}")
        if entry is not None and entry not in pop_ids:
            problems.append(f"decide.default_entry.{region}: unknown pop {entry!r}")
    agent_ids: set[str] = set()
    tokens: set[str] = set()
    for i, agent in enumerate(cfg.agents):
        if agent.id in agent_ids:
            problems.append(f"agents[{i}].id: duplicate agent id {agent.id!r}")
        if agent.token in tokens:
            problems.append(f"agents[{i}].token: same token as another agent")
        if agent.site not in seen:
            problems.append(f"agents[{i}].site: unknown site {agent.site!r}")
        agent_ids.add(agent.id)
        tokens.add(agent.token)
    jobs: dict[tuple[str, str, str], int] = {}
    for i, probe in enumerate(cfg.probes):
        for t in probe.to:  # one job per (kind, from, to): a second one would be lost
            if (probe.kind, probe.from_, t) in jobs:
                first = jobs[(probe.kind, probe.from_, t)]
                problems.append(f"probes[{i}]: {probe.kind} from {probe.from_!r} to {t!r} "
                                f"is already probed by probes[{first}]")  # fmt: skip
            jobs.setdefault((probe.kind, probe.from_, t), i)
        if probe.from_ not in seen:
            problems.append(f"probes[{i}].from: unknown site {probe.from_!r}")
        for j, t in enumerate(probe.to):
            if t not in seen:
                problems.append(f"probes[{i}].to[{j}]: unknown site {t!r}")
            elif t == probe.from_:
                problems.append(f"probes[{i}].to[{j}]: a site cannot probe itself")
            elif _address_of(cfg, t) is None:
                problems.append(f"probes[{i}].to[{j}]: site {t!r} has no address to probe")
    return problems + _budget_problems(cfg)


def _budget_problems(cfg: Config) -> list[str]:
    """A site whose budget cannot give its adaptive paths the floor rate (netopt.core.budget)."""
    paths: dict[str, set[str]] = {}
    for probe in cfg.probes:
        if probe.adaptive and probe.kind in cfg.planner.kinds:
            paths.setdefault(probe.from_, set()).update(probe.to)
    problems = []
    for site in cfg.sites():
        problem = budget_problem(
            len(paths.get(site.id, ())), BudgetPolicy(budget_pps=site.budget_pps)
        )
        if site.budget_pps is not None and problem is not None:
            problems.append(f"site {site.id!r} budget_pps: {problem}")
    return problems


def _address_of(cfg: Config, site_id: str) -> str | None:
    for s in cfg.sites():
        if s.id == site_id:
            return s.address
    return None


def _reroot(exc: ConfigError) -> ConfigError:
    """Cross-field problems arrive as one '(top level): a; b' line; split them back out."""
    lines: list[str] = []
    for line in exc.problems:
        head, _, rest = line.partition(": ")
        if head == "(top level)" and ": " in rest:
            lines += rest.split("; ")
        else:
            lines.append(line)
    return ConfigError(exc.source, lines)


def parse_config(data: object, source: str = "<config>") -> Config:
    try:
        return parse_model(Config, data, source)
    except ConfigError as exc:
        raise _reroot(exc) from None


def load_config(path: str | Path) -> Config:
    try:
        return load_model(Config, path)
    except ConfigError as exc:
        raise _reroot(exc) from None
