"""deploy/Containerfile and deploy/kubernetes.yaml agree with app_server itself.

No image is built and no cluster is asked (no network): the files are read. The image's CMD and
the Deployment's command parse with ``app-server serve``'s own parser; the probes ask routes the
server answers, on the port it listens on; the Service and Ingress reach that port; and the pod's
grace period outlasts the shutdown delay and the drain that follows it.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from bokeh.util.token import generate_secret_key
from starlette.testclient import TestClient

from app_server import create_app
from app_server.cli import _parser, settings_from_args
from app_server.server import SETTLE_TIMEOUT, SHUTDOWN_TIMEOUT
from app_server.settings import ServeSettings
from tests.conftest import ROOT

CONTAINERFILE = ROOT / "deploy" / "Containerfile"
MANIFESTS = ROOT / "deploy" / "kubernetes.yaml"
REQUESTS_IN_FLIGHT = 10  # uvicorn's timeout_graceful_shutdown under app-server serve


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both files ask for signed session ids; the key comes from a Secret at run time."""
    monkeypatch.setenv("BOKEH_SECRET_KEY", generate_secret_key())


def serve_settings(argv: list[str]) -> tuple[ServeSettings, list[str]]:
    """``app-server serve ...`` read as the server reads it: its settings and its paths."""
    assert argv[:2] == ["app-server", "serve"], argv
    args = _parser().parse_args(argv[1:])
    return settings_from_args(args), list(args.files)


def image_command() -> list[str]:
    lines = [line for line in CONTAINERFILE.read_text().splitlines() if line.startswith("CMD ")]
    assert len(lines) == 1, "one CMD, in exec form"
    command: list[str] = json.loads(lines[0].removeprefix("CMD "))
    return command


def manifests() -> dict[str, dict[str, Any]]:
    documents = [doc for doc in yaml.safe_load_all(MANIFESTS.read_text()) if doc]
    by_kind = {doc["kind"]: doc for doc in documents}
    assert set(by_kind) == {"Deployment", "Service", "Ingress"}
    return by_kind


def container() -> dict[str, Any]:
    pod = manifests()["Deployment"]["spec"]["template"]["spec"]
    (only,) = pod["containers"]
    return dict(only)


def test_the_images_command_is_an_app_server_command_line_for_its_files() -> None:
    settings, paths = serve_settings(image_command())
    assert settings.address == "0.0.0.0", "a container listens on every interface"
    assert settings.sign_sessions and settings.use_xheaders
    assert "*" not in settings.forwarded_allow_ips, "X-Forwarded-* from proxies only"
    assert f"EXPOSE {settings.port}" in CONTAINERFILE.read_text()
    copied = re.findall(r"^COPY (\S+) \./", CONTAINERFILE.read_text(), re.MULTILINE)
    for path in paths:  # each app is in the repository and copied into the image
        assert (ROOT / path).exists(), path
        assert any(path.startswith(source) for source in copied), path


def test_the_deployment_runs_the_images_command() -> None:
    assert container()["command"] == image_command()


def test_the_probes_ask_the_health_routes_on_the_port_the_server_listens_on() -> None:
    spec = container()
    settings, paths = serve_settings(spec["command"])
    (port,) = spec["ports"]
    assert port["containerPort"] == settings.port
    readiness, liveness = spec["readinessProbe"]["httpGet"], spec["livenessProbe"]["httpGet"]
    assert readiness["port"] == liveness["port"] == port["name"]
    assert readiness["path"] == settings.prefix + "/readyz"
    assert liveness["path"] == settings.prefix + "/healthz"

    app = create_app({"/demo": ROOT / paths[0]}, settings)
    with TestClient(app) as client:  # started: on_server_loaded has run
        assert client.get(readiness["path"]).text == "ready"
        assert client.get(liveness["path"]).status_code == 200
        app.state.server.stopping = True  # told to stop: alive, not ready
        assert client.get(readiness["path"]).status_code == 503
        assert client.get(liveness["path"]).status_code == 200


def test_the_grace_period_outlasts_the_shutdown_delay_and_the_drain() -> None:
    pod = manifests()["Deployment"]["spec"]["template"]["spec"]
    settings, _ = serve_settings(container()["command"])
    drain = SETTLE_TIMEOUT + SHUTDOWN_TIMEOUT + REQUESTS_IN_FLIGHT
    assert settings.shutdown_delay > 0, "the load balancer's time to notice"
    assert pod["terminationGracePeriodSeconds"] > settings.shutdown_delay + drain
    probe = container()["readinessProbe"]
    noticed = probe["periodSeconds"] * probe["failureThreshold"]
    assert noticed < settings.shutdown_delay, "readiness fails within the delay"


def test_the_service_and_ingress_reach_the_containers_port() -> None:
    kinds = manifests()
    deployment, service, ingress = kinds["Deployment"], kinds["Service"], kinds["Ingress"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    assert service["spec"]["selector"] == labels
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] == container()["ports"][0]["name"]
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    backend = path["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] == service_port["name"]


def test_the_ingress_keeps_websockets_open_longer_than_the_keep_alive() -> None:
    annotations = manifests()["Ingress"]["metadata"]["annotations"]
    settings, _ = serve_settings(container()["command"])
    for name in ("proxy-read-timeout", "proxy-send-timeout"):
        seconds = int(annotations[f"nginx.ingress.kubernetes.io/{name}"])
        assert seconds * 1000 > settings.keep_alive, name


def test_the_files_name_each_other() -> None:
    assert "deploy/kubernetes.yaml" in CONTAINERFILE.read_text()
    assert "deploy/Containerfile" in MANIFESTS.read_text()
