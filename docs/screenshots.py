"""Screenshots of what a user sees after a pipeline run, taken in headless Chromium.

Starts ``mlflow ui`` on a project's ``mlflow.db`` and ``prefect server start`` on a Prefect
home that holds the flow runs, both on loopback, then screenshots the MLflow runs table, a
fine-tuning run's page, the model registry, the Prefect flow runs and the project's HTML
report into ``docs/screenshots/`` (PNG), for the next reader to look at.

    python docs/screenshots.py PROJECT_DIR PREFECT_HOME [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(url) from None
            time.sleep(1)


def shot(browser: str, url: str, out: Path, size: str = "1400,900") -> None:
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--virtual-time-budget=15000",
            f"--window-size={size}",
            f"--screenshot={out}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    print(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("project")
    p.add_argument("prefect_home")
    p.add_argument("--out", default="docs/screenshots")
    a = p.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("Chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 1
    project, out = Path(a.project).resolve(), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    mport, pport = free_port(), free_port()
    procs = [
        subprocess.Popen(
            [
                str(bin_dir / "mlflow"),
                "ui",
                "--backend-store-uri",
                f"sqlite:///{project / 'mlflow.db'}",
                "--host",
                "127.0.0.1",
                "--port",
                str(mport),
            ],
            cwd=project,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        ),
        subprocess.Popen(
            [
                str(bin_dir / "prefect"),
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(pport),
            ],
            env={
                **env,
                "PREFECT_HOME": a.prefect_home,
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_UI_API_URL": f"http://127.0.0.1:{pport}/api",
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        ),
    ]
    try:
        import mlflow

        mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
        client = mlflow.MlflowClient()
        exp = client.get_experiment_by_name("bertpipe")
        runs = client.search_runs(
            [exp.experiment_id], "attributes.run_name = 'rte/pretrained/seed1'"
        )
        ml = f"http://127.0.0.1:{mport}"
        wait(f"{ml}/health")
        view = "?workflowType=machine_learning"
        shot(browser, f"{ml}/#/experiments/{exp.experiment_id}{view}", out / "mlflow_runs.png")
        if runs:
            rid = runs[0].info.run_id
            shot(
                browser,
                f"{ml}/#/experiments/{exp.experiment_id}/runs/{rid}{view}",
                out / "mlflow_run.png",
            )
        shot(browser, f"{ml}/#/models", out / "mlflow_registry.png")
        pf = f"http://127.0.0.1:{pport}"
        wait(f"{pf}/api/health")
        shot(browser, f"{pf}/runs", out / "prefect_runs.png")
        report = project / "reports/index.html"
        shot(browser, report.as_uri(), out / "report.png", "1200,2400")
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
