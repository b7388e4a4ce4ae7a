"""What the SIP proxies are told: ... decide → RouteTable → **push** (and the API's answers).

- `ranking`: a table entry → the PoPs to try, in order (shared by pull and push).
- `answers`: the route API's answers, rendered once per table (JSON and Kamailio rtjson).
- `config`: the `proxies:` section of the config (`ProxyConfig`).
- `kamailio`: render dispatcher.list, write it atomically, reload over JSON-RPC, verify,
  roll back; `pusher`: the coalescing task the daemon runs per proxy.
- `rpc`: JSON-RPC 2.0 calls, every bad answer a `PushError`; `http_client`: one HTTP/1.1
  exchange with a neighbour (h11, a deadline, a body cap), shared with the agent's shipper.
"""
