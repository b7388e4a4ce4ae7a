"""The `proxies:` section of the config: which SIP proxies netopt pushes routes to.

config → **proxies** → push (`netopt.push.pusher`). One entry per proxy:

```yaml
proxies:
  - kind: kamailio
    id: core                                   # label in logs and metrics
    rpc_url: http://127.0.0.1:5071/RPC         # jsonrpcs over xhttp
    dispatcher_file: /etc/kamailio/dispatcher.list
    address_file: /etc/kamailio/address.list   # optional: source prefix → set id (permissions)
```
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator


class KamailioProxy(BaseModel):
    """A Kamailio 5.x with `dispatcher` (file mode) and `jsonrpcs` over `xhttp`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["kamailio"]
    id: str = Field(default="kamailio", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    rpc_url: str
    dispatcher_file: str = Field(min_length=1)
    address_file: str | None = None
    set_base: int = Field(default=1, ge=1, description="set id of the first region")
    flags: int = Field(default=0, ge=0, description="dispatcher flags column for every line")
    reload_delta_s: float = Field(default=5.0, ge=0, description="Kamailio's reload_delta")
    timeout_s: float = Field(default=2.0, gt=0)
    verify_interval_s: float = Field(
        default=5.0, gt=0, description="how often to check what Kamailio has loaded"
    )
    netns: str | None = Field(default=None, description="reach rpc_url inside this namespace")

    @field_validator("rpc_url")
    @classmethod
    def _rpc_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError("expected http://HOST:PORT/PATH (Kamailio xhttp + jsonrpcs)")
        return v


ProxyConfig = KamailioProxy  # a union discriminated by `kind` once OpenSIPS is pushed too

__all__ = ["KamailioProxy", "ProxyConfig"]
