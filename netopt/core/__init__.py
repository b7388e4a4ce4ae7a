"""The pure core of the daemon: window statistics over rounds (window) and stable decisions
(decide). No I/O; `now` is an argument."""
