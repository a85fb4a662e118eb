"""Using trained models: fill-mask (and, to come, prediction on files and attention maps)."""
