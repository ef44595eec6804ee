"""The lesson (famlib.lesson, notebooks/lesson/): its measurements, trainings, surgery, versions and notebooks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from famlib import lesson as L
from famlib.errors import ConfigError


def test_settings_refuse_what_a_teacher_might_mistype():
    assert L.settings("preview").steps < L.settings("class").steps
    with pytest.raises(ConfigError, match="preset.*preview"):
        L.settings("previw")
    with pytest.raises(ConfigError, match="step.*steps"):
        L.settings("class", step=10)
    with pytest.raises(ConfigError, match="steps"):
        L.settings("class", steps=0)
    with pytest.raises(ConfigError, match="lr.*2e-5"):
        L.settings("class", lr=3.0)
    with pytest.raises(ConfigError, match="scale"):
        L.settings("class", scale="paper")
    # None means "as in the preset", so a notebook's parameters cell can pass its Nones through
    assert L.settings("class", lr=None, steps=None) == L.settings("class")
    assert L.settings("preview").preset == "preview"


def test_verse_nats_is_the_models_own_loss(smoke_base):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(smoke_base), dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(smoke_base))
    texts = ["In the beginning God created the heaven and the earth.", "Jesus wept.", "And God said, Let there be light."]
    nats = L.verse_nats(model, tok, texts, batch_size=2, head_chunk=7)  # padded batches, a ragged head chunk
    for text, got in zip(texts, nats):
        ids = torch.tensor([[tok.bos_token_id] + tok(text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            loss = model(input_ids=ids, labels=ids).loss.item()  # mean over the ids.shape[1] - 1 predictions
        assert got == pytest.approx(loss * (ids.shape[1] - 1), rel=1e-5)


def test_a_paired_change_has_the_sign_of_the_difference():
    keys = tuple(f"v{i}" for i in range(40))
    rng = np.random.default_rng(0)
    nbytes = rng.integers(40, 120, size=40)
    base_nats = rng.uniform(0.5, 1.0, size=40) * nbytes
    worse = L.Measurement("worse", {"en": keys}, {"en": base_nats * 1.1}, {"en": nbytes})
    base = L.Measurement("base", {"en": keys}, {"en": base_nats}, {"en": nbytes})
    same = L.Measurement("same", {"en": keys}, {"en": base_nats.copy()}, {"en": nbytes})

    class Stub:  # compare() needs only the languages, the base measurement and a seed
        languages = {"english": "en"}
        base_measurement = base
        settings = L.settings("smoke")

    table = L.Lesson.compare(Stub(), worse, same)
    w, s = table.iloc[0], table.iloc[1]
    assert w["change"] == pytest.approx(worse.bits_per_byte("en") - base.bits_per_byte("en"))
    assert w["change"] > 0 and w["low"] > 0 and w["verdict"] == "worse"
    assert s["change"] == 0 and s["verdict"] == "undecided"
    assert worse.bits_per_byte("en") == pytest.approx(base_nats.sum() * 1.1 / math.log(2) / nbytes.sum())
    assert L.Measurement.from_dict(json.loads(json.dumps(worse.to_dict()))).bits_per_byte("en") == worse.bits_per_byte("en")


@pytest.mark.slow
def test_lesson_trains_freezes_reverts_and_replays_at_smoke_scale(smoke_base, smoke_runs, tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("FAMLIB_FIGURES", str(tmp_path / "figures"))
    from famlib.layers import group_of

    les = L.Lesson.open(L.settings("smoke"), progress=False)
    assert les.languages == {"english": "en", "trained": "es", "held_out": "it"}
    keys = les.probes["en"]["keys"]
    assert all(les.probes[lang]["keys"] == keys for lang in les.probes) and len(set(keys)) == len(keys) == 24
    L_, m, n = les.params.model.num_layers, les.params.layers.first, les.params.layers.last
    base = les.base_state()

    cpt = les.train("CPT", plot=False)
    frozen = les.train("Freeze middle", freeze=["middle"], plot=False)
    cs, fs = cpt.state_dict(), frozen.state_dict()
    middle = [k for k in base if group_of(k, L_, m, n) == "middle"]
    assert middle and all(torch.equal(fs[k], base[k]) for k in middle)  # frozen: bit-identical to the base
    assert any(not torch.equal(fs[k], base[k]) for k in base if k not in middle)  # the rest trained
    assert any(not torch.equal(cs[k], base[k]) for k in middle)

    rev = les.revert(cpt, ["middle"]).state_dict()
    assert all(torch.equal(rev[k], base[k]) for k in middle)
    assert all(torch.equal(rev[k], cs[k]) for k in base if k not in middle)
    # the reverted model is made of the two models' own tensors (a laptop holds no third copy)
    assert all(rev[k].data_ptr() == base[k].data_ptr() for k in middle)
    assert all(rev[k].data_ptr() == cs[k].data_ptr() for k in base if k not in middle)
    half = les.interpolate(cpt, "middle", 0.5).state_dict()
    k = middle[0]
    assert torch.allclose(half[k], 0.5 * base[k] + 0.5 * cs[k], atol=1e-7)

    # the live probe was written, and a second call reads the finished run back instead of training
    curve = L._read_jsonl(next((les.root / "train").glob("CPT-*")) / "probes.jsonl")
    assert [c["step"] for c in curve] == [0, 2, 4, 6] and all("en" in c and "es" in c for c in curve)
    again = les.train("CPT", plot=False).state_dict()
    assert all(torch.equal(again[k], cs[k]) for k in cs)

    # replay: the pipeline's recipe (build_cpt_set with replay): the same number of rows, a quarter of them
    # English training text in place of family rows
    from famlib.data.tokens import TokenSet

    data = les._mixture(0.25)
    assert abs(len(data) - len(les.train_tokens)) <= len(les.params.families["romance"].train)
    replay_set = TokenSet(les.root / "data" / "romance-replay-0.25" / "train")
    assert np.array_equal(np.asarray(replay_set.tokens), data)
    share = len(replay_set.rows_of("replay:en")) / len(data)
    assert share == pytest.approx(0.25, abs=0.5 / len(data) + 1e-9)
    assert set(replay_set.meta["labels"]) == {"replay:en", *les.params.families["romance"].train}
    with pytest.raises(ConfigError, match="replay"):
        les._mixture(1.0)
    with pytest.raises(ConfigError, match="freeze.*middle"):
        les.train("x", freeze=["midle"])

    table = les.compare(les.measure(cpt, "CPT"), les.measure(frozen, "Freeze middle"))
    assert set(table["verdict"]) <= {"worse", "better", "undecided"} and len(table) == 6
    text = L.summary(les, les.measure(cpt, "CPT"), les.measure(frozen, "Freeze middle"))
    assert "**CPT**" in text and "against CPT" in text


def _cells(nb):
    return [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in nb.cells]


def test_student_version_is_generated_from_the_instructors_and_hides_every_solution():
    import nbformat

    inst = nbformat.read(str(L.NOTEBOOK_DIR / L.INSTRUCTOR), as_version=4)
    student = nbformat.read(str(L.NOTEBOOK_DIR / L.STUDENT), as_version=4)
    assert _cells(L.student_version(inst)) == _cells(student), "run `famlib lesson build` after editing the lesson"
    solutions = [c for c in inst.cells if L.SOLUTION_TAG in c.metadata.get("tags", [])]
    assert len([c for c in solutions if c.cell_type == "code"]) >= 3
    assert len(student.cells) == len(inst.cells)
    for a, b in zip(inst.cells, student.cells):
        if L.SOLUTION_TAG in a.metadata.get("tags", []):
            assert b.source in (L.CODE_PLACEHOLDER, L.MARKDOWN_PLACEHOLDER) and b.cell_type == a.cell_type
        else:
            assert b.source == a.source
    for c in student.cells:
        if c.cell_type == "code":
            compile(c.source.replace("%", "#"), "student cell", "exec")  # every student cell is valid Python
    for nb in (inst, student):  # committed without outputs; no logic in the notebook
        assert not any(c.get("outputs") or c.get("execution_count") for c in nb.cells)
        assert sum("parameters" in c.metadata.get("tags", []) for c in nb.cells) == 1
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert "\ndef " not in "\n" + code and "\nclass " not in "\n" + code


def test_cli_builds_the_student_version(tmp_path):
    src = tmp_path / "inst.ipynb"
    src.write_text((L.NOTEBOOK_DIR / L.INSTRUCTOR).read_text())
    out = L.build_student(src, tmp_path / "student.ipynb")
    assert out.read_text() == (L.NOTEBOOK_DIR / L.STUDENT).read_text()


def _outputs(path):
    nb = json.loads(path.read_text())
    texts, images = [], 0
    for c in nb["cells"]:
        for o in c.get("outputs", []):
            texts.append("".join(o.get("text", "")))
            data = o.get("data", {})
            texts.append("".join(data.get("text/markdown", "")) + "".join(data.get("text/plain", "")))
            images += "image/png" in data
    return "\n".join(texts), images


@pytest.mark.slow
def test_lesson_notebook_runs_headless_at_smoke_scale(smoke_base, smoke_runs, tmp_path, monkeypatch):
    monkeypatch.setenv("FAMLIB_FIGURES", str(tmp_path / "figures"))
    # The instructor's version runs every cell the student's has (the test above keeps them in sync) and
    # the solutions; the student's placeholders are comments.
    version = "instructor"
    out = L.run_notebook(version, "smoke", out=tmp_path / f"{version}.ipynb")
    text, images = _outputs(out)
    assert "bits per byte" in text and "change vs base [95% interval]" in text
    assert "**CPT**" in text and "against CPT" in text  # the computed summary
    assert "IProgress" not in text and "Traceback" not in text
    # live plots of two trainings, the first result, the fixes, the slider (+ three exercises' figures)
    assert images >= 8
    assert "lr 2e-05" in text  # exercise 2's solution: the paper's learning rate
    saved = {p.name for p in (tmp_path / "figures" / "lesson" / "smoke").glob("*.png")}
    assert {"live_cpt.png", "live_freeze_middle.png", "cpt.png", "fixes.png", "slider.png"} <= saved
