"""``make deploy``: every deployment of ``flows/prefect.yaml`` whose work pool exists.

A deployment whose pool is missing on the server is skipped with the command that creates
the pool (``prefect deploy --all`` would stop at the first one with exit status 1, leaving
the others undeployed). Exit status 1 only if a deployment with an existing pool failed.

    python -m flows.deploy
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

PREFECT_FILE = Path(__file__).with_name("prefect.yaml")


def pool_exists(name: str) -> bool:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
        except ObjectNotFound:
            return False
    return True


def main() -> int:
    deployments = yaml.safe_load(PREFECT_FILE.read_text())["deployments"]
    failed = False
    for d in deployments:
        pool = d["work_pool"]["name"]
        if not pool_exists(pool):
            print(
                f"deploy: skipped {d['name']!r}: work pool {pool!r} does not exist on this "
                f"server; create it (e.g. `prefect work-pool create {pool} --type process`, or "
                "docker/kubernetes for the gpu pool, see infra/) and run `make deploy` again"
            )
            continue
        cmd = ["prefect", "--no-prompt", "deploy", "--prefect-file", str(PREFECT_FILE)]
        proc = subprocess.run([*cmd, "--name", d["name"]], check=False)
        failed |= proc.returncode != 0
        print(f"deploy: {d['name']!r} on pool {pool!r}: {'failed' if proc.returncode else 'ok'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
