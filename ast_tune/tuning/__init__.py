"""Ray and Optuna: the runtime (where runs train) and the search (what Tune runs, what Optuna is told)."""
