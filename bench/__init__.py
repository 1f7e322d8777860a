"""`python -m bench`: our engine against the task guides' recipe, measured in one run on this machine."""
