"""Tiny random-weight models of every family in transformers' masked-LM mapping, each with a tokenizer of its
family's kind trained on a little text, built offline (tests/test_model_families.py)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

BLOCK = 64  # the block size the family test trains with; Reformer's axial positions are shaped to it
VOCAB = 400
TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=256,
    embedding_size=32,
)
# Where a family names its sizes otherwise, or needs more to stay tiny (defaults give up to 290 M parameters).
_SEQ2SEQ = dict(
    d_model=32,
    encoder_layers=1,
    decoder_layers=1,
    encoder_attention_heads=2,
    decoder_attention_heads=2,
    encoder_ffn_dim=64,
    decoder_ffn_dim=64,
)
CONFIG_CHANGES = {
    "bart": _SEQ2SEQ,
    "mbart": _SEQ2SEQ,
    "mvp": _SEQ2SEQ,
    "distilbert": dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64),
    "eurobert": dict(num_key_value_heads=2, head_dim=16),
    "funnel": dict(
        num_hidden_layers=None,
        block_sizes=[1, 1],
        block_repeats=[1, 1],
        d_model=32,
        n_head=2,
        d_head=16,
        d_inner=64,
        num_decoder_layers=1,
    ),
    "layoutlm": dict(max_2d_position_embeddings=64),
    "luke": dict(entity_vocab_size=8, entity_emb_size=16),
    "mobilebert": dict(true_hidden_size=32, intra_bottleneck_size=32, num_feedforward_networks=1),
    "neomme": dict(
        num_key_value_heads=2,
        head_dim=16,
        embedding_rank=16,
        embedding_dim=16,
        sliding_window=32,
        layer_types=["sliding_attention", "full_attention"],
    ),
    "perceiver": dict(
        d_latents=32,
        d_model=32,
        num_latents=16,
        num_blocks=1,
        num_self_attends_per_block=1,
        num_self_attention_heads=2,
        num_cross_attention_heads=2,
    ),
    "reformer": dict(
        attn_layers=["local", "local"],
        axial_pos_shape=[8, 8],
        axial_pos_embds_dim=[16, 16],
        attention_head_size=16,
        feed_forward_size=64,
        local_attn_chunk_length=16,
        is_decoder=False,
    ),
    "rembert": dict(input_embedding_size=32, output_embedding_size=32),
    "roc_bert": dict(shape_vocab_size=8, pronunciation_vocab_size=8, shape_embed_dim=16, pronunciation_embed_dim=16),
    "tapas": dict(type_vocab_sizes=[3, 4, 4, 4, 4, 4, 4]),
    "xmod": dict(languages=["en_XX"], default_language="en_XX"),
}
TINY_VISION = dict(
    model_type="siglip_vision_model",
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=64,
    image_size=32,
    patch_size=16,
)
TEXT_EXTRA = [
    "Café crème and naïve résumé.",
    "Ο σκύλος τρέχει στο πάρκο.",
    "北京大学的学生在图书馆学习。",
    "Привет, как дела?",
    "The weather is nice 🙂 today.",
] * 10


def family_texts() -> list[str]:
    """The text every family's tokenizer is trained on: the built-in corpus and some accented and non-Latin lines."""
    from mlm_core.data.builtin_corpus import reference_records

    return [record["text"] for record in reference_records()] + TEXT_EXTRA


def masked_lm_families() -> list[str]:
    """Every model type AutoModelForMaskedLM builds, in transformers' order."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return list(MODEL_FOR_MASKED_LM_MAPPING_NAMES)


def build_family(model_type: str, folder: Path) -> tuple[Path, str]:
    """A tiny model of `model_type` with its masked-LM class and a tokenizer of its kind saved in `folder`; (folder,
    tokenizer kind in words)."""
    import torch
    from transformers import AutoConfig, AutoModelForMaskedLM
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    from mlm_core.models.loading import quiet_transformers

    quiet_transformers()
    tokenizer = build_tokenizer(model_type, family_texts())
    tokenizer.model_max_length = 128
    ids = {name: getattr(tokenizer, f"{name}_token_id") for name in ("pad", "bos", "eos", "mask", "cls", "sep")}
    ids = {f"{name}_token_id": value for name, value in ids.items() if value is not None}
    sizes = {**TINY, "vocab_size": len(tokenizer), **ids, **CONFIG_CHANGES.get(model_type, {})}
    sizes = {key: value for key, value in sizes.items() if value is not None}
    text_part = getattr(CONFIG_MAPPING[model_type], "sub_configs_defaults", {}).get("text_config")
    if text_part is not None:  # a vision-language family: a tiny text model and a tiny image encoder
        sizes = dict(
            text_config={"model_type": text_part.model_type, **sizes},
            vision_config=TINY_VISION,
            image_token_id=len(tokenizer) - 1,
        )
    config = AutoConfig.for_model(model_type, **sizes)
    torch.manual_seed(0)
    AutoModelForMaskedLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, tokenizer_kind(tokenizer)


def tokenizer_kind(tokenizer) -> str:
    """The tokenizer's algorithm in words: 'WordPiece', 'byte-level BPE', 'SentencePiece Unigram', ...; '(Python)'
    for tokenizers without a Rust backend (no character offsets)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        if hasattr(tokenizer, "bpe_ranks"):
            return "BPE (Python)"
        if hasattr(tokenizer, "wordpiece_tokenizer"):
            return "WordPiece (Python)"
        return "UTF-8 bytes (Python)" if "Perceiver" in type(tokenizer).__name__ else "characters (Python)"
    kind = type(backend.model).__name__
    try:
        pre = repr(backend.pre_tokenizer)
    except Exception:  # a custom Python pre-tokenizer (RoFormer's jieba) has no representation
        pre = "custom"
    if kind == "BPE":
        return "byte-level BPE" if "ByteLevel" in pre else ("SentencePiece BPE" if "Metaspace" in pre else "BPE")
    return {"Unigram": "SentencePiece Unigram", "WordLevel": "word level"}.get(kind, kind)


def build_tokenizer(model_type: str, texts: list[str]):
    """A tokenizer of the class `model_type`'s checkpoints use, trained on `texts` (VOCAB entries or fewer)."""
    import transformers
    from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING_NAMES

    special = _SPECIAL_BUILDERS.get(model_type)
    if special:
        return special(texts)
    name = TOKENIZER_MAPPING_NAMES.get(model_type)
    if name in (None, "TokenizersBackend"):
        return _byte_level_fast(texts)
    return getattr(transformers, name)().train_new_from_iterator(texts, vocab_size=VOCAB)


def _byte_level_fast(texts: list[str]):
    """A byte-level BPE with [CLS] [SEP] [MASK] (lstrip) as ModernBERT's, for families without a tokenizer class."""
    from tokenizers import AddedToken, ByteLevelBPETokenizer, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=VOCAB, special_tokens=specials, show_progress=False)
    bpe.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[(t, bpe.token_to_id(t)) for t in specials[:2]],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        unk_token="[UNK]",
        mask_token=AddedToken("[MASK]", lstrip=True, rstrip=False, special=True),
    )


def _wordpiece_vocab(texts: list[str]) -> list[str]:
    """A BERT WordPiece vocabulary trained on `texts`, in id order."""
    from transformers import BertTokenizer

    trained = BertTokenizer().train_new_from_iterator(texts, vocab_size=VOCAB)
    return [token for token, _ in sorted(trained.get_vocab().items(), key=lambda item: item[1])]


def _files_tokenizer(cls, files: dict[str, str], **kwargs):
    """`cls` built from vocabulary files written to a temporary folder."""
    with tempfile.TemporaryDirectory() as folder:
        for name, text in files.items():
            Path(folder, name).write_text(text, encoding="utf-8")
        return cls(**{key: str(Path(folder, name)) for key, name in kwargs.items()})


def _esm(texts: list[str]):
    """ESM's character vocabulary (proteins are one letter per residue): specials, then every character seen."""
    from transformers import EsmTokenizer

    chars = sorted({char for text in texts for char in text if not char.isspace()})
    vocab = ["<cls>", "<pad>", "<eos>", "<unk>", *chars, "<mask>"]
    return _files_tokenizer(EsmTokenizer, {"vocab.txt": "\n".join(vocab)}, vocab_file="vocab.txt")


def _xlm(cls):
    """XLM's (and FlauBERT's) BPE with `</w>` word ends, from vocab.json and merges.txt."""

    def build(texts: list[str]):
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers

        bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
        bpe.pre_tokenizer = pre_tokenizers.Whitespace()
        specials = [
            "<s>",
            "</s>",
            "<pad>",
            "<unk>",
            "<special0>",
            "<special1>",
            "<special2>",
            "<special3>",
            "<special4>",
            "<special5>",
            "<special6>",
            "<special7>",
            "<special8>",
            "<special9>",
        ]
        bpe.train_from_iterator(
            [text.lower() for text in texts],
            trainers.BpeTrainer(
                vocab_size=VOCAB, special_tokens=specials, end_of_word_suffix="</w>", show_progress=False
            ),
        )
        model = json.loads(bpe.to_str())["model"]
        merges = [" ".join(pair) if isinstance(pair, list) else pair for pair in model["merges"]]
        return _files_tokenizer(
            cls,
            {"vocab.json": json.dumps(model["vocab"]), "merges.txt": "\n".join(merges)},
            vocab_file="vocab.json",
            merges_file="merges.txt",
        )

    return build


def _roc_bert(texts: list[str]):
    """RoCBert's WordPiece vocabulary with its glyph-shape and pronunciation tables (one id per token here)."""
    from transformers import RoCBertTokenizer

    vocab = _wordpiece_vocab(texts)
    table = json.dumps({token: index % 8 for index, token in enumerate(vocab)})
    return _files_tokenizer(
        RoCBertTokenizer,
        {"vocab.txt": "\n".join(vocab), "shape.json": table, "pronunciation.json": table},
        vocab_file="vocab.txt",
        word_shape_file="shape.json",
        word_pronunciation_file="pronunciation.json",
    )


def _tapas(texts: list[str]):
    """TAPAS's WordPiece tokenizer (its checkpoints ship vocab.txt only)."""
    from transformers import TapasTokenizer

    return _files_tokenizer(TapasTokenizer, {"vocab.txt": "\n".join(_wordpiece_vocab(texts))}, vocab_file="vocab.txt")


def _roformer(texts: list[str]):
    """RoFormer's WordPiece with its jieba pre-tokenizer (which cannot be trained through: it is Python code)."""
    from transformers import RoFormerTokenizer

    return RoFormerTokenizer(vocab={token: index for index, token in enumerate(_wordpiece_vocab(texts))})


def _perceiver(texts: list[str]):
    """Perceiver IO reads UTF-8 bytes: nothing to train."""
    from transformers import PerceiverTokenizer

    return PerceiverTokenizer()


def _xlm_class(name: str):
    def build(texts: list[str]):
        import transformers

        return _xlm(getattr(transformers, name))(texts)

    return build


_SPECIAL_BUILDERS = {
    "esm": _esm,
    "flaubert": _xlm_class("FlaubertTokenizer"),
    "xlm": _xlm_class("XLMTokenizer"),
    "roc_bert": _roc_bert,
    "roformer": _roformer,
    "tapas": _tapas,
    "perceiver": _perceiver,
}
