"""Cron expressions (five fields, as in crontab): checked when headway.yml is read, and the next run computed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

ALIASES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
           "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}
_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
_NAMES = {3: ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
          4: ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]}


class CronError(ValueError):
    pass


@dataclass(frozen=True)
class CronSchedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    def matches(self, t: datetime) -> bool:
        if t.minute not in self.minutes or t.hour not in self.hours or t.month not in self.months:
            return False
        day_ok, wd_ok = t.day in self.days, (t.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:  # cron: both restricted means either may match
            return day_ok and wd_ok
        return day_ok or wd_ok

    def next_after(self, t: datetime) -> datetime:
        probe = t.replace(second=0, microsecond=0) + timedelta(minutes=1)
        for _ in range(60 * 24 * 366 * 5):
            if self.matches(probe):
                return probe
            probe += timedelta(minutes=1)
        raise CronError("the schedule never fires")


def _value(text: str, index: int) -> int:
    names = _NAMES.get(index)
    if names and text.lower() in names:
        return names.index(text.lower()) + (1 if index == 3 else 0)
    if not text.isdigit():
        raise CronError(f"{_FIELDS[index][0]}: {text!r} is not a number")
    return int(text)


def _field(text: str, index: int) -> frozenset[int]:
    label, low, high = _FIELDS[index]
    out: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            raise CronError(f"{label}: step {step_text!r} must be a positive number")
        if body == "*":
            start, end = low, high
        elif "-" in body:
            a, _, b = body.partition("-")
            start, end = _value(a, index), _value(b, index)
        else:
            start = _value(body, index)
            end = high if step else start
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise CronError(f"{label}: {part!r} is outside {low}-{high}")
        out.update(range(start, end + 1, step or 1))
    if index == 4 and 7 in out:
        out = (out - {7}) | {0}
    return frozenset(out)


def parse_cron(expr: str) -> CronSchedule:
    text = ALIASES.get(expr.strip(), expr.strip())
    parts = text.split()
    if len(parts) != 5:
        raise CronError(f"cron schedule {expr!r} needs 5 fields (minute hour day-of-month month day-of-week), "
                        "e.g. '0 3 * * *' or @daily")
    fields = [_field(p, i) for i, p in enumerate(parts)]
    return CronSchedule(fields[0], fields[1], fields[2], fields[3], fields[4],
                        any_day=parts[2] == "*", any_weekday=parts[4] == "*")
