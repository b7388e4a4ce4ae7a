"""The daemon's HTTP faces: the route API (routes), agents' batch ingest (ingest), region
lookup (resolve), the OpenAPI document (openapi), and the API worker processes (workers/)."""
