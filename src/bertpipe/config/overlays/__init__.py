"""Scale presets: overlays on the defaults of ``config/schema.py`` (package data, one YAML each)."""
