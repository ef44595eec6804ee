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

Packing streams (:func:`pack_split`), so memory does not grow with the tokens (about 90 MB above the
imports for any size, ``benchmarks/bench_pack_tokens.py``; holding the paper's 25B tokens as Python lists
and int64 copies would take about 700 GB). Each label is tokenized and written row by row to its own file
in a work folder beside the set (``.train.packing/``), with checkpoints, so a killed packing continues
where it stopped; then the labels' rows are shuffled together into ``tokens.bin`` / ``labels.bin`` in a
folder that replaces the set by renames, so a set on disk is always whole.

The shuffle: each label's rows are cut into blocks of ``BLOCK_ROWS`` consecutive rows; all blocks are put
in a seeded pseudo-random order (:func:`block_permutation`, computed, not stored) and read a window of
``PACK_BUFFER_BYTES`` at a time; the rows of each window are permuted together (``default_rng(seed)``).
So every window is a random draw of blocks from all labels, mixed row by row. A set that fits one window
(every offline scale's) gets one permutation of all its rows: the global shuffle, byte-identical to the
in-memory packing famlib used before. (Training reads rows in its own per-epoch permutation anyway.)
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

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


REPLAY_LABEL = "replay:{lang}"  # the rows of replayed base-language text (apart from a family's own English)


def replay_budget(params: Params, budgets: dict[str, dict[str, int]], share: float) -> dict[str, dict[str, int]]:
    """A CPT budget with ``share`` of its training rows given to the probe language's (English) text.

    Counted in whole rows of ``data.seq_len`` tokens, the unit packing writes: the set keeps the rows it had
    (the same compute as without replay), ``round(rows * share)`` of them become English and the rest are
    split equally across the set's languages. Validation is left as it was (the family's languages only), so
    early stopping reads the same loss with and without replay.

    Raises:
        DataError: ``share`` is not strictly between 0 and 1.
    """
    if not 0.0 < share < 1.0:
        raise DataError(f"replay share {share!r}: allowed a share strictly between 0 and 1 (params replay.share)")
    seq = params.data.seq_len
    rows = sum(b["train"] // seq for b in budgets.values())
    english = int(round(rows * share))
    per_lang, extra = divmod(rows - english, len(budgets))
    out = {lang: {"train": (per_lang + (i < extra)) * seq, "validation": b["validation"]}
           for i, (lang, b) in enumerate(budgets.items())}
    out[REPLAY_LABEL.format(lang=params.probe_language)] = {"train": english * seq, "validation": 0}
    return out


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


PACK_BUFFER_BYTES = 64 << 20  # the assembly window: rows read, shuffled and written together
BLOCK_ROWS = 16  # consecutive rows of one label moved together into a window (128 KiB at 2048 x uint32)
CHECKPOINT_BYTES = 256 << 20  # a label's packing records its progress after about this much output
ENCODE_BATCH = 256  # documents per tokenizer call
_FEISTEL_ROUNDS = 6
_WORK_FORMAT = 1  # of the work directory's files; a mismatch discards them


def _token_dtype(vocab_size: int) -> str:
    return "uint16" if vocab_size <= 65536 else "uint32"


def _batches(docs: Iterable[str], size: int) -> Iterator[list[str]]:
    buf: list[str] = []
    for d in docs:
        buf.append(d)
        if len(buf) == size:
            yield buf
            buf = []
    if buf:
        yield buf


def _read_json(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _pack_label(tokenizer, docs: Iterable[str], budget: int, seq_len: int, dtype: str, bin_path: Path,
                progress_path: Path, checkpoint_bytes: int = CHECKPOINT_BYTES) -> tuple[int, int]:
    """Stream ``<bos> doc <eos>`` into ``bin_path`` as full rows until ``budget`` tokens; return (rows, tokens read).

    Documents are taken until the tokens read reach the budget's whole rows (the document that crosses it is
    the last; what is past the last whole row is dropped). Memory: one tokenizer batch and one row of carry.
    Every ``checkpoint_bytes`` of output the file is fsynced and ``progress_path`` records how many documents
    were consumed, the rows written and the carry, so a killed run continues from there: the file is cut back
    to the recorded rows and the consumed documents are skipped (read again, not tokenized again).
    """
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    n_rows = budget // seq_len
    target = n_rows * seq_len
    row_bytes = seq_len * np.dtype(dtype).itemsize
    state = _read_json(progress_path)
    if state and bin_path.exists() and bin_path.stat().st_size >= state["rows"] * row_bytes:
        if state["complete"]:
            return state["rows"], state["tokens"]
        consumed, rows, total = state["docs"], state["rows"], state["tokens"]
        carry = np.asarray(state["carry"], dtype=dtype)
        fh = open(bin_path, "r+b")
        fh.truncate(rows * row_bytes)
        fh.seek(rows * row_bytes)
    else:
        consumed = rows = total = 0
        carry = np.zeros(0, dtype=dtype)
        fh = open(bin_path, "wb")

    def checkpoint(complete: bool) -> None:
        fh.flush()
        os.fsync(fh.fileno())
        atomic_write_json(progress_path, {"docs": consumed, "rows": rows, "tokens": total,
                                          "carry": carry.tolist(), "complete": complete})

    with fh:
        since = 0
        for batch in _batches(itertools.islice(iter(docs), consumed, None), ENCODE_BATCH):
            ids = tokenizer(batch, add_special_tokens=False)["input_ids"]
            cum = np.cumsum(np.fromiter((len(x) + 2 for x in ids), dtype=np.int64, count=len(ids)))
            need = target - total
            take = len(ids) if cum[-1] < need else int(np.searchsorted(cum, need, side="left")) + 1
            flat = np.fromiter(itertools.chain.from_iterable(part for x in ids[:take] for part in ((bos,), x, (eos,))),
                               dtype=dtype, count=int(cum[take - 1]))
            total += len(flat)
            consumed += take
            buf = np.concatenate([carry, flat]) if len(carry) else flat
            full = min(len(buf) // seq_len, n_rows - rows)
            if full:
                fh.write(memoryview(buf[:full * seq_len]))
                rows += full
                since += full * row_bytes
            carry = buf[full * seq_len:].copy() if rows < n_rows else np.zeros(0, dtype=dtype)
            if total >= target:
                break
            if since >= checkpoint_bytes:
                checkpoint(False)
                since = 0
        checkpoint(True)
    return rows, total


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise on uint64 (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def block_permutation(idx: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Positions ``idx`` of a seeded pseudo-random permutation of ``range(n)``, computed without storing it.

    A balanced Feistel network of ``_FEISTEL_ROUNDS`` rounds (splitmix64 as the round function, round keys from
    ``seed``) permutes the smallest even-bit domain ``2**b >= n``; values that land outside ``range(n)`` are
    mapped again until they fall inside (cycle walking), which keeps it a bijection of ``range(n)``. Any slice
    of the permutation costs time proportional to its length and no memory beyond it.
    """
    idx = np.asarray(idx, dtype=np.uint64)
    if n <= 1:
        return idx.astype(np.int64)
    half = max(1, (int(n - 1).bit_length() + 1) // 2)
    mask = np.uint64((1 << half) - 1)
    keys = np.random.default_rng([seed, 0xB10C]).integers(0, 2**63, size=_FEISTEL_ROUNDS, dtype=np.uint64)

    def rounds(x):
        left, right = x >> np.uint64(half), x & mask
        for k in keys:
            left, right = right, left ^ (_mix64(right ^ k) & mask)
        return (left << np.uint64(half)) | right

    out = rounds(idx)
    outside = out >= np.uint64(n)
    while outside.any():
        out[outside] = rounds(out[outside])
        outside = out >= np.uint64(n)
    return out.astype(np.int64)


def _assemble(tmp: Path, work: Path, rows: list[int], seq_len: int, dtype: str, seed: int,
              buffer_bytes: int = PACK_BUFFER_BYTES, block_rows: int = BLOCK_ROWS) -> None:
    """Write ``tokens.bin`` and ``labels.bin`` into ``tmp`` from the labels' packed files, shuffled by blocks.

    Each label's rows are cut into blocks of ``block_rows`` consecutive rows (its last block shorter). The
    blocks of all labels are put in one pseudo-random order (:func:`block_permutation`) and taken a window at a
    time (as many blocks as fit ``buffer_bytes``); the rows of each window are shuffled together
    (``default_rng(seed)``, one permutation per window, in order) and appended to the output. A set that fits
    one window keeps its blocks in label order and gets one permutation of all its rows: the global shuffle
    (byte-identical to what famlib wrote before packing was streamed). Memory: one window.
    """
    row_bytes = seq_len * np.dtype(dtype).itemsize
    bounds = np.concatenate([[0], np.cumsum([-(-r // block_rows) for r in rows])]).astype(np.int64)
    n_blocks = int(bounds[-1])
    per_window = max(1, buffer_bytes // (block_rows * row_bytes))
    gather = max(1, (4 << 20) // row_bytes)  # rows written per slice of a shuffled window (4 MiB)
    rng = np.random.default_rng(seed)
    buf = np.empty((min(per_window, max(n_blocks, 1)) * block_rows, seq_len), dtype=dtype)
    lab = np.empty(len(buf), dtype=np.uint16)
    files = [open(work / f"{i}.bin", "rb", buffering=0) for i in range(len(rows))]
    try:
        with open(tmp / "tokens.bin", "wb") as ft, open(tmp / "labels.bin", "wb") as fl:
            for w0 in range(0, n_blocks, per_window):
                blocks = np.arange(w0, min(w0 + per_window, n_blocks), dtype=np.int64)
                if n_blocks > per_window:
                    blocks = block_permutation(blocks, n_blocks, seed)
                owners = np.searchsorted(bounds, blocks, side="right") - 1
                n = 0
                for b, i in zip(blocks.tolist(), owners.tolist()):
                    r0 = (b - int(bounds[i])) * block_rows
                    k = min(block_rows, rows[i] - r0)
                    files[i].seek(r0 * row_bytes)
                    got = files[i].readinto(memoryview(buf[n:n + k]).cast("B"))
                    if got != k * row_bytes:
                        raise DataError(f"{work / f'{i}.bin'}: {got} bytes at row {r0}, expected {k * row_bytes} (the "
                                        "packed file is shorter than its record); delete that folder and pack again")
                    lab[n:n + k] = i
                    n += k
                order = rng.permutation(n)
                for j in range(0, n, gather):  # gathered in slices: no second window in memory
                    ft.write(memoryview(buf[order[j:j + gather]]))
                fl.write(memoryview(lab[:n][order]))
    finally:
        for f in files:
            f.close()


def pack_split(out: Path, docs: dict[str, Callable[[], Iterable[str]]], budgets: dict[str, int], tokenizer,
               seq_len: int, seed: int, key: str, *, buffer_bytes: int = PACK_BUFFER_BYTES,
               block_rows: int = BLOCK_ROWS, checkpoint_bytes: int = CHECKPOINT_BYTES) -> TokenSet:
    """Pack one split: each label's documents (``docs[label]()``) up to ``budgets[label]`` tokens, all labels mixed.

    Two passes, both with memory bounded independently of the number of tokens:

    1. each label is tokenized and streamed to its own file in ``.<split>.packing/`` beside ``out``
       (:func:`_pack_label`); a finished label is recorded there and never packed again, an unfinished one
       continues from its last checkpoint;
    2. the labels' rows are shuffled by blocks into ``tokens.bin`` / ``labels.bin`` (:func:`_assemble`) in a
       directory swapped in for ``out`` by renames (:func:`famlib.checkpoint.atomic_directory`), then the work
       folder is deleted. A kill here leaves ``out`` as it was; the next call assembles again.

    ``out`` is reused when its ``meta.json`` carries ``key``. Disk: the set twice while it is assembled.
    """
    from famlib.checkpoint import atomic_directory

    out = Path(out)
    work = out.with_name(f".{out.name}.packing")
    if (_read_json(out / "meta.json") or {}).get("key") == key:
        shutil.rmtree(work, ignore_errors=True)
        return TokenSet(out)
    legacy = out.with_name(out.name + ".partial")  # left by a killed run of the earlier in-memory packing
    if legacy.exists():
        shutil.rmtree(legacy)
    labels = list(docs)
    dtype = _token_dtype(len(tokenizer))
    plan = {"format": _WORK_FORMAT, "key": key, "labels": labels, "seq_len": seq_len, "dtype": dtype}
    if work.exists() and _read_json(work / "plan.json") != plan:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "plan.json").exists():
        atomic_write_json(work / "plan.json", plan)
    rows, available = {}, {}
    for i, label in enumerate(labels):
        done = _read_json(work / f"{i}.done.json")
        if done is None:
            r, a = _pack_label(tokenizer, docs[label](), budgets[label], seq_len, dtype, work / f"{i}.bin",
                               work / f"{i}.progress.json", checkpoint_bytes)
            done = {"rows": r, "available": a}
            atomic_write_json(work / f"{i}.done.json", done)
        rows[label], available[label] = done["rows"], done["available"]
    with atomic_directory(out) as tmp:
        _assemble(tmp, work, [rows[label] for label in labels], seq_len, dtype, seed, buffer_bytes, block_rows)
        used = {label: rows[label] * seq_len for label in labels}
        atomic_write_json(tmp / "meta.json", {
            "key": key, "format": TOKENS_FORMAT, "rows": int(sum(rows.values())), "seq_len": seq_len, "dtype": dtype,
            "labels": labels, "budget_tokens": budgets, "available_tokens": available, "used_tokens": used,
            "short": sorted(label for label in labels if used[label] < budgets[label] - seq_len),
        })
    shutil.rmtree(work, ignore_errors=True)
    return TokenSet(out)


def _seeded_docs(docs_for, label: str, split: str, seed: list[int]) -> Iterable[str]:
    return docs_for(label, split, np.random.default_rng(seed))


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
        wanted = {label: b[split] for label, b in budgets.items()}
        # Each call makes the label's documents anew from its own seed, so a resumed packing sees the same
        # documents in the same order.
        part = 0 if split == "train" else 1
        docs = {label: functools.partial(_seeded_docs, docs_for, label, split, [params.seed, i, part])
                for i, label in enumerate(budgets)}
        ts = pack_split(out, docs, wanted, tokenizer, seq_len, params.seed + (0 if split == "train" else 1), key)
        if ts.meta["short"]:
            warnings.warn(f"{name}/{split}: not enough {split} text for {ts.meta['short']} "
                          f"(used {[ts.meta['used_tokens'][x] for x in ts.meta['short']]} of "
                          f"{[wanted[x] for x in ts.meta['short']]} tokens); the set is smaller than its budget",
                          stacklevel=2)
        result[split] = ts
    return result


def _shuffled(docs: list[str], rng) -> list[str]:
    return [docs[i] for i in rng.permutation(len(docs))]


def build_cpt_set(params: Params, corpus, tokenizer, family: Optional[str], out_dir: Path,
                  replay: float = 0.0) -> dict[str, TokenSet]:
    """Pack the CPT set of one family (or all families for Dense CPT, ``family=None``).

    ``replay``: a share of the training rows given to the probe language's train-split text (label
    ``replay:en``), the rows of the set unchanged (:func:`replay_budget`); 0 packs the plain CPT set. The
    share is in the budgets and so in the set's key: a changed share repacks, and retrains what reads it.

    Returns ``{"train": TokenSet, "validation": TokenSet}``.
    """
    budgets = cpt_budget(params, family)
    name = family or "dense"
    replayed = REPLAY_LABEL.format(lang=params.probe_language)
    if replay:
        budgets, name = replay_budget(params, budgets, replay), f"{name}+replay"

    def docs_for(label, split, rng):
        # replayed rows read the probe language's units of the same split, the train split for training:
        # never the evaluation text, like every CPT language
        lang = params.probe_language if label == replayed else label
        if corpus.streaming:
            return (u["text"] for u in corpus.units(lang, split))
        return _shuffled(documents(corpus, lang, split), rng)

    return _build(name, params, corpus, tokenizer, budgets, docs_for, out_dir)


def build_base_set(params: Params, corpus, tokenizer, out_dir: Path) -> dict[str, TokenSet]:
    """Pack the from-scratch base's pretraining mixture (English, every other language, en<->xx pairs)."""
    budgets = base_budget(params, corpus)

    def docs_for(label, split, rng):
        if ">" in label:
            src, tgt = label.split(">")
            return translation_documents(params, corpus, src, tgt, split, rng)
        return _shuffled(documents(corpus, label, split), rng)

    return _build("base", params, corpus, tokenizer, budgets, docs_for, out_dir)
