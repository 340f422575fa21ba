"""The monitoring agent as a user runs it: `headway agent boot` builds and starts its container; stopping an app's
web containers by hand fires "down" after the rule's `for` to a webhook, a Slack-shaped receiver and a real SMTP
server, and "resolved" when they are back; deploys are announced on the same channels; /metrics scrapes."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from headway.observe.agent import Agent
from tests.conftest import AppDir, free_port
from tests.receivers import Mailbox, Receiver, http_receiver, smtp_server

pytestmark = [pytest.mark.docker, pytest.mark.proxy]

SMTP_PASSWORD = f"smtp-{uuid.uuid4().hex}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with http_receiver() as rec:
        yield rec


@pytest.fixture
def mailbox(tiny_app: AppDir) -> Iterator[Mailbox]:
    # the certificate sits in the state directory, which the agent sees at the same path
    folder = tiny_app.state_dir / f"smtp-{tiny_app.name}"
    folder.mkdir()
    with smtp_server(folder, password=SMTP_PASSWORD) as box:
        yield box


@pytest.fixture
def watched(tiny_app: AppDir, receiver: Receiver, mailbox: Mailbox, docker_engine) -> Iterator[tuple[AppDir, Agent]]:  # type: ignore[no-untyped-def]
    """The tiny app with three channels and a 4 s `down` rule, deployed, and an agent of its own watching it."""
    text = (tiny_app.root / "headway.yml").read_text() + f"""
alerts:
  down: {{for: 4s}}
  channels:
    - {{type: webhook, name: hook, url: "{receiver.url('/hook')}"}}
    - {{type: slack, url: "{receiver.url('/slack')}"}}
    - type: email
      to: [ops@example.com]
      from: alerts@example.com
      host: 127.0.0.1
      port: {mailbox.port}
      username: alerts
      password: "${{SMTP_PASSWORD}}"
      ca_file: {mailbox.ca_file}
"""
    (tiny_app.root / "headway.yml").write_text(text)
    secrets = tiny_app.root / ".headway" / "secrets.production"
    secrets.parent.mkdir(exist_ok=True)
    secrets.write_text(f"SMTP_PASSWORD={SMTP_PASSWORD}\n")
    secrets.chmod(0o600)
    tiny_app.cli("deploy", "-e", "production", check=True)
    agent = Agent(docker_engine, tiny_app.state_dir)
    agent.boot(port=free_port(), interval=1.0, name=f"headway-agent-test-{tiny_app.name}",
               dashboard_port=free_port())
    yield tiny_app, agent
    agent.stop()


def _wait(what: str, check, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)  # the agent's rounds (1 s here), polled
    seen = ""
    if _AGENT is not None:
        last = _AGENT.dir / "last-round.json"
        seen = "\n".join(list(_AGENT.logs(tail=30))) + "\n" + (last.read_text() if last.exists() else "")
    pytest.fail(f"{what}: not within {timeout:.0f}s\n{seen}")


_AGENT: Agent | None = None


def _notices(receiver: Receiver, kind: str) -> list[dict]:  # type: ignore[type-arg]
    return [r.json() for r in receiver.at("/hook") if r.json().get("kind") == kind]


def test_down_fires_after_its_for_to_every_channel_and_resolves(watched, receiver: Receiver,
                                                                mailbox: Mailbox) -> None:  # type: ignore[no-untyped-def]
    app, agent = watched
    global _AGENT
    _AGENT = agent
    deploys = _notices(receiver, "deploy")
    assert deploys and deploys[0]["app"] == app.name and deploys[0]["environment"] == "production"
    metrics_url = f"http://127.0.0.1:{agent.settings().port}/metrics"

    def up() -> bool:
        text = httpx.get(metrics_url, timeout=5).text
        return f'headway_up{{app="{app.name}",check="proxy",environment="production"}} 1.0' in text

    _wait("the agent sees the app up", up)
    web = [c for c in subprocess.run(["docker", "ps", "-q", "--filter", f"label=dev.headway.app={app.name}",
                                      "--filter", "label=dev.headway.role=web"], capture_output=True, text=True,
                                     check=True).stdout.split()]
    assert len(web) == 2
    stopped_at = time.time()
    subprocess.run(["docker", "stop", "-t", "1", *web], check=True, capture_output=True)
    fired = _wait("down fired", lambda: _notices(receiver, "alert"))
    assert fired[0]["labels"]["rule"] == "down" and app.name in fired[0]["title"]
    assert time.time() - stopped_at >= 4.0  # not before the rule's `for`
    assert _wait("slack got it", lambda: receiver.at("/slack")[1:])  # the deploy notice, then the alert
    assert _wait("the mail arrived", lambda: [m for m in mailbox.messages if "down" in str(m["Subject"])])
    subprocess.run(["docker", "start", *web], check=True, capture_output=True)
    resolved = _wait("resolved", lambda: _notices(receiver, "resolved"))
    assert resolved[0]["labels"]["rule"] == "down"
    assert len(_notices(receiver, "alert")) == 1  # fired once (no repeat within 4 h)
    assert _wait("resolved by mail", lambda: [m for m in mailbox.messages if "resolved" in str(m["Subject"]).lower()
                                               or "resolved" in m.get_body(("plain",)).get_content().lower()])
    # silenced: the alert still fires (and shows), no notice goes out
    quiet = app.cli("alerts", "silence", "-e", "production", "--for", "10m", "--reason", "planned work")
    assert quiet.returncode == 0, quiet.stderr
    subprocess.run(["docker", "stop", "-t", "1", *web], check=True, capture_output=True)

    def firing() -> list[dict]:  # type: ignore[type-arg]
        listed = app.cli("alerts", "list", "-e", "production", "--json")
        return [a for a in json.loads(listed.stdout)["alerts"] if a["state"] == "firing"]

    _wait("down firing while silenced", firing)
    assert len(_notices(receiver, "alert")) == 1
    status = json.loads(app.cli("status", "-e", "production", "--json").stdout)
    assert [a["rule"] for a in status["alerts"]] == ["down"]
    subprocess.run(["docker", "start", *web], check=True, capture_output=True)
    _wait("down cleared", lambda: not firing())
    # requests through the proxy show in the scrape
    for _ in range(5):
        httpx.get(app.url(), timeout=5)

    def counted() -> bool:
        families = {f.name: f for f in text_string_to_metric_families(httpx.get(metrics_url, timeout=5).text)}
        fam = families.get("headway_http_requests")
        return fam is not None and any(s.labels.get("app") == app.name for s in fam.samples)

    _wait("requests counted", counted)

    def figures() -> dict | None:  # type: ignore[type-arg]
        out = app.cli("metrics", "-e", "production", "--json")
        data = json.loads(out.stdout) if out.returncode == 0 else {}
        return data if data.get("requests_per_s") and data.get("containers") else None

    shown = _wait("headway metrics shows requests and containers", figures)
    assert {c["role"] for c in shown["containers"]} >= {"web"} and all(c["memory_bytes"] > 0
                                                                       for c in shown["containers"])
    status = agent.status()
    assert status.running and status.last_round and status.last_round["environments"] >= 1


def test_alerts_test_names_the_channel_that_failed(tiny_app: AppDir, receiver: Receiver) -> None:
    dead = free_port()
    tiny_app.edit_config("environments:", f"""alerts:
  channels:
    - {{type: webhook, name: hook, url: "{receiver.url('/hook')}"}}
    - {{type: webhook, name: nobody, url: "http://127.0.0.1:{dead}/x"}}
environments:""")
    out = tiny_app.cli("alerts", "test", "-e", "production", "--json")
    assert out.returncode == 1, out.stderr
    rows = {d["channel"]: d for d in json.loads(out.stdout)["deliveries"]}
    assert rows["hook"]["ok"] and not rows["nobody"]["ok"] and rows["nobody"]["error"]
    assert [r.json()["kind"] for r in receiver.at("/hook")] == ["test"]
    assert "Traceback" not in out.stderr


def test_the_agents_port_taken_is_a_clear_error(tiny_app: AppDir, docker_engine) -> None:  # type: ignore[no-untyped-def]
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = tiny_app.cli("agent", "boot", "--port", str(port), "--name", f"headway-agent-test-{tiny_app.name}")
    assert out.returncode != 0 and f"port {port}" in out.stderr and "--port" in out.stderr
    assert "Traceback" not in out.stderr
    assert docker_engine.get(f"headway-agent-test-{tiny_app.name}") is None


def test_the_dashboard_in_the_agents_container_rolls_back(tiny_app: AppDir, docker_engine) -> None:  # type: ignore[no-untyped-def]
    """The agent serves the dashboard through the proxy; its action runs inside the agent's container."""
    import re

    tiny_app.cli("deploy", "-e", "production", "--version", "v1", check=True)
    tiny_app.cli("deploy", "-e", "production", "--version", "v2", check=True)
    password = f"pw-{uuid.uuid4().hex}"
    set_pw = tiny_app.cli("agent", "password", "--stdin", input=password + "\n")
    assert set_pw.returncode == 0, set_pw.stderr
    assert password not in set_pw.stdout + set_pw.stderr
    agent = Agent(docker_engine, tiny_app.state_dir)
    public = free_port()
    agent.boot(port=free_port(), interval=2.0, name=f"headway-agent-test-{tiny_app.name}",
               dashboard_port=free_port(), dashboard_public_port=public)
    try:
        url = f"http://localhost:{public}"
        with httpx.Client(timeout=120, follow_redirects=False) as client:
            page = client.get(f"{url}/login")
            token = re.search(r'name="form_token" value="([^"]+)"', page.text)[1]  # type: ignore[index]
            login_cookie = page.headers["set-cookie"].split(";", 1)[0]
            r = client.post(f"{url}/login", data={"user": "admin", "password": password, "form_token": token},
                            headers={"Cookie": login_cookie})
            assert r.status_code == 303, r.text
            cookie = {"Cookie": next(v for k, v in r.headers.multi_items()
                                     if k == "set-cookie" and "hw_session=" in v).split(";", 1)[0]}
            page = client.get(f"{url}/env/{tiny_app.name}/production", headers=cookie)
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)[1]  # type: ignore[index]
            r = client.post(f"{url}/env/{tiny_app.name}/production/rollback", data={"deploy": "1", "csrf": csrf},
                            headers=cookie)
            assert r.status_code == 303
            page = client.get(f"{url}/env/{tiny_app.name}/production", headers=cookie)
            assert 'id="live-release">v1<' in page.text, page.text[-3000:]
        assert httpx.get(tiny_app.url(), timeout=5).json()["release"] == "v1"
        assert tiny_app.headway().state.history()[-1].by.startswith("dashboard:admin@")
    finally:
        agent.stop()
