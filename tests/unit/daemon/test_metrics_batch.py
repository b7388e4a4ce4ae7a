"""`ProbeSeries` (per-path probe metrics in numpy arrays, a slot at a time) exposes exactly what
prometheus_client's own Histogram, Counters and Gauge would, fed the same rounds one by one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from netopt.daemon.metrics import OUTCOMES, RTT_BUCKETS_S, Metrics, ProbeSeries

PATHS = [("lagos", "fra", "icmp"), ("lagos", "jnb", "icmp"), ("nbo", "fra", "voice")]
ROUND = st.tuples(
    st.sampled_from(PATHS),
    st.lists(
        st.one_of(st.floats(-1, 5, allow_nan=False), st.sampled_from(RTT_BUCKETS_S)), max_size=8
    ),
    st.integers(0, 50),
    st.integers(0, 50),
    st.dictionaries(st.sampled_from(OUTCOMES), st.integers(1, 9), max_size=3),
    st.one_of(st.none(), st.floats(0, 1)),
)


def _reference(rounds: list[tuple]) -> CollectorRegistry:  # type: ignore[type-arg]
    r = CollectorRegistry()
    path = ("src", "dst", "kind")
    rtt = Histogram("netopt_probe_rtt_seconds", "x", path, buckets=RTT_BUCKETS_S, registry=r)
    sent = Counter("netopt_probe_packets_sent", "x", path, registry=r)
    received = Counter("netopt_probe_packets_received", "x", path, registry=r)
    outcomes = Counter("netopt_probe_outcomes", "x", (*path, "outcome"), registry=r)
    jitter = Gauge("netopt_path_jitter_seconds", "x", path, registry=r)
    for key, rtts, n_sent, n_received, by_outcome, jitter_s in rounds:
        for v in rtts:
            rtt.labels(*key).observe(v)
        if not rtts:
            rtt.labels(*key)
        sent.labels(*key).inc(n_sent)
        received.labels(*key).inc(n_received)
        for outcome, n in by_outcome.items():
            outcomes.labels(*key, outcome).inc(n)
        if jitter_s is not None:
            jitter.labels(*key).set(jitter_s)
    return r


def _samples(registry: CollectorRegistry) -> dict[str, set[tuple[object, ...]]]:
    out: dict[str, set[tuple[object, ...]]] = {}
    for family in registry.collect():
        for s in family.samples:
            if not s.name.endswith("_created"):
                out.setdefault(family.name, set()).add(
                    (s.name, tuple(sorted(s.labels.items())), s.value)
                )
    return out


@given(st.lists(ROUND, max_size=12), st.integers(1, 4))
def test_slots_expose_exactly_what_prometheus_client_would(
    rounds: list[tuple],
    slot: int,  # type: ignore[type-arg]
) -> None:
    mine = CollectorRegistry()
    series = ProbeSeries(mine)
    for at in range(0, len(rounds), slot):  # a slot of rounds per call (a path may repeat)
        part = rounds[at : at + slot]
        series.observe(*(list(column) for column in zip(*part, strict=True)))
    assert _samples(mine) == _samples(_reference(rounds))


def test_the_arrays_grow_past_their_first_size() -> None:
    series = ProbeSeries()
    keys = [("src", f"p{i}", "icmp") for i in range(300)]
    series.observe(keys, [[0.01]] * 300, [5] * 300, [4] * 300, [{"ok": 4}] * 300, [0.001] * 300)
    series.observe(keys[:1], [[0.02]], [5], [5], [{"ok": 5}], [None])
    assert series.sent[: len(keys)].sum() == 1505 and series.jitter[0] == 0.001


def test_observe_round_feeds_the_rtt_histogram() -> None:
    m = Metrics()
    m.observe_round("a", "b", "icmp", [0.004, 0.004, 0.05, 3.0], 5, 4, {"ok": 4}, None)
    text = m.exposition().decode()
    name, path = "netopt_probe_rtt_seconds", 'dst="b",kind="icmp"'
    assert f'{name}_bucket{{{path},le="0.005",src="a"}} 2.0' in text
    assert f'{name}_bucket{{{path},le="2.0",src="a"}} 3.0' in text
    assert f'{name}_count{{{path},src="a"}} 4.0' in text
