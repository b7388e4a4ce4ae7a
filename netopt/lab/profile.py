"""The lab's world profile: which nodes exist and how every pair of them is impaired.

``netopt lab up PROFILE`` loads a YAML file into `Profile` (validated fully before anything is
built, one ``path: message`` line per problem), the builder turns it into namespaces, and the
impairment stage turns `directed_params` into per-direction delay, jitter and loss.

Semantics (each value applies to EACH direction of a symmetric link):

- one-way delay = max(0, delay_ms + N(0, jitter_ms²)), i.e. normal jitter clamped at zero;
  packets of one direction keep their order (a packet never leaves before the one ahead of it)
  unless ``reorder: true``;
- loss is Bernoulli with ``loss_pct``; with ``burst: {p, r}`` it is Gilbert–Elliott: a
  two-state chain stepped once per packet, good→bad with probability p, bad→good with r; every
  packet is lost in the bad state and ``loss_pct`` applies in the good state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from netopt.errors import ConfigError
from netopt.validation import load_yaml, parse_model

MAX_NODES = 64
NODE_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,23}$"
NodeName = Annotated[str, Field(pattern=NODE_NAME_PATTERN)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Burst(_Frozen):
    """Gilbert–Elliott transition probabilities per packet."""

    p: float = Field(ge=0.0, le=1.0, description="good → bad")
    r: float = Field(gt=0.0, le=1.0, description="bad → good (mean burst length 1/r)")


class LinkParams(_Frozen):
    """The impairment of one direction of a link."""

    delay_ms: float = Field(default=0.0, ge=0.0, le=10_000.0)
    jitter_ms: float = Field(default=0.0, ge=0.0, le=10_000.0)
    loss_pct: float = Field(default=0.0, ge=0.0, le=100.0)
    burst: Burst | None = None
    reorder: bool = False


class Link(LinkParams):
    """A link between two nodes; symmetric unless ``directed`` (then only a → b)."""

    a: NodeName
    b: NodeName
    directed: bool = False

    @model_validator(mode="after")
    def _distinct_ends(self) -> Link:
        if self.a == self.b:
            raise ValueError(f"a link needs two different nodes, got {self.a!r} twice")
        return self

    def params(self) -> LinkParams:
        return LinkParams.model_validate(self.model_dump(include=set(LinkParams.model_fields)))


class Node(_Frozen):
    name: NodeName
    role: Literal["region", "pop"]
    pop_role: Literal["core", "edge", "relay"] | None = None
    city: str | None = Field(
        default=None, description="where its numbers came from (informational)"
    )

    @model_validator(mode="after")
    def _pop_role_only_for_pops(self) -> Node:
        if self.pop_role is not None and self.role != "pop":
            raise ValueError("pop_role is only allowed on nodes with role: pop")
        return self


class Profile(_Frozen):
    """A whole emulated world. Pairs not listed in `links` get `default_link`."""

    nodes: list[Node] = Field(min_length=1)
    links: list[Link] = Field(default_factory=list)
    default_link: LinkParams = Field(default_factory=LinkParams)

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        problems: list[str] = []
        if len(self.nodes) > MAX_NODES:
            problems.append(f"nodes: {len(self.nodes)} nodes, at most {MAX_NODES} are allowed")
        seen: set[str] = set()
        for i, node in enumerate(self.nodes):
            if node.name in seen:
                problems.append(f"nodes[{i}].name: duplicate node name {node.name!r}")
            seen.add(node.name)
        covered: dict[tuple[str, str], int] = {}
        for i, link in enumerate(self.links):
            for end in ("a", "b"):
                name = getattr(link, end)
                if name not in seen:
                    problems.append(f"links[{i}].{end}: unknown node {name!r}")
            for pair in _directions(link):
                if pair in covered:
                    problems.append(
                        f"links[{i}]: {pair[0]} → {pair[1]} is already set by "
                        f"links[{covered[pair]}]"
                    )
                covered.setdefault(pair, i)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def directed_params(self) -> dict[tuple[str, str], LinkParams]:
        """The impairment of every ordered pair of distinct nodes."""
        out = {
            (a.name, b.name): self.default_link
            for a in self.nodes
            for b in self.nodes
            if a.name != b.name
        }
        for link in self.links:
            for pair in _directions(link):
                out[pair] = link.params()
        return out

    def link_for(self, a: str, b: str) -> Link | None:
        """The profile link that sets a → b (or b → a if symmetric), if any."""
        for link in self.links:
            if (a, b) in _directions(link):
                return link
        return None


def _directions(link: Link) -> list[tuple[str, str]]:
    if link.directed:
        return [(link.a, link.b)]
    return [(link.a, link.b), (link.b, link.a)]


_TOP = "(top level): "


def parse_profile(data: object, source: str) -> Profile:
    """Validate a profile mapping; every problem is one ``path: message`` line of a ConfigError."""
    try:
        return parse_model(Profile, data, source)
    except ConfigError as exc:
        lines: list[str] = []
        for problem in exc.problems:
            rest = problem[len(_TOP) :] if problem.startswith(_TOP) else ""
            if rest.startswith(("nodes", "links")):
                lines += rest.split("\n")  # our cross-field problems, each with its own path
            else:
                lines.append(problem)
        raise ConfigError(source, lines) from None


def load_profile(path: str | Path) -> Profile:
    return parse_profile(load_yaml(path), str(path))
