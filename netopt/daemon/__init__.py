"""The daemon: the I/O shell that wires config, probes, store, decisions and faces together
(wiring), runs the probes on a schedule (schedule, probing), traces degraded paths (trace)
and exports the metrics (metrics)."""
