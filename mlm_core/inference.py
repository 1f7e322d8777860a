"""Fill-mask (logits only at the masks) and text generation on cached models."""

from __future__ import annotations

import contextlib
import re
from typing import Any

import numpy as np
import torch

from .modeling import has_trained_mlm_head, load_for_inference, max_block_size
from .objective import masked_logits, split_masked_lm

MASK_SPELLINGS = re.compile(r"<mask>|\[MASK\]")
MAX_TEXT_CHARS = 20_000
MAX_MASKS = 5
MAX_NEW_TOKENS = 512


def fill_mask(model: str, text: str, top_k: int = 5, targets: list[str] | None = None) -> list[list[dict[str, Any]]]:
    """For each mask in `text`, the `top_k` likeliest tokens as transformers' pipeline reports them."""
    tokenizer, lm = _masked_lm(model)
    return predict_masks(tokenizer, lm, text, top_k, targets)


def predict_masks(tokenizer, lm, text: str, top_k: int = 5, targets: list[str] | None = None,
                  ) -> list[list[dict[str, Any]]]:
    """`fill_mask` on a tokenizer and masked LM already in memory (a training run's probes use it)."""
    input_ids = _encode_with_masks(tokenizer, text, lm)
    if not isinstance(top_k, int) or not 1 <= top_k <= len(tokenizer):
        raise ValueError(f"top_k: must be a whole number from 1 to {len(tokenizer)} (got {top_k!r})")
    target_ids = _target_ids(tokenizer, targets) if targets else None
    positions = input_ids.eq(tokenizer.mask_token_id)
    with torch.inference_mode():
        logits = masked_logits(split_masked_lm(lm), input_ids.to(lm.device)[None], positions.to(lm.device)[None])
    probs = logits.float().softmax(dim=-1).cpu()
    if target_ids is not None:
        probs = probs[:, target_ids]
    values, predictions = probs.topk(min(top_k, probs.shape[-1]))
    return _propositions(tokenizer, input_ids, positions, values, predictions, target_ids)


def _masked_lm(model: str):
    """(tokenizer, model) of a masked LM with a trained fill-mask head; ValueError naming `model` otherwise."""
    tokenizer, lm, task = load_for_inference(model)
    if task.inference != "fill-mask":
        raise ValueError(f"model: {model} is a {task.title}; it generates text but cannot fill masks")
    if not has_trained_mlm_head(lm.config) or split_masked_lm(lm) is None:
        raise ValueError(f"model: {model!r} has no fill-mask head; choose a masked language model")
    return tokenizer, lm


def _encode_with_masks(tokenizer, text: str, lm) -> torch.Tensor:
    """Token ids of the text with `<mask>`/`[MASK]` mapped to the model's mask token, checked for length."""
    check_text(text, "text", "type a sentence with <mask> where a word is missing")
    text = MASK_SPELLINGS.sub(tokenizer.mask_token, text)
    n_masks = text.count(tokenizer.mask_token)
    if n_masks == 0:
        raise ValueError(f"text: put <mask> (or {tokenizer.mask_token}) where the missing word goes")
    if n_masks > MAX_MASKS:
        raise ValueError(f"text: {n_masks} masks is too many; use at most {MAX_MASKS}")
    input_ids = torch.tensor(tokenizer(text, verbose=False)["input_ids"])
    limit = max_block_size(lm.config, tokenizer)
    if len(input_ids) > limit:
        raise ValueError(f"text: {len(input_ids)} tokens is more than this model reads ({limit}); shorten it")
    return input_ids


def check_text(text: object, field: str, hint: str) -> None:
    """ValueError in plain words unless `text` is non-empty, valid Unicode text of a sensible length."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{field}: {hint}")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"{field}: {len(text):,} characters is too long; use at most {MAX_TEXT_CHARS:,}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{field}: holds characters that are not valid text (a lone surrogate)") from None


def _target_ids(tokenizer, targets: list[str]) -> np.ndarray:
    """Token ids of the candidate words, resolved as the pipeline does (first sub-token if not in the vocab)."""
    vocab = tokenizer.get_vocab()
    ids = []
    for target in targets:
        id_ = vocab.get(target)
        if id_ is None:
            pieces = tokenizer(target, add_special_tokens=False)["input_ids"]
            if not pieces:
                continue
            id_ = pieces[0]
        ids.append(id_)
    if not ids:
        raise ValueError("targets: none of the candidate words is in the model's vocabulary")
    return np.array(sorted(set(ids)))


def _propositions(tokenizer, input_ids, positions, values, predictions, target_ids) -> list[list[dict[str, Any]]]:
    """Pipeline-shaped results: score, token, token_str, and the text with that token filled in."""
    mask_index = positions.nonzero().squeeze(-1).tolist()
    single = len(mask_index) == 1
    results = []
    for index, scores, ids in zip(mask_index, values.tolist(), predictions.tolist()):
        row = []
        for score, token in zip(scores, ids):
            token = int(target_ids[token]) if target_ids is not None else token
            filled = input_ids.clone()
            filled[index] = token
            row.append({"score": score, "token": token, "token_str": tokenizer.decode([token]),
                        "sequence": tokenizer.decode(filled, skip_special_tokens=single)})
        results.append(row)
    return results


def generate(model: str, prompt: str, max_new_tokens: int = 50, temperature: float = 1.0, top_p: float = 0.95,
             top_k: int = 50, do_sample: bool = True, seed: int | None = None) -> str:
    """The prompt continued by a causal LM."""
    tokenizer, lm, task = load_for_inference(model)
    if task.inference != "generate":
        raise ValueError(f"model: {model} is a {task.title}; it fills masks but cannot generate text")
    check_text(prompt, "prompt", "type the beginning of a text to continue")
    if not isinstance(max_new_tokens, int) or not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise ValueError(f"max_new_tokens: must be a whole number from 1 to {MAX_NEW_TOKENS}")
    if do_sample and not (temperature > 0 and 0 < top_p <= 1 and top_k >= 1):
        raise ValueError("temperature: must be above 0, with top_p in (0, 1] and top_k at least 1")
    input_ids = torch.tensor([tokenizer(prompt, verbose=False)["input_ids"]], device=lm.device)
    room = max_block_size(lm.config, tokenizer) - input_ids.shape[1]
    if room < 1:
        raise ValueError("prompt: too long for this model; shorten it")
    sampling = {"temperature": temperature, "top_p": top_p, "top_k": top_k} if do_sample else {}
    cuda = [lm.device.index or 0] if lm.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda) if seed is not None else contextlib.nullcontext():
        if seed is not None:
            torch.manual_seed(seed)
        output = lm.generate(input_ids, attention_mask=torch.ones_like(input_ids), do_sample=do_sample,
                             max_new_tokens=min(max_new_tokens, room), pad_token_id=tokenizer.eos_token_id,
                             **sampling)
    return tokenizer.decode(output[0], skip_special_tokens=True)

