"""What Start checks before it queues a run, so that it refuses in words what Preview refuses instead of leaving a
failed run: the same loading functions as the run, without its weights or training steps."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

from mlm_core.config import TrainConfig
from mlm_core.data.lm_data import prepare_data
from mlm_core.data.store_cache import default_cache_dir
from mlm_core.models.loading import default_device, load_config, load_tokenizer, max_block_size
from mlm_core.tasks import detect_task
from mlm_core.training.memory_check import check_fits


def check_inputs(config: TrainConfig, on_progress: Callable[[int, int | None], None] | None = None) -> None:
    """ValueError in the run's own words (those Preview shows) when its model or data cannot be used: a model that
    cannot load (a hub model while the hub is unreachable), data that cannot be read or makes fewer than two blocks,
    or a step that cannot fit in memory. The data is tokenized into the cache the run then reuses;
    `on_progress(documents_read, total_or_None)` follows that (as `prepare_data`'s)."""
    tokenizer, model_config = load_tokenizer(config.model), load_config(config.model)
    task = detect_task(model_config, tokenizer)
    task.check_tokenizer(tokenizer, config.model)
    block_size = min(config.block_size, max_block_size(model_config, tokenizer))
    prepare_data(config, tokenizer, block_size, on_progress=on_progress, cache_dir=default_cache_dir(config.output_dir))
    # The weights stay unloaded in the app's process: the estimate without them refuses only what cannot fit even
    # so; the run checks again with them.
    weightless = SimpleNamespace(config=model_config, parameters=lambda: iter(()))
    check_fits(weightless, config.batch_size, block_size, task.labelled_share(config.mlm_probability),
               default_device())
