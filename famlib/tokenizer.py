"""The tokenizer of the from-scratch scales: byte-level BPE trained offline on the corpus.

Byte-level means every UTF-8 byte is in the base alphabet, so no text ever maps to an unknown token
(the byte fallback the design asks for), whatever the script. The training sample takes an equal number
of bytes from every corpus language's *train* split, so small languages and non-Latin scripts get merges
of their own. Like Gemma's tokenizer it prepends ``<bos>`` when asked for special tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

from famlib.config import Params
from famlib.io import atomic_write_json, sha256_file, sha256_json

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]  # ids 0, 1, 2, 3: Gemma's pad/eos/bos order
TOKENIZER_FORMAT = 1


def tokenizer_sample(params: Params, corpus) -> list[str]:
    """Equal bytes from every language with training text, round-robin over its texts, train split only."""
    langs = [lang for lang in params.languages if any(True for _ in corpus.units(lang, "train"))]
    per_lang = params.tokenizer.sample_bytes // max(1, len(langs))
    sample: list[str] = []
    for lang in langs:
        taken = 0
        for u in corpus.units(lang, "train"):
            sample.append(u["text"])
            taken += len(u["text"].encode("utf-8"))
            if taken >= per_lang:
                break
    return sample


def train_tokenizer(params: Params, corpus, out_dir: Path):
    """Train (or reuse) the byte-level BPE tokenizer; save it in ``out_dir``; return a fast HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    key = sha256_json({"format": TOKENIZER_FORMAT, "corpus": corpus.fingerprint,
                       "tokenizer": params.to_dict()["tokenizer"], "languages": params.languages})
    stamp = out_dir / "famlib_tokenizer.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("key") == key:
        return load_tokenizer(out_dir)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=params.tokenizer.vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(tokenizer_sample(params, corpus), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A $B",
                                                       special_tokens=[("<bos>", 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>", padding_side="left")
    fast.save_pretrained(str(out_dir))
    atomic_write_json(stamp, {"key": key, "vocab_size": fast.vocab_size,
                              "sha256": sha256_file(out_dir / "tokenizer.json")})
    return fast


def load_tokenizer(path: Path):
    """The tokenizer of a tokenizer or model directory; a model directory without one (a surgery output of
    an older famlib) falls back to ``../tokenizer``, the scale's shared tokenizer."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not (path / "tokenizer_config.json").exists() and (path.parent / "tokenizer" / "tokenizer_config.json").exists():
        path = path.parent / "tokenizer"
    return AutoTokenizer.from_pretrained(str(path))


def tokenizer_fingerprint(tokenizer) -> str:
    """Content hash of a tokenizer (its serialised vocabulary and rules), to key token caches on."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return sha256_json(json.loads(backend.to_str()))
    return sha256_json(tokenizer.get_vocab())
