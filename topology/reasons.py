"""One sentence a consultant can read aloud, explaining an acceleration verdict.

Flow: planner (verdict codes) → **reasons** → RegionPlan.reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from topology import quality

if TYPE_CHECKING:
    from topology.routes import Route


def describe(route: Route) -> str:
    """'direct' or 'relay via jnb' (with the backbone hops when there are several)."""
    if route.kind == "direct":
        return "the direct route"
    hops = route.path[1:-1]
    return "relaying via " + " and ".join(hops) if hops else "relaying"


def _poor_why(direct: Route, target: float) -> str:
    e = direct.expected
    why = quality.poor_flags(e.rtt_ms, e.jitter_ms, e.loss_pct)
    if e.mos < target:
        why.insert(0, f"MOS {e.mos:.2f} < {target:.1f}")
    return ", ".join(why)


def reason_for(
    acceleration: str,
    region: str,
    dest: str,
    routes: Sequence[Route],
    direct: Route | None,
    target: float,
    margin: float,
    note: str = "",
) -> str:
    """The sentence for one region × destination verdict."""
    suffix = f" ({note})" if note else ""
    if acceleration == "unmeasured":
        return f"Nothing has been measured from {region} yet, so no route to {dest} can be chosen."
    if acceleration == "unreachable":
        return (
            f"{region} is measured, but no measured path reaches {dest}: the direct path is not "
            f"measured and no measured PoP has a backbone path to it."
        )
    best = routes[0]
    b = best.expected.mos
    if acceleration == "insufficient":
        gain = (
            f", {b - direct.expected.mos:+.2f} over direct" if direct and best is not direct else ""
        )
        return (
            f"No route from {region} to {dest} reaches MOS {target:.1f}: the best, "
            f"{describe(best)}, gives {b:.2f}{gain}{suffix}."
        )
    if acceleration == "needed":
        if direct is None:
            return (
                f"The direct path {region}→{dest} is not measured; {describe(best)} gives "
                f"MOS {b:.2f}{suffix}."
            )
        return (
            f"The direct path {region}→{dest} is poor ({_poor_why(direct, target)}); "
            f"{describe(best)} gives MOS {b:.2f}, "
            f"{b - direct.expected.mos:+.2f} over direct{suffix}."
        )
    if direct is None:  # not_needed without a direct route cannot happen; say what we have
        return f"{describe(best).capitalize()} gives MOS {b:.2f}{suffix}."
    why = _poor_why(direct, target)
    best_relay = max(
        (r.expected.mos for r in routes if r.kind == "relay"), default=direct.expected.mos
    )
    if why:
        return (
            f"The direct path {region}→{dest} is poor ({why}) but no relay gains {margin:.1f} MOS "
            f"(best {best_relay - direct.expected.mos:+.2f}), so media stays direct{suffix}."
        )
    return (
        f"The direct path {region}→{dest} is good (MOS {direct.expected.mos:.2f}, no Via "
        f"threshold crossed), so acceleration is not needed{suffix}."
    )
