"""Loading tokenizers and models (hub id, local folder, built-in starter), task detection, device choice."""

from __future__ import annotations

import copy
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from mlm_core.models.heads import probe_ids
from mlm_core.runs.model_sources import is_local, resolve_source
from mlm_core.system import hub_access, settings
from mlm_core.tasks import Task, detect_task, lm_classes

_ROBERTA_LIKE = ("roberta", "xlm-roberta", "camembert", "longformer", "roberta-prelayernorm")
# Names resolved by transformers' lazy module on first use; that resolution is not thread-safe.
# transformers builds a model on the meta device through process-wide patches: two threads loading at once (the
# queue's trainer and a fill-mask request) made one of them fail with "Cannot copy out of meta tensor".
_LOADING = threading.Lock()
_LAZY_NAMES = (
    "AutoConfig",
    "AutoTokenizer",
    "AutoModelForMaskedLM",
    "AutoModelForCausalLM",
    "set_seed",
    "get_scheduler",
    "DataCollatorForLanguageModeling",
    "RobertaTokenizer",
    "GPT2Tokenizer",
)


def preload() -> None:
    """Import what training and inference use, once, on the calling thread (before worker threads exist).

    Two threads touching transformers' lazy attributes at once can make one of them fail with an ImportError.
    """
    import accelerate  # noqa: F401
    import transformers

    for name in _LAZY_NAMES:
        getattr(transformers, name)
    quiet_transformers()


def quiet_transformers() -> None:
    """Keep transformers' per-load progress bars and advice out of the CLI's and the app's output."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _hub_kwargs(source: str) -> dict[str, Any]:
    """Offline, or for a local folder, read only files already on this machine."""
    local_only = is_local(source) or not hub_access.is_online()
    return {"local_files_only": local_only}


def _load_error(name: str | Path, source: str, error: Exception) -> ValueError:
    """One plain line saying why a model could not be loaded: a ValueError, for the caller to raise."""
    shown = name if isinstance(name, str) else name.name
    if not is_local(source) and not hub_access.is_online():
        other = "a local folder" if hub_access.local_paths_allowed() else "a finished run"
        return ValueError(
            f"model: {shown} cannot be downloaded because the hub is not reachable; use 'starter' or {other}"
        )
    reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    if not is_local(source) and _NOT_FOUND.search(reason):
        return hub_access.not_on_hub(shown, "model", "model")
    return ValueError(f"model: could not load {shown} ({reason})")


# How transformers says that the hub has no such repository (or would not serve it).
_NOT_FOUND = re.compile(
    r"not a valid model identifier|couldn't connect to|Repository Not Found|gated repo|401", re.IGNORECASE
)


def load_config(name: str | Path):
    """The model's transformers config; ValueError in plain words (from `resolve_source` or `_load_error`) when the
    name is refused or the config cannot be loaded."""
    from transformers import AutoConfig

    return _from_pretrained(AutoConfig, name)


def load_tokenizer(name: str | Path):
    """The model's (fast) tokenizer; ValueError in plain words (from `resolve_source` or `_load_error`) when the
    name is refused or the tokenizer cannot be loaded."""
    from transformers import AutoTokenizer

    return _from_pretrained(AutoTokenizer, name)


def _from_pretrained(auto_class, name: str | Path, **kwargs):
    """`auto_class.from_pretrained` on what `name` resolves to, offline where it must be; one plain ValueError for
    whatever goes wrong (hub and file errors come in many types; the user needs one line)."""
    quiet_transformers()
    source = resolve_source(name)
    try:
        return auto_class.from_pretrained(source, **kwargs, **_hub_kwargs(source))
    except Exception as error:
        raise _load_error(name, source, error) from None


def has_trained_mlm_head(config) -> bool:
    """Whether the checkpoint holds fill-mask head weights (not only an encoder): it was saved as its type's
    masked-LM class (XLM's and FlauBERT's is `...WithLMHeadModel`) or a `...ForMaskedLM`."""
    masked, _ = lm_classes(config.model_type)
    return any(arch == masked or arch.endswith("ForMaskedLM") for arch in config.architectures or [])


def load_model(name: str | Path, task: Task, dtype: torch.dtype = torch.float32):
    """The model with its task's head, in `dtype`, on the CPU; weights from safetensors only. ValueError in plain
    words (from `resolve_source` or `_load_error`) when the name is refused or the model cannot be loaded."""
    with _LOADING:
        return _from_pretrained(task.auto_model(), name, dtype=dtype, use_safetensors=True)


def max_block_size(config, tokenizer) -> int:
    """The longest block the model can read, in tokens: its position table, capped by the tokenizer's limit."""
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or 10**9
    if config.model_type in _ROBERTA_LIKE:  # positions start after the padding index
        positions -= (config.pad_token_id or 0) + 1
    limit = tokenizer.model_max_length if tokenizer.model_max_length < 10**6 else 10**9
    return int(min(positions, limit))


_on_lent_gpu = False  # set in a ZeroGPU call's worker process, where the GPU is real


def use_lent_gpu() -> None:
    """Say that this process now holds a GPU ZeroGPU lent it (called first in each GPU call, in the worker process
    the `spaces` package forks for it): from here on the GPU is real, if this machine has one."""
    global _on_lent_gpu
    _on_lent_gpu = True


def default_device() -> torch.device:
    """The GPU when there is one, else the CPU. On ZeroGPU the app's own process only pretends to have one
    (`spaces` patches `torch.cuda` there): the CPU, except inside a GPU call (`use_lent_gpu`)."""
    if settings.current().zero_gpu and not _on_lent_gpu:
        return torch.device("cpu")
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def describe_device(device: torch.device | None = None) -> str:
    """'NVIDIA H100 (79 GB)' or 'CPU (2 threads)' (on ZeroGPU outside a GPU call: the CPU, where the work runs)."""
    device = device or default_device()
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({props.total_memory / 1e9:.0f} GB)"
    threads = torch.get_num_threads()
    return f"CPU ({threads} thread{'s' * (threads != 1)})"


INFERENCE_CACHE_MODELS = 4
_inference_cache: OrderedDict[tuple[str, tuple[int, int, int] | None], tuple] = OrderedDict()
_inference_cache_lock = threading.Lock()


def load_for_inference(name: str | Path):
    """(tokenizer, model in eval mode on the default device, task), cached by what `name` resolves to (a local
    folder with its config file's inode, modification and change times, so a replaced model is loaded again);
    ValueError in plain words when the name is refused, names a deleted run, or the model cannot be loaded (a
    failure is not cached)."""
    source = resolve_source(name)
    config_file = Path(source) / "config.json"
    stat = config_file.stat() if config_file.is_file() else None
    key = (source, (stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns) if stat else None)
    device = default_device()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with _inference_cache_lock:
        if key in _inference_cache:
            _inference_cache.move_to_end(key)
            tokenizer, model, task = _inference_cache[key]
            if model.device != device:  # loaded on the CPU by the app's process, used in a ZeroGPU call
                model.to(device, dtype)
            return tokenizer, model, task
    tokenizer = load_tokenizer(name)
    config = load_config(name)
    task = detect_task(config, tokenizer)
    model = load_model(name, task, dtype=dtype).to(device).eval()
    # oneDNN's layers stay on the CPU: not for a model a ZeroGPU call may move to its GPU.
    onednn = device.type == "cpu" and not settings.current().zero_gpu
    loaded = tokenizer, _with_onednn_linears(model) if onednn else model, task
    with _inference_cache_lock:
        _inference_cache[key] = loaded
        while len(_inference_cache) > INFERENCE_CACHE_MODELS:
            _inference_cache.popitem(last=False)
    return loaded


def forget_models(folder: Path) -> int:
    """Drop every cached model loaded from `folder` or below it (a deleted run's); how many were dropped."""
    root = folder.resolve()
    with _inference_cache_lock:
        stale = [key for key in _inference_cache if Path(key[0]).is_relative_to(root)]
        for key in stale:
            del _inference_cache[key]
    return len(stale)


def _with_onednn_linears(model):
    """The model with its Linear layers on oneDNN: for one sentence on 2 CPU cores, fill-mask with a
    DistilRoBERTa-shaped model took 20 ms instead of 40 (same predictions, scores within 1e-9). The model as it is
    when the converted one fails a probe; the conversion works on a copy, so a model briefly takes twice its memory
    while it loads."""
    if not torch.backends.mkldnn.is_available():
        return model
    from torch.utils import mkldnn

    probe = probe_ids(model)
    try:
        with torch.no_grad():
            converted = mkldnn.to_mkldnn(copy.deepcopy(model))
            converted(input_ids=probe)
    except (RuntimeError, TypeError):  # MobileBERT asks its weights for a memory format oneDNN tensors lack; a
        # vision tower's Conv2d with padding="valid" does not convert
        return model
    return converted
