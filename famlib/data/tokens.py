"""Token sets: the base-pretraining mixture and the CPT sets, packed into fixed-length sequences.

A *document* is a run of consecutive units (a Bible chapter, a Quran sura, a UDHR article), so the model
learns across verse boundaries (what the comprehension task asks of it). Documents are encoded as
``<bos> text <eos>`` and concatenated; each language is packed on its own, so every row carries one label
(a language, or ``en>xx`` for translation pairs) and validation loss can be read per language.

On disk (nanoGPT style), one folder per set and split::

    runs/<scale>/data/<set>/<split>/tokens.bin   uint16 or uint32, rows of seq_len tokens
    runs/<scale>/data/<set>/<split>/labels.bin   uint16 index into meta["labels"], one per row
    runs/<scale>/data/<set>/<split>/meta.json    shape, dtype, labels, budgets and what was really used

A set is rebuilt only when its key (corpus, tokenizer, budgets, seed, format) changes.
"""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np

from famlib.config import Params
from famlib.data.sources import parse_text_id
from famlib.errors import DataError
from famlib.io import atomic_write_json, sha256_json
from famlib.prompts import FEWSHOT_DELIMITER, translation_example

TOKENS_FORMAT = 1
PAIRS_PER_DOCUMENT = 3  # a translation document looks like a 2-shot prompt plus its answer


# ----------------------------------------------------------------------------------------------------
# Budgets
# ----------------------------------------------------------------------------------------------------
def cpt_languages(params: Params, family: Optional[str]) -> list[str]:
    """Training languages of one family, or of all families for Dense CPT (``family=None``)."""
    if family is None:
        return params.training_languages
    return list(params.families[params.check_family(family)].train)


def cpt_budget(params: Params, family: Optional[str]) -> dict[str, dict[str, int]]:
    """Tokens per language and split for a CPT set.

    The family budget (``data.family_tokens``; Dense: ``data.dense_tokens`` or the sum over families) is
    split equally across the set's languages, then 95/5 (``data.validation_fraction``) into train and
    validation, as in the paper's section 3.1.
    """
    langs = cpt_languages(params, family)
    d = params.data
    total = d.family_tokens if family is not None else (d.dense_tokens or d.family_tokens * len(params.families))
    per_lang = total // len(langs)
    val = int(round(per_lang * d.validation_fraction))
    return {lang: {"train": per_lang - val, "validation": val} for lang in langs}


def base_budget(params: Params, corpus) -> dict[str, dict[str, int]]:
    """Tokens per label (``en``, each other language, each ``en>xx``/``xx>en``) and split for the base mixture."""
    bm = params.data.base_mixture
    if bm is None:
        raise DataError(f"{params.origin}: data.base_mixture is not set; only from-scratch scales pretrain a base")
    probe = params.probe_language
    others = [lang for lang in params.languages if lang != probe and _has_split(corpus, lang, "train")]
    pairs = [p for lang in others if aligned_text(params, corpus, lang) for p in (f"{probe}>{lang}", f"{lang}>{probe}")]
    shares: dict[str, float] = {probe: bm.english}
    shares.update({lang: bm.others / len(others) for lang in others} if others else {})
    shares.update({p: bm.translation / len(pairs) for p in pairs} if pairs else {})
    vf = params.data.validation_fraction
    out = {}
    for label, share in shares.items():
        n = int(bm.tokens * share)
        val = int(round(n * vf))
        out[label] = {"train": n - val, "validation": val}
    return out


def _has_split(corpus, lang: str, split: str) -> bool:
    return next(iter(corpus.units(lang, split)), None) is not None


def aligned_text(params: Params, corpus, lang: str) -> Optional[tuple[str, str]]:
    """The (probe text, language text) pair of one source kind that aligns ``lang`` with the probe."""
    probe_texts = corpus.texts(params.probe_language)
    for tid in corpus.texts(lang):
        kind = parse_text_id(tid)[0]
        if kind == "udhr" and params.data.splits["udhr"].evaluation >= 1.0:
            continue
        for ptid in probe_texts:
            if parse_text_id(ptid)[0] == kind:
                return ptid, tid
    return None


# ----------------------------------------------------------------------------------------------------
# Documents
# ----------------------------------------------------------------------------------------------------
def documents(corpus, lang: str, split: str) -> list[str]:
    """Runs of consecutive units of one language and split: one document per chapter / sura / article."""
    docs: dict[tuple[str, str], list[str]] = {}
    for u in corpus.units(lang, split):
        doc_key = u["key"].rsplit(".", 1)[0] if "." in u["key"] else u["key"]
        docs.setdefault((u["text_id"], doc_key), []).append(u["text"])
    return [" ".join(parts) for parts in docs.values()]


def translation_documents(params: Params, corpus, src: str, tgt: str, split: str, rng) -> list[str]:
    """Blocks of aligned pairs ``"English: ...\\nSpanish: ..."`` joined like few-shot examples."""
    probe = params.probe_language
    other = tgt if src == probe else src
    texts = aligned_text(params, corpus, other)
    if texts is None:
        return []
    ptid, otid = texts
    by_key = {probe: {u["key"]: u["text"] for u in corpus.units(probe, split, ptid)},
              other: {u["key"]: u["text"] for u in corpus.units(other, split, otid)}}
    keys = sorted(set(by_key[probe]) & set(by_key[other]))
    keys = [keys[i] for i in rng.permutation(len(keys))]
    examples = [translation_example(src, tgt, by_key[src][k], by_key[tgt][k]) for k in keys]
    return [FEWSHOT_DELIMITER.join(examples[i:i + PAIRS_PER_DOCUMENT])
            for i in range(0, len(examples), PAIRS_PER_DOCUMENT)]


# ----------------------------------------------------------------------------------------------------
# Packing
# ----------------------------------------------------------------------------------------------------
@dataclass
class TokenSet:
    """A packed split on disk; ``tokens`` and ``labels`` are read-only memory maps."""

    path: Path

    @property
    def meta(self) -> dict:
        return json.loads((self.path / "meta.json").read_text())

    @property
    def tokens(self) -> np.ndarray:
        m = self.meta
        return np.memmap(self.path / "tokens.bin", dtype=m["dtype"], mode="r", shape=(m["rows"], m["seq_len"]))

    @property
    def labels(self) -> np.ndarray:
        m = self.meta
        return np.memmap(self.path / "labels.bin", dtype=np.uint16, mode="r", shape=(m["rows"],))

    def rows_of(self, label: str) -> np.ndarray:
        """Indices of the rows of one label (language or translation direction)."""
        return np.flatnonzero(self.labels[:] == self.meta["labels"].index(label))


def _encode_stream(tokenizer, docs: Iterable[str], batch: int = 256) -> Iterator[list[int]]:
    buf: list[str] = []
    for d in docs:
        buf.append(d)
        if len(buf) == batch:
            yield from tokenizer(buf, add_special_tokens=False)["input_ids"]
            buf = []
    if buf:
        yield from tokenizer(buf, add_special_tokens=False)["input_ids"]


def _pack(tokenizer, docs: Iterable[str], budget: int, seq_len: int) -> tuple[np.ndarray, int]:
    """Concatenate ``<bos> doc <eos>`` until ``budget`` tokens; return full rows and the tokens available."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    n_rows = budget // seq_len
    out: list[int] = []
    for ids in _encode_stream(tokenizer, docs):
        out.append(bos)
        out.extend(ids)
        out.append(eos)
        if len(out) >= n_rows * seq_len:
            break
    rows = min(n_rows, len(out) // seq_len)
    return np.asarray(out[: rows * seq_len], dtype=np.int64).reshape(rows, seq_len), len(out)


def _write_split(out: Path, parts: dict[str, np.ndarray], budgets: dict[str, int], available: dict[str, int],
                 seq_len: int, vocab_size: int, seed: int, key: str) -> TokenSet:
    labels = list(parts)
    rows = np.concatenate([parts[label] for label in labels]) if labels else np.zeros((0, seq_len), np.int64)
    lab = np.concatenate([np.full(len(parts[label]), i, np.uint16) for i, label in enumerate(labels)]) \
        if labels else np.zeros(0, np.uint16)
    order = np.random.default_rng(seed).permutation(len(rows))  # mix languages across the set
    dtype = "uint16" if vocab_size <= 65536 else "uint32"
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    rows[order].astype(dtype).tofile(tmp / "tokens.bin")
    lab[order].tofile(tmp / "labels.bin")
    used = {label: int(parts[label].size) for label in labels}
    atomic_write_json(tmp / "meta.json", {
        "key": key, "format": TOKENS_FORMAT, "rows": int(len(rows)), "seq_len": seq_len, "dtype": dtype,
        "labels": labels, "budget_tokens": budgets, "available_tokens": available, "used_tokens": used,
        "short": sorted(label for label in labels if used[label] < budgets[label] - seq_len),
    })
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return TokenSet(out)


def _build(name: str, params: Params, corpus, tokenizer, budgets: dict[str, dict[str, int]],
           docs_for, out_dir: Path) -> dict[str, TokenSet]:
    from famlib.tokenizer import tokenizer_fingerprint

    seq_len = params.data.seq_len
    key = sha256_json({"format": TOKENS_FORMAT, "corpus": corpus.fingerprint, "tokenizer": tokenizer_fingerprint(tokenizer),
                       "budgets": budgets, "seq_len": seq_len, "seed": params.seed, "name": name})
    result = {}
    for split in ("train", "validation"):
        out = Path(out_dir) / split
        meta = out / "meta.json"
        if meta.exists() and json.loads(meta.read_text()).get("key") == key:
            result[split] = TokenSet(out)
            continue
        parts, available, wanted = {}, {}, {}
        for i, (label, b) in enumerate(budgets.items()):
            rng = np.random.default_rng([params.seed, i, 0 if split == "train" else 1])
            rows, avail = _pack(tokenizer, docs_for(label, split, rng), b[split], seq_len)
            parts[label], available[label], wanted[label] = rows, avail, b[split]
        ts = _write_split(out, parts, wanted, available, seq_len, len(tokenizer),
                          params.seed + (0 if split == "train" else 1), key)
        if ts.meta["short"]:
            warnings.warn(f"{name}/{split}: not enough {split} text for {ts.meta['short']} "
                          f"(used {[ts.meta['used_tokens'][x] for x in ts.meta['short']]} of "
                          f"{[wanted[x] for x in ts.meta['short']]} tokens); the set is smaller than its budget",
                          stacklevel=2)
        result[split] = ts
    return result


def _shuffled(docs: list[str], rng) -> list[str]:
    return [docs[i] for i in rng.permutation(len(docs))]


def build_cpt_set(params: Params, corpus, tokenizer, family: Optional[str], out_dir: Path) -> dict[str, TokenSet]:
    """Pack the CPT set of one family (or all families for Dense CPT, ``family=None``).

    Returns ``{"train": TokenSet, "validation": TokenSet}``.
    """
    budgets = cpt_budget(params, family)

    def docs_for(lang, split, rng):
        if getattr(corpus, "streaming", False):
            return (u["text"] for u in corpus.units(lang, split))
        return _shuffled(documents(corpus, lang, split), rng)

    return _build(family or "dense", params, corpus, tokenizer, budgets, docs_for, out_dir)


def build_base_set(params: Params, corpus, tokenizer, out_dir: Path) -> dict[str, TokenSet]:
    """Pack the from-scratch base's pretraining mixture (English, every other language, en<->xx pairs)."""
    budgets = base_budget(params, corpus)

    def docs_for(label, split, rng):
        if ">" in label:
            src, tgt = label.split(">")
            return translation_documents(params, corpus, src, tgt, split, rng)
        return _shuffled(documents(corpus, label, split), rng)

    return _build("base", params, corpus, tokenizer, budgets, docs_for, out_dir)
