"""Grafana dashboards and Prometheus rules, built as Python data from the exported metrics
(build)."""
