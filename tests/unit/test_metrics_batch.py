"""The batched histogram update of `Metrics.observe_round` equals one `observe` per value."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from netopt.metrics import RTT_BUCKETS_S, Metrics, _observe_all

VALUES = st.lists(
    st.one_of(st.floats(-1, 5, allow_nan=False), st.sampled_from(RTT_BUCKETS_S)), max_size=12
)


@given(st.lists(VALUES, max_size=4))
def test_batched_observations_expose_exactly_what_observe_would(rounds: list[list[float]]) -> None:
    batched, single = (CollectorRegistry(), CollectorRegistry())
    hb = Histogram("h", "h", ("p",), buckets=RTT_BUCKETS_S, registry=batched).labels("x")
    hs = Histogram("h", "h", ("p",), buckets=RTT_BUCKETS_S, registry=single).labels("x")
    for values in rounds:
        _observe_all(hb, values)
        for v in values:
            hs.observe(v)
    samples = [[(s.name, s.labels, s.value) for f in r.collect() for s in f.samples
                if not s.name.endswith("_created")] for r in (batched, single)]  # fmt: skip
    assert samples[0] == samples[1]


def test_observe_round_feeds_the_rtt_histogram() -> None:
    m = Metrics()
    m.observe_round("a", "b", "icmp", [0.004, 0.004, 0.05, 3.0], 5, 4, {"ok": 4}, None)
    text = m.exposition().decode()
    name, path = "netopt_probe_rtt_seconds", 'dst="b",kind="icmp"'
    assert f'{name}_bucket{{{path},le="0.005",src="a"}} 2.0' in text
    assert f'{name}_bucket{{{path},le="2.0",src="a"}} 3.0' in text
    assert f'{name}_count{{{path},src="a"}} 4.0' in text
