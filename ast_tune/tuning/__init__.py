"""The Ray side: the runtime, where trials train, the Tune search, schedulers, journal, baseline, promotion."""
