"""The remote probing agent: probes from a customer region and ships batches of rounds to the
daemon's ingest API (run)."""
