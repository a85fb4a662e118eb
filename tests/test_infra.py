"""Static checks of the cluster files (no Docker engine or cluster runs here)."""

from __future__ import annotations

import re
import subprocess

import yaml

from conftest import REPO

INFRA = REPO / "infra"


def _compose():
    return yaml.safe_load((INFRA / "docker-compose.yml").read_text())


def test_compose_has_the_shared_services_bound_to_localhost_with_secrets_from_env():
    compose = _compose()
    assert set(compose["services"]) >= {"postgres", "minio", "mlflow", "prefect"}
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            assert port.startswith("${BIND_ADDR:-127.0.0.1}:"), (
                f"{name}: {port} not bound to localhost"
            )
    text = (INFRA / "docker-compose.yml").read_text()
    for secret in (
        "POSTGRES_PASSWORD",
        "MINIO_ROOT_PASSWORD",
        "MLFLOW_ADMIN_PASSWORD",
        "MLFLOW_SECRET_KEY",
    ):
        assert re.search(rf"\$\{{{secret}:\?", text), f"{secret} must come from the environment"
        assert f"{secret}=" in (INFRA / "env.example").read_text()
    assert not re.search(r"PASSWORD:\s*[\"']?[A-Za-z0-9]{6,}", text), (
        "a literal password in the compose file"
    )


def test_mlflow_uses_postgres_s3_and_authentication():
    mlflow = _compose()["services"]["mlflow"]
    cmd = mlflow["entrypoint"]
    assert "--app-name basic-auth" in cmd and "--backend-store-uri $$PG_URI/mlflow" in cmd
    assert "--artifacts-destination s3://mlflow" in cmd
    assert mlflow["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert (
        "mc mb --ignore-existing s3/mlflow s3/dvc"
        in _compose()["services"]["buckets"]["entrypoint"]
    )
    prefect = _compose()["services"]["prefect"]
    assert prefect["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith(
        "postgresql+asyncpg://"
    )


def test_gpu_worker_image_and_kubernetes_manifest():
    docker = (INFRA / "Dockerfile.gpu-worker").read_text()
    assert docker.startswith("#") and "FROM nvidia/cuda:" in docker
    assert '"torch==2.13.0"' in docker and "requirements.lock" in docker
    commands = [line for line in docker.splitlines() if not line.lstrip().startswith("#")]
    assert "-r /tmp/req.txt" in docker and not any("requirements-dev.lock" in c for c in commands)
    assert '"prefect", "worker", "start", "--pool", "gpu"' in docker
    docs = list(yaml.safe_load_all((INFRA / "k8s/gpu-worker.yaml").read_text()))
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["envFrom"] == [{"secretRef": {"name": "bertpipe-secrets"}}]
    assert (
        deploy["spec"]["selector"]["matchLabels"]
        == deploy["spec"]["template"]["metadata"]["labels"]
    )


def test_prefect_yaml_deployments_point_at_real_flows():
    import importlib
    import sys

    from prefect import Flow

    spec = yaml.safe_load((REPO / "flows/prefect.yaml").read_text())
    names = {d["name"] for d in spec["deployments"]}
    assert names >= {"weekly", "tiny-smoke", "gpu"}
    sys.path.insert(0, str(REPO))
    for d in spec["deployments"]:
        path, func = d["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert isinstance(getattr(module, func), Flow)
    weekly = next(d for d in spec["deployments"] if d["name"] == "weekly")
    assert weekly["schedules"][0]["cron"] == "0 2 * * 1"


def test_launcher_scripts_are_valid_shell():
    for script in (INFRA / "multinode").iterdir():
        subprocess.run(["bash", "-n", str(script)], check=True)
        assert "bertpipe.stages.pretrain" in script.read_text()
