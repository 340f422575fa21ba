"""The databases of an environment as `headway status` lists them: engine, version, state, last backup and its age.

Cheap on purpose (status is run often): the container states come from the summaries status already read, the
backups from the catalog file; no database is connected to. Sizes are those of the last backup (the dump and what
is stored), not of the live data, which would take a query per database.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from headway.config.resolve import Target
from headway.data.catalog import Catalog, RestoreLog, age, is_safety
from headway.data.databases import KIND, resolve_databases
from headway.engine import labels as L


def database_rows(target: Target, state_root: Path, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    specs = resolve_databases(target)
    catalog = Catalog(state_root, target.app, target.environment)
    restores = RestoreLog(state_root, target.app, target.environment)
    states = {c["labels"].get(L.ROLE): c for c in found if c["labels"].get(L.KIND) == KIND}
    out = []
    for spec in specs.values():
        good = catalog.good(spec.name)
        last = good[0] if good else None
        chosen = next((r for r in good if not is_safety(r)), None)
        summary = states.get(spec.name)
        state = "external" if not spec.managed else (summary["state"] if summary else "not created")
        restored = restores.since(spec.name, "")
        out.append({
            "name": spec.name, "engine": spec.engine, "version": spec.image.rpartition(":")[2] or spec.image,
            "image": spec.image, "managed": spec.managed, "state": state,
            "up": summary["status"] if summary and summary["state"] == "running" else "",
            "last_backup": _backup(last), "default_restore": _backup(chosen),
            "last_restore": {"backup": restored[-1].backup, "at": restored[-1].at, "age": age(restored[-1].at)}
            if restored else None,
        })
    return out


def _backup(rec: Any) -> dict[str, Any] | None:
    if rec is None:
        return None
    return {"id": rec.id, "reason": rec.reason, "started_at": rec.started_at, "age": age(rec.started_at),
            "size": rec.size, "raw_size": rec.raw_size, "verify_status": rec.verify_status}
