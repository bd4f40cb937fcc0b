"""The training engine, without Ray: model, sparsity controller, LR schedule, metrics, checkpoints."""
