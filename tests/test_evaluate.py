"""famlib.evaluate: items, generated lm-eval tasks, the truncation rule, caching, results, paper-scale names.

Everything runs at smoke scale on a tiny random Gemma 3 saved as a Hugging Face directory; the scoring
path of translation is checked with fake lm-eval models that return the reference, nothing, or the source.
"""

from __future__ import annotations

import math

import pytest
import torch

from famlib.config import load_params
from famlib.errors import ConfigError, FamlibError
from famlib.languages import language

# Perplexity on all of the smoke corpus's evaluation text takes minutes on a random model; a cap keeps it
# to seconds and exercises the capped path (documents taken whole, in hash order).
OVERRIDES = {"evaluation.perplexity_max_tokens": 1500}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("eval_runs")
        mp.setenv("FAMLIB_RUNS", str(root))
        yield root


@pytest.fixture(scope="module")
def params(runs):
    return load_params("smoke", OVERRIDES)


@pytest.fixture(scope="module")
def base_dir(runs, params, smoke_tokenizer):
    """A tiny random Gemma3ForCausalLM with the smoke tokenizer, saved as runs/smoke/models/base."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    cfg = Gemma3TextConfig(vocab_size=len(smoke_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=1024,
                           sliding_window=64, pad_token_id=smoke_tokenizer.pad_token_id,
                           bos_token_id=smoke_tokenizer.bos_token_id, eos_token_id=smoke_tokenizer.eos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Gemma3ForCausalLM(cfg)
    out = runs / "smoke" / "models" / "base"
    model.save_pretrained(out)
    smoke_tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def suite(params, smoke_corpus, smoke_tokenizer, runs):
    from famlib.evaluate import build_suite

    return build_suite(params, smoke_corpus, tokenizer=smoke_tokenizer)


@pytest.fixture(scope="module")
def report(params, smoke_corpus, base_dir, suite):
    from famlib.evaluate import evaluate_model

    return evaluate_model(params, "base", corpus=smoke_corpus, batch_size=32, log=lambda *_: None)


# ----------------------------------------------------------------------------------------------------
# The paper's truncation rule
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, kept", [
    ("  Hola mundo\nEnglish: next", "Hola mundo"),
    ("\n\nHola", "Hola"),  # leading whitespace, newlines included, is stripped first
    ("Hola\\nEnglish: x", "Hola"),  # the literal backslash-n of MADLAD-trained models
    ("Hola \\n a\nb", "Hola "),  # whichever comes first
    ("a\nb\\nc", "a"),
    ("no stop at all ", "no stop at all "),
    ("", ""),
    ("   ", ""),
])
def test_truncation_rule(raw, kept):
    from famlib.evaluate import truncate_generation

    assert truncate_generation(raw) == kept


def test_truncation_filter_applies_to_every_response():
    from famlib.evaluate import PaperTruncation

    assert PaperTruncation().apply([[" a\nb", "c\\nd"], ["\te"]], [{}, {}]) == [["a", "c"], ["e"]]


# ----------------------------------------------------------------------------------------------------
# Items
# ----------------------------------------------------------------------------------------------------
def _all_item_sets(params, corpus):
    from famlib.evaluate import items as it

    for lang in params.languages:
        if lang == params.probe_language:
            continue  # no English multiple choice: the candidates would repeat the passage (a test below)
        for task in it.MC_BUILDERS:
            yield task, lang, it.multiple_choice_items(params, corpus, task, lang)
        if lang != params.probe_language:
            for direction in ("en-xx", "xx-en"):
                yield "translation " + direction, lang, it.translation_items(params, corpus, lang, direction)


def test_fewshot_examples_never_overlap_the_test_items(params, smoke_corpus):
    from famlib.evaluate import items as it

    checked = 0
    for task, lang, s in _all_item_sets(params, smoke_corpus):
        test_keys, shot_keys = {x["key"] for x in s.test}, {x["key"] for x in s.fewshot}
        assert test_keys and shot_keys, (task, lang)
        assert not test_keys & shot_keys, (task, lang)
        # whole groups (book / sura / article) apart, so no passage crosses from one pool into the other
        assert not {k.split(".")[0] for k in test_keys} & {k.split(".")[0] for k in shot_keys}, (task, lang)
        answers = {x.get("target") or x["choices"][x["label"]] for x in s.test}
        assert not any(x["query"] in {t["query"] for t in s.test} for x in s.fewshot), (task, lang)
        assert answers, (task, lang)
        checked += 1
    assert checked == 7 * 4  # every language but English: comprehension, reasoning and two directions
    for task in it.MC_BUILDERS:  # smoke has one English Bible: its candidates would be the passage's own verses
        assert it.multiple_choice_items(params, smoke_corpus, task, "en").test == []
    # UDHR-only Catalan has no validation split: few-shot examples come from reserved articles
    pools = it.unit_pools(params, smoke_corpus, "ca")
    assert pools.fewshot_from == "reserved evaluation groups" and pools.reserved_groups
    assert not {u["group"] for u in pools.test} & set(pools.reserved_groups)


@pytest.mark.slow
def test_translation_prompts_fit_a_small_models_context(params, smoke_corpus, smoke_tokenizer):
    """With the models' tokenizer, every translation prompt - the pool's two longest examples before the query -
    fits the positions left after the generation budget; a tighter budget drops the long test pairs (and says
    how many) instead of letting the harness cut the prompt's beginning; without a tokenizer nothing changes."""
    from famlib.evaluate import items as it
    from famlib.prompts import FEWSHOT_DELIMITER, TARGET_DELIMITER

    def n(text):
        return len(smoke_tokenizer(text, add_special_tokens=False)["input_ids"])

    def example(x):
        return x["query"] + TARGET_DELIMITER + x["target"] + FEWSHOT_DELIMITER

    assert it.prompt_budget(params) == 1024 - params.evaluation.max_gen_tokens
    tight = load_params("smoke", {**OVERRIDES, "evaluation.max_gen_tokens": 828})  # 196 tokens of prompt
    dropped = 0
    for p in (params, tight):
        budget = it.prompt_budget(p)
        for lang in ("ru", "es", "ca"):
            for d in ("en-xx", "xx-en"):
                s = it.translation_items(p, smoke_corpus, lang, d, n)
                plain = it.translation_items(p, smoke_corpus, lang, d)
                assert "prompt_budget" not in plain.info and len(plain.test) >= len(s.test)
                assert s.test and len(s.fewshot) >= p.evaluation.shots, (lang, d)
                shots = sorted(s.fewshot, key=lambda x: -n(example(x)))[:p.evaluation.shots]
                over = [x["key"] for x in s.test if n("".join(example(y) for y in shots) + x["query"]) + 1 > budget]
                if s.info["test_may_overflow"]:  # too few would fit: the items are kept, and the overflow counted
                    assert s.test == plain.test and 0 < len(over) <= s.info["test_may_overflow"], (lang, d)
                else:
                    assert over == [], (lang, d)
                    dropped += s.info["test_dropped_too_long"] if p is tight else 0
                if p is params and lang != "ca":  # a Bible pair: its shortest verses make room for all
                    assert not s.info["test_may_overflow"], (lang, d)
            both = [it.translation_items(p, smoke_corpus, lang, d, n) for d in ("en-xx", "xx-en")]
            assert [x["key"] for x in both[0].test] == [x["key"] for x in both[1].test]  # the same pairs both ways
            assert [x["key"] for x in both[0].fewshot] == [x["key"] for x in both[1].fewshot]
    assert dropped > 0  # the tight budget did bind


def test_multiple_choice_prompts_fit_a_small_models_context(params, smoke_corpus, smoke_tokenizer):
    """With the models' tokenizer and a context too small for the longest passages, a multiple-choice item
    is kept only if its query and longest choice fit (after the shots' longest examples); the long ones are
    passed over on the way to the cap and counted, the rest are the same items in the same order; without a
    tokenizer, or without a position limit, nothing is filtered."""
    from famlib.evaluate import items as it
    from famlib.prompts import FEWSHOT_DELIMITER, TARGET_DELIMITER

    def n(text):
        return len(smoke_tokenizer(text, add_special_tokens=False)["input_ids"])

    def longest(x):
        return n(x["query"]) + max(n(TARGET_DELIMITER + c) for c in x["choices"])

    def example(x):
        return n(x["query"]) + n(TARGET_DELIMITER + x["choices"][x["label"]]) + n(FEWSHOT_DELIMITER)

    assert it.context_positions(params) == 1024
    dropped = 0
    wide = load_params("smoke", {**OVERRIDES, "evaluation.max_items": 10**6})
    everything = {(lang, task): it.multiple_choice_items(wide, smoke_corpus, task, lang)  # every item, unfiltered
                  for lang in ("ru", "ca") for task in it.MC_BUILDERS}
    for shots in (0, 1):
        tight = load_params("smoke", {**OVERRIDES, "model.architecture.max_position_embeddings": 400,
                                      "evaluation.mc_shots": shots, "evaluation.max_items": 6})
        for lang in ("ru", "ca"):
            for task in it.MC_BUILDERS:
                fitted = it.multiple_choice_items(tight, smoke_corpus, task, lang, n)
                plain = it.multiple_choice_items(tight, smoke_corpus, task, lang)
                assert "prompt_budget" not in plain.info
                if shots:  # the pool is the shortest examples: none longer than any plain candidate left out
                    assert len(fitted.fewshot) == len(plain.fewshot) and max(map(example, fitted.fewshot)) <= max(
                        map(example, plain.fewshot))
                else:
                    assert fitted.fewshot == plain.fewshot
                room = 400 - 1 - sum(sorted(map(example, fitted.fewshot), reverse=True)[:shots])
                assert all(longest(x) <= room for x in fitted.test), (task, lang)
                # the same items in the same order, the long ones passed over and counted on the way
                every = everything[(lang, task)].test
                order = [x["id"] for x in every]
                kept = [x["id"] for x in fitted.test]
                assert kept == [i for i in order if i in set(kept)] and len(kept) <= 6
                seen = order[:order.index(kept[-1]) + 1] if len(kept) == 6 else order  # full: it stopped there
                too_long = [x for x in every if x["id"] in set(seen) and x["id"] not in set(kept)]
                assert fitted.info["test_dropped_too_long"] == len(too_long) and all(
                    longest(x) > room - 4 for x in too_long), (task, lang)
                dropped += fitted.info["test_dropped_too_long"]
    assert dropped > 0  # the small context did bind
    wide = it.multiple_choice_items(params, smoke_corpus, "passage_verse_4way", "ca", n)
    assert wide.test == it.multiple_choice_items(params, smoke_corpus, "passage_verse_4way", "ca").test


def test_items_are_deterministic_capped_and_well_formed(params, smoke_corpus):
    from famlib.evaluate import items as it

    a, b = list(_all_item_sets(params, smoke_corpus)), list(_all_item_sets(params, smoke_corpus))
    assert [s.test for *_, s in a] == [s.test for *_, s in b]
    assert [s.fewshot for *_, s in a] == [s.fewshot for *_, s in b]
    for task, lang, s in a:
        assert 0 < len(s.test) <= params.evaluation.max_items, (task, lang)
        for x in s.test:
            if "choices" in x:
                assert len(set(x["choices"])) == len(x["choices"]) == (4 if "4way" in task else 2)
        if task not in it.MC_BUILDERS:
            continue
        info = s.info
        xx = {u["key"]: u["text"] for u in smoke_corpus.units(lang, "evaluation", info["text_id"])}
        en = {u["key"]: u["text"] for u in smoke_corpus.units("en", "evaluation", info["probe_text_id"])}
        pool = it.unit_pools(params, smoke_corpus, lang, info["text_id"]).test  # test items' units, in text order
        keys = [u["key"] for u in pool if u["key"] in en]
        prev = {b: a for a, b in zip(keys, keys[1:])}
        for x in s.test:
            assert x["query"].startswith(f"{language(lang).name}: ")
            assert xx[x["key"]] in x["query"]  # the passage ends with the anchor verse, in the asked language
            if task == "verse_match_2way":  # the verse's English rendering against another of its passage
                assert x["choices"][x["label"]] == en[x["key"]]
                assert x["query"].endswith("\nThe same, in English:")
                near = [en[k] for k in keys[max(0, keys.index(x["key"]) - 6):keys.index(x["key"]) + 7]]
                assert x["choices"][1 - x["label"]] in near and x["choices"][1 - x["label"]] != en[x["key"]]
                continue
            if task == "passage_verse_4way":  # one passage verse's English; the others from the chapter, outside it
                assert x["query"].endswith("\nOne of its verses, in English:")
                passage = [prev[prev[x["key"]]], prev[x["key"]], x["key"]]  # three consecutive verses
                assert all(xx[k] in x["query"] for k in passage)
                assert x["answer_key"] in passage and x["choices"][x["label"]] == en[x["answer_key"]]
                others = [c for i, c in enumerate(x["choices"]) if i != x["label"]]
                assert not set(others) & {en[k] for k in passage}
                chapter = {en[k] for k in en if k.rsplit(".", 1)[0] == x["key"].rsplit(".", 1)[0]}
                if info["text_id"].startswith("bible"):
                    assert set(x["choices"]) <= chapter
    # the same verses are asked in every Bible language (order by key, not by language)
    es = it.multiple_choice_items(params, smoke_corpus, "verse_match_2way", "es").test
    fr = it.multiple_choice_items(params, smoke_corpus, "verse_match_2way", "fr").test
    # (each language keeps the keys whose chapter can match its overlaps, so the kept sets differ: 2 of 8 shared)
    for got in (es, fr):
        order = [it._order_key("match", "bible", x["key"]) for x in got]
        assert order == sorted(order) and len(got) >= 5
    assert {x["key"] for x in it.translation_items(params, smoke_corpus, "es", "en-xx").test} == \
        {x["key"] for x in it.translation_items(params, smoke_corpus, "es", "xx-en").test}


def test_perplexity_documents_are_the_training_documents_rule(smoke_corpus, smoke_tokenizer):
    from famlib.data.tokens import documents
    from famlib.evaluate import items as it

    uncapped = load_params("smoke", {"evaluation.perplexity_max_tokens": None})
    for lang in ("en", "ca"):
        docs = it.perplexity_documents(uncapped, smoke_corpus, lang)
        assert [d["text"] for d in docs] == documents(smoke_corpus, lang, "evaluation")
    capped = load_params("smoke", {"evaluation.perplexity_max_tokens": 300})
    docs = it.perplexity_documents(capped, smoke_corpus, "en", smoke_tokenizer)
    sizes = [len(smoke_tokenizer(d["text"], add_special_tokens=False)["input_ids"]) for d in docs]
    assert sum(sizes[:-1]) < 300 <= sum(sizes) or len(docs) == 1


# ----------------------------------------------------------------------------------------------------
# Which model answers for which language
# ----------------------------------------------------------------------------------------------------
def test_evaluation_languages_follow_the_paper(params):
    from famlib.config import PER_FAMILY_STRATEGIES
    from famlib.evaluate import answering_model, evaluation_languages, model_identity, model_languages

    for strategy in PER_FAMILY_STRATEGIES:
        assert evaluation_languages(params, strategy, "slavic") == ["en", "ru", "uk", "pl"]
        assert answering_model(params, strategy, "it") == f"{strategy}.romance"
        with pytest.raises(ConfigError, match="one model per family"):
            evaluation_languages(params, strategy)
    for strategy in ("base", "dense", "dense_reverted", "soup", "freeze_soup"):
        assert evaluation_languages(params, strategy) == params.languages
        assert answering_model(params, strategy, "it") == strategy
    with pytest.raises(ConfigError, match="no family"):
        evaluation_languages(params, "dense", "slavic")
    with pytest.raises(ConfigError, match="Did you mean 'slavic'"):
        evaluation_languages(params, "expert", "slavik")
    assert model_identity(params, "expert.romance") == ("expert", "romance")
    assert model_languages(params, "l2sp.romance") == ["en", "es", "fr", "it", "ca"]
    assert model_languages(params, "soup") == params.languages
    assert model_identity(params, "dense_reverted") == ("dense_reverted", None)
    assert model_identity(params, "interp.middle.0.5", strategy="dense") == ("dense", None)
    with pytest.raises(FamlibError, match="Did you mean 'expert'"):
        model_identity(params, "exprt.romance")
    with pytest.raises(FamlibError, match="one model per family"):
        model_identity(params, "freeze")
    with pytest.raises(ConfigError, match="Did you mean 'slavic'"):
        model_identity(params, "freeze.slavik")


# ----------------------------------------------------------------------------------------------------
# End to end at smoke scale, results and cache
# ----------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_every_task_runs_end_to_end(report, suite, params):
    from famlib.evaluate import COLUMNS, load_results

    rows = report.rows
    assert set(report.ran) == {"perplexity", "comprehension", "reasoning", "translation"} and not report.cached
    # every language has every axis at smoke scale, but English has no multiple choice (one English text: the
    # candidates would be the passage's own verses) and UDHR-only Catalan's few articles make too few
    # overlap-matched pairs for the reasoning task
    assert sorted(suite.skipped) == ["famlib_passage_verse_4way_en", "famlib_verse_match_2way_ca",
                                     "famlib_verse_match_2way_en"]
    assert "test items (at least" in suite.skipped["famlib_verse_match_2way_ca"]
    per_language = rows.groupby("language")["harness_task"].nunique().to_dict()
    assert per_language == {lang: {"en": 1, "ca": 4}.get(lang, 5) for lang in params.languages}
    got = set(zip(rows["harness_task"], rows["metric"]))
    for name, entry in suite.tasks.items():
        from famlib.evaluate.suite import TASKS

        for metric in TASKS[entry["task"]].metrics:
            assert (name, metric) in got, (name, metric)
    assert rows["value"].map(math.isfinite).all()
    assert set(rows["split"]) == {"base", "held_in", "held_out"} and set(rows["expert_family"]) == {"all"}
    assert rows.groupby(["harness_task"])["primary"].sum().eq(1).all()
    ppl = rows[(rows.task == "perplexity") & (rows.metric == "token_perplexity")]
    assert ppl["value"].between(0.5 * 1024, 2 * 1024).all()  # a random model: about the vocabulary size
    table = load_results("smoke")
    assert list(table.columns) == COLUMNS
    assert len(table) == len(rows) and table["limit"].isna().all()


@pytest.mark.slow
def test_random_model_accuracies_sit_near_chance(smoke_corpus, base_dir, tmp_path, monkeypatch):
    from famlib.evaluate import evaluate_model

    monkeypatch.setenv("FAMLIB_RUNS", str(tmp_path))  # other items: its own suite and results, apart
    # zero-shot: shorter prompts, a faster test; the few-shot path is covered end to end above
    many = load_params("smoke", {**OVERRIDES, "evaluation.max_items": 40, "evaluation.shots": 0})
    r = evaluate_model(many, "base", model_dir=base_dir, corpus=smoke_corpus, axes=["comprehension", "reasoning"],
                       batch_size=32, log=lambda *_: None)
    from famlib.evaluate.gates import clustered_accuracy
    from famlib.evaluate.records import read_items

    primary = r.rows[r.rows["primary"].astype(bool)]
    for task, g in primary.groupby("task_name"):
        recs = [x for t in g["harness_task"] for x in read_items("smoke", "base", t)]
        acc, se, n, keys = clustered_accuracy(recs)
        chance = g["chance"].iloc[0]
        assert n >= 200 and keys >= 40, task
        # design.md's gate: a randomly initialised model scores at chance, within 2 standard errors
        assert abs(acc - chance) <= 2 * se, (task, acc, se, chance)


def test_the_harness_task_index_is_built_once_per_suite(suite, monkeypatch):
    """lm-eval's TaskManager (about 20 s of indexing at the paper scale) is built once per suite and process, not
    per axis or per task of a rerun; a rebuilt suite (another key) gets a fresh one."""
    import dataclasses

    import lm_eval.tasks

    from famlib.evaluate import run as run_mod

    built = []

    class Counting(lm_eval.tasks.TaskManager):
        def __init__(self, *args, **kwargs):
            built.append(kwargs.get("include_path"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(lm_eval.tasks, "TaskManager", Counting)
    monkeypatch.setattr(run_mod, "_TASK_MANAGERS", {})
    first = run_mod.task_manager(suite)
    assert run_mod.task_manager(suite) is first and built == [str(suite.path)]
    rebuilt = dataclasses.replace(suite, manifest={**suite.manifest, "key": "another"})
    assert run_mod.task_manager(rebuilt) is not first and len(built) == 2
    assert "famlib_heldout_perplexity_en" in first.all_tasks


@pytest.mark.slow
def test_a_failing_task_is_recorded_by_name_and_does_not_take_its_axis_down(params, suite, smoke_corpus, base_dir,
                                                                              tmp_path, monkeypatch):
    from famlib.evaluate import load_failures, load_results
    from famlib.evaluate import results as res
    from famlib.evaluate import run as run_mod
    from famlib.evaluate.results import failed_path

    # the module's suite (built once), results of its own: the other tests' table stays as they left it
    monkeypatch.setattr(res, "results_dir", lambda scale: tmp_path / scale / "results")
    p = params
    langs = [p.probe_language] + [lang for lang in p.languages if lang != p.probe_language][:2]
    names = [f"famlib_heldout_perplexity_{lang}" for lang in langs]
    bad = names[-1]
    real, calls, logs = run_mod.run_harness, [], []

    def harness(lm, tasks, *args, broken=(bad,), **kwargs):  # lm-eval's way: one bad task fails the whole call
        calls.append(list(tasks))
        hit = [t for t in tasks if t in broken]
        if hit:
            raise FileNotFoundError(f"FLORES+ has no configuration for {hit[0]}\n(the dataset's list)")
        return real(lm, tasks, *args, **kwargs)

    monkeypatch.setattr(run_mod, "run_harness", harness)

    def evaluate(**kw):
        return run_mod.evaluate_model(p, "base", model_dir=base_dir, corpus=smoke_corpus, axes=["perplexity"],
                                      languages=langs, batch_size=32, log=logs.append, **kw)

    r = evaluate()
    assert calls == [names] + [[n] for n in names]  # together first, then each alone
    error = f"FileNotFoundError: FLORES+ has no configuration for {bad} (the dataset's list)"  # one line
    assert r.failed == {bad: error}
    assert r.ran == {"perplexity": names[:-1]} and set(r.rows["harness_task"]) == set(names[:-1])
    assert any(bad in line and "failed" in line for line in logs)
    table, failures = load_results("smoke"), load_failures("smoke")
    assert set(table["harness_task"]) == set(names[:-1]) and table["value"].notna().all()
    assert failures[["harness_task", "task", "language", "error"]].values.tolist() == [
        [bad, "perplexity", langs[-1], error]]
    from famlib.report import _what_ran  # and the report says so

    assert f"Tasks that failed (1, `results_failed.csv`):** base `{bad}`: {error}" in _what_ran(p, table, None, None)
    # the next evaluation measures the others from the cache and tries the failed task again
    calls.clear()
    monkeypatch.setattr(run_mod, "run_harness", real)
    again = evaluate()
    assert again.ran == {"perplexity": [bad]} and again.cached == {"perplexity": names[:-1]} and not again.failed
    assert set(load_results("smoke")["harness_task"]) == set(names) and not failed_path("smoke").exists()
    # every task failing is not one task's fault: nothing was measured, and that is an error
    monkeypatch.setattr(run_mod, "run_harness", lambda *a, **k: harness(*a, broken=names, **k))
    with pytest.raises(FamlibError, match=r"every task failed.*famlib_heldout_perplexity_"):
        evaluate(force=True)


def test_cache_skips_done_work_and_notices_new_weights(report, params, smoke_corpus, base_dir, monkeypatch):
    from famlib.evaluate import evaluate_model, load_results
    from famlib.evaluate import run as run_mod

    before = load_results("smoke")

    def boom(*a, **k):
        raise AssertionError("the harness ran although every result was cached")

    monkeypatch.setattr(run_mod, "run_harness", boom)
    again = evaluate_model(params, "base", corpus=smoke_corpus, log=lambda *_: None)
    assert not again.ran and sum(map(len, again.cached.values())) == report.rows["harness_task"].nunique()
    assert again.rows.equals(report.rows)
    assert len(load_results("smoke")) >= len(before)
    monkeypatch.undo()

    # other weights under the same id: the cached results no longer apply
    from transformers import AutoModelForCausalLM

    changed = base_dir.parent / "dense"
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    with torch.no_grad():
        model.model.norm.weight.add_(0.5)
    model.save_pretrained(changed)
    (changed / "famlib_provenance.json").write_text('{"strategy": "dense"}')
    for f in base_dir.glob("tokenizer*"):
        (changed / f.name).write_bytes(f.read_bytes())
    r = evaluate_model(params, "dense", corpus=smoke_corpus, axes=["comprehension"], languages=["es"], log=lambda *_: None)
    assert r.ran == {"comprehension": ["famlib_passage_verse_4way_es"]}
    assert r.rows["model_sha256"].iloc[0] != report.rows["model_sha256"].iloc[0]
    assert set(load_results("smoke")["model"]) == {"base", "dense"}
    with pytest.raises(FamlibError, match="Models present: base, dense"):
        evaluate_model(params, "soup", corpus=smoke_corpus, log=lambda *_: None)
    with pytest.raises(FamlibError, match="not one that model 'dense'"):
        evaluate_model(params, "dense", corpus=smoke_corpus, languages=["xx"], log=lambda *_: None)


# ----------------------------------------------------------------------------------------------------
# Translation scoring with fake models
# ----------------------------------------------------------------------------------------------------
class _Scripted:
    """An lm-eval LM that writes, for every translation document, what ``answer(doc)`` returns."""

    def __new__(cls, answer):
        from lm_eval.api.model import LM

        class Scripted(LM):
            def generate_until(self, requests, disable_tqdm=False):
                return [answer(r.doc) for r in requests]

            def loglikelihood(self, requests, disable_tqdm=False):
                raise NotImplementedError

            def loglikelihood_rolling(self, requests, disable_tqdm=False):
                raise NotImplementedError

        return Scripted()


@pytest.mark.parametrize("answer, expect", [
    (lambda d: " " + d["target"] + "\nEnglish: more", lambda chrf, e: chrf == pytest.approx(100.0)),
    (lambda d: d["target"] + "\\nEnglish: more", lambda chrf, e: chrf == pytest.approx(100.0)),
    (lambda d: "", lambda chrf, e: chrf < 1.0 and chrf == pytest.approx(e["empty_baseline"])),
    (lambda d: "\\n" + d["target"], lambda chrf, e: chrf < 1.0),  # the rule cuts before the reference
    (lambda d: d["source"], lambda chrf, e: chrf == pytest.approx(e["copy_baseline"])),
])
def test_translation_scoring_path(answer, expect, suite, params):
    from famlib.evaluate.run import run_harness

    tasks = ["famlib_translation_en-es", "famlib_translation_ru-en"]
    out = run_harness(_Scripted(answer), tasks, suite, params)
    for t in tasks:
        chrf = out["results"][t]["chrf,paper_truncation"]
        assert expect(chrf, suite.tasks[t]), (t, chrf)


def test_results_merge_is_atomic_and_keeps_the_schema(runs):
    from famlib.evaluate import COLUMNS, load_results, merge_results
    from famlib.evaluate.results import write_part

    write_part("other", "m", "t", "k", [{"model": "m", "task": "reasoning", "metric": "acc", "value": 0.5, "n": 4}])
    path = merge_results("other")
    assert not list(path.parent.glob(".results.csv.*"))  # no temporary file left behind
    table = load_results("other")
    assert list(table.columns) == COLUMNS and table["value"].tolist() == [0.5]


# ----------------------------------------------------------------------------------------------------
# Paper scale: lm-eval's real task names
# ----------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.xdist_group("lm_eval_index")
def test_paper_task_names_exist_in_the_harness_registry(harness_tasks):
    from lm_eval.tasks._yaml_loader import load_yaml  # how the harness itself reads a task YAML
    from lm_eval.utils import apply_template

    from famlib.evaluate import paper

    p = load_params("paper")
    tasks, gaps = paper.paper_tasks(p)
    manager = harness_tasks  # what `famlib doctor` checks (paper.harness_task_manager); indexing needs no network
    registry = set(manager.all_tasks)
    assert paper.unresolved_tasks(p, registry) == []
    assert paper.unresolved_tasks(p, registry - {paper.belebele_task("pl")}) == [paper.belebele_task("pl")]
    # the gaps are real: the paper's own, and the names the harness really lacks
    assert {"reasoning/lv", "reasoning/or", "reasoning/ilo", "reasoning/mg", "comprehension/de"} <= set(gaps)
    assert not any(t.language == "de" for t in tasks)
    assert paper.belebele_task("fy") not in registry and paper.global_piqa_task("ceb") not in registry
    assert all(paper.belebele_task(lang) not in registry for (axis, lang) in paper.HARNESS_GAPS if axis == "comprehension")
    assert all(paper.global_piqa_task(lang) not in registry for (axis, lang) in paper.HARNESS_GAPS if axis == "reasoning")
    every = {(t.axis, t.language, t.direction) for t in tasks}
    for lang in p.languages:
        if lang not in ("en", "de", "fy"):  # fy: FLORES has no Western Frisian (gaps["translation/fy"])
            assert ("translation", lang, "en-xx") in every and ("translation", lang, "xx-en") in every
    # a FLORES config renders its prompt from a local stand-in document and names the truncation filter
    cfg = load_yaml(manager.task_index[paper.flores_task("en", "pl")].yaml_path)
    doc = paper.flores_row("en", "pl", "The cat sleeps.", "Kot śpi.")
    assert apply_template("{{" + cfg["doc_to_text"] + "}}", doc) == "English: The cat sleeps.\nPolish:"
    assert doc[cfg["doc_to_target"]] == "Kot śpi." and cfg["generation_kwargs"]["until"] == [] and cfg["generation_kwargs"]["famlib_paper_stop"] is True
    assert cfg["fewshot_split"] == "dev" and cfg["test_split"] == "devtest"
    truncation = cfg["filter_list"][0]["filter"][0]["function"]
    assert truncation().apply([[" Kot śpi.\\nEnglish:"]], [doc]) == [["Kot śpi."]]
    assert cfg["metadata"]["src_flores"] == "eng_Latn" and cfg["metadata"]["tgt_flores"] == "pol_Latn"


def _requests(tokenizer, contexts_and_choices):
    out = []
    for context, choices in contexts_and_choices:
        ctx = tokenizer(context, add_special_tokens=True)["input_ids"]
        for choice in choices:
            out.append(((context, " " + choice), ctx, tokenizer(" " + choice, add_special_tokens=False)["input_ids"]))
    return out


def test_shared_prefix_scores_equal_the_harness(base_dir, smoke_corpus):
    """SharedPrefixLM (context run once per item, prefixes batched with left padding) gives the parent
    HFLM's log-likelihoods and greedy flags: contexts longer than the sliding window, contexts of different
    lengths in one batch, groups of 2 and 4 choices, a lone request and an over-long group (both of which
    take the parent's path)."""
    from lm_eval.models.huggingface import HFLM

    from famlib.evaluate.lm import SharedPrefixLM
    from famlib.evaluate.run import load_model

    model, tok = load_model(base_dir, "float32", device="cpu")
    verses = [u["text"] for u in smoke_corpus.units("en", "train")][:12]
    items = [(" ".join(verses[i:i + 1 + i % 4]), [verses[i + 5][:20 + 7 * k] for k in range(2 + 2 * (i % 2))])
             for i in range(6)]
    items.append((verses[8], [verses[9]]))  # a context no other request shares
    items.append((" ".join(verses) * 3, ["a", "b c"]))  # longer than max_length: the parent truncates it
    requests = _requests(tok, items)
    assert max(len(r[1]) for r in requests[:-3]) > model.config.sliding_window
    parent = HFLM(pretrained=model, tokenizer=tok, batch_size=4, max_length=200)
    shared = SharedPrefixLM(pretrained=model, tokenizer=tok, batch_size=5, max_length=200)
    want = parent._loglikelihood_tokens(requests, disable_tqdm=True)
    got = shared._loglikelihood_tokens(requests, disable_tqdm=True)
    assert len(got) == len(want) == len(requests)
    for (lp_w, greedy_w), (lp_g, greedy_g) in zip(want, got):
        assert lp_g == pytest.approx(lp_w, abs=1e-3)  # float32: observed max difference ~6e-5
        assert greedy_g == greedy_w


def test_log_softmax_is_float32_on_every_axis(base_dir, params):
    """lm-eval takes the log-softmax in the model's dtype unless told; in bf16 that moved multiple-choice
    log-likelihoods by 0.19 nats on average. Every harness view famlib builds asks for float32."""
    from famlib.evaluate.run import _lm, load_model
    from famlib.evaluate.suite import AXES

    model, tok = load_model(base_dir, "bfloat16", device="cpu")
    for axis in AXES:
        assert _lm(model, tok, params, axis, 200, 4).softmax_dtype == torch.float32, axis


def test_a_long_perplexity_window_reads_each_document_whole_from_bos(base_dir, smoke_corpus):
    """With ``evaluation.perplexity_window`` longer than a document, the harness's rolling log-likelihood
    is the document read in one pass after ``<bos>``; at the default window (``data.seq_len`` = 64) later
    windows start mid-text without ``<bos>`` and the value differs. Only perplexity's cache key moves."""
    from lm_eval.api.instance import Instance

    from famlib.evaluate.run import _lm, load_model, perplexity_batch_size, settings

    long = load_params("smoke", {**OVERRIDES, "evaluation.perplexity_window": 256})
    short = load_params("smoke", OVERRIDES)
    model, tok = load_model(base_dir, "float32", device="cpu")
    verses = [u["text"] for u in smoke_corpus.units("en", "train")]
    docs = [" ".join(verses[i:i + 4]) for i in (0, 4, 8)]
    lengths = [len(tok(d, add_special_tokens=False)["input_ids"]) for d in docs]
    assert all(64 < n < 255 for n in lengths), lengths  # several 64-token windows, one 256-token window

    def direct(text):
        ids = [tok.bos_token_id] + tok(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits.float(), -1)[0, :-1]
        return float(logp.gather(1, torch.tensor(ids[1:])[:, None]).sum())

    requests = [Instance("loglikelihood_rolling", {}, (d,), i) for i, d in enumerate(docs)]
    lm = _lm(model, tok, long, "perplexity", None, 16)
    assert (lm.max_length, lm.batch_size) == (256, perplexity_batch_size(long, 16)) == (256, 4)
    got = lm.loglikelihood_rolling(requests, disable_tqdm=True)
    want = [direct(d) for d in docs]
    assert got == pytest.approx(want, abs=1e-3)
    rolled = _lm(model, tok, short, "perplexity", None, 16).loglikelihood_rolling(requests, disable_tqdm=True)
    assert all(abs(r - w) > 1e-2 for r, w in zip(rolled, want))

    for axis in ("comprehension", "reasoning", "translation"):
        assert settings(long, None, None, axis) == settings(short, None, None, axis)
    assert settings(long, None, None, "perplexity") != settings(short, None, None, "perplexity")
    # (translation: the same shots as perplexity's; multiple choice has its own, evaluation.mc_shots)
    assert settings(short, None, None, "perplexity") == settings(short, None, None, "translation")


def test_a_perplexity_window_beyond_the_model_is_refused(base_dir):
    from famlib.evaluate.run import _lm, load_model

    model, tok = load_model(base_dir, "float32", device="cpu")  # max_position_embeddings 1024
    params = load_params("smoke", {"evaluation.perplexity_window": 2048})
    with pytest.raises(ConfigError, match=r"evaluation\.perplexity_window.*2048.*max_position_embeddings, 1024"):
        _lm(model, tok, params, "perplexity", None, 16)
    with pytest.raises(ConfigError, match=r"evaluation\.perplexity_window.*1.*at least 2"):
        load_params("smoke", {"evaluation.perplexity_window": 1})


def test_only_the_expected_harness_notices_are_dropped(caplog):
    """lm-eval warns, per task and per axis, about choices famlib makes on purpose (2 shots for tasks that
    set none; a model passed as an object): those exact messages are dropped while the filter is on, and
    nothing else (a task whose own default is overridden still says so)."""
    import logging

    from famlib.evaluate.run import ExpectedNotices

    ev, hf = logging.getLogger("lm_eval.evaluator"), logging.getLogger("lm_eval.models.huggingface")
    with caplog.at_level(logging.WARNING):
        with ExpectedNotices(2):
            ev.warning("Overwriting default num_fewshot of %s from %s to %s", "famlib_x", None, 2)
            ev.warning("Overwriting default num_fewshot of %s from %s to %s", "belebele_x", 5, 2)
            ev.warning("Overwriting default num_fewshot of %s from %s to %s", "famlib_x", None, 3)
            hf.warning("`pretrained` model kwarg is not of type `str`. Many other model arguments may be ignored.")
            hf.warning("Passed an already-initialized model through `pretrained`, assuming single-process call")
            hf.warning("something else")
        ev.warning("Overwriting default num_fewshot of %s from %s to %s", "famlib_y", None, 2)
    assert [r.getMessage() for r in caplog.records] == [
        "Overwriting default num_fewshot of belebele_x from 5 to 2",
        "Overwriting default num_fewshot of famlib_x from None to 3",
        "something else",
        "Overwriting default num_fewshot of famlib_y from None to 2",  # the filter is gone after the block
    ]
    assert not ev.filters and not hf.filters


def test_tqdm_disable_silences_the_harness_bars(base_dir, params, capsys, monkeypatch):
    """lm-eval passes ``disable=`` to its bars, which overrides tqdm's own TQDM_DISABLE; famlib's view of the
    model honours the variable (set by the pipeline for its kernels) on every request type."""
    from lm_eval.api.instance import Instance

    from famlib.evaluate.run import _lm, load_model

    model, tok = load_model(base_dir, "float32", device="cpu")
    rolling = [Instance("loglikelihood_rolling", {}, ("in the beginning " * 30,), 0)]
    choice = [Instance("loglikelihood", {}, ("in the", " beginning"), 0)]
    generate = [Instance("generate_until", {}, ("in the", {"until": ["\n"], "max_gen_toks": 3}), 0)]
    for quiet in ("1", "0"):
        monkeypatch.setenv("TQDM_DISABLE", quiet)
        lm = _lm(model, tok, params, "translation", 200, 4)
        capsys.readouterr()
        lm.loglikelihood_rolling(rolling)
        lm.loglikelihood(choice)
        lm.generate_until(generate)
        bars = capsys.readouterr().err
        for name in ("Running loglikelihood requests", "Running generate_until requests"):
            assert (name in bars) == (quiet == "0"), (quiet, name)


def test_generation_batching_check_runs_on_the_smoke_suite(base_dir, suite, capsys):
    """benchmarks/check_generation_batching.py (the bf16 batch-dependence measurement) stays runnable: it
    reads the scale's suite and model, runs both translation directions per dtype and batch size, and
    counts changed outputs against the first batch size, which must be 0 for the first one itself."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "check_generation_batching.py"
    spec = importlib.util.spec_from_file_location("check_generation_batching", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    threads = str(torch.get_num_threads())  # the script sets torch's threads: keep the suite's
    assert bench.main(["--scale", "smoke", "--model", "base", "--language", "ru", "--dtypes", "float32",
                       "--batch-sizes", "4", "8", "--threads", threads]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("float32")]
    assert len(lines) == 2
    assert "famlib_translation_en-ru" in lines[0] and "famlib_translation_ru-en" in lines[0]
    assert lines[0].count(" 0/") == 2  # the first batch size against itself
    with pytest.raises(SystemExit, match="no translation task for language 'xx'"):
        bench.main(["--scale", "smoke", "--model", "base", "--language", "xx"])


# ----------------------------------------------------------------------------------------------------
# Per-item records and the paired evidence built on them
# ----------------------------------------------------------------------------------------------------
def test_item_records_round_trip_and_agree_with_the_aggregate_rows(report, params, suite):
    import sacrebleu

    from famlib.evaluate import load_results
    from famlib.evaluate.records import items_path, read_items

    table = load_results("smoke")
    primary = table[table["primary"].astype(bool) & (table["model"] == "base")]
    assert len(primary)
    for r in primary.itertuples():
        recs = read_items("smoke", "base", r.harness_task)
        assert recs and items_path("smoke", "base", r.harness_task).name.endswith(".jsonl.gz")
        assert len(recs) == r.n and {x["language"] for x in recs} == {r.language}
        assert all(x["key"] for x in recs) and len({x["id"] for x in recs}) == len(recs)
        if r.task in ("comprehension", "reasoning"):
            assert r.metric == "acc_mutual_info"
            assert sum(x["correct_pmi"] for x in recs) / len(recs) == pytest.approx(r.value)
            for x in recs:  # what was asked and answered, whole
                assert x["context"].endswith(x["context"].split("\n")[-1]) and len(x["ll"]) == len(x["choices"])
                assert x["pmi"] == pytest.approx([c - u for c, u in zip(x["ll"], x["ll_uncond"])])
                assert x["correct"] == (x["pred"] == x["gold"])
        elif r.task == "translation":
            chrf = sacrebleu.corpus_chrf([x["hypothesis"] for x in recs], [[x["reference"] for x in recs]]).score
            assert chrf == pytest.approx(r.value)
            assert r.empty_rate == pytest.approx(sum(x["empty"] for x in recs) / len(recs))
        else:
            bpb = -sum(x["ll"] for x in recs) / (math.log(2) * sum(x["n_bytes"] for x in recs))
            assert bpb == pytest.approx(r.value)
    # the truncation count the report shows is the records' count, and no translation prompt was cut
    assert (primary["truncated"] == [sum(x["truncated"] for x in read_items("smoke", "base", t))
                                     for t in primary["harness_task"]]).all()
    mc = primary[primary["task"].isin(["comprehension", "reasoning"])]
    assert len(mc) and (mc["truncated"] == 0).all(), mc[mc["truncated"] > 0][["harness_task", "truncated"]]  # all fit
    for r in primary[primary["task"] == "translation"].itertuples():  # cut only where the suite said it may be
        assert r.truncated <= suite.tasks[r.harness_task]["info"]["test_may_overflow"], r.harness_task


def test_paired_evidence_is_zero_for_a_model_against_itself_and_deterministic(report, params):
    from famlib.evaluate import load_results
    from famlib.evidence import Evidence

    results = load_results("smoke")
    ev = Evidence(params, results, iters=200)
    for axis in ("perplexity", "comprehension", "reasoning", "translation"):
        g = ev.present(["base"], axis, ev.groups("held_in", probe=axis == "comprehension"))  # no English MC rows
        iv = ev.diff("base", "base", axis, g)
        assert (iv.estimate, iv.low, iv.high) == (0.0, 0.0, 0.0), axis
        one = ev.score("base", axis, g)
        assert one.low <= one.estimate <= one.high and one.low < one.high, axis
        again = Evidence(params, results, iters=200).score("base", axis, g)
        assert (again.low, again.high) == (one.low, one.high), axis
    assert ev.score("dense", "comprehension", ev.groups("held_in")) is None  # no such model: not measured


@pytest.mark.slow
def test_shortcut_baselines_stay_near_chance_on_the_smoke_corpus(smoke_corpus):
    """design.md's gate: no baseline that needs no language model beats chance + 0.10 (per split)."""
    from famlib.evaluate import items as it
    from famlib.evaluate.shortcuts import BASELINES, baseline_scores, train_shortcut_lm
    from famlib.evaluate.suite import TASKS

    p = load_params("smoke", {"evaluation.max_items": 200})
    seen = 0
    for task, builder in it.MC_BUILDERS.items():
        chance = TASKS[task].chance
        by_split: dict = {}
        for lang in p.languages:
            s = it.multiple_choice_items(p, smoke_corpus, task, lang)
            if not s.test:
                continue
            lm = train_shortcut_lm(p, smoke_corpus, s.info["text_id"], s.info["probe_text_id"])
            scores = baseline_scores(s.test, lm, s.fewshot)
            by_split.setdefault(p.split_of(lang), []).append((len(s.test), scores))
            seen += 1
        for split, rows in by_split.items():
            n = sum(k for k, _ in rows)
            for b in BASELINES:
                mean = sum(k * sc[b] for k, sc in rows) / n
                assert mean <= chance + 0.10, (task, split, b, mean, n)
    assert seen >= 12


def test_shortcut_baselines_catch_a_task_that_gives_itself_away():
    """The baselines can fail: items whose answer is always the longest, the first, or the one repeating the
    passage are caught."""
    from famlib.evaluate.shortcuts import TrigramLM, baseline_scores

    lm = TrigramLM(["the cat sat on the mat", "a dog ran in the park"] * 20)
    items = [{"query": f"English: word{i} alpha beta gamma\nNext, in English:",
              "choices": [f"word{i} alpha beta gamma delta epsilon", "zzz", "qqq y", "rr"], "label": 0}
             for i in range(40)]
    got = baseline_scores(items, lm, items[:8])
    assert got["char_overlap"] == 1.0 and got["position"] == 1.0 and got["length"] == 1.0
    # a short choice copied out of a long passage: its Jaccard overlap is small, its containment 1
    long = " ".join(f"filler{j} text{j}" for j in range(60))
    copied = [{"query": f"English: {long} the copied verse {i} is here\nOne of its verses, in English:",
               "choices": ["some other words entirely", f"the copied verse {i} is here", "nothing alike at all",
                           "a longer choice that shares " + " ".join(f"filler{j} text{j}" for j in range(1, 12))],
               "label": 1} for i in range(20)]
    got = baseline_scores(copied, lm, copied[:4])
    assert got["char_containment"] == 1.0 and got["char_overlap"] == 0.0  # Jaccard prefers the long sharer


def test_trigram_probabilities_match_a_direct_count_and_parts_add_up():
    """The trigram's counts (Counter over zipped slices) equal a direct count of every (history, word) of the
    padded sentences, its probabilities follow interpolated absolute discounting from those counts, and a
    model built from two texts' separate counts is the model of their sentences together."""
    import math
    from collections import Counter

    from famlib.evaluate import shortcuts as sc

    a = ["the cat sat on the mat", "the cat ran", "a dog sat on the cat"]
    b = ["the dog ran in the park", "a cat sat", "the mat is red"]
    lm = sc.TrigramLM(a + b)
    direct = [Counter() for _ in range(sc.ORDER)]
    for s in a + b:
        toks = [sc.BOS] * (sc.ORDER - 1) + sc.words(s) + [sc.EOS]
        for i in range(sc.ORDER - 1, len(toks)):
            for k in range(sc.ORDER):
                direct[k][tuple(toks[i - k:i + 1])] += 1
    assert lm.grams == direct
    both = sc.TrigramLM(parts=[sc.count_ngrams(a), sc.count_ngrams(b)])
    assert both.grams == lm.grams and both._sums == lm._sums

    def prob(hist, w):  # the definition, from the direct counts
        uni = direct[0]
        p = (uni[(w,)] + 1) / (sum(uni.values()) + len(uni) + 1)
        for k in (1, 2):
            h = tuple(hist[-k:])
            nexts = {g[-1]: c for g, c in direct[k].items() if g[:-1] == h}
            if not nexts:
                continue
            n = sum(nexts.values())
            p = max(nexts.get(w, 0) - sc.DISCOUNT, 0) / n + sc.DISCOUNT * len(nexts) / n * p
        return p

    for hist, w in [(["the", "cat"], "sat"), (["on", "the"], "mat"), (["zz", "the"], "dog"), ([], "red"),
                    (["a", "cat"], "flew")]:
        assert math.isclose(lm.prob([sc.BOS, sc.BOS] + hist, w), prob([sc.BOS, sc.BOS] + hist, w), rel_tol=1e-12)


def test_the_gate_table_reads_a_zero_width_base_interval_without_dividing_by_it():
    """A few items all scored alike (smoke's 8 English items) give every bootstrap draw the same accuracy:
    the table says so instead of raising ZeroDivisionError (the failure that stopped the smoke pipeline)."""
    import pandas as pd

    from famlib.evaluate.gates import gates_markdown

    row = {"task": "passage_verse_4way", "axis": "comprehension", "chance": 0.25, "languages": 2, "items": 16,
           "shortcut_max": 0.3, "shortcut_max_is": "trigram (held_in)", "shortcut_gate": "passes",
           "random_n": 0, "random_gate": "not measured",
           "base_held_in": 0.5, "base_held_in_low": 0.3, "base_held_in_high": 0.7, "base_held_in_se": 0.1,
           "base_held_in_gate": "fails", "base_english": 1.0, "base_english_low": 1.0, "base_english_high": 1.0,
           "base_english_se": 0.0, "base_english_gate": "passes"}
    text = gates_markdown(pd.DataFrame([row]))
    assert "2.5 s.e. above chance: fails" in text
    assert "1.000 [1.000, 1.000], a zero-width interval (every bootstrap draw alike): passes" in text
