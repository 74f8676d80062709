"""Job kinds, one folder each; `core/kinds.py` registers them (and those of other packages) lazily."""
