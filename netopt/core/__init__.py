"""The pure core: decisions from observations, `now` as an argument, no I/O."""
