"""The promotion without Ray: which trial is promoted, on what, and its check against its proxy trial."""
