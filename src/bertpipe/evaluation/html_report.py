"""The report as one self-contained web page: ``reports/index.html``.

Owns turning ``report.md`` into HTML (markdown-it, tables on) with every picture it shows
embedded as a data URI (no CDN, no file beside it needed), a small stylesheet, and the
links the evaluate stage adds (the MLflow pipeline run). Opening the file in any browser
shows the tables, the plots, the fill-mask examples and the attention maps.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from bertpipe.atomic import atomic_write_text

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f0f0f0} tr:nth-child(even) td{background:#fafafa}
img{max-width:100%;border:1px solid #eee} code{background:#f4f4f4;padding:1px 3px}
"""


def _embed(body: str, root: Path) -> str:
    def data_uri(match: re.Match) -> str:
        path = root / html.unescape(match.group(1))
        if not path.exists():
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode()
        return f'src="data:image/png;base64,{data}"'

    return re.sub(r'src="([^"]+\.png)"', data_uri, body)


def write_html(report_dir: str | Path, title: str, links: dict[str, str] | None = None) -> Path:
    """``report_dir/index.html`` from ``report_dir/report.md`` and the PNGs it references."""
    from markdown_it import MarkdownIt

    root = Path(report_dir)
    body = MarkdownIt("commonmark").enable("table").render((root / "report.md").read_text())
    nav = "".join(
        f'<li><a href="{html.escape(url)}">{html.escape(name)}</a></li>'
        for name, url in (links or {}).items()
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>"
        + (f"<ul class='links'>{nav}</ul>" if nav else "")
        + _embed(body, root)
        + "</body></html>"
    )
    return atomic_write_text(root / "index.html", page)
