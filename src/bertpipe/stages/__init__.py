"""DVC stage entry points: ``python -m bertpipe.stages.<name>``.

Each stage module is thin: parse the paths DVC passes, load its own params
section, call one library function, write its declared outputs. This package
owns only what they share: argument parsing and logging set-up.
"""

from __future__ import annotations

import argparse

from bertpipe.errors import configure_logging


def parse_args(description: str, *paths: tuple[str, str]) -> argparse.Namespace:
    """``--params`` plus one required option per (name, help) path pair."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--params", default="params.yaml", help="params file (default: params.yaml)"
    )
    for name, help_text in paths:
        parser.add_argument(f"--{name}", required=True, help=help_text)
    args = parser.parse_args()
    configure_logging()
    return args
