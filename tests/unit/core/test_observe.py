"""netopt.core.observe with a fake clock: latest round, freshness, the unmeasured set, PoP
liveness (paths and SIP), the warm-up gate, and reconfiguration."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from netopt.core.observe import Observations
from netopt.store.model import RoundRecord

T0_NS = 1_800_000_000 * 10**9
PATHS = [("lagos", "jnb"), ("lagos", "fra"), ("accra", "jnb")]


def obs(expected: list[tuple[str, str]] = PATHS, warmup_s: float = 20.0) -> Observations:
    return Observations(
        ["lagos", "accra"], ["icmp", "udp_echo"], expected, warmup_s=warmup_s, started_at=100.0
    )


def rnd(src: str, dst: str, t_s: float, received: int = 5, kind: str = "icmp") -> RoundRecord:
    rtt = 50.0 if received else None
    return RoundRecord(T0_NS + int(t_s * 1e9), src, dst, kind, 5, received, rtt, rtt, rtt, rtt,
                       rtt, None)  # fmt: skip


def test_a_round_is_the_latest_word_unless_it_is_older() -> None:
    o = obs()
    assert o.add(rnd("lagos", "jnb", 10), now=101.0)
    assert not o.add(rnd("lagos", "jnb", 5, received=0), now=102.0)  # replayed, older
    assert o.last_round[("lagos", "jnb")].started_wall_ns == T0_NS + 10 * 10**9
    assert o.pop_alive() == {"jnb": True}
    assert o.add(rnd("lagos", "jnb", 10, received=0), now=103.0)  # same start: newer word
    assert o.pop_alive() == {"jnb": False}


def test_freshness_is_when_a_region_last_heard_from_any_of_its_paths() -> None:
    o = obs()
    o.add(rnd("lagos", "jnb", 1), now=101.0)
    o.add(rnd("jnb", "accra", 1), now=104.0)  # a PoP → region path freshens the region
    assert o.fresh_at == {"lagos": 101.0, "accra": 104.0}
    o.add(rnd("lagos", "fra", 2), now=107.0)
    assert o.fresh_at["lagos"] == 107.0
    o.add(rnd("lagos", "fra", 3), now=106.0)  # `now` going back never un-freshens
    assert o.fresh_at["lagos"] == 107.0
    o.add(rnd("lagos", "fra", 1), now=110.0)  # an older round says nothing new
    assert o.fresh_at["lagos"] == 107.0


def test_only_the_planners_kinds_measure_a_path() -> None:
    o = obs()
    assert not o.measures(rnd("lagos", "jnb", 1, kind="tcp_connect"))
    assert not o.add(rnd("lagos", "jnb", 1, received=0, kind="tcp_connect"), now=101.0)
    assert o.last_round == {} and o.fresh_at == {} and ("lagos", "jnb") in o.unmeasured
    assert o.measures(rnd("lagos", "jnb", 1, kind="udp_echo"))


def test_unmeasured_empties_as_each_configured_path_reports() -> None:
    o = obs()
    for i, (src, dst) in enumerate(PATHS):
        assert (src, dst) in o.unmeasured
        o.add(rnd(src, dst, i), now=101.0 + i)
        assert (src, dst) not in o.unmeasured
    assert o.unmeasured == set()


def test_a_pop_is_dead_when_no_paths_latest_round_got_an_answer() -> None:
    o = obs()
    o.add(rnd("lagos", "jnb", 1, received=0), now=101.0)
    o.add(rnd("accra", "jnb", 1, received=2), now=101.0)
    o.add(rnd("lagos", "fra", 1, received=0), now=101.0)
    assert o.pop_alive() == {"jnb": True, "fra": False}  # jnb: accra still hears it
    o.add(rnd("accra", "jnb", 2, received=0), now=102.0)
    assert o.pop_alive() == {"jnb": False, "fra": False}
    o.add(rnd("fra", "lagos", 3), now=103.0)  # the PoP → region direction counts too
    assert o.pop_alive()["fra"] is True


def test_a_pop_whose_sip_service_answers_no_options_is_dead() -> None:
    o = obs()
    o.add(rnd("lagos", "jnb", 1), now=101.0)
    o.add(rnd("lagos", "fra", 1), now=101.0)
    assert o.add(rnd("lagos", "jnb", 1, kind="sip_options"), now=101.0)  # 2xx
    assert o.pop_alive() == {"jnb": True, "fra": True}  # fra: SIP not probed
    assert o.add(rnd("lagos", "jnb", 2, received=0, kind="sip_options"), now=102.0)
    assert o.pop_alive() == {"jnb": False, "fra": True}
    assert not o.add(rnd("lagos", "jnb", 1, kind="sip_options"), now=103.0)  # older: ignored
    assert o.pop_alive()["jnb"] is False
    assert o.last_round[("lagos", "jnb")].kind == "icmp"  # SIP rounds are not the path's word
    o.add(rnd("accra", "jnb", 3, kind="sip_options"), now=104.0)  # another path's 2xx
    assert o.pop_alive()["jnb"] is True


def test_sip_liveness_alone_does_not_make_a_pop_known() -> None:
    o = obs()
    o.add(rnd("lagos", "jnb", 1, kind="sip_options"), now=101.0)
    assert o.pop_alive() == {}  # liveness starts from the paths that measure
    assert o.fresh_at == {} and ("lagos", "jnb") in o.unmeasured


def test_warm_up_waits_for_every_path_or_the_warm_up_time() -> None:
    o = obs(warmup_s=20.0)
    assert o.warming(100.0) and o.warming(119.9)
    assert not o.warming(120.0)  # two probe intervals: plan with what there is
    for src, dst in PATHS[:2]:
        o.add(rnd(src, dst, 1), now=105.0)
    assert o.warming(105.0)  # one path still unheard of
    o.add(rnd(*PATHS[2], 1), now=106.0)
    assert not o.warming(106.0)  # every configured path reported once


def test_no_configured_path_means_no_wait() -> None:
    assert not obs(expected=[]).warming(100.0)


def test_reconfigure_keeps_what_was_heard_and_waits_for_new_paths() -> None:
    o = obs()
    o.add(rnd("lagos", "jnb", 1), now=101.0)
    o.reconfigure(["lagos", "accra", "abuja"], ["icmp"], [("lagos", "jnb"), ("abuja", "jnb")])
    assert o.unmeasured == {("abuja", "jnb")}
    assert not o.measures(rnd("lagos", "jnb", 2, kind="udp_echo"))  # kinds follow the config
    o.add(rnd("abuja", "jnb", 2), now=102.0)
    assert o.fresh_at["abuja"] == 102.0 and o.unmeasured == set()


KINDS = st.sampled_from(["icmp", "sip_options", "tcp_connect"])
rounds = st.lists(
    st.tuples(st.sampled_from(PATHS), st.integers(0, 50), st.integers(0, 5), KINDS), max_size=40
)


@given(rounds)
def test_order_of_arrival_does_not_change_the_latest_word(
    batch: list[tuple[tuple[str, str], int, int, str]],
) -> None:
    """Rounds replayed in any order leave the same latest round per path and liveness as in
    start-time order (ties: the later arrival wins, so each start time is used once here)."""
    seen: set[tuple[tuple[str, str], int, str]] = set()
    unique = []
    for path, t, got, kind in batch:
        if (path, t, kind) not in seen:
            seen.add((path, t, kind))
            unique.append((path, t, got, kind))
    a, b = obs(), obs()
    for i, (path, t, got, kind) in enumerate(unique):
        a.add(rnd(*path, t, got, kind), now=100.0 + i)
    for i, (path, t, got, kind) in enumerate(sorted(unique, key=lambda r: r[1])):
        b.add(rnd(*path, t, got, kind), now=100.0 + i)
    assert a.last_round == b.last_round and a.last_sip == b.last_sip
    assert a.pop_alive() == b.pop_alive() and a.unmeasured == b.unmeasured


def test_a_lost_single_packet_is_no_death_when_the_detector_judges_liveness() -> None:
    o = Observations(["lagos"], ["icmp"], [("lagos", "jnb")], warmup_s=0.0, started_at=0.0,
                     dead_packets=4)  # fmt: skip
    one = RoundRecord(T0_NS, "lagos", "jnb", "icmp", 1, 0, None, None, None, None, None, None)
    o.add(one, now=1.0)
    assert o.pop_alive() == {"jnb": True}  # one packet lost: the detector's word, not this
    o.add(rnd("lagos", "jnb", 2, received=0), now=2.0)  # a whole round of 5: dead
    assert o.pop_alive() == {"jnb": False}
    default = obs()
    default.add(one, now=1.0)
    assert default.pop_alive() == {"jnb": False}  # without the detector: as before
