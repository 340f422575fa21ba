"""`headway render kubernetes`: every rendered document checked against the official Kubernetes 1.29 JSON schemas
(kubernetes-validate, strict: unknown fields are errors), and the fields that matter asserted one by one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from headway.config.loader import load_config
from headway.errors import ConfigError
from headway.render.kubernetes import KUBERNETES_VERSION, Options, memory_quantity, render_kubernetes

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
SECRET_VALUE = "s3cr3t-" + os.urandom(8).hex()  # in the secrets file; must never appear in any output
ACME_VALUE = "acme-" + os.urandom(8).hex()

FULL = """\
app: market
image: {dockerfile: Dockerfile, name: registry.example.com/org/market}
registry: {server: registry.example.com, username: ci, password: "${REGISTRY_PASSWORD}"}
roles:
  web:
    command: gunicorn app:wsgi -b 0.0.0.0:8000
    port: 8000
    replicas: 3
    stop_timeout: 20s
    resources: {cpus: 0.5, memory: 512m}
    health: {path: /healthz, interval: 2s, timeout: 3s, attempts: 30, start_period: 4s, host: market.example.com}
    secrets: [JWT_SECRET, STRIPE_KEY]
    env: {SIGNING_URL: "https://sign.example.com/?k=${STRIPE_KEY}", MODE: web}
  admin:
    image: registry.example.com/org/admin:7.1
    port: 9000
    path: /admin
    strip_prefix: true
    stop_signal: SIGQUIT
    secrets: []
  worker:
    command: [python, -m, worker]
    health: {stays_running: 5s}
    resources: {memory: 1.5g}
secrets:
  JWT_SECRET: {as: file}
  STRIPE_KEY: {from: "op read op://prod/stripe/key"}
release: {command: python -m migrate, role: web}
databases:
  db: {engine: postgres}
env:
  PUBLIC_URL: https://market.example.com
deploy: {strategy: canary, retain: 3, release_timeout: 5m}
environments:
  production:
    domains: [market.example.com, www.market.example.com]
    tls: {email: ops@example.com}
    replicas: {worker: 2}
    proxy: {client_max_body_size: 50m}
    databases: {db: {external_url: "${PROD_DB_URL}"}}
  staging:
    domains: [staging.market.example.com]
    tls: {certificate: certs/staging.pem, key: certs/staging.key, redirect: false}
    seed: python -m seed
"""


def validate_all(docs: list[dict[str, Any]]) -> None:
    assert docs
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:  # pragma: no cover - the message is the point
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {path}: {exc.message}")


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


@pytest.fixture
def full(tmp_path: Path) -> Path:
    (tmp_path / "headway.yml").write_text(FULL)
    (tmp_path / "Dockerfile").write_text("FROM python:3.11-slim AS base\nRUN useradd -u 10001 app\nUSER 10001\n"
                                         "FROM base\nCMD [\"python\"]\n")
    secrets = tmp_path / ".headway"
    secrets.mkdir()
    for env in ("production", "staging"):
        path = secrets / f"secrets.{env}"
        path.write_text(f"JWT_SECRET={SECRET_VALUE}\nPROD_DB_URL=postgresql://u:{SECRET_VALUE}@db/x\n"
                        f"REGISTRY_PASSWORD={SECRET_VALUE}\nACME_KEY={ACME_VALUE}\n")
        path.chmod(0o600)
    return tmp_path


def render(root: Path, env: str, **options: Any) -> Any:
    return render_kubernetes(load_config(root / "headway.yml"), env, root, Options(**options))


def headway(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "headway", *args], cwd=root, text=True, capture_output=True,
                          timeout=60, env={**os.environ, "HEADWAY_STATE_DIR": str(root / "state")})


# -- schema ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("example,env", [("shop", "production"), ("shop", "staging"), ("tracker", "production"),
                                         ("tracker", "staging")])
def test_examples_validate_against_the_kubernetes_schemas(example: str, env: str) -> None:
    rendered = render(EXAMPLES / example, env, version="1.4.2")
    validate_all(rendered.documents)
    # the stream a person applies parses back to exactly these documents, in this order
    assert [d for d in yaml.safe_load_all(rendered.yaml()) if d] == rendered.documents
    kinds = [d["kind"] for d in rendered.documents]
    order = ["Namespace", "Job", "Deployment", "Service", "PodDisruptionBudget", "Ingress"]
    assert kinds == sorted(kinds, key=order.index)
    for doc in rendered.documents:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == example
        assert labels["app.kubernetes.io/instance"] == f"{example}-{env}"
        assert labels["app.kubernetes.io/version"] == "1.4.2"
        assert labels["app.kubernetes.io/managed-by"] == "headway"
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == f"{example}-{env}"
            assert "app.kubernetes.io/component" in labels


def test_full_config_validates_in_both_environments(full: Path) -> None:
    for env in ("production", "staging"):
        validate_all(render(full, env, version="2.0.0").documents)


def test_a_broken_document_fails_the_schema_check() -> None:
    """The check itself can fail: a misspelt field and a wrong type are both refused."""
    doc = render(EXAMPLES / "shop", "production", version="1").documents
    deployment = next(d for d in doc if d["kind"] == "Deployment")
    deployment["spec"]["replicass"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    del deployment["spec"]["replicass"]
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


# -- what is rendered ------------------------------------------------------------------------------------
def test_shop_probes_command_and_images() -> None:
    docs = render(EXAMPLES / "shop", "production", version="abc123").documents
    deployments = by_kind(docs, "Deployment")
    web, worker = container(deployments["shop-web"]), container(deployments["shop-worker"])
    assert web["image"] == worker["image"] == "shop:abc123"
    assert web["args"][:2] == ["uvicorn", "app.main:app"]  # args: the image's ENTRYPOINT stays, as with Docker
    assert "command" not in web
    assert web["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert web["readinessProbe"]["httpGet"]["port"] == "http"
    assert web["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert web["startupProbe"]["failureThreshold"] == 30  # 60 attempts at 500 ms: 30 s to become healthy
    assert web["livenessProbe"] == {"tcpSocket": {"port": "http"}, "periodSeconds": 10, "timeoutSeconds": 5,
                                    "failureThreshold": 3}
    assert web["livenessProbe"] != web["readinessProbe"]
    assert web["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", "5"]}}
    assert deployments["shop-web"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 10 + 5
    assert deployments["shop-web"]["spec"]["replicas"] == 2
    check = ["python", "-m", "app.worker", "--check"]
    assert worker["readinessProbe"]["exec"]["command"] == check
    assert worker["livenessProbe"]["exec"]["command"] == check
    assert worker["livenessProbe"]["periodSeconds"] > worker["readinessProbe"]["periodSeconds"]
    assert worker["livenessProbe"]["failureThreshold"] > worker["readinessProbe"]["failureThreshold"]
    assert "lifecycle" not in worker  # no endpoints to drain
    assert set(by_kind(docs, "Service")) == {"shop-web"}
    assert set(by_kind(docs, "PodDisruptionBudget")) == {"shop-web"}  # worker has 1 replica
    job = by_kind(docs, "Job")["shop-release-abc123"]
    assert container(job)["args"] == ["python", "-m", "app.migrate"]
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # the databases are not rendered: their URLs come from the environment's Secret
    for c in (web, worker, container(job)):
        assert env_of(c)["DATABASE_URL"] == {"secretKeyRef": {"name": "shop-production-secrets",
                                                              "key": "DATABASE_URL"}}
        assert env_of(c)["REDIS_URL"]["secretKeyRef"]["key"] == "REDIS_URL"
    assert not {"StatefulSet", "PersistentVolumeClaim", "Secret"} & {d["kind"] for d in docs}


def test_staging_job_runs_the_seed_after_the_release_command() -> None:
    docs = render(EXAMPLES / "shop", "staging", version="abc").documents
    pod = by_kind(docs, "Job")["shop-release-abc"]["spec"]["template"]["spec"]
    assert [c["args"] for c in pod["initContainers"]] == [["python", "-m", "app.migrate"]]
    assert [c["args"] for c in pod["containers"]] == [["python", "-m", "app.seed"]]
    assert by_kind(docs, "Deployment")["shop-web"]["spec"]["replicas"] == 1
    assert not by_kind(docs, "PodDisruptionBudget")


def test_tracker_paths_per_role_and_release_image_of_its_role() -> None:
    docs = render(EXAMPLES / "tracker", "production", version="v9").documents
    ingress = by_kind(docs, "Ingress")
    assert set(ingress) == {"tracker"}  # strip_prefix: false → no rewrite ingress
    rule = ingress["tracker"]["spec"]["rules"][0]
    assert rule["host"] == "tracker.localhost"
    routes = {p["path"]: (p["pathType"], p["backend"]["service"]["name"]) for p in rule["http"]["paths"]}
    assert routes == {"/api": ("Prefix", "tracker-api"), "/": ("Prefix", "tracker-frontend")}
    deployments = by_kind(docs, "Deployment")
    assert container(deployments["tracker-api"])["image"] == "tracker-api:v9"
    assert container(deployments["tracker-frontend"])["image"] == "tracker-frontend:v9"
    assert container(by_kind(docs, "Job")["tracker-release-v9"])["image"] == "tracker-api:v9"
    frontend = container(deployments["tracker-frontend"])
    assert "args" not in frontend  # no command: the image's own
    script = frontend["lifecycle"]["preStop"]["exec"]["command"]
    assert script[:2] == ["sh", "-c"] and "kill -QUIT 1" in script[2]  # stop_signal SIGQUIT
    assert frontend["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert set(by_kind(docs, "PodDisruptionBudget")) == {"tracker-api", "tracker-frontend"}
    services = by_kind(docs, "Service")
    assert services["tracker-api"]["spec"]["selector"] == {
        "app.kubernetes.io/name": "tracker", "app.kubernetes.io/instance": "tracker-production",
        "app.kubernetes.io/component": "api"}
    assert deployments["tracker-api"]["spec"]["selector"]["matchLabels"] == services["tracker-api"]["spec"]["selector"]


def test_full_config_secrets_by_reference_files_registry_tls_and_strip_prefix(full: Path) -> None:
    rendered = render(full, "production", version="2.0.0")
    docs = rendered.documents
    deployments = by_kind(docs, "Deployment")
    web_pod = deployments["market-web"]["spec"]["template"]["spec"]
    web = container(deployments["market-web"])
    assert web["image"] == "registry.example.com/org/market:2.0.0"
    assert web_pod["imagePullSecrets"] == [{"name": "market-registry"}]
    env = env_of(web)
    secret = "market-production-secrets"
    assert env["JWT_SECRET_FILE"] == "/run/secrets/JWT_SECRET"
    assert "JWT_SECRET" not in env  # as: file → never an env var
    assert env["STRIPE_KEY"] == {"secretKeyRef": {"name": secret, "key": "STRIPE_KEY"}}
    assert env["DATABASE_URL"] == {"secretKeyRef": {"name": secret, "key": "PROD_DB_URL"}}  # external_url
    assert env["SIGNING_URL"] == "https://sign.example.com/?k=$(STRIPE_KEY)"  # Kubernetes fills it in
    names = [e["name"] for e in web["env"]]
    assert names.index("STRIPE_KEY") < names.index("SIGNING_URL")
    assert env["PUBLIC_URL"] == "https://market.example.com" and env["MODE"] == "web"
    assert web_pod["volumes"] == [{"name": "secrets", "secret": {
        "secretName": secret, "defaultMode": 0o444, "items": [{"key": "JWT_SECRET", "path": "JWT_SECRET"}]}}]
    assert web["volumeMounts"] == [{"name": "secrets", "mountPath": "/run/secrets", "readOnly": True}]
    assert web["resources"] == {"requests": {"cpu": "500m", "memory": "512Mi"},
                                "limits": {"cpu": "500m", "memory": "512Mi"}}
    assert web_pod["terminationGracePeriodSeconds"] == 25
    assert web_pod["securityContext"]["runAsNonRoot"] is True  # USER 10001 in the Dockerfile's shipped stage
    probe = web["startupProbe"]
    assert probe["initialDelaySeconds"] == 4 and probe["periodSeconds"] == 2 and probe["failureThreshold"] == 30
    assert probe["httpGet"]["httpHeaders"] == [{"name": "Host", "value": "market.example.com"}]
    admin = container(deployments["market-admin"])
    assert admin["image"] == "registry.example.com/org/admin:7.1"  # prebuilt: as given
    assert "runAsNonRoot" not in deployments["market-admin"]["spec"]["template"]["spec"]["securityContext"]
    assert {e["name"] for e in admin["env"]} == {"DATABASE_URL", "PUBLIC_URL"}  # secrets: [] → none
    worker_deploy = deployments["market-worker"]
    assert worker_deploy["spec"]["minReadySeconds"] == 5 and worker_deploy["spec"]["replicas"] == 2
    worker = container(worker_deploy)
    assert worker["resources"]["limits"] == {"memory": "1536Mi"}
    assert "readinessProbe" not in worker and "livenessProbe" not in worker
    # a role that names no secrets gets every one: the file's and the declared ones (all by reference)
    wenv = env_of(worker)
    assert set(wenv) >= {"JWT_SECRET_FILE", "STRIPE_KEY", "PROD_DB_URL", "REGISTRY_PASSWORD", "ACME_KEY"}
    assert by_kind(docs, "Job")["market-release-2-0-0"]["spec"]["activeDeadlineSeconds"] == 300
    assert set(by_kind(docs, "PodDisruptionBudget")) == {"market-web", "market-worker"}
    ingresses = by_kind(docs, "Ingress")
    main, admin_ing = ingresses["market"], ingresses["market-admin"]
    assert main["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert main["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "50m"
    assert "cert-manager.io/cluster-issuer" not in admin_ing["metadata"]["annotations"]  # one Certificate
    tls = [{"hosts": ["market.example.com", "www.market.example.com"], "secretName": "market-production-tls"}]
    assert main["spec"]["tls"] == admin_ing["spec"]["tls"] == tls
    assert [r["host"] for r in main["spec"]["rules"]] == ["market.example.com", "www.market.example.com"]
    path = admin_ing["spec"]["rules"][0]["http"]["paths"][0]
    assert path["path"] == "/admin(/|$)(.*)" and path["pathType"] == "ImplementationSpecific"
    assert admin_ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/rewrite-target"] == "/$2"
    assert admin_ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/use-regex"] == "true"
    assert [p["path"] for p in main["spec"]["rules"][0]["http"]["paths"]] == ["/"]
    notes = " ".join(rendered.notes)
    assert "canary" in notes and "ingress-nginx" in notes and "databases are not rendered" in notes
    steps = "\n".join(rendered.steps)
    assert "create secret generic market-production-secrets --from-env-file=.headway/secrets.production" in steps
    assert "STRIPE_KEY=\"$(op read op://prod/stripe/key)\"" in steps
    assert "create secret docker-registry market-registry" in steps
    assert "wait --for=condition=complete --timeout=300s job/market-release-2-0-0" in steps


def test_custom_certificate_environment_and_options(full: Path) -> None:
    rendered = render(full, "staging", version="2.0.0", ingress_class="nginx", cluster_issuer="corp-ca",
                      namespace="market-stg", namespace_object=False)
    docs = rendered.documents
    assert "Namespace" not in {d["kind"] for d in docs}
    assert {d["metadata"]["namespace"] for d in docs} == {"market-stg"}
    main = by_kind(docs, "Ingress")["market"]
    assert main["spec"]["ingressClassName"] == "nginx"
    assert "cert-manager.io/cluster-issuer" not in main["metadata"]["annotations"]  # certificate files, not ACME
    assert main["metadata"]["annotations"]["nginx.ingress.kubernetes.io/ssl-redirect"] == "false"
    assert any("create secret tls market-staging-tls --cert=certs/staging.pem --key=certs/staging.key" in n
               for n in rendered.notes)
    assert by_kind(render(full, "production", version="1", cluster_issuer="corp-ca").documents, "Ingress")[
        "market"]["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "corp-ca"


def test_image_tag_pulls_what_ci_pushed(full: Path) -> None:
    docs = render(full, "production", image_tag="ci-77").documents
    deployments = by_kind(docs, "Deployment")
    assert container(deployments["market-web"])["image"] == "registry.example.com/org/market:ci-77"
    assert container(deployments["market-admin"])["image"] == "registry.example.com/org/admin:ci-77"
    assert deployments["market-web"]["metadata"]["labels"]["app.kubernetes.io/version"] == "ci-77"
    assert "market-release-ci-77" in by_kind(docs, "Job")


def test_no_secret_value_anywhere_in_the_output(full: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    for env in ("production", "staging"):
        result = headway(full, "render", "kubernetes", "-e", env, "--version", "2.0.0")
        assert result.returncode == 0, result.stderr
        assert "kind: Deployment" in result.stdout
        assert SECRET_VALUE not in result.stdout + result.stderr
        assert ACME_VALUE not in result.stdout + result.stderr
        written = headway(full, "render", "kubernetes", "-e", env, "--version", "2.0.0", "-o", str(out))
        assert written.returncode == 0, written.stderr
        for f in out.iterdir():
            text = f.read_text()
            assert SECRET_VALUE not in text and ACME_VALUE not in text


def test_output_dir_one_file_per_kind_deterministic(tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    first = headway(EXAMPLES / "shop", "render", "kubernetes", "-e", "production", "--version", "1", "-o", str(out))
    assert first.returncode == 0, first.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["00-namespace.yaml", "10-job.yaml", "20-deployment.yaml", "30-service.yaml",
                     "40-poddisruptionbudget.yaml", "50-ingress.yaml", "NOTES.txt"]
    deployments = list(yaml.safe_load_all((out / "20-deployment.yaml").read_text()))
    assert [d["metadata"]["name"] for d in deployments if d] == ["shop-web", "shop-worker"]
    assert "kubectl -n shop-production wait --for=condition=complete" in (out / "NOTES.txt").read_text()
    snapshot = {p.name: p.read_text() for p in out.iterdir()}
    # staging has one web replica: no PodDisruptionBudget, and the earlier file of that kind goes
    again = headway(EXAMPLES / "shop", "render", "kubernetes", "-e", "staging", "--version", "1", "-o", str(out))
    assert again.returncode == 0, again.stderr
    assert not (out / "40-poddisruptionbudget.yaml").exists()
    headway(EXAMPLES / "shop", "render", "kubernetes", "-e", "production", "--version", "1", "-o", str(out))
    assert {p.name: p.read_text() for p in out.iterdir()} == snapshot
    a = headway(EXAMPLES / "shop", "render", "kubernetes", "-e", "production", "--version", "1")
    b = headway(EXAMPLES / "shop", "render", "kubernetes", "-e", "production", "--version", "1")
    assert a.returncode == 0 and a.stdout == b.stdout
    assert a.stdout.startswith("# Kubernetes manifests for shop, environment production, release 1")


def test_version_from_the_commit_in_git(tmp_path: Path) -> None:
    (tmp_path / "headway.yml").write_text("app: tiny\nroles: {web: {port: 8000}}\nenvironments: {staging: {}}\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "headway.yml"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "one"], cwd=tmp_path, check=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, text=True, capture_output=True,
                         check=True).stdout.strip()
    rendered = render(tmp_path, "staging")
    assert rendered.version == sha[:12]
    web = container(by_kind(rendered.documents, "Deployment")["tiny-web"])
    assert web["image"] == f"tiny:{sha[:12]}"
    assert web["readinessProbe"] == {"tcpSocket": {"port": "http"}, "periodSeconds": 1, "failureThreshold": 3}
    assert "Job" not in {d["kind"] for d in rendered.documents}  # no release command
    validate_all(rendered.documents)


# -- bad input -------------------------------------------------------------------------------------------
def assert_usage_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # nothing half-rendered
    assert "fix:" in result.stderr
    for word in words:
        assert word in result.stderr


def test_unknown_environment(full: Path) -> None:
    assert_usage_error(headway(full, "render", "kubernetes", "-e", "prod", "--version", "1"),
                       "no environment 'prod'", "production, staging")


def test_image_tag_for_a_built_image_without_a_repository(tmp_path: Path) -> None:
    # the tracker's images are built here: --image-tag would pull them, and they have no registry `name`
    assert_usage_error(headway(EXAMPLES / "tracker", "render", "kubernetes", "-e", "staging", "--image-tag", "7"),
                       "has no `name`", "roles.frontend.image.name")


def test_no_version_outside_git(tmp_path: Path) -> None:
    (tmp_path / "headway.yml").write_text("app: tiny\nroles: {web: {port: 8000}}\nenvironments: {staging: {}}\n")
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(tmp_path.parent), "HEADWAY_STATE_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "headway", "render", "kubernetes", "-e", "staging"],
                            cwd=tmp_path, text=True, capture_output=True, timeout=60, env=env)
    assert_usage_error(result, "no release version", "--version", "--image-tag")


def test_bad_version_and_namespace(full: Path) -> None:
    assert_usage_error(headway(full, "render", "kubernetes", "-e", "staging", "--version", "no/slash"),
                       "not a valid image tag")
    assert_usage_error(headway(full, "render", "kubernetes", "-e", "staging", "--version", "1",
                               "--namespace", "Bad_NS"), "--namespace")


def test_api_raises_config_error_with_a_fix(full: Path) -> None:
    with pytest.raises(ConfigError) as info:
        render(full, "nowhere", version="1")
    assert info.value.fix and "production" in info.value.fix


def test_memory_quantities() -> None:
    assert memory_quantity("512m") == "512Mi"
    assert memory_quantity("1g") == "1Gi"
    assert memory_quantity("1.5g") == "1536Mi"
    assert memory_quantity("100k") == "100Ki"
    assert memory_quantity("1000") == "1000"
