"""What the audit keeps between runs, in the environment's state directory (`apps/APP/ENV/`):

- `doctor.json`: the last report, so the next run shows what newly fails and what newly passes;
- `alerts-test.json`: how the last `headway alerts test` went ({at, delivered: [channel], failed: [channel]}),
  written by that command (the channels' names only: never a URL or token).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from headway.state.files import atomic_write
from headway.state.store import now_iso

REPORT_FILE = "doctor.json"
ALERTS_TEST_FILE = "alerts-test.json"


def record_alerts_test(env_dir: Path, deliveries: Iterable[Any]) -> None:
    """Note which channels the test notice reached and which it did not (written 0600)."""
    items = list(deliveries)
    body = {"at": now_iso(), "delivered": [d.channel for d in items if d.ok],
            "failed": [d.channel for d in items if not d.ok]}
    _write(env_dir / ALERTS_TEST_FILE, json.dumps(body, indent=2))


def load_report(env_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((env_dir / REPORT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("findings"), list) else None


def save_report(env_dir: Path, report: dict[str, Any]) -> None:
    body = {k: v for k, v in report.items() if k != "changes"}
    _write(env_dir / REPORT_FILE, json.dumps(body, indent=2))


def changes(previous: dict[str, Any] | None, findings: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What changed since `previous`: checks that newly fail (passed or could not be checked before, or are new)
    and checks that newly pass (failed before). None when there is no previous report."""
    if previous is None:
        return None
    before = {f.get("id"): f.get("status") for f in previous.get("findings", []) if isinstance(f, dict)}
    newly_failed = [f["id"] for f in findings if f["status"] == "failed" and before.get(f["id"]) != "failed"]
    newly_passed = [f["id"] for f in findings if f["status"] == "passed" and before.get(f["id"]) == "failed"]
    now_ids = {f["id"] for f in findings}
    return {"since": previous.get("at"), "previous_score": previous.get("score"),
            "newly_failed": newly_failed, "newly_passed": newly_passed,
            "gone": sorted(str(i) for i in before if i not in now_ids)}


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, text + "\n")
    os.chmod(path, 0o600)
