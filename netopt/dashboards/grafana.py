"""`netopt dashboards push` (dashboards → **Grafana**): every dashboard into one folder through
Grafana's HTTP API with grafana-client, idempotent by uid.

The folder is looked up by uid, then by title (one made by hand keeps its uid), and created
only when neither exists; each dashboard is saved with `overwrite: true` under its own uid, so
a second push changes nothing but the versions. Whatever Grafana answers — an HTTP error,
garbage, a timeout, a refused connection — ends as a `NetoptError` saying what went wrong.
"""

from __future__ import annotations

import json
import re
from typing import Any

from netopt.errors import NetoptError

Json = dict[str, Any]
_UID = re.compile(r"[A-Za-z0-9_-]{1,40}")  # what Grafana accepts as a folder uid


def _dict(answer: Any, what: str) -> Json:
    if not isinstance(answer, dict):
        raise NetoptError(f"{what}: not a Grafana answer: {str(answer)[:120]!r}")
    return answer


def folder_uid(api: Any, folder: str) -> str:
    """The uid of the folder with uid or title `folder`, created when there is none."""
    from grafana_client.client import GrafanaClientError

    try:
        return str(_dict(api.folder.get_folder(folder), "folder lookup").get("uid", folder))
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
    listed = api.folder.get_all_folders()
    if not isinstance(listed, list):
        raise NetoptError(f"folder list: not a Grafana answer: {str(listed)[:120]!r}")
    for f in listed:
        if isinstance(f, dict) and f.get("title") == folder and f.get("uid"):
            return str(f["uid"])
    uid = folder if _UID.fullmatch(folder) else re.sub(r"[^A-Za-z0-9_-]+", "-", folder)[:40]
    created = _dict(api.folder.create_folder(folder, uid=uid), "folder creation")
    return str(created.get("uid", uid))


def push(api: Any, folder: str, dashboards: dict[str, str]) -> list[str]:
    """Save every dashboard (file name → JSON text) into the folder; a line per dashboard."""
    uid = folder_uid(api, folder)
    lines = []
    for name, text in dashboards.items():
        body = {"dashboard": json.loads(text), "folderUid": uid, "overwrite": True,
                "message": "netopt dashboards push"}  # fmt: skip
        answer = _dict(api.dashboard.update_dashboard(body), f"saving {name}")
        lines.append(f"{name}: {answer.get('status', '?')} version {answer.get('version', '?')}")
    return lines


def run_push(url: str, token: str | None, folder: str, dashboards: dict[str, str],
             timeout_s: float = 10.0) -> list[str]:  # fmt: skip
    from grafana_client.api import GrafanaApi
    from grafana_client.client import GrafanaException

    if not token:
        raise NetoptError("dashboards push: give --token or set NETOPT_GRAFANA_TOKEN")
    try:
        api = GrafanaApi.from_url(url, credential=token, timeout=timeout_s)
        return push(api, folder, dashboards)
    except NetoptError as exc:
        raise NetoptError(f"dashboards push to {url}: {exc}") from None
    except GrafanaException as exc:
        status = f"HTTP {exc.status_code}" if exc.status_code else "no answer"
        raise NetoptError(f"dashboards push to {url}: {status}: {exc.message}") from None
    except (OSError, ValueError) as exc:  # refused, reset, timeout, a body that is not JSON
        raise NetoptError(f"dashboards push to {url}: {type(exc).__name__}: {exc}") from None
