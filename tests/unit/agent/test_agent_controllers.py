"""Agent config: one `controller:` or a `controllers:` list, never both or neither."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from netopt.agent.run import AgentConfig, load_agent_config
from netopt.errors import ConfigError

BASE: dict[str, Any] = {
    "id": "lagos-1", "site": "lagos",
    "targets": [{"id": "fra", "address": "127.0.0.2"}],
    "probes": [{"kind": "icmp", "to": ["fra"], "interval_s": 1, "timeout_s": 0.5}],
}  # fmt: skip
A = {"url": "http://127.0.0.1:8080", "token": "t" * 16}
B = {"url": "http://127.0.0.2:8080", "token": "u" * 16}


def test_the_single_form_is_one_endpoint() -> None:
    cfg = AgentConfig.model_validate({**BASE, "controller": A})
    assert [c.url for c in cfg.endpoints] == [A["url"]]


def test_a_list_keeps_its_order() -> None:
    cfg = AgentConfig.model_validate({**BASE, "controllers": [B, A]})
    assert [c.url for c in cfg.endpoints] == [B["url"], A["url"]]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({}, "give either `controller:` (one) or `controllers:`"),
        ({"controllers": []}, "give either `controller:` (one) or `controllers:`"),
        ({"controller": A, "controllers": [B]}, "not both"),
        ({"controllers": [A, {**A, "url": A["url"] + "/"}]}, "controllers[1].url: duplicate"),
        ({"controllers": [A, {"url": "ftp://x", "token": "t" * 16}]}, "controllers[1].url"),
    ],
)
def test_bad_controller_lists_name_what_is_wrong(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump({**BASE, **change}))
    with pytest.raises(ConfigError) as info:
        load_agent_config(path)
    text = "\n".join(info.value.problems)
    assert message in text
    assert "t" * 16 not in text  # the token never appears in messages
