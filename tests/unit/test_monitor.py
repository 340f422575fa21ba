"""The agent's round without a Docker engine: what a deploy leaves for it to watch (monitor.json), the rule set as
data it reads back, host figures, and silences asked for by `headway alerts silence`."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from headway.config.loader import parse_config
from headway.config.resolve import resolve
from headway.observe.alerts import parse_alert_rules
from headway.observe.alerts import alert_state_path
from headway.observe.monitor import Monitor, request
from headway.observe.spec import read_specs, rules_data, write_spec

CONFIG = """\
app: shop
roles:
  web: {port: 8000, health: {path: /health/ready}}
alerts:
  down: {for: 90s}
  certificate: {below: 10d}
  channels:
    - {type: slack, url: "${SLACK_WEBHOOK}"}
environments:
  production:
    domains: [shop.example.com]
    alerts:
      error_rate: {above: 2%}
"""


def _target(root: Path):  # type: ignore[no-untyped-def]
    (root / ".headway").mkdir()
    secrets = root / ".headway" / "secrets.production"
    secrets.write_text("SLACK_WEBHOOK=https://hooks.slack.com/services/T0/B0/secret-part\n")
    secrets.chmod(0o600)
    return resolve(parse_config(CONFIG), "production", root)


def test_the_spec_carries_checks_rules_and_filled_in_channels_in_a_private_file(tmp_path: Path) -> None:
    target = _target(tmp_path)
    state = tmp_path / "state"
    path = write_spec(target, state)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    spec = read_specs(state)[0]
    assert spec["app"] == "shop" and spec["domains"] == ["shop.example.com"]
    assert spec["health"] == [{"role": "web", "port": 8000, "path": "/health/ready", "public_path": "/health/ready",
                               "status": 200, "timeout": spec["health"][0]["timeout"], "host": "shop.example.com"}]
    assert spec["channels"][0]["url"].endswith("/secret-part")  # filled in for the agent
    rules = parse_alert_rules(spec["alerts"])
    assert rules.down.for_ == 90 and rules.certificate.below == 10 * 86400
    assert rules.error_rate.above == 2.0  # the environment's override
    assert rules.p95.above == 0.5  # a default


def test_rules_read_back_exactly(tmp_path: Path) -> None:
    target = _target(tmp_path)
    alerts = target.config.alerts_for("production")
    assert parse_alert_rules(rules_data(alerts, skip={"channels"})) == parse_alert_rules(
        rules_data(parse_alert_rules(rules_data(alerts, skip={"channels"}))))


def test_a_round_on_an_empty_host_reports_the_host_and_takes_silences(tmp_path: Path) -> None:
    monitor = Monitor(tmp_path, interval=1.0)
    first = monitor.round(now=1_000_000.0)
    assert first["environments"] == 0
    second = monitor.round(now=1_000_015.0)
    text = monitor.registry.exposition().decode()
    assert "headway_host_memory_used_ratio" in text and "headway_host_load1" in text
    assert second["seconds"] < 5
    assert request(tmp_path, {"op": "silence", "subject": "shop/production", "matcher": {"subject": "shop/*"},
                              "until": 2e12, "by": "ops", "reason": "migration"}) is None  # no wait
    request(tmp_path, {"op": "unsilence", "subject": "shop/production", "id": "s99"})
    monitor.round(now=1_000_030.0)
    answers = sorted((tmp_path / "agent" / "requests").glob("*.done"))
    results = [json.loads(p.read_text()) for p in answers]
    assert [r["silence"] for r in results if "silence" in r] == ["s1"]
    assert any("no silence 's99'" in r.get("error", "") for r in results)
    saved = json.loads(alert_state_path(tmp_path, "shop/production").read_text())
    assert saved["silences"][0]["reason"] == "migration"


def test_the_default_rules_read_back_exactly() -> None:
    from headway.observe.alerts import AlertRules

    assert parse_alert_rules(rules_data(AlertRules())) == AlertRules()


def test_a_mistyped_alert_key_in_headway_yml_names_the_right_one() -> None:
    import pytest

    from headway.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG.replace("down: {for: 90s}", "down: {fore: 90s}\n  dsk: {above: 90%}"))
    text = str(info.value)
    assert "alerts.down.fore: unknown key; did you mean `for`?" in text
    assert "alerts.dsk: unknown key; did you mean `disk`?" in text


def test_a_failed_backup_and_an_expiring_certificate_fire(tmp_path: Path) -> None:
    import datetime as dt

    from headway.data.catalog import BackupRecord, Catalog
    from headway.observe.alerts import AlertRules

    now = dt.datetime.now(dt.UTC)
    certs = tmp_path / "proxy" / "certs" / "shop--production"
    certs.mkdir(parents=True)
    (certs / "fullchain.pem").write_text("-")
    (certs / "privkey.pem").write_text("-")
    (certs / "meta.json").write_text(json.dumps({
        "domains": ["shop.example.com"], "issuer": "test", "serial": "1", "source": "acme",
        "not_before": (now - dt.timedelta(days=80)).isoformat(), "not_after": (now + dt.timedelta(days=5)).isoformat(),
        "installed_at": now.isoformat()}))
    Catalog(tmp_path, "shop", "production").record(BackupRecord(
        id="db-1", app="shop", environment="production", database="db", engine="postgres", image="postgres:15",
        format="pg_dump custom format", key="db-1", reason="scheduled", status="failed",
        error="pg_dump: connection refused"))
    spec = {"app": "shop", "environment": "production", "domains": ["shop.example.com"], "tls": True,
            "databases": [{"name": "db", "engine": "postgres", "schedule": None, "managed": True}],
            "alerts": rules_data(AlertRules()), "channels": []}
    monitor = Monitor(tmp_path)
    t = now.timestamp()
    observations = monitor._data_and_certificate(spec, "shop/production", t)
    fired = {x["rule"]: x for x in monitor._alerts([spec], observations, t) if x["kind"] == "firing"}
    assert set(fired) == {"backup", "certificate"}
    assert "connection refused" in fired["backup"]["text"]
    assert "expires in 5.0 days" in fired["certificate"]["text"] or "5.0 days" in fired["certificate"]["text"]
