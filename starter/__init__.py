"""`python -m starter`: the built-in starter model's recipe (pre-training corpus, tokenizer, weights, model card);
a tool beside the engine, never imported by it."""
