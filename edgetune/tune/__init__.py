"""`edgetune tune`: hyperparameter search on Optuna (edgetune.tune.search).

Imported lazily by the CLI: Optuna and torch load only when a search runs.
"""
