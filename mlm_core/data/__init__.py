"""Text in, token store out: sources (built-in corpus, files, hub datasets), columns, tokenizing, store, cache."""
