"""netopt lab: an emulated WAN of network namespaces with real delay, jitter and loss.

`Lab` (netopt.lab.api) is the entry point for code and tests; ``netopt lab …`` (netopt.lab.cli)
for people. See docs/lab.md.
"""

from netopt.lab.api import Lab

__all__ = ["Lab"]
