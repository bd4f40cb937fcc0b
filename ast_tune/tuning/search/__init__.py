"""The Tune search: the searcher over the Optuna study, the schedulers, the journal's callback, the Tuner."""
