"""The daemon's HTTP faces: the route API (routes), agents' batch ingest (ingest) and its wire
format (batch), every token check (auth), what the faces see of the daemon (view: the
DaemonView Protocol), region lookup (resolve), the OpenAPI document (openapi), and the API
worker processes (workers/)."""
