"""Prefect flows that run the DVC pipeline: ``pipeline`` (``python -m flows.pipeline``)."""
