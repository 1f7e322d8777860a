"""The training objectives as objects: how a task labels blocks, where its loss is, what inference it offers."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

IGNORE = -100  # the label of a position that does not count


class Task:
    """One language-modelling objective; adding an objective means adding one subclass to TASKS."""

    name: ClassVar[str]
    title: ClassVar[str]  # in words, for people
    pipeline_tag: ClassVar[str]  # the model card's and the hub's tag
    inference: ClassVar[str]  # what the playground offers: "fill-mask" or "generate"
    guessed: ClassVar[str]  # what its accuracy counts, in words
    architecture_suffixes: ClassVar[tuple[str, ...]]

    def __str__(self) -> str:
        return self.name

    def auto_model(self):
        """The transformers Auto class that loads a model with this task's head."""
        raise NotImplementedError

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """The token each position's logits should predict (IGNORE where none): [batch, block] from labels
        [batch, block]."""
        return labels

    def labelled_share(self, mlm_probability: float) -> float:
        """Share of a block's positions that carry a label (where the vocabulary head runs)."""
        return 1.0

    def check_tokenizer(self, tokenizer, model: str) -> None:
        """ValueError in plain words when the tokenizer cannot serve this task."""


class MaskedLM(Task):
    """Hide some tokens and predict them from both sides (BERT, RoBERTa, ModernBERT)."""

    name, title, pipeline_tag, inference = "mlm", "masked language model", "fill-mask", "fill-mask"
    guessed = "hidden words"
    architecture_suffixes = ("ForMaskedLM",)

    def auto_model(self):
        """AutoModelForMaskedLM."""
        from transformers import AutoModelForMaskedLM

        return AutoModelForMaskedLM

    def labelled_share(self, mlm_probability: float) -> float:
        """The masking probability: only the hidden tokens carry a label."""
        return mlm_probability

    def check_tokenizer(self, tokenizer, model: str) -> None:
        """ValueError naming `model` when the tokenizer has no mask token to fill."""
        if tokenizer.mask_token is None:
            raise ValueError(f"model: the tokenizer of {model} has no mask token, so it cannot fill masks")


class CausalLM(Task):
    """Predict each next token from the ones before it (GPT-2)."""

    name, title, pipeline_tag, inference = "clm", "causal language model", "text-generation", "generate"
    guessed = "next tokens"
    architecture_suffixes = ("ForCausalLM", "LMHeadModel")

    def auto_model(self):
        """AutoModelForCausalLM."""
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """The labels [batch, block] shifted left by one, IGNORE at the last position: [batch, block]."""
        # Position i predicts token i + 1; the last position predicts nothing (as transformers shifts labels).
        return torch.nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE)


MASKED, CAUSAL = MaskedLM(), CausalLM()
TASKS: dict[str, Task] = {task.name: task for task in (MASKED, CAUSAL)}


def get_task(name: str | Task) -> Task:
    """The task called `name` ('mlm' or 'clm'); ValueError naming `task` for any other name."""
    if isinstance(name, Task):
        return name
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"task: {name!r} is not one of {', '.join(TASKS)}") from None


def detect_task(model_config: Any, tokenizer=None) -> Task:
    """The task a checkpoint was saved for, from transformers' Auto mappings: the architecture it was saved with,
    when that is its model type's masked-LM or causal-LM class; else the one mapping that knows its model type;
    else (both know it, as for BERT, XLM or FlauBERT) the tokenizer's mask token; a type neither knows is taken by
    its architecture's name."""
    masked, causal = lm_classes(model_config.model_type)
    architectures = getattr(model_config, "architectures", None) or []
    for arch in architectures:
        if arch == masked != causal:
            return MASKED
        if arch == causal != masked:
            return CAUSAL
    has_mask = tokenizer is None or tokenizer.mask_token is not None
    if masked and (not causal or has_mask):
        return MASKED
    if causal:
        return CAUSAL
    for arch in architectures:
        for task in TASKS.values():
            if arch.endswith(task.architecture_suffixes):
                return task
    return MASKED if has_mask else CAUSAL


def lm_classes(model_type: str) -> tuple[str | None, str | None]:
    """The class names transformers' AutoModelForMaskedLM and AutoModelForCausalLM build for a model type (None
    where it has none)."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    return MODEL_FOR_MASKED_LM_MAPPING_NAMES.get(model_type), MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type)
