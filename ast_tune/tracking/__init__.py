"""The experiment trackers a sweep logs its trials to (MLflow, Weights & Biases), without Ray or torch."""
