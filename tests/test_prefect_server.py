"""A real ``prefect server start`` on loopback: a scheduled deployment gets a flow run that completes.

The deployment is built from ``flows/prefect.yaml``'s conventions (process work pool,
entrypoint in the repository, the working directory from ``BERTPIPE_WORKDIR``) with
a toy flow, so the test exercises the scheduler, the worker and the pull step, not
the ML (the pipeline flow has its own end-to-end test).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TOY = """
from pathlib import Path
from prefect import flow


@flow
def touch(path: str) -> str:
    Path(path).write_text("scheduled run done\\n")
    return path
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"prefect server at {url} not healthy after {timeout}s")


def _stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:  # a worker busy with a scheduled run
        os.killpg(proc.pid, 9)
        proc.wait(timeout=30)


def test_scheduled_deployment_produces_a_completed_flow_run(tmp_path):
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "home"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PREFECT_WORKER_PREFETCH_SECONDS": "10",
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
    }
    logs = open(tmp_path / "server.log", "w")  # noqa: SIM115 - the server writes to it until the end
    server = subprocess.Popen(
        ["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=logs,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    worker = None

    def run(args, timeout=180, **kw):
        """A CLI call with a bound: a hung one fails here with the server's log, not at the
        suite's timeout with nothing to read."""
        try:
            return subprocess.run(args, env=kw.pop("env", env), timeout=timeout, **kw)
        except subprocess.TimeoutExpired as e:
            log = (tmp_path / "server.log").read_text()[-3000:]
            raise AssertionError(f"{args} hung for {timeout}s; server log:\n{log}") from e

    try:
        _wait_healthy(api)
        project = tmp_path / "project"
        project.mkdir()
        (project / "toy.py").write_text(TOY)
        out = tmp_path / "touched.txt"
        run(
            ["prefect", "work-pool", "create", "local-process", "--type", "process"],
            check=True,
            capture_output=True,
        )
        deploy = (
            "from prefect import flow\n"
            f"flow.from_source({str(project)!r}, 'toy.py:touch').deploy("
            f"name='every-5s', work_pool_name='local-process', interval=5, parameters={{'path': {str(out)!r}}})\n"
        )
        run([sys.executable, "-c", deploy], check=True, capture_output=True, cwd=project)
        worker = subprocess.Popen(
            ["prefect", "worker", "start", "--pool", "local-process"],
            env=env,
            stdout=logs,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=project,
        )
        check = (
            "import asyncio\nfrom prefect.client.orchestration import get_client\n"
            "async def main():\n"
            "    async with get_client() as c:\n"
            "        runs = await c.read_flow_runs()\n"
            "        print(sorted({(r.state_type.value, bool(r.auto_scheduled)) for r in runs}))\n"
            "asyncio.run(main())\n"
        )
        deadline, states = time.monotonic() + 180, ""
        while time.monotonic() < deadline:
            states = run(
                [sys.executable, "-c", check], timeout=60, capture_output=True, text=True
            ).stdout
            if "('COMPLETED', True)" in states:
                break
            time.sleep(3)
        assert "('COMPLETED', True)" in states, (
            f"no completed scheduled run: {states}\n"
            + (tmp_path / "server.log").read_text()[-3000:]
        )
        assert out.read_text() == "scheduled run done\n"
        _stop(worker)  # its every-5s runs would only load the machine from here on
        worker = None

        # The project's own deployments deploy as documented (make deploy = flows.deploy):
        # without the gpu pool, the others are deployed and the missing pool is named; then
        # with it, all three.
        from conftest import REPO

        def deploy():
            return run(
                [sys.executable, "-m", "flows.deploy"],
                timeout=300,
                env={**env, "BERTPIPE_WORKDIR": str(REPO)},
                cwd=REPO,
                capture_output=True,
                text=True,
            )

        def listed():
            return run(["prefect", "deployment", "ls"], capture_output=True, text=True).stdout

        dep = deploy()
        assert dep.returncode == 0, dep.stdout[-2000:] + dep.stderr[-2000:]
        assert "skipped 'gpu': work pool 'gpu' does not exist" in dep.stdout
        assert "pipeline/tiny-smoke" in listed() and "pipeline/gpu" not in listed()
        run(
            ["prefect", "work-pool", "create", "gpu", "--type", "process"],
            check=True,
            capture_output=True,
        )
        dep = deploy()
        assert dep.returncode == 0, dep.stdout[-2000:] + dep.stderr[-2000:]
        for name in ("pipeline/weekly", "pipeline/tiny-smoke", "pipeline/gpu"):
            assert name in listed()
    finally:
        for proc in (worker, server):
            if proc is not None:
                _stop(proc)
        logs.close()
