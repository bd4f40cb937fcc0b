"""What a sweep will cost and has cost, without Ray: the estimate, the per-epoch probe, the actuals."""
