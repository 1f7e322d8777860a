"""Data preparation: sources, slices, flattening, text columns, the guides' grouping in linear time."""

import json
import os
import random
import time

import numpy as np
import pytest
import torch

from bench.guide_recipe import make_group_texts
from mlm_core.config import TrainConfig
from mlm_core.data.builtin_corpus import docstring_records, reference_records
from mlm_core.data.columns import as_text, check_column, detect_text_column, flatten_record
from mlm_core.data.lm_data import MIN_HELD_OUT_DOCUMENTS, prepare_data
from mlm_core.data.sources import apply_slice, load_records, read_file
from mlm_core.data.token_store import document_draws

from .list_data import group_texts


def test_builtin_corpora_are_real_and_disjoint():
    reference, docstrings = reference_records(), docstring_records()
    assert len(reference) > 50 and sum(len(r["text"]) for r in reference) > 300_000
    assert len(docstrings) > 3000 and sum(len(r["text"]) for r in docstrings) > 1_000_000
    assert not {r["text"] for r in reference} & {r["text"] for r in docstrings}


def test_nested_fields_flatten_and_lists_join_like_the_guides():
    record = {"q_id": "7", "answers": {"a_id": ["x", "y"], "text": ["First answer.", "Second one."]}, "score": [3, 1]}
    flat = flatten_record(record)
    assert flat == {
        "q_id": "7",
        "answers.a_id": ["x", "y"],
        "answers.text": ["First answer.", "Second one."],
        "score": [3, 1],
    }
    assert as_text(flat["answers.text"]) == "First answer. Second one."
    assert as_text(flat["score"]) is None
    assert detect_text_column([flat] * 3) == "answers.text"


def test_text_column_detection_prefers_long_prose():
    records = [
        {"id": str(i), "label": "pos", "review": "A long review of the film, with many words. " * 3} for i in range(10)
    ]
    assert detect_text_column(records) == "review"
    with pytest.raises(ValueError, match="^text_column: no column holds text"):
        detect_text_column([{"n": 1}, {"n": 2}])


def test_missing_text_column_is_named():
    with pytest.raises(ValueError, match="^text_column: no column 'body'; columns are text, topic"):
        check_column([{"topic": "a", "text": "b"}], "body")


def test_slices_select_rows():
    rows = [{"text": str(i)} for i in range(200)]
    assert [r["text"] for r in apply_slice(rows, "train[:3]")] == ["0", "1", "2"]
    assert len(apply_slice(rows, "train[10%:20%]")) == 20
    assert apply_slice(rows, "train[-2:]")[0]["text"] == "198"
    with pytest.raises(ValueError, match="^slice: this data has one split"):
        apply_slice(rows, "test[:3]")


def test_empty_slice_is_refused():
    config = TrainConfig(model="starter", dataset="builtin", slice="train[5000:]")
    with pytest.raises(ValueError, match="^slice: 'train\\[5000:\\]' leaves no rows"):
        load_records(config)


def test_file_formats(tmp_path):
    (tmp_path / "a.txt").write_text("First paragraph\nstill first.\n\n\nSecond paragraph.\n", encoding="utf-8")
    assert read_file(str(tmp_path / "a.txt")) == [
        {"text": "First paragraph\nstill first."},
        {"text": "Second paragraph."},
    ]
    (tmp_path / "b.csv").write_text('id,body\n1,"Hello, world"\n2,Bye\n', encoding="utf-8")
    assert read_file(str(tmp_path / "b.csv")) == [{"id": "1", "body": "Hello, world"}, {"id": "2", "body": "Bye"}]
    (tmp_path / "c.jsonl").write_text('{"a": {"text": ["x", "y"]}}\n\n"bare"\n', encoding="utf-8")
    assert read_file(str(tmp_path / "c.jsonl")) == [{"a": {"text": ["x", "y"]}}, {"text": "bare"}]
    (tmp_path / "d.json").write_text(json.dumps({"data": [{"text": "q"}]}), encoding="utf-8")
    assert read_file(str(tmp_path / "d.json")) == [{"text": "q"}]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bad.txt", b"caf\xe9 latin-1", "is not UTF-8 text"),
        ("bad.jsonl", b'{"text": "ok"}\n{"text": broken\n', "line 2 is not valid JSON"),
        ("bad.json", b"[1, 2", "not valid JSON"),
        ("bad.pdf", b"%PDF", "cannot be read as a PDF"),
        (
            "letter.doc",
            b"\xd0\xcf",
            "is not a kind of file this app reads: open it in Word or LibreOffice and save it as .docx",
        ),
    ],
)
def test_bad_files_are_explained(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=f"^dataset_file: .*{message}"):
        read_file(str(tmp_path / name))


def test_group_texts_equals_the_guides_on_random_input():
    rng = random.Random(0)
    for _ in range(200):
        block_size = rng.randint(1, 40)
        docs = [[rng.randint(0, 999) for _ in range(rng.randint(0, 60))] for _ in range(rng.randint(1, 30))]
        offsets = [[(rng.randint(0, 9), rng.randint(0, 9)) for _ in doc] for doc in docs]
        examples = {"input_ids": docs, "offset_mapping": offsets}
        if not sum(map(len, docs)):
            continue
        expected = make_group_texts(block_size)({k: [list(v) for v in vs] for k, vs in examples.items()})
        ours = group_texts(examples, block_size)
        assert ours["input_ids"].tolist() == expected["input_ids"]
        assert [[tuple(p) for p in row] for row in ours["offset_mapping"].tolist()] == expected["offset_mapping"]


def _best_time(function, *args, repeats=7):
    """The fastest of several timings, to damp noise from other processes."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def _growth(group, n_docs):
    """How much longer grouping takes when the input grows 4x (linear: about 4, quadratic: about 16)."""
    rng = np.random.default_rng(0)
    small = {"input_ids": [rng.integers(0, 1000, 50).tolist() for _ in range(n_docs)]}
    large = {"input_ids": small["input_ids"] * 4}
    return _best_time(group, large) / _best_time(group, small)


def test_grouping_takes_linear_time():
    guide = make_group_texts(128)
    assert _growth(guide, 1000) > 10, "the measurement must catch the guides' quadratic concatenation"
    assert _growth(lambda ex: group_texts(ex, 128), 1000) < 7


def test_the_held_out_text_is_whole_documents_chosen_by_their_text_alone(tiny_mlm):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_mlm)
    config = TrainConfig(model=str(tiny_mlm), dataset="builtin", slice="train", block_size=64)
    data = prepare_data(config, tokenizer, 64)
    assert data.text_column == "text" and data.train.shape[1] == 64
    texts = [record["text"] for record in load_records(config)]
    assert data.documents == len(texts)
    held = [text for text in texts if document_draws([text])[0] < config.eval_fraction * 2**32]
    assert MIN_HELD_OUT_DOCUMENTS <= len(held) < len(texts)
    held_ids = np.concatenate([tokenizer(text)["input_ids"] for text in held])
    assert np.array_equal(data.eval[:].numpy().ravel(), held_ids[: len(data.eval) * 64])  # held-out documents only
    assert len(data.eval) == len(held_ids) // 64 and len(data.train) == (data.tokens - len(held_ids)) // 64
    again = prepare_data(config.replace(seed=7), tokenizer, 64)
    assert again.eval[:].equal(data.eval[:]), "the held-out text does not follow the seed"


def test_text_shorter_than_two_blocks_is_refused(tiny_mlm, tmp_path):
    from transformers import AutoTokenizer

    (tmp_path / "short.txt").write_text("Just a few words.", encoding="utf-8")
    config = TrainConfig(model=str(tiny_mlm), dataset="file", dataset_file=str(tmp_path / "short.txt"), slice="train")
    with pytest.raises(
        ValueError,
        match="^block_size: your text is too short for a run: it makes .* tokens, and a run needs at least 256",
    ):
        prepare_data(config, AutoTokenizer.from_pretrained(tiny_mlm), 128)


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_free_memory_and_workers_follow_the_containers_cgroup_limits(tmp_path, version):
    from mlm_core.system import container_limits

    gib = 2**30
    if version == "v2":
        (tmp_path / "memory.max").write_text(f"{3 * gib}\n")
        (tmp_path / "memory.current").write_text(f"{2 * gib}\n")
        (tmp_path / "cpu.max").write_text("150000 100000\n")
        (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n")
    else:
        (tmp_path / "memory").mkdir()
        (tmp_path / "cpu").mkdir()
        (tmp_path / "memory" / "memory.limit_in_bytes").write_text(f"{3 * gib}\n")
        (tmp_path / "memory" / "memory.usage_in_bytes").write_text(f"{2 * gib}\n")
        (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("150000\n")
        (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
        (tmp_path / "memory" / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert container_limits.free_memory_bytes(tmp_path) == gib  # the host has far more free
    assert container_limits.cpu_quota(tmp_path) == 1.5
    assert container_limits.usable_cores(tmp_path) == min(2, len(os.sched_getaffinity(0)))
    assert container_limits.oom_kills(tmp_path) == 2
    unlimited = tmp_path / "none"
    unlimited.mkdir()
    (unlimited / "memory.max").write_text("max\n")
    (unlimited / "cpu.max").write_text("max 100000\n")
    assert container_limits.free_memory_bytes(unlimited) > gib and container_limits.cpu_quota(unlimited) is None


def test_rows_whose_text_is_not_text_are_counted_and_a_long_row_is_one_document(tiny_mlm, tmp_path, capsys):
    from transformers import AutoTokenizer

    from mlm_core.cli.commands import main
    from mlm_core.data.columns import MAX_PIECE_CHARS

    tokenizer = AutoTokenizer.from_pretrained(tiny_mlm)
    rows = [
        {"text": f"Row {i} is a sentence about the garden and its beans."} if i % 2 else {"text": i} for i in range(200)
    ]
    rows[1]["text"] = "word " * (MAX_PIECE_CHARS // 2)  # one row, tokenized in several pieces
    path = tmp_path / "numbers.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    config = TrainConfig(model=str(tiny_mlm), dataset="file", dataset_file=str(path), block_size=32)
    data = prepare_data(config, tokenizer, 32)
    assert (data.records, data.documents) == (200, 100)
    assert (
        main(
            [
                "preview",
                "--model",
                str(tiny_mlm),
                "--dataset-file",
                str(path),
                "--block-size",
                "32",
                "--max-steps",
                "2",
                "--output-dir",
                str(tmp_path / "run"),
            ]
        )
        == 0
    )
    assert "100 of the 200 rows hold no text in 'text' and are left out" in capsys.readouterr().out


@pytest.mark.parametrize(
    "text, words",
    [
        ("A naïve café owner", ["A", "naïve", "café", "owner"]),
        ("Señor Müller ate crème brûlée", ["Señor", "Müller", "ate", "crème", "brûlée"]),
        ("Ελληνικά κείμενα εδώ", ["Ελληνικά", "κείμενα", "εδώ"]),
        ("Smile 😀 now", ["Smile", "😀", "now"]),
        ("mixed 中文 text", ["mixed", "中文", "text"]),
        ("我爱北京天安门", ["我", "爱", "北京", "天安门"]),  # no spaces: words from the segmenter
        ("他来到了网易杭研大厦", ["他", "来到", "了", "网易", "杭研", "大厦"]),  # jieba's own README example
        ("私は猫が好きです", ["私", "は", "猫", "が", "好き", "です"]),  # Japanese: words from MeCab with UniDic
        ("カタカナとひらがなを読みます", ["カタカナ", "と", "ひらがな", "を", "読み", "ます"]),
        ("Tokyoの天気は晴れ 😀", ["Tokyo", "の", "天気", "は", "晴れ", "😀"]),
    ],
)
def test_pieces_of_one_character_or_word_are_one_word_in_every_script(text, words):
    from transformers import AutoTokenizer

    from mlm_core.data.tokenizing import from_lists
    from mlm_core.runs.model_sources import STARTER_DIR

    tokenizer = AutoTokenizer.from_pretrained(STARTER_DIR)  # byte-level BPE: é is two pieces of one character
    encoded = tokenizer(text, return_offsets_mapping=True)
    starts = from_lists([encoded["input_ids"]], [encoded["offset_mapping"]], np.dtype(np.uint32), [text]).starts
    spans, word = [], None
    for (start, end), first in zip(encoded["offset_mapping"], starts):
        if start == end:  # a special token
            word = None
            continue
        if first or word is None:
            word = [start, end]
            spans.append(word)
        word[1] = end
    assert [text[a:b] for a, b in spans] == words


GREEK = (
    "Η γλώσσα είναι το σύστημα επικοινωνίας των ανθρώπων. Οι λέξεις της γράφονται με γράμματα του ελληνικού "
    "αλφαβήτου και διαβάζονται από αριστερά προς τα δεξιά."
)
FRENCH = (
    "La kermesse de l'école aura lieu samedi dans la cour. Les parents sont invités à préparer des gâteaux et des "
    "boissons pour les enfants. Nous comptons sur votre présence et votre bonne humeur."
)
GERMAN = (
    "Die Schule veranstaltet am Samstag ein Sommerfest im Hof. Die Eltern werden gebeten, Kuchen und Getränke für "
    "die Kinder mitzubringen."
)
ENGLISH = "The interpreter reads the statement and returns the value of the expression to the caller."


def _blocks(tokenizer, text):
    return torch.tensor([tokenizer(text)["input_ids"]])


def test_the_fit_check_counts_pieces_per_word_and_names_a_script_the_model_does_not_know():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from mlm_core.models.loading import load_tokenizer
    from mlm_core.models.word_fit import MULTILINGUAL_MODEL, measure_fit

    starter = load_tokenizer("starter")
    english = measure_fit(starter, _blocks(starter, ENGLISH))
    assert english.known and english.script == "Latin" and english.words == len(ENGLISH.split())
    assert english.advice(online=True) is None and english.whole_share == 1.0  # "caller." is one word of one piece
    greek = measure_fit(starter, _blocks(starter, GREEK))  # byte-level BPE spells Greek out byte by byte
    assert not greek.known and greek.script == "Greek" and greek.pieces_per_word > 5 and greek.whole_share < 0.2
    assert MULTILINGUAL_MODEL in greek.advice(online=True) and "Add your words" not in greek.advice(online=False)
    # French and German: a script it knows, a language it cuts into pieces; a word list counts no line break
    for text in (FRENCH, GERMAN):
        fit = measure_fit(starter, _blocks(starter, text))
        assert fit.known and fit.whole_share < 0.5 and "not know" not in fit.advice(online=True)
        assert "cuts most words of your text into pieces" in fit.advice(online=True)
        assert MULTILINGUAL_MODEL in fit.advice(online=True) and "not reachable" in fit.advice(online=False)
    listed = measure_fit(starter, _blocks(starter, "\n".join(ENGLISH.split())))
    assert listed.pieces_per_word == english.pieces_per_word and listed.whole_share == english.whole_share

    vocab = {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, **{w: i + 3 for i, w in enumerate(sorted(set(ENGLISH.split())))}}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    wordpiece = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    unknown = measure_fit(wordpiece, _blocks(wordpiece, GREEK))  # every Greek word is [UNK]: one piece, unknown
    assert not unknown.known and unknown.pieces_per_word == pytest.approx(1.0) and unknown.words >= len(GREEK.split())
    assert "does not know the script of your text" in unknown.advice(online=True)


def test_preview_says_when_the_model_does_not_know_the_texts_script(tiny_mlm, tmp_path, capsys):
    from mlm_core.cli.commands import main

    path = tmp_path / "greek.txt"
    path.write_text("\n\n".join([GREEK] * 60), encoding="utf-8")
    assert (
        main(
            [
                "preview",
                "--model",
                str(tiny_mlm),
                "--dataset-file",
                str(path),
                "--block-size",
                "32",
                "--max-steps",
                "2",
                "--output-dir",
                str(tmp_path / "run"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "This model does not know the Greek script" in out and "hub is not reachable" in out
    assert "% of them one piece" in out


@pytest.mark.parametrize(
    "dataset, instead",
    [
        ("eli5_category", "'dany0407/eli5_category', the same data as Parquet"),
        ("someone/old_script", "a copy of it stored as data files"),
    ],
)
def test_a_loading_script_is_refused_naming_what_to_use_instead(dataset, instead):
    from mlm_core.data.hub_datasets import loading_script

    said = str(loading_script(dataset, "x.py"))
    assert said.startswith(f"dataset: {dataset!r} is a loading script (x.py)") and instead in said, said
