"""What the stand-in hub serves in the hub-path tests, built offline from the project's own code: tiny models under
the real default ids, and an ELI5-shaped parquet dataset of real English sentences under the guides' dataset id."""

from __future__ import annotations

import io
import random
import re
from pathlib import Path

from .conftest import _tiny_model
from .standin_hub import StandInHub

MASKED_ID, CAUSAL_ID = "distilbert/distilroberta-base", "distilbert/distilgpt2"
DATASET_ID = "dany0407/eli5_category"
SPLIT_ROWS = {"train": 400, "validation1": 40, "validation2": 30, "test": 40}
CATEGORIES = [
    "Biology",
    "Chemistry",
    "Culture",
    "Earth Science",
    "Economics",
    "Engineering",
    "Mathematics",
    "Other",
    "Physics",
    "Psychology",
    "Repost",
    "Technology",
]


def sentences() -> list[str]:
    """Prose sentences of the built-in corpus (the Python language reference): no code, headings or tables."""
    from mlm_core.data.builtin_corpus import reference_records

    found = []
    for record in reference_records():
        for paragraph in record["text"].split("\n\n"):
            if paragraph[:1].isspace() or re.search(r"\*\*\*|===|---|>>>|\|", paragraph):
                continue
            text = " ".join(paragraph.split())
            found += [
                s
                for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text)
                if 40 <= len(s) <= 300 and s[0].isupper() and s.endswith(".")
            ]
    return found


def _answer(rng: random.Random, pool: list[str], start: int) -> tuple[str, int]:
    """One answer of 2 to 6 consecutive sentences from `start`; (text, next start)."""
    n = rng.randint(2, 6)
    picked = [pool[(start + i) % len(pool)] for i in range(n)]
    return " ".join(picked), start + n


def eli5_rows(split: str, n: int, pool: list[str], start: int, rng: random.Random) -> tuple[list[dict], int]:
    """`n` rows shaped as ELI5-Category's (a question, 1 to 4 answers as a struct of lists); (rows, next start)."""
    rows = []
    for i in range(n):
        texts = []
        for _ in range(rng.randint(1, 4)):
            text, start = _answer(rng, pool, start)
            texts.append(text)
        subject = pool[start % len(pool)].split()[1:6]
        rows.append(
            {
                "q_id": f"{split[:2]}{i:05x}",
                "title": f"ELI5: why {' '.join(subject).rstrip('.,;:').lower()}?",
                "selftext": "" if i % 3 else pool[(start + 7) % len(pool)],
                "category": rng.choice(CATEGORIES),
                "subreddit": "explainlikeimfive",
                "answers": {
                    "a_id": [f"c{i:05x}{j}" for j in range(len(texts))],
                    "text": texts,
                    "score": [rng.randint(1, 500) for _ in texts],
                    "text_urls": [[] for _ in texts],
                },
                "title_urls": [],
                "selftext_urls": [],
            }
        )
    return rows, start


def eli5_features():
    """ELI5-Category's columns and types."""
    from datasets import Features, List, Value

    text = Value("string")
    return Features(
        {
            "q_id": text,
            "title": text,
            "selftext": text,
            "category": text,
            "subreddit": text,
            "answers": {
                "a_id": List(text),
                "text": List(text),
                "score": List(Value("int32")),
                "text_urls": List(List(text)),
            },
            "title_urls": List(text),
            "selftext_urls": List(text),
        }
    )


def eli5_files() -> dict[str, bytes]:
    """The dataset repository: `data/<split>-00000-of-00001.parquet` for each split, and a README whose YAML names
    the files and the splits' sizes, as the hub's parquet datasets have."""
    import datasets
    import pyarrow.parquet as pq

    pool, rng, start = sentences(), random.Random(0), 0
    files, infos = {}, {}
    for split, n in SPLIT_ROWS.items():
        rows, start = eli5_rows(split, n, pool, start, rng)
        table = datasets.Dataset.from_list(rows, features=eli5_features(), split=split)
        buffer = io.BytesIO()
        pq.write_table(table.data.table, buffer)  # the schema keeps the features, as the hub's files do
        files[f"data/{split}-00000-of-00001.parquet"] = buffer.getvalue()
        infos[split] = (table, table.data.nbytes, len(buffer.getvalue()))
    files["README.md"] = _card(infos).encode()
    return files


def _card(infos: dict) -> str:
    """The dataset card: `configs` (split -> file) and `dataset_info` (features, rows and bytes per split)."""
    import datasets
    from huggingface_hub import DatasetCardData

    info = next(iter(infos.values()))[0].info.copy()
    info.splits = datasets.SplitDict(
        {
            split: datasets.SplitInfo(split, num_bytes=size, num_examples=len(table))
            for split, (table, size, _) in infos.items()
        }
    )
    info.dataset_size = sum(size for _, size, _ in infos.values())
    info.download_size = sum(size for _, _, size in infos.values())
    data = DatasetCardData()
    datasets.info.DatasetInfosDict({"default": info}).to_dataset_card_data(data)
    data["configs"] = [
        {
            "config_name": "default",
            "data_files": [{"split": split, "path": f"data/{split}-00000-of-00001.parquet"} for split in infos],
        }
    ]
    return f"---\n{data.to_yaml()}\n---\n# ELI5-Category (a stand-in)\n\nQuestions and their answers, tiny.\n"


def populated_hub(work: Path, accept_commits: bool = True) -> StandInHub:
    """A stand-in hub serving a tiny RoBERTa masked LM, a tiny GPT-2 causal LM and the ELI5-shaped dataset under
    their real ids, built under `work`."""
    hub = StandInHub(accept_commits=accept_commits)
    hub.add_folder("model", MASKED_ID, _tiny_model(work / "masked", causal=False))
    hub.add_folder("model", CAUSAL_ID, _tiny_model(work / "causal", causal=True))
    hub.add_repo("dataset", DATASET_ID, eli5_files())
    return hub
