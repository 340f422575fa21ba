#!/usr/bin/env bash
# The demo: installs what headway needs, then deploys examples/shop to production and staging on this machine,
# redeploys and rolls back under load, and prints the URLs and what happened. Then examples/tracker (a
# single-page app on /, its API on /api, each from its own image) goes to production beside the shop, and both
# apps answer through the same proxy.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/python scripts/demo.py

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "deploy examples/tracker to production beside the shop: its frontend and api images, one release"
(
    cd examples/tracker
    echo "$ headway deploy -e production"
    ../../.venv/bin/headway deploy -e production --version "demo-$(date +%H%M%S)"
    ../../.venv/bin/headway status -e production
)

say "both apps answer through headway's proxy"
.venv/bin/python - <<'EOF'
"""Requests through the proxy, by port and by host name, each checked: a failed check fails the demo."""
import json
import sys
import urllib.request


def call(method, url, host=None, body=None):
    request = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", **({"Host": host} if host else {})})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read().decode()


def show(label, method, url, host=None, body=None, expect=200, contains=""):
    status, kind, text = call(method, url, host, body)
    shown = f"{method} {url}" + (f"  (Host: {host})" if host else "")
    print(f"  {shown:<62} {status} {kind.split(';')[0]:<17} {label}")
    if status != expect or contains not in text:
        sys.exit(f"unexpected answer from {shown}: {status} {text[:200]}")
    return text


shop = json.loads(show("the shop's API", "GET", "http://127.0.0.1:8080/"))
show("the tracker's SPA (frontend image)", "GET", "http://127.0.0.1:8090/", contains="<title>Incident Tracker")
show("an SPA route: index.html", "GET", "http://127.0.0.1:8090/incidents/1", contains="<title>Incident Tracker")
made = json.loads(show("the tracker's API (api image)", "POST", "http://127.0.0.1:8090/api/incidents",
                       body={"title": "Demo: checkout slow", "severity": "sev2"}, expect=201))
listed = json.loads(show("the incident list", "GET", "http://127.0.0.1:8090/api/incidents"))
if made["id"] not in {i["id"] for i in listed}:
    sys.exit("the incident just created is not in the list")
show("by host name, port 80", "GET", "http://127.0.0.1/", host="shop.localhost", contains=shop["app"])
show("by host name, port 80", "GET", "http://127.0.0.1/api/info", host="tracker.localhost", contains="tracker")
EOF

say "how ready for production is the shop? (headway doctor: a score by category, each finding with its fix)"
(
    cd examples/shop
    echo "$ headway doctor -e production"
    ../../.venv/bin/headway doctor -e production
)

say "try it"
echo "  shop:     http://localhost:8080/   (or http://shop.localhost/)"
echo "  tracker:  http://localhost:8090/   (or http://tracker.localhost/); its API under /api, e.g. /api/docs"
echo "  history:  cd examples/tracker && ../../.venv/bin/headway releases -e production"
