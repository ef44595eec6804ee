"""Every notebook that exists runs under papermill at smoke scale, through famlib's own runner."""

from __future__ import annotations

import json

import pytest

from famlib import pipeline
from famlib.config import load_params


@pytest.fixture()
def smoke_outputs(tmp_path, monkeypatch):
    monkeypatch.setenv("FAMLIB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("FAMLIB_FIGURES", str(tmp_path / "figures"))
    return tmp_path


def _outputs_text(nb_path) -> str:
    nb = json.loads(nb_path.read_text())
    return "\n".join("".join(o.get("text", "")) + json.dumps(o.get("data", {}))
                     for c in nb["cells"] for o in c.get("outputs", []))


@pytest.mark.slow
def test_notebook_01_data_prep_at_smoke_scale(smoke_outputs, smoke_corpus):
    params = load_params("smoke")
    status = pipeline.run(params, only=["01_data_prep"], log=lambda *_: None)
    assert status == {"01_data_prep": "ran"}
    executed = smoke_outputs / "runs" / "smoke" / "notebooks" / "01_data_prep.ipynb"
    text = _outputs_text(executed)
    assert "OK:" in text and "every group sits in one split" in text
    assert (smoke_outputs / "figures" / "smoke" / "corpus.png").stat().st_size > 10_000
    assert (smoke_outputs / "figures" / "smoke" / "corpus.pdf").exists()
    # unchanged inputs: skipped on the second run
    assert pipeline.run(params, only=["01_data_prep"], log=lambda *_: None) == {"01_data_prep": "skipped"}


def test_plan_lists_every_step_with_a_command():
    lines = pipeline.plan_lines(load_params("smoke"))
    assert lines and all(len(line.split("\t")) == 5 for line in lines)
    assert lines[0].split("\t")[1] == "01_data_prep"
    assert lines[0].endswith("famlib run --scale smoke --step 01_data_prep")


def test_committed_notebooks_have_no_outputs_and_a_parameters_cell():
    for path in sorted(pipeline.NOTEBOOKS.glob("*.ipynb")):
        nb = json.loads(path.read_text())
        assert not any(c.get("outputs") or c.get("execution_count") for c in nb["cells"]), path
        tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{path}: needs exactly one cell tagged 'parameters'"
        code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
        assert "\ndef " not in "\n" + code and "\nclass " not in "\n" + code, f"{path}: logic belongs in famlib"


@pytest.mark.slow
@pytest.mark.parametrize("strategy, family", [("dense", None), ("expert", "romance"), ("freeze", "romance"),
                                              ("l2sp", "romance")])
def test_notebook_03_train_expert_for_every_strategy(smoke_base, smoke_runs, strategy, family, tmp_path, monkeypatch):
    monkeypatch.setenv("FAMLIB_FIGURES", str(tmp_path / "figures"))
    params = load_params("smoke")
    step = f"03_train_expert.{strategy}" + (f".{family}" if family else "")
    assert pipeline.run(params, only=[step], log=lambda *_: None) == {step: "ran"}
    executed = smoke_runs / "smoke" / "notebooks" / f"{step}.ipynb"
    assert executed.exists()
    mid = strategy if family is None else f"{strategy}.{family}"
    assert (smoke_runs / "smoke" / "models" / mid / "model.safetensors").exists()
    assert (tmp_path / "figures" / "smoke" / f"drift_{mid}.png").stat().st_size > 5_000


@pytest.mark.slow
def test_notebook_02_base_model_at_smoke_scale(smoke_base, smoke_runs, tmp_path, monkeypatch):
    monkeypatch.setenv("FAMLIB_FIGURES", str(tmp_path / "figures"))
    params = load_params("smoke")
    assert pipeline.run(params, only=["02_base_model"], log=lambda *_: None) == {"02_base_model": "ran"}
    text = _outputs_text(smoke_runs / "smoke" / "notebooks" / "02_base_model.ipynb")
    assert "unigram_bpb" in text and "bits_per_byte" in text
    for name in ("base_loss", "base_bpb"):
        assert (tmp_path / "figures" / "smoke" / f"{name}.png").stat().st_size > 5_000
