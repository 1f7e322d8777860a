"""The Hugging Face task guides' data preparation, verbatim: the baseline that tests and the benchmark compare to.

Not used for training: `group_texts` here concatenates with `sum(lists, [])`, which is quadratic in the batch.
Both `map` calls run in `NUM_PROC` processes, as the guides write them.
"""

from __future__ import annotations

NUM_PROC = 4  # the guides' `num_proc=4` in both `map` calls


def make_group_texts(block_size: int):
    """The guides' `group_texts`, closed over `block_size` as in the guide's notebook."""

    def group_texts(examples):
        # Concatenate all texts.
        concatenated_examples = {k: sum(examples[k], []) for k in examples.keys()}
        total_length = len(concatenated_examples[list(examples.keys())[0]])
        # We drop the small remainder, we could add padding if the model supported it instead of this drop.
        if total_length >= block_size:
            total_length = (total_length // block_size) * block_size
        # Split by chunks of block_size.
        result = {
            k: [t[i : i + block_size] for i in range(0, total_length, block_size)]
            for k, t in concatenated_examples.items()
        }
        return result

    return group_texts


def make_preprocess_function(tokenizer, column: str = "answers.text"):
    """The guides' `preprocess_function`: join the answer texts and tokenize them."""

    def preprocess_function(examples):
        return tokenizer([" ".join(x) for x in examples[column]])

    return preprocess_function


def prepare_text_file(
    path, tokenizer, block_size: int, eval_fraction: float = 0.1, seed: int = 42, cache_dir: str | None = None
):
    """The guides' recipe on a .txt upload: `load_dataset("text", sample_by="paragraph")`, a batched `map` of the
    tokenizer, a batched `map` of `group_texts` (both with `num_proc=4`), then a seeded train/test split (the
    benchmark's baseline)."""
    from datasets import load_dataset

    dataset = load_dataset("text", data_files=str(path), sample_by="paragraph", split="train", cache_dir=cache_dir)
    tokenized = dataset.map(
        lambda examples: tokenizer(examples["text"]), batched=True, num_proc=NUM_PROC, remove_columns=["text"]
    )
    blocks = tokenized.map(make_group_texts(block_size), batched=True, num_proc=NUM_PROC)
    return blocks.train_test_split(test_size=eval_fraction, seed=seed)
