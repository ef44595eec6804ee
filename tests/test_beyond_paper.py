"""The baselines beyond the paper (#20 item 2), each by its defining property: replay's English share and its
source split, the which-block control's frozen block (the middle group's size, bit-identical to the base),
and WiSE-FT's whole-model interpolation; then all of them through notebooks 03 and 05 and into the tables."""

from __future__ import annotations

import json

import pytest
import torch

from famlib.config import SCALES, load_params
from famlib.errors import ConfigError
from famlib.layers import LayerError, frozen_block_layers, layer_groups
from famlib.strategies.rules import is_trainable
from famlib.strategies import registry

NEW = ["replay", "freeze_first_block", "freeze_last_block", "wise_ft"]
BLOCKS = {"freeze_first_block": "start", "freeze_last_block": "end"}


def _with_new(**overrides):
    return load_params("smoke", {"strategies": [*registry.names()], **overrides})


def test_they_are_registered_beyond_the_paper_and_no_scale_runs_them_by_default():
    for name in NEW:
        entry = registry.get(name)
        assert not entry.paper and not entry.default and entry.role == "mitigation" and entry.per_family
        for scale in SCALES:
            assert name not in load_params(scale).strategy_names
    assert registry.get("wise_ft").source == "expert" and registry.get("replay").replay


# ----------------------------------------------------------------------------------------------------
# The which-block control
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", SCALES)
def test_the_frozen_block_has_the_middle_groups_size_at_the_start_or_the_end(scale):
    params = load_params(scale)
    L, m, n = params.model.num_layers, params.layers.first, params.layers.last
    middle = layer_groups(L, m, n)["middle"]
    start, end = frozen_block_layers("start", L, m, n), frozen_block_layers("end", L, m, n)
    assert len(start) == len(end) == len(middle) == L - m - n
    assert (start[0], end[-1]) == (0, L - 1) and start != middle != end
    for strategy, block in (("freeze_first_block", start), ("freeze_last_block", end)):
        trains = {i: is_trainable(f"model.layers.{i}.mlp.up_proj.weight", strategy, L, m, n) for i in range(L)}
        assert [i for i, t in trains.items() if not t] == list(block)
        assert is_trainable("model.embed_tokens.weight", strategy, L, m, n)  # outside trains, as under freeze
    with pytest.raises(LayerError, match=r"position 'middel'.*'end', 'start'"):
        frozen_block_layers("middel", L, m, n)


# ----------------------------------------------------------------------------------------------------
# Replay
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("override, key, allowed", [
    ({"replay.share": 1.0}, "replay.share", "a share strictly between 0 and 1"),
    ({"replay.share": 0}, "replay.share", "a share strictly between 0 and 1"),
    ({"wise_ft.alpha": 1.5}, "wise_ft.alpha", r"a number in \[0, 1\]"),
    ({"wise_ft.alpha": -0.1}, "wise_ft.alpha", r"a number in \[0, 1\]"),
])
def test_bad_shares_and_alphas_are_refused_naming_file_key_value_and_what_is_allowed(override, key, allowed):
    (k, v), = override.items()
    with pytest.raises(ConfigError, match=rf"smoke.yaml \(override {k}=.*key '{key}' has invalid value "
                                          rf"{float(v)!r}; allowed: {allowed}"):
        load_params("smoke", override)
    # at their defaults the sections stay out of the fingerprints: no finished step of any scale goes stale
    assert "replay" not in load_params("smoke").to_dict() and "wise_ft" not in load_params("smoke").to_dict()


def test_replay_packs_the_configured_share_of_english_from_the_train_split(smoke_params, smoke_corpus,
                                                                         smoke_tokenizer, tmp_path):
    from famlib.data.tokens import build_cpt_set, documents

    plain = build_cpt_set(smoke_params, smoke_corpus, smoke_tokenizer, "romance", tmp_path / "plain")
    sets = build_cpt_set(smoke_params, smoke_corpus, smoke_tokenizer, "romance", tmp_path / "replay", replay=0.25)
    train = sets["train"]
    rows, english, key = train.meta["rows"], train.rows_of("replay:en"), train.meta["key"]
    assert rows == plain["train"].meta["rows"]  # the same budget as the Expert: English replaces family text
    assert abs(len(english) - 0.25 * rows) <= 1  # the share, within one row (the packing unit)
    assert set(train.meta["labels"]) == {"es", "fr", "replay:en"} and not train.meta["short"]
    # validation is the Expert's: early stopping reads the family's loss
    assert (sets["validation"].tokens[:] == plain["validation"].tokens[:]).all()
    # every replayed row is English train-split text: a span from inside it occurs in the train documents
    # and in none of the evaluation ones
    train_text = "\n".join(documents(smoke_corpus, "en", "train"))
    eval_text = "\n".join(documents(smoke_corpus, "en", "evaluation"))
    bos, eos = smoke_tokenizer.bos_token_id, smoke_tokenizer.eos_token_id
    for r in english:
        ids = train.tokens[r].tolist()
        longest = max((seg for seg in _split(ids, {bos, eos})), key=len)
        span = smoke_tokenizer.decode(longest[2:-2])[:60]
        assert len(span) >= 20 and span in train_text and span not in eval_text, span
    # the share is in the set's key: another share is another set (and so another training job)
    other = build_cpt_set(smoke_params, smoke_corpus, smoke_tokenizer, "romance", tmp_path / "replay", replay=0.1)
    assert other["train"].meta["key"] != key
    assert abs(len(other["train"].rows_of("replay:en")) - 0.1 * rows) <= 1


def _split(ids, stops):
    seg = []
    for t in ids:
        if t in stops:
            yield seg
            seg = []
        else:
            seg.append(t)
    yield seg


# ----------------------------------------------------------------------------------------------------
# WiSE-FT
# ----------------------------------------------------------------------------------------------------
def _state(seed: int, layers: int = 5) -> dict:
    g = torch.Generator().manual_seed(seed)
    names = ["model.embed_tokens.weight", "model.norm.weight",
             *(f"model.layers.{i}.{t}" for i in range(layers)
               for t in ("self_attn.q_proj.weight", "mlp.down_proj.weight", "input_layernorm.weight"))]
    return {k: torch.randn(8, 4, generator=g) for k in names}


def test_wise_ft_interpolates_every_tensor_with_one_alpha_and_its_endpoints_are_exact():
    from famlib.surgery.driver import apply_state_dicts
    from famlib.surgery.posthoc import posthoc_jobs

    base, tuned = _state(1), _state(2)
    split = dict(num_layers=5, first=1, last=1, config={"num_hidden_layers": 5, "tie_word_embeddings": True})
    for alpha in (0.0, 0.3, 1.0):
        params = _with_new(**{"wise_ft.alpha": alpha})
        job = next(j for j in posthoc_jobs(params) if j.model_id == "wise_ft.romance")
        assert job.inputs == ("base", "expert.romance") and job.options["alpha"] == alpha
        merged = apply_state_dicts(job.method, [base, tuned], **split, **job.options)
        assert set(merged) == set(base)
        for k in base:  # embeddings and norms included: one alpha for every parameter
            if alpha in (0.0, 1.0):
                assert torch.equal(merged[k], (base, tuned)[int(alpha)][k]), k
            else:
                assert torch.allclose(merged[k], (1 - alpha) * base[k] + alpha * tuned[k], atol=1e-6), k
                assert not torch.equal(merged[k], tuned[k]) and not torch.equal(merged[k], base[k]), k


# ----------------------------------------------------------------------------------------------------
# End to end: notebooks 03 and 05 at smoke scale, the identities on the saved models, the tables
# ----------------------------------------------------------------------------------------------------
# Evaluation cut to a few items per task: this test shows that the strategies flow through the notebooks and
# into the tables, not what they score (a full smoke evaluation costs about 45 s of CPU per model).
CHEAP_EVALUATION = {"evaluation.max_items": 2, "evaluation.translation_items": 1, "evaluation.max_gen_tokens": 4,
                    "evaluation.perplexity_max_tokens": 500}


@pytest.mark.slow
def test_the_baselines_train_evaluate_and_show_in_the_tables(smoke_base, smoke_corpus, tmp_path, monkeypatch):
    """Notebooks 03 and 05 train and evaluate Replay and a block control (the other block control and
    WiSE-FT, made by notebook 04's job builder, go through the same functions directly: a kernel costs about
    25 s of CPU); every identity is checked on the saved weights, and the four show in table 2 under their
    own labels. About 130 s of CPU on top of the session's smoke base."""
    import shutil

    from safetensors.torch import load_file

    from famlib import pipeline
    from famlib.evaluate import evaluate_model
    from famlib.evaluate.results import load_results
    from famlib.layers import layer_index
    from famlib.naming import model_path
    from famlib.strategies.training import train_strategy
    from famlib.surgery.posthoc import build_posthoc_models
    from famlib.tables import build_tables

    # a private runs folder holding the session's base: the cheap evaluation's rows stay out of the shared one
    runs = tmp_path / "runs"
    shutil.copytree(smoke_base, runs / "smoke" / "models" / "base")
    monkeypatch.setenv("FAMLIB_RUNS", str(runs))
    monkeypatch.setenv("FAMLIB_FIGURES", str(tmp_path / "figures"))
    overrides = {"strategies": [*registry.names()], **CHEAP_EVALUATION}
    monkeypatch.setenv("FAMLIB_OVERRIDES", json.dumps(overrides))  # what `--set` hands the kernels
    params = load_params("smoke", overrides)
    fam = "romance"
    trained = [f"03_train_expert.{s}.{fam}" for s in ("replay", "freeze_first_block")]
    assert pipeline.run(params, only=trained, log=lambda *_: None) == {st: "ran" for st in trained}
    for strategy in ("freeze_last_block", "expert"):
        train_strategy(params, strategy, fam, smoke_corpus, progress=False)

    base = load_file(str(smoke_base / "model.safetensors"))
    L, m, n = params.model.num_layers, params.layers.first, params.layers.last
    for strategy, position in BLOCKS.items():
        tuned = load_file(str(model_path(params, f"{strategy}.{fam}") / "model.safetensors"))
        block = frozen_block_layers(position, L, m, n)
        frozen = {k for k in base if layer_index(k) in block}
        assert len({layer_index(k) for k in frozen}) == len(layer_groups(L, m, n)["middle"])
        assert all(torch.equal(tuned[k], base[k]) for k in frozen), strategy  # bit-identical to the base
        moved = [k for k in base if k not in frozen and not torch.equal(tuned[k], base[k])]
        assert sorted(moved) == sorted(set(base) - frozen), strategy  # and everything else trained
    prov = json.loads((model_path(params, f"replay.{fam}") / "famlib_provenance.json").read_text())
    assert prov["strategy"] == "replay" and prov["parameters"]["middle"]["frozen"] == 0

    # WiSE-FT of the Expert, on disk: (1 - alpha) base + alpha expert for every tensor
    [res] = build_posthoc_models(params, only=[f"wise_ft.{fam}"], log=lambda *_: None)
    assert res.status == "written"
    expert = load_file(str(model_path(params, f"expert.{fam}") / "model.safetensors"))
    merged = load_file(str(model_path(params, res.model_id) / "model.safetensors"))
    a = params.wise_ft.alpha
    assert set(merged) == set(base)
    assert all(torch.allclose(merged[k], (1 - a) * base[k] + a * expert[k], atol=1e-6) for k in base)

    evals = [f"05_evaluate.{s}.{fam}" for s in ("replay", "freeze_first_block")]
    assert pipeline.run(params, only=evals, log=lambda *_: None) == {st: "ran" for st in evals}
    for mid in (f"freeze_last_block.{fam}", f"wise_ft.{fam}"):  # the same function, without a kernel (~25 s each)
        evaluate_model(params, mid, corpus=smoke_corpus, axes=["perplexity"], log=lambda *_: None)

    results = load_results(params.scale)
    tables = build_tables(params, results)
    t2 = tables["table2"]
    for s in NEW:
        assert set(results[results["strategy"] == s]["expert_family"]) == {fam}, s
        assert t2.frame.at[fam, s] == t2.frame.at[fam, s], s  # a number, not NaN
    header = next(line for line in t2.markdown().splitlines() if line.startswith("| |"))
    assert all(f"| {registry.label(s)} |" in header for s in NEW)
