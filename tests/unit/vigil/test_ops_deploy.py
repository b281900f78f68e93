"""Delivery files: Dockerfile, compose, Kubernetes manifests and Grafana dashboards agree with the code.

The validators themselves (``docker compose config``, Kubernetes JSON schemas, InfluxQL against a real server)
run in tests/integration/vigil/test_ops_deploy_validate.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import promql_parser
import yaml

from vigil.config import load_config
from vigil.metrics import ServiceMetrics

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"


def _k8s_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def _workloads() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _k8s_docs() if d["kind"] in ("Deployment", "StatefulSet")}


def test_dockerfile_is_multi_stage_slim_and_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\w+))?", text, re.MULTILINE)
    assert [s[1] for s in stages] == ["builder", "runtime"]
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert "pip wheel --wheel-dir /wheels" in text and "--no-index --find-links=/wheels" in text
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    uid = re.search(r"^ARG VIGIL_UID=(\d+)$", text, re.MULTILINE)
    assert users and users[-1] == "${VIGIL_UID}:${VIGIL_UID}" and uid and int(uid[1]) >= 1000
    assert 'useradd --system --uid "${VIGIL_UID}"' in text
    assert 'ENTRYPOINT ["vigil"]' in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".vigil", "tests", ".env"} <= set(ignored)


def test_compose_services_and_healthchecks() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    assert services["influxdb"]["image"].startswith("influxdb:2.7")
    assert {"grafana", "prometheus", "simulator", "collector", "features", "models", "alerts"} <= set(services)
    for name, svc in services.items():
        assert "healthcheck" in svc, name
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert cond["condition"] == "service_healthy", (name, dep)
            assert "healthcheck" in services[dep], dep
    assert services["collector"]["depends_on"].keys() == {"kafka", "simulator"}
    assert services["simulator"]["depends_on"].keys() == {"kafka"}
    assert services["simulator"]["command"][services["simulator"]["command"].index("--host") + 1] == "0.0.0.0"
    assert services["alerts"]["depends_on"].keys() == {"kafka", "influxdb"}


def _opcua_override(value: str) -> list[dict[str, Any]]:
    parsed: list[dict[str, Any]] = json.loads(value)
    return parsed


def test_the_opcua_source_overrides_are_valid_configuration() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env_map = next(d for d in _k8s_docs() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "vigil-env")
    for env, host in ((compose["x-vigil"]["environment"], "simulator"), (env_map["data"], "vigil-simulator")):
        environ = {k: str(v) for k, v in env.items() if k.startswith("VIGIL_") and k != "VIGIL_CONFIG"}
        environ = {k: v for k, v in environ.items() if "${" not in v}  # compose interpolations resolve at run time
        config = load_config(ROOT / "config" / "plant.example.toml", environ=environ)
        [source] = config.sources.opcua
        assert source.endpoint == f"opc.tcp://{host}:4840/vigil/"
        assert len(source.patterns) == 3
        assert config.kafka.bootstrap_servers == "kafka:9092" and config.influx.api == "v2"


def test_k8s_plant_config_is_the_example_plant() -> None:
    assert (K8S / "plant.toml").read_text() == (ROOT / "config" / "plant.example.toml").read_text()
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_k8s_workloads_have_probes_resources_and_run_as_non_root() -> None:
    workloads = _workloads()
    assert set(workloads) == {f"vigil-{c}" for c in ("simulator", "collector", "features", "models", "alerts")}
    for name, w in workloads.items():
        pod = w["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        [container] = pod["containers"]
        assert container["image"] == "vigil", name  # kustomize `images:` pins the registry and tag
        assert {"livenessProbe", "readinessProbe", "resources"} <= set(container), name
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
        refs = [e["valueFrom"]["secretKeyRef"] for e in container.get("env", []) if "valueFrom" in e]
        assert refs and all(r["name"] == "vigil-credentials" for r in refs), name
        assert not any(re.search(r"TOKEN|PASSWORD", e["name"]) and "value" in e for e in container["env"]), name


def test_feature_workers_scale_with_the_partitions() -> None:
    env_map = next(d for d in _k8s_docs() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "vigil-env")
    features = _workloads()["vigil-features"]
    assert features["spec"]["replicas"] == int(env_map["data"]["VIGIL_KAFKA__PARTITIONS"])
    text = (K8S / "features.yaml").read_text()
    assert "replicas <= VIGIL_KAFKA__PARTITIONS" in text  # the scaling note


def _dashboards() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def test_dashboards_are_generated_from_their_source() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "grafana" / "dashboards.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert set(_dashboards()) == {"vigil-fleet", "vigil-machine", "vigil-model-quality", "vigil-pipeline"}


def test_dashboards_use_provisioned_datasources_and_real_metric_names() -> None:
    provisioned = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/vigil.yaml").read_text())
    uids = {d["uid"] for d in provisioned["datasources"]}
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    exposed = {
        family.name + suffix
        for family in ServiceMetrics("x").registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }
    for name, board in _dashboards().items():
        assert board["uid"] == name
        for panel in board["panels"]:
            for target in panel["targets"]:
                assert target["datasource"]["uid"] in uids, (name, panel["title"])
                if "expr" in target:
                    promql_parser.parse(target["expr"])  # raises ValueError naming the syntax error
                for metric in re.findall(r"\b((?:vigil|process)_[a-z_]+)\b", target.get("expr", "")):
                    assert metric in exposed, (name, panel["title"], metric)


def test_ci_workflow_mirrors_ci_run_and_exercises_compose() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    jobs = workflow["jobs"]
    assert set(jobs) == {"gate", "compose"}
    gate_steps = jobs["gate"]["steps"]
    assert any(s.get("run") == "bash .ci/run" for s in gate_steps)
    assert jobs["gate"]["container"] == "python:3.11-bookworm"  # the machine kind .ci/run targets
    compose_runs = " ".join(s.get("run", "") for s in jobs["compose"]["steps"])
    for command in ("docker compose config", "docker compose build", "docker compose up", "docker compose down"):
        assert command in compose_runs, command
    assert workflow["permissions"] == {"contents": "read"}


def test_prometheus_scrapes_every_vigil_service_in_compose() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    vigil_services = {n for n, s in compose["services"].items() if s.get("image", "").startswith("${VIGIL_IMAGE")}
    assert vigil_services == {"simulator", "collector", "features", "models", "alerts"}
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    [job] = [j for j in prometheus["scrape_configs"] if j["job_name"] == "vigil"]
    [sd] = job["dns_sd_configs"]
    assert set(sd["names"]) == vigil_services and sd["port"] == 9464
    assert compose["x-vigil"]["environment"]["VIGIL_METRICS_PORT"] == str(sd["port"])


def test_grafana_provisioning_is_wired_into_compose() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in grafana["volumes"] if m.startswith("./")}
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/vigil.yaml").read_text())
    [files] = provider["providers"]
    assert mounts[files["options"]["path"]] == "./deploy/grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    home = Path(grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert (DASHBOARDS / home.name).exists() and str(home.parent) == files["options"]["path"]
    datasources = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/vigil.yaml").read_text())
    referenced = {v.strip("${}") for d in datasources["datasources"] for v in re.findall(r"\$\{\w+\}", json.dumps(d))}
    assert referenced <= set(grafana["environment"]), referenced - set(grafana["environment"])
    hosts = {d["url"].split("//")[1].split(":")[0] for d in datasources["datasources"]}
    assert hosts <= set(compose["services"])
