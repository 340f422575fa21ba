"""The figures the agent keeps, read back for a person: `headway metrics -e ENV` and `headway top`.

Read-only against the host's metric store (observe/store.py): the agent is its one writer. Series over the last
hour are drawn as sparklines of one-minute buckets.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(points: list[tuple[float, float]], since: float, until: float, step: float = 60.0) -> str:
    """One character per `step` from `since` to `until`; a gap (no sample) is a space."""
    buckets = int((until - since) // step)
    if buckets <= 0:
        return ""
    values: dict[int, float] = {int((t - since) // step): v for t, v in points if since <= t < until}
    if not values:
        return " " * buckets
    top = max(values.values()) or 1.0
    return "".join(SPARKS[min(len(SPARKS) - 1, int(values[i] / top * (len(SPARKS) - 1)))] if i in values else " "
                   for i in range(buckets))


def environment_figures(state_root: Path, app: str, environment: str, *, hours: float = 1.0,
                        now: float | None = None) -> dict[str, Any]:
    """Latest figures of one environment and their last hour: requests/s, 5xx share, p95, health, and each
    container's CPU and memory."""
    from headway.observe.store import MetricStore

    now = time.time() if now is None else now
    since = now - hours * 3600
    store = MetricStore(state_root / "agent" / "metrics")
    try:
        env = {"app": app, "environment": environment}
        out: dict[str, Any] = {"app": app, "environment": environment, "at": now, "series": {}, "containers": []}
        for key, name in (("requests_per_s", "http_request_rate"), ("server_error_ratio", "http_server_error_ratio"),
                          ("p95_s", "http_p95_seconds"), ("up_proxy", "up")):
            match = {**env, "check": "proxy"} if name == "up" else env
            latest = store.latest(name, match)
            points = store.series(name, match, since, now, 60.0)
            out[key] = latest[1] if latest and now - latest[0] < 120 else None
            out["series"][key] = points
        for labels in store.labels("container_memory_bytes"):
            if labels.get("app") != app or labels.get("environment") != environment:
                continue
            mem = store.latest("container_memory_bytes", labels)
            cpu = store.latest("container_cpu_ratio", labels)
            if mem is None or now - mem[0] > 120:
                continue  # gone
            out["containers"].append({"container": labels.get("container", ""), "role": labels.get("role", ""),
                                      "release": labels.get("release", ""), "memory_bytes": mem[1],
                                      "cpu_ratio": cpu[1] if cpu else None})
        out["containers"].sort(key=lambda c: c["container"])
        return out
    finally:
        store.close()


def watched_environments(state_root: Path) -> list[tuple[str, str]]:
    from headway.observe.spec import read_specs

    return sorted((s["app"], s["environment"]) for s in read_specs(state_root))
