"""Which backups to keep: the last N, plus grandfather-father-son (newest of each day, ISO week and month).

Pure functions over the catalog; the newest good backup is always kept, whatever the policy says.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from headway.data.catalog import BackupRecord
from headway.data.schema import Retention


def _buckets(good: list[BackupRecord], count: int, key: Callable[[datetime], object]) -> set[str]:
    keep: set[str] = set()
    seen: set[object] = set()
    for rec in good:  # newest first: the first of each bucket is its newest
        bucket = key(rec.started)
        if bucket in seen:
            continue
        if len(seen) >= count:
            break
        seen.add(bucket)
        keep.add(rec.id)
    return keep


def to_keep(good: list[BackupRecord], policy: Retention) -> set[str]:
    good = sorted(good, key=lambda r: r.started_at, reverse=True)
    keep = {r.id for r in good[:max(1, policy.last)]}
    keep |= _buckets(good, policy.daily, lambda t: t.date())
    keep |= _buckets(good, policy.weekly, lambda t: t.isocalendar()[:2])
    keep |= _buckets(good, policy.monthly, lambda t: (t.year, t.month))
    return keep


def to_delete(good: list[BackupRecord], policy: Retention, protected: set[str] | None = None) -> list[BackupRecord]:
    """Good backups the policy lets go, oldest first; never the newest one, never a protected one."""
    if not good:
        return []
    keep = to_keep(good, policy) | (protected or set())
    keep.add(max(good, key=lambda r: r.started_at).id)
    return sorted((r for r in good if r.id not in keep), key=lambda r: r.started_at)
