"""netopt: the daemon and its faces (config, schedule, store, decide, API, push, metrics, lab)."""

__version__ = "0.1.0"
