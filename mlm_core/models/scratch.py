"""New models from scratch: a byte-level BPE tokenizer trained on text, and a randomly initialised LM."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mlm_core.models.loading import quiet_transformers

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


@dataclass(frozen=True)
class Shape:
    """Transformer dimensions of a new model."""

    hidden: int = 256
    layers: int = 4
    heads: int = 4
    intermediate: int = 768
    max_length: int = 128  # longest block the model reads


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: Path, causal: bool = False, max_length: int = 128):
    """Train a byte-level BPE on `texts` and save it as a RoBERTa (or GPT-2) tokenizer in `out_dir`."""
    from tokenizers import AddedToken, ByteLevelBPETokenizer
    from transformers import GPT2Tokenizer, RobertaTokenizer

    quiet_transformers()

    bpe = ByteLevelBPETokenizer()
    specials = ["<|endoftext|>"] if causal else SPECIAL_TOKENS
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=specials, show_progress=False)
    # transformers 5 builds a near-empty vocab from vocab_file= arguments: load the saved files from a folder.
    with tempfile.TemporaryDirectory() as raw:
        bpe.save_model(raw)
        cls = GPT2Tokenizer if causal else RobertaTokenizer
        tokenizer = cls.from_pretrained(raw, model_max_length=max_length)
    if not causal:
        # As in RoBERTa: "a <mask>" must read as " a" + <mask>, not " a" + " " + <mask>, or inference sees a
        # stray space token that training never put before a mask.
        tokenizer.add_special_tokens(
            {"mask_token": AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False, special=True)}
        )
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def init_model(tokenizer, shape: Shape, out_dir: Path, architecture: str = "roberta", seed: int = 0):
    """A random 'roberta' or 'modernbert' masked LM, or 'gpt2' causal LM, sized to the tokenizer, saved."""
    import torch
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        ModernBertConfig,
        ModernBertForMaskedLM,
        RobertaConfig,
        RobertaForMaskedLM,
    )

    torch.manual_seed(seed)
    vocab = len(tokenizer)  # a larger vocab would predict ids the tokenizer cannot decode
    if architecture == "modernbert":  # rotary positions and pre-norm learn word order far sooner from scratch
        config = ModernBertConfig(
            vocab_size=vocab,
            hidden_size=shape.hidden,
            num_hidden_layers=shape.layers,
            num_attention_heads=shape.heads,
            intermediate_size=shape.intermediate,
            max_position_embeddings=shape.max_length,
            local_attention=shape.max_length,
            global_attn_every_n_layers=1,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            cls_token_id=tokenizer.cls_token_id,
            sep_token_id=tokenizer.sep_token_id,
        )
        model = ModernBertForMaskedLM(config)
    elif architecture == "gpt2":
        config = GPT2Config(
            vocab_size=vocab,
            n_embd=shape.hidden,
            n_layer=shape.layers,
            n_head=shape.heads,
            n_inner=shape.intermediate,
            n_positions=shape.max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        model = GPT2LMHeadModel(config)
    else:
        config = RobertaConfig(
            vocab_size=vocab,
            hidden_size=shape.hidden,
            num_hidden_layers=shape.layers,
            num_attention_heads=shape.heads,
            intermediate_size=shape.intermediate,
            max_position_embeddings=shape.max_length + tokenizer.pad_token_id + 1,
            type_vocab_size=1,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        model = RobertaForMaskedLM(config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return model
