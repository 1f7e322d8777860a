"""Loading models and tokenizers, their vocabulary heads, inference, models from scratch, the starter's files."""
