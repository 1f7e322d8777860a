"""The command line (`python -m mlm_core`): commands and the progress bar."""
