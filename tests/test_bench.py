"""The benchmark's comparisons run and check what they claim, on a tiny model (figures come from the real run)."""

from __future__ import annotations

import pytest

from mlm_core.bench import data_prep, latency, report, subjects, train_speed


@pytest.mark.slow
def test_training_comparison_runs_both_recipes_to_similar_losses(tiny_mlm):
    result = train_speed.compare(str(tiny_mlm), steps=4, batch_size=4, rounds=1)
    for name in ("ours", "trainer"):
        assert result[name]["timed_steps"] == 3 and result[name]["tokens_per_s"] > 0
    assert result["loss_gap"] < 0.05, result  # same model, data and schedule: only the masks' randomness differs


def test_data_preparation_matches_the_guides_recipe(tiny_mlm):
    result = data_prep.compare(str(tiny_mlm), subjects.eli5_like_records(300), repeats=1)
    assert result["identical"] and result["documents"] == 300 and result["tokens"] > 30_000
    assert result["group_speedup"] > 1


def test_fill_mask_latency_compares_identical_predictions(tiny_mlm):
    result = latency.versus_pipeline(str(tiny_mlm), repeats=3)
    assert result["identical_predictions"]
    assert result["ours"]["p50_ms"] > 0 and result["pipeline"]["p95_ms"] >= result["pipeline"]["p50_ms"]


def test_report_marks_targets_met_and_missed():
    text = report.table({"train_speedup": 1.7, "train_loss_gap": 0.02})
    assert "1.700" in text and "yes" in text and "NO" in text and "n/a" in text


@pytest.mark.slow
def test_data_scale_section_measures_both_recipes_in_their_own_processes(tmp_path):
    from mlm_core.bench import data_scale

    result = data_scale.compare("test", tmp_path, say=lambda _: None)
    for row in result["rows"]:
        for name in ("guide", "ours"):
            assert row[name]["seconds"] > 0 and row[name]["peak_main_bytes"] > 100 * 2**20
        assert abs(row["ours"]["blocks"] - row["guide"]["blocks"]) < 0.02 * row["guide"]["blocks"]
    assert set(result["ratios"]) == {"scale_speedup_min", "scale_growth", "scale_memory_ratio",
                                     "scale_memory_ratio_wwm"}
    assert not list(tmp_path.iterdir()), "the generated files are removed"
    section = report._scale_section({**result, "date": "today", "previous": {**result, "date": "before"}})
    assert "| 1 MB |" in section and "2 runs: before and today" in section and "earlier run's ratios" in section
