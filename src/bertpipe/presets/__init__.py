"""Scale presets as overlays on the defaults in ``bertpipe.config`` (package data)."""
