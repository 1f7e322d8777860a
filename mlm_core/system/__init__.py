"""What every layer may use: atomic files, process memory figures, hiding paths, whether the hub answers."""
