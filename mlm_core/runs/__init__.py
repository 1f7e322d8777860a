"""The run folder: identity, results, status, lock, a training session's hold, checkpoints, export, model names."""
