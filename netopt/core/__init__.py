"""The pure core of the daemon: what the rounds say of paths, regions and PoPs (observe),
window statistics over rounds (window) and stable decisions (decide). No I/O; `now` is an
argument."""
