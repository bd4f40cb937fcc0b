"""What a user writes: the spec machinery, one run's spec, the sweep spec and its space, presets, the CLI parser."""
