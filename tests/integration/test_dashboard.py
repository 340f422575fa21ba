"""The dashboard against the real Docker Engine and proxy: login, sessions, CSRF, the rate limit, and the rollback
and maintenance actions, driven over HTTP (every action refused without a session or its token) and in Chromium."""

from __future__ import annotations

import io
import json
import re
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from headway.observe.agent import DASHBOARD_APP, DASHBOARD_ENV, Agent, AgentSettings
from headway.observe.dashboard import Dashboard, DashboardServer
from tests.conftest import free_port

pytestmark = [pytest.mark.docker, pytest.mark.proxy]

PASSWORD = "correct horse battery staple"


@dataclass
class Running:
    dashboard: Dashboard
    server: DashboardServer
    url: str  # through the proxy
    app: object


@pytest.fixture
def dashboard(tiny_app, docker_engine) -> Iterator[Running]:  # type: ignore[no-untyped-def]
    hw = tiny_app.headway()
    hw.deploy(version="v1")
    hw.deploy(version="v2")
    # two rounds of the agent's checks with requests between them: health, figures and charts to show
    from headway.observe.monitor import Monitor

    monitor = Monitor(tiny_app.state_dir)
    monitor.round()
    with httpx.Client() as client:
        for _ in range(30):
            assert client.get(tiny_app.url()).status_code == 200
    monitor.round()
    board = Dashboard(tiny_app.state_dir, docker_engine)
    board.users.set_password("admin", PASSWORD)
    server = board.serve("127.0.0.1", free_port())
    public = free_port()
    agent = Agent(docker_engine, tiny_app.state_dir)
    url = agent.publish_dashboard(AgentSettings(dashboard_port=server.server.server_address[1],
                                                dashboard_public_port=public))
    assert url is not None
    try:
        yield Running(board, server, f"http://localhost:{public}", tiny_app)
    finally:
        server.close()
        agent.publish_dashboard(AgentSettings(dashboard_port=0))
        shutil.rmtree(tiny_app.state_dir / "agent" / "dashboard", ignore_errors=True)


def served(app) -> str:  # type: ignore[no-untyped-def]
    return httpx.get(app.url(), timeout=5).json()["release"]


def login_form(client: httpx.Client, url: str) -> tuple[str, str]:
    page = client.get(f"{url}/login")
    token = re.search(r'name="form_token" value="([^"]+)"', page.text)
    assert token, page.text
    return token[1], page.headers["set-cookie"].split(";", 1)[0]


def log_in(client: httpx.Client, url: str, password: str = PASSWORD) -> httpx.Response:
    token, cookie = login_form(client, url)
    return client.post(f"{url}/login", data={"user": "admin", "password": password, "form_token": token},
                       headers={"Cookie": cookie})


def test_every_action_is_refused_without_a_session_or_its_csrf_token(dashboard):  # type: ignore[no-untyped-def]
    app, url = dashboard.app, dashboard.url
    history_before = len(app.headway().state.history())
    with httpx.Client(timeout=30, follow_redirects=False) as client:
        # no session: pages send to the login, actions are refused
        assert client.get(f"{url}/").headers["location"] == "/login"
        assert client.get(f"{url}/env/{app.name}/production").status_code == 303
        actions = [("rollback", {"deploy": "1"}), ("maintenance", {"state": "on"})]
        for action, form in actions:
            r = client.post(f"{url}/env/{app.name}/production/{action}", data={**form, "csrf": "x"})
            assert r.status_code == 401, (action, r.status_code)

        # a session, cookies as a browser must keep them
        r = log_in(client, url)
        assert r.status_code == 303 and r.headers["location"] == "/"
        set_cookie = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and "hw_session=" in v)
        for flag in ("HttpOnly", "Secure", "SameSite=Strict"):
            assert flag in set_cookie
        session = {"Cookie": set_cookie.split(";", 1)[0]}
        page = client.get(f"{url}/env/{app.name}/production", headers=session)
        assert page.status_code == 200 and "v2" in page.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)[1]  # type: ignore[index]

        # without the token, with a forged one, or from another site: refused
        for action, form in actions:
            for bad in ({}, {"csrf": "forged-" + csrf[:10]}):
                r = client.post(f"{url}/env/{app.name}/production/{action}", data={**form, **bad}, headers=session)
                assert r.status_code == 403, (action, bad, r.status_code)
            r = client.post(f"{url}/env/{app.name}/production/{action}", data={**form, "csrf": csrf},
                            headers={**session, "Origin": "https://evil.example"})
            assert r.status_code == 403
        r = client.post(f"{url}/logout", data={}, headers=session)
        assert r.status_code == 403
    # nothing happened
    assert served(app) == "v2"
    assert len(app.headway().state.history()) == history_before
    assert not app.headway().state.current().maintenance
    refused = [a for a in dashboard.dashboard.actions() if a["outcome"] == "refused"]
    assert len(refused) >= 9

    # the password is kept hashed, readable by root only
    users = dashboard.dashboard.users.path
    assert PASSWORD not in users.read_text() and "scrypt$" in users.read_text()
    assert stat.S_IMODE(users.stat().st_mode) == 0o600


def test_wrong_passwords_are_rate_limited(dashboard):  # type: ignore[no-untyped-def]
    url = dashboard.url
    with httpx.Client(timeout=30, follow_redirects=False) as client:
        for _ in range(5):
            r = log_in(client, url, "wrong password here")
            assert r.status_code == 401 and "Wrong user name or password" in r.text
        r = log_in(client, url)  # the right one, but too soon
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        # a login form not from this page (no matching token) is refused too
        r = client.post(f"{url}/login", data={"user": "admin", "password": PASSWORD, "form_token": "forged"})
        assert r.status_code == 403


def chromium():  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        pytest.fail("chromium and chromium-driver are needed (scripts/bootstrap.sh installs them)")
    opts = Options()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1400",
                "--disable-gpu"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=opts)


def colour_share(png: bytes, rgb: tuple[int, int, int], tolerance: int = 6) -> float:
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    small = img.resize((img.width // 4, img.height // 4), Image.Resampling.NEAREST)
    pixels = list(small.get_flattened_data()) if hasattr(small, "get_flattened_data") else list(small.getdata())
    near = sum(1 for p in pixels if all(abs(p[i] - rgb[i]) <= tolerance for i in range(3)))
    return near / len(pixels)


LIVE_ROW = (0xDA, 0xFB, 0xE1)  # the live release's row
LOGIN_GREEN = (0x1A, 0x7F, 0x37)  # the login button, the "up" badge


def test_rollback_in_chromium_only_when_logged_in(dashboard, tmp_path: Path):  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    app, url = dashboard.app, dashboard.url
    env_page = f"{url}/env/{app.name}/production"
    driver = chromium()
    try:
        wait = WebDriverWait(driver, 60)
        driver.get(env_page)  # not logged in: the login page
        wait.until(EC.presence_of_element_located((By.ID, "login")))
        assert driver.current_url.endswith("/login")
        shot = driver.get_screenshot_as_png()
        (tmp_path / "login.png").write_bytes(shot)
        assert colour_share(shot, LOGIN_GREEN) > 0.002  # the styled page, its stylesheet allowed by the CSP

        driver.find_element(By.ID, "user").send_keys("admin")
        driver.find_element(By.ID, "password").send_keys("not the password")
        driver.find_element(By.ID, "login").click()
        error = wait.until(EC.presence_of_element_located((By.ID, "error")))
        assert "Wrong user name or password" in error.text

        driver.find_element(By.ID, "user").send_keys("admin")
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.ID, "login").click()
        table = wait.until(EC.presence_of_element_located((By.ID, "environments")))
        assert app.name in table.text and "v2" in table.text
        cookie = driver.get_cookie("hw_session")
        assert cookie and cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"

        driver.get(env_page)
        assert wait.until(EC.presence_of_element_located((By.ID, "live-release"))).text == "v2"
        assert driver.find_element(By.ID, "health").text == "up"
        assert driver.find_elements(By.CSS_SELECTOR, "#chart-requests polyline, #chart-requests circle")
        before = driver.get_screenshot_as_png()
        (tmp_path / "environment-v2.png").write_bytes(before)
        assert colour_share(before, LIVE_ROW) > 0.001  # the live release's row, highlighted
        assert colour_share(before, LOGIN_GREEN) > 0.0002  # the green "up" badge

        driver.find_element(By.ID, "rollback-1").click()
        wait.until(EC.alert_is_present())
        driver.switch_to.alert.accept()
        flash = wait.until(EC.presence_of_element_located((By.ID, "flash")))
        assert "rolled back" in flash.text, flash.text
        assert driver.find_element(By.ID, "live-release").text == "v1"
        after = driver.get_screenshot_as_png()
        (tmp_path / "environment-v1.png").write_bytes(after)
        assert after != before
        assert served(app) == "v1"
        last = app.headway().state.history()[-1]
        assert last.action == "rollback" and last.by.startswith("dashboard:admin@")
        journal = [json.loads(line) for line in
                   (app.state_dir / "apps" / app.name / "production" / "journal.jsonl").read_text().splitlines()]
        assert any(e.get("kind") == "rollback" and str(e.get("by", "")).startswith("dashboard:admin@")
                   for e in journal)

        # logged out: the same button is gone and a replayed form is refused
        driver.find_element(By.ID, "logout").click()
        wait.until(EC.presence_of_element_located((By.ID, "login")))
        driver.get(env_page)
        wait.until(EC.presence_of_element_located((By.ID, "login")))
        assert driver.find_elements(By.CLASS_NAME, "rollback") == []
    finally:
        driver.quit()
    assert served(app) == "v1"
    done = [a for a in dashboard.dashboard.actions() if a["action"] == "rollback" and a["outcome"] == "done"]
    assert len(done) == 1 and done[0]["user"] == "admin"


def test_the_route_and_its_removal(dashboard):  # type: ignore[no-untyped-def]
    proxy_routes = dashboard.app.state_dir / "proxy" / "routes"
    assert any(DASHBOARD_APP in p.name and DASHBOARD_ENV in p.name for p in proxy_routes.glob("*.json"))
    r = httpx.get(f"{dashboard.url}/health", timeout=5)
    assert r.status_code == 200 and r.text == "ok\n"
    # a page of the dashboard through the proxy carries its security headers
    page = httpx.get(f"{dashboard.url}/login", timeout=5)
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
