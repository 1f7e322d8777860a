"""TrainConfig validation: each bad value is refused with a ValueError that names its field."""

import math

import pytest

from mlm_core.config import TrainConfig, field_help


@pytest.mark.parametrize(
    "field, value",
    [
        ("block_size", 0),
        ("block_size", 100_000),
        ("block_size", "128"),
        ("mlm_probability", 1.5),
        ("mlm_probability", 0.0),
        ("mlm_probability", 1.0),
        ("mlm_probability", math.nan),
        ("epochs", 0),
        ("epochs", 1.5),
        ("learning_rate", -1e-5),
        ("learning_rate", 0.0),
        ("learning_rate", math.inf),
        ("batch_size", 0),
        ("gradient_accumulation", 0),
        ("eval_fraction", 0.0),
        ("eval_fraction", 0.9),
        ("warmup_ratio", 1.0),
        ("max_steps", 0),
        ("seed", -1),
        ("whole_word_masking", "yes"),
        ("slice", "train[abc]"),
        ("slice", "train[:5000"),
        ("slice", ""),
        ("model", " "),
        ("dataset", ""),
        ("output_dir", ""),
    ],
)
def test_bad_value_names_its_field(field, value):
    with pytest.raises(ValueError, match=rf"^{field}: "):
        TrainConfig(**{"model": "starter", "dataset": "builtin", field: value})


def test_file_dataset_needs_a_file():
    with pytest.raises(ValueError, match="^dataset_file: "):
        TrainConfig(model="starter", dataset="file")
    with pytest.raises(ValueError, match="^dataset: "):
        TrainConfig(model="starter", dataset="builtin", dataset_file="x.txt")


@pytest.mark.parametrize("spec", ["train", "train[:5000]", "train[10:20]", "train[10%:20%]", "validation[-100:]"])
def test_good_slices_pass(spec):
    assert TrainConfig(slice=spec).slice == spec


def test_defaults_follow_the_guides():
    config = TrainConfig()
    assert (config.model, config.dataset, config.slice) == (
        "distilbert/distilroberta-base",
        "dany0407/eli5_category",
        "train",
    )  # all rows unless a slice is given
    assert (config.block_size, config.mlm_probability, config.learning_rate, config.weight_decay) == (
        128,
        0.15,
        2e-5,
        0.01,
    )


def test_round_trip_and_unknown_keys():
    config = TrainConfig(model="starter", dataset="builtin", epochs=2)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="^epoch: not a setting"):
        TrainConfig.from_dict({"epoch": 2})
    with pytest.raises(ValueError, match="^block_size: "):
        config.replace(block_size=-3)


def test_every_field_has_a_hint():
    for name in TrainConfig.__dataclass_fields__:
        assert len(field_help(name)) > 10, name
