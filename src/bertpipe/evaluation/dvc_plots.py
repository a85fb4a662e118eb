"""Offline rendering of the DVC-declared plots.

Owns ``render``: ``dvc plots show --json`` (or ``dvc plots diff --json REV...`` to
compare experiments/commits) gives Vega-Lite specs with their data inline; they are
rendered to PNG with ``vl-convert`` (no CDN, unlike ``dvc plots show``'s HTML) and
listed, with the image plots, in one ``index.html`` that opens without a network.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path


def _dvc_json(revs: list[str]) -> dict:
    from bertpipe.dvc_runner import command

    cmd = command("plots", "diff", *revs, "--json") if revs else command("plots", "show", "--json")
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr.strip() or out.stdout.strip()}")
    return json.loads(out.stdout).get("data", {})


def render(out_dir: str | Path, revs: Sequence[str] = ()) -> list[Path]:
    """Write one PNG per plot (per revision for images) and ``index.html``; return the PNGs."""
    import vl_convert

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written, items = [], []
    for plot_id, entries in _dvc_json(list(revs)).items():
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", plot_id).strip("_")
        for i, entry in enumerate(entries):
            if entry["type"] == "vega":
                path = out / f"{stem}{f'_{i}' if i else ''}.png"
                path.write_bytes(vl_convert.vegalite_to_png(entry["content"], scale=1.5))
            elif entry["type"] == "image" and Path(entry["url"]).exists():
                rev = "_".join(entry.get("revisions", [])) or "workspace"
                path = (
                    out
                    / f"{stem}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', rev)}{Path(entry['url']).suffix}"
                )
                shutil.copyfile(entry["url"], path)
            else:
                continue
            written.append(path)
            items.append(
                f"<h3>{html.escape(plot_id)} ({html.escape(', '.join(entry.get('revisions', [])))})</h3>"
                f'<img src="{path.name}" style="max-width:100%">'
            )
    (out / "index.html").write_text(
        "<!doctype html><meta charset=utf-8><title>bertpipe plots</title>" + "\n".join(items)
    )
    return written
