"""The training loop and everything a step needs: setup, batches, loss, optimizer, evaluation, probes, preflight."""
