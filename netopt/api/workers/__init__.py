"""API worker processes sharing the API port: the pool that starts and feeds them (pool), the
answers they serve (site) and their HTTP server on httptools (http)."""
