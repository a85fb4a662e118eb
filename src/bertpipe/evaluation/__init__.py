"""Evaluation: the report (tables, plots, published references), offline DVC plots, promotion rules."""
