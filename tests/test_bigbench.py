"""The English comprehension row from BIG-bench's task files: fetching, extraction, items, and the suite's row.

The real sdist is 358 MB; these tests build a small tarball of the same layout (``bigbench-1.0.0/bigbench/
benchmark_tasks/<task>/task.json`` beside other files, as the package has) and pin its checksum in place
of the real one, so the loading code that runs is the real one, on a file that costs nothing to fetch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile
from collections import Counter

import pytest

from famlib.errors import ChecksumError, DataError
from famlib.evaluate import bigbench as bb


def _task(n: int, k: int = 3, gold_last: bool = True) -> dict:
    ex = []
    for i in range(n):
        choices = [f"wrong answer {j} of example {i}" for j in range(k - 1)]
        right = f"the right answer to question {i}"
        scores = {c: 0 for c in choices}
        scores = {**scores, right: 1} if gold_last else {right: 1, **scores}
        ex.append({"input": f"Question number {i}: what is it?", "target_scores": scores})
    ex.append({"input": "a tie", "target_scores": {"a": 1, "b": 1}})  # two best choices: not an item
    ex.append({"input": "generative", "target": "free text"})  # no target_scores: not an item
    return {"name": "toy", "task_prefix": "Answer the question.", "examples": ex}


def _tarball(tasks: dict[str, dict]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        files = {f"{bb.TASKS_DIR}/{name}/task.json": json.dumps(t).encode() for name, t in tasks.items()}
        files[f"{bb.TASKS_DIR}/toy/README.md"] = b"not a task file"
        files[f"{bb.TASKS_DIR}/toy/sub/task.json"] = b"{}"  # a subtask: not extracted
        files["bigbench-1.0.0/setup.py"] = b"# not extracted"
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def fake(monkeypatch):
    """A fake sdist pinned in place of the real one; returns the list of downloads made."""
    payload = _tarball({"toy": _task(120), "toy_first": _task(120, k=2, gold_last=False)})
    monkeypatch.setattr(bb, "ARTIFACT", dataclasses.replace(bb.ARTIFACT, sha256=hashlib.sha256(payload).hexdigest()))
    calls = []

    def download(artifact, dest):
        calls.append(artifact.filename)
        (dest / artifact.filename).write_bytes(payload)
        return dest / artifact.filename

    return payload, download, calls


def test_the_sdist_is_fetched_once_checked_and_only_its_task_files_extracted(fake, tmp_path):
    _, download, calls = fake
    root = bb.tasks_root(tmp_path, download)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        ".complete.json", "toy/task.json", "toy_first/task.json"]
    assert bb.tasks_root(tmp_path, download) == root and calls == ["bigbench-1.0.0.tar.gz"]  # cached
    with pytest.raises(DataError, match=r"evaluation\.english_task.*no task 'toi'.*toy"):
        bb.load_task(root, "toi")


def test_a_download_with_another_checksum_is_refused(fake, tmp_path):
    _, _, _ = fake

    def corrupt(artifact, dest):
        (dest / artifact.filename).write_bytes(b"truncated")
        return dest / artifact.filename

    with pytest.raises(ChecksumError, match="bigbench==1.0.0"):
        bb.tasks_root(tmp_path, corrupt)
    assert not (tmp_path / "extracted" / "bigbench-1.0.0").exists()


def test_items_are_deterministic_disjoint_and_shuffled(fake, tmp_path, smoke_params):
    _, download, _ = fake
    root = bb.tasks_root(tmp_path, download)
    test, fewshot, info = bb.items(smoke_params, "toy", root, cap=40, pool=16)
    again = bb.items(smoke_params, "toy", root, cap=40, pool=16)
    assert (test, fewshot) == again[:2]
    assert len(test) == 40 and len(fewshot) == 16 and info["examples"] == 120  # the tie and the free text left out
    assert not {x["key"] for x in test} & {x["key"] for x in fewshot}
    for x in test + fewshot:
        assert x["choices"][x["label"]].startswith("the right answer to question")
        assert x["query"] == f"{x['passage']}\n{bb.QUESTION}" and x["passage"].startswith("Answer the question. Question")
        assert x["key"].split(".")[-1] == x["passage"].split("number ")[1].split(":")[0].zfill(5)
    # the file puts the answer last; the items spread it over the positions
    spread = Counter(x["label"] for x in test)
    assert len(spread) == 3 and max(spread.values()) < 0.6 * len(test)
    assert bb.chance(test) == pytest.approx(1 / 3)
    # another seed draws another order of choices, not other items
    other = bb.items(dataclasses.replace(smoke_params, seed=smoke_params.seed + 1), "toy", root, cap=40, pool=16)
    assert [x["key"] for x in other[0]] == [x["key"] for x in test]
    assert [x["label"] for x in other[0]] != [x["label"] for x in test]


def test_a_task_without_multiple_choice_examples_is_refused(tmp_path, smoke_params):
    (tmp_path / "gen").mkdir()
    (tmp_path / "gen" / "task.json").write_text(json.dumps({"examples": [{"input": "x", "target": "y"}]}))
    with pytest.raises(DataError, match=r"'gen' has no multiple-choice example"):
        bb.items(smoke_params, "gen", tmp_path, cap=10, pool=2)


@pytest.mark.slow
def test_the_suite_gets_an_english_comprehension_row_scored_and_gated_by_its_own_metric(
        fake, tmp_path, monkeypatch, smoke_corpus, smoke_base, smoke_tokenizer):
    """With ``evaluation.english_task`` set, English has a comprehension row: BIG-bench's task, scored by
    acc (its multiple_choice_grade), with its own shortcuts, chance, per-item records and gate-table row."""
    import shutil

    from famlib.config import load_params
    from famlib.evaluate import build_suite, evaluate_model
    from famlib.evaluate.gates import gate_table
    from famlib.evaluate.records import headline_correct, read_items
    from famlib.evaluate.results import load_results
    from famlib.naming import model_path

    _, download, _ = fake
    root = bb.tasks_root(tmp_path / "cache", download)
    monkeypatch.setattr(bb, "tasks_root", lambda cache_dir, downloader=None: root)  # never the shared cache
    monkeypatch.setenv("FAMLIB_RUNS", str(tmp_path / "runs"))
    p = load_params("smoke", {"evaluation.english_task": "toy", "evaluation.max_items": 12})
    shutil.copytree(smoke_base, model_path(p, "base"))
    suite = build_suite(p, smoke_corpus, tokenizer=smoke_tokenizer)
    e = suite.tasks["famlib_bigbench_toy_en"]
    assert (e["axis"], e["language"], e["task"], e["n"]) == ("comprehension", "en", "bigbench_toy", 12)
    assert e["chance"] == pytest.approx(1 / 3) and set(e["shortcuts"]) >= {"ngram_context", "length", "position"}
    assert not [t for t, x in suite.tasks.items() if x["language"] == "en" and x["task"] == "passage_verse_4way"]
    without = build_suite(load_params("smoke", {"evaluation.max_items": 12}), smoke_corpus, out=tmp_path / "plain",
                          tokenizer=smoke_tokenizer)
    assert "famlib_bigbench_toy_en" not in without.tasks and without.manifest["key"] != suite.manifest["key"]
    evaluate_model(p, "base", corpus=smoke_corpus, axes=["comprehension"], languages=["en"], log=lambda *_: None)
    rows = load_results("smoke")
    mine = rows[(rows["harness_task"] == "famlib_bigbench_toy_en") & rows["primary"].astype(bool)]
    assert list(mine["metric"]) == ["acc"]
    recs = read_items("smoke", "base", "famlib_bigbench_toy_en")
    assert len(recs) == 12 and all(headline_correct(r) == r["correct"] for r in recs)
    assert mine["value"].iloc[0] == pytest.approx(sum(r["correct"] for r in recs) / 12)
    table = gate_table(p, suite, rows, None).set_index("task")
    assert table.loc["bigbench_toy", "base_held_in_gate"] == "no row in the suite"
    assert table.loc["bigbench_toy", "chance"] == pytest.approx(1 / 3) and table.loc["bigbench_toy", "base_english"] >= 0
    assert table.loc["passage_verse_4way", "base_english_gate"] == "no row in the suite"
    # no training language was evaluated: the held-in average is not measured, not the English task's score
    assert table.loc["passage_verse_4way", "base_held_in_gate"] == "not measured"


def test_the_setting_is_checked():
    from famlib.config import load_params
    from famlib.errors import ConfigError

    with pytest.raises(ConfigError, match=r"evaluation\.english_task.*BIG-bench multiple-choice task"):
        load_params("smoke", {"evaluation.english_task": "Social IQa"})
    with pytest.raises(ConfigError, match=r"evaluation\.english_task.*null at the paper scale"):
        load_params("paper", {"evaluation.english_task": "social_iqa"})


def test_a_replaced_tasks_results_are_moved_aside_and_a_skipped_tasks_kept(tmp_path, monkeypatch):
    """Results of a harness task the suite no longer has, where a current task now holds its axis and language
    (another english_task), leave the results; those of a task the suite merely lacks now stay."""
    from famlib.evaluate import results as res
    from famlib.evaluate.records import items_path, write_items
    from famlib.evaluate.run import drop_stale_parts
    from famlib.evaluate.suite import Suite

    monkeypatch.setenv("FAMLIB_RUNS", str(tmp_path))
    row = {"model": "base", "task": "comprehension", "language": "en", "direction": "", "metric": "acc",
           "value": 0.5, "primary": True}
    for task, lang in (("famlib_bigbench_old_en", "en"), ("famlib_bigbench_new_en", "en"),
                       ("famlib_passage_verse_4way_ca", "ca")):
        for model in ("base", "dense"):
            res.write_part("smoke", model, task, "k", [{**row, "model": model, "harness_task": task, "language": lang}])
            write_items("smoke", model, task, [{"key": "x", "correct": True}])
    suite = Suite(tmp_path, {"tasks": {"famlib_bigbench_new_en": {"axis": "comprehension", "language": "en",
                                                                  "direction": ""}}, "skipped": {}})
    said = []
    assert drop_stale_parts("smoke", suite, log=said.append) == ["base/famlib_bigbench_old_en",
                                                                 "dense/famlib_bigbench_old_en"]
    assert said and "moved aside 2" in said[0]
    for model in ("base", "dense"):
        assert res.read_part("smoke", model, "famlib_bigbench_old_en") is None
        assert (res.part_path("smoke", model, "x").parent / "stale" / "famlib_bigbench_old_en.json").exists()
        assert not items_path("smoke", model, "famlib_bigbench_old_en").exists()
        assert res.read_part("smoke", model, "famlib_passage_verse_4way_ca") is not None  # not replaced: kept
    assert set(res.load_results("smoke")["harness_task"]) == {"famlib_bigbench_new_en", "famlib_passage_verse_4way_ca"}


def test_the_headline_of_a_bigbench_record_is_its_log_likelihood_answer():
    from famlib.evaluate.records import headline_correct

    rec = {"correct": True, "correct_pmi": False}
    assert headline_correct({**rec, "task_name": "bigbench_timedial"}) is True
    assert headline_correct({**rec, "task_name": "passage_verse_4way"}) is False


def test_famlib_data_fetches_the_english_rows_archive_with_the_corpus(fake, monkeypatch, capsys, smoke_corpus,
                                                                        tmp_path):
    """`famlib data` readies everything a scale reads from the registries, BIG-bench's task files included
    where a scale names an English task, so that a first evaluation does not stop to download."""
    from famlib import cli

    _, download, calls = fake
    seen = []
    real = bb.tasks_root
    monkeypatch.setattr(bb, "tasks_root", lambda cache_dir, downloader=None: seen.append(cache_dir) or real(
        tmp_path, download))  # the fake archive, never the shared cache
    monkeypatch.setenv("FAMLIB_OVERRIDES", "")  # restored after the test: the command sets it for its kernels
    assert cli.main(["data", "--scale", "smoke", "--set", "evaluation.english_task=toy"]) == 0
    assert seen == [smoke_corpus.cache_dir] and calls == ["bigbench-1.0.0.tar.gz"]
    assert "BIG-bench task files ready:" in capsys.readouterr().out


def test_famlib_data_warns_and_succeeds_when_the_english_rows_archive_cannot_be_had(monkeypatch, capsys, smoke_corpus):
    """Where the index does not serve the sdist (this project's, since 2026-12-04), the corpus is still whole:
    `famlib data` says which row the suite will skip and how to supply the archive, and succeeds."""
    from famlib import cli
    from famlib.errors import DataError

    def unavailable(cache_dir, downloader=None):
        raise DataError("fetching bigbench==1.0.0 failed: HTTP Error 403; put bigbench-1.0.0.tar.gz into downloads")

    monkeypatch.setattr(bb, "tasks_root", unavailable)
    monkeypatch.setenv("FAMLIB_OVERRIDES", "")
    assert cli.main(["data", "--scale", "smoke", "--set", "evaluation.english_task=toy"]) == 0
    err = capsys.readouterr().err
    assert "skip its English comprehension row (toy)" in err and "403" in err and "bigbench-1.0.0.tar.gz" in err
