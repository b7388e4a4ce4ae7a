"""Operations: what people and Prometheus see of the daemon (config → series, status page,
dashboard previews, Grafana push)."""
