"""What the SIP proxies are told: ... decide → RouteTable → **push** (and the API's answers).

- `ranking`: a table entry → the PoPs to try, in order (shared by pull and push).
- `answers`: the route API's answers, rendered once per table (JSON and Kamailio rtjson).
- `config`: the `proxies:` section of the config (`ProxyConfig`).
- `kamailio`: render dispatcher.list, write it atomically, reload over JSON-RPC, verify,
  roll back; `pusher`: the coalescing task the daemon runs per proxy.
"""
