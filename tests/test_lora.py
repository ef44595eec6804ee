"""The LoRA baseline (famlib.strategies.lora): only the adapters train, the merged checkpoint is the base plus
(alpha / rank) * B @ A on the adapted projections and the base elsewhere, training resumes with the wrapped
model, the params section is validated, and the strategy trains and evaluates through notebooks 03 and 05."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from famlib.config import TrainConfig, load_params
from famlib.errors import ConfigError
from famlib.layers import is_adapter, unwrapped_name
from famlib.strategies import get
from famlib.strategies.training import apply_strategy, check_job, job_key
from famlib.strategies.lora import LORA, adapter_parameters, target_modules, trainable_share
from famlib.strategies.training import adapted

DEFAULTS = ["base", "dense", "expert", "freeze", "l2sp", "dense_reverted", "expert_reverted", "soup", "freeze_soup"]
SEQ = 32


def _model(vocab: int = 256):
    """A model of the smoke architecture (5 layers, split 1 / 3 / 1), seconds to train on synthetic data."""
    from famlib.models import build_scratch_model

    return build_scratch_model(load_params("smoke").model.architecture, vocab_size=vocab, seed=0)


def _tokens(rows: int, seed: int) -> np.ndarray:
    """Arithmetic sequences mod 256: learnable, so the adapters have something to learn."""
    rng = np.random.default_rng(seed)
    start, stride = rng.integers(0, 256, size=(rows, 1)), rng.integers(1, 4, size=(rows, 1))
    return ((start + stride * np.arange(SEQ)) % 256).astype(np.uint16)


@pytest.fixture()
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # bit-identity needs a fixed thread count
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------------------------------
# What trains, and where the wrapped model starts
# ----------------------------------------------------------------------------------------------------
def test_only_the_adapters_train_and_the_wrapped_model_starts_at_the_base(smoke_params):
    cfg = smoke_params.lora
    model = _model()
    x = torch.from_numpy(_tokens(2, seed=3).astype(np.int64))
    with torch.no_grad():
        before = model(input_ids=x).logits
    rng = torch.get_rng_state()
    wrapped = LORA.wrap(smoke_params, model)
    assert torch.equal(torch.get_rng_state(), rng), "wrapping must leave the global RNG as it was"
    _, counts = apply_strategy(smoke_params, "lora", wrapped)

    trainable = [n for n, p in wrapped.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert all(p.requires_grad == ("lora_" in n) for n, p in wrapped.named_parameters())
    assert len(trainable) == 2 * len(cfg.targets) * 5  # A and B on seven projections of five layers
    n_adapter = sum(p.numel() for n, p in wrapped.named_parameters() if p.requires_grad)
    # the meta-device count (the README's shares) is what peft really adds
    assert n_adapter == adapter_parameters(_model(), cfg.rank, cfg.targets) == wrapped.get_nb_trainable_parameters()[0]
    assert sum(c["trainable"] for c in counts.values()) == n_adapter and counts["outside"]["trainable"] == 0
    assert all(c["frozen"] > 0 for c in counts.values())  # every group's base weights are frozen
    base_total = sum(p.numel() for p in _model().parameters())
    assert trainable_share(_model(), cfg.rank, cfg.targets) == pytest.approx(n_adapter / base_total)

    wrapped.eval()  # no dropout: B = 0 at the start, so the wrapped model computes the base's function
    with torch.no_grad():
        assert torch.equal(wrapped(input_ids=x).logits, before)
    # the same seed draws the same A: a resumed run starts from the point the interrupted one did
    again = LORA.wrap(smoke_params, _model())
    first = {n: p for n, p in wrapped.named_parameters() if ".lora_A." in n}
    assert all(torch.equal(p, first[n]) for n, p in again.named_parameters() if ".lora_A." in n)
    assert any(p.abs().sum() > 0 for p in first.values())


def test_targets_are_the_decoder_layers_projections_and_a_missing_one_is_refused(smoke_params):
    model = _model()
    names = target_modules(model, smoke_params.lora.targets)
    assert names[:7] == [f"model.layers.0.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj", "o_proj")] + \
        [f"model.layers.0.mlp.{p}" for p in ("gate_proj", "up_proj", "down_proj")]
    assert len(names) == 35 and names[-1] == "model.layers.4.mlp.down_proj"
    from famlib.layers import LayerError

    with pytest.raises(LayerError, match=r"decoder layer 0 of Gemma3ForCausalLM has no linear layer 'c_attn' "
                                         r"\(lora.targets\); its linear layers: down_proj, gate_proj"):
        target_modules(model, ["q_proj", "c_attn"])


def test_a_failed_run_hands_back_the_plain_model_unmerged(smoke_params):
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match="interrupted"):
        with adapted(smoke_params, get("lora"), model) as wrapped:
            with torch.no_grad():
                for n, p in wrapped.named_parameters():
                    if ".lora_B." in n:
                        p.fill_(1.0)  # an update that a merge would fold into the weights
            raise RuntimeError("interrupted")
    after = model.state_dict()
    assert after.keys() == before.keys() and not any(is_adapter(n) for n, _ in model.named_parameters())
    assert all(torch.equal(after[k], v) for k, v in before.items())


# ----------------------------------------------------------------------------------------------------
# The training loop with the wrapped model: checkpoints and resume
# ----------------------------------------------------------------------------------------------------
def _lora_run(params, out, cfg):
    """Train a LoRA-wrapped smoke-architecture model into ``out``; return the merged state and the result."""
    from famlib.train import train

    model = _model()
    with adapted(params, get("lora"), model) as wrapped:
        apply_strategy(params, "lora", wrapped)
        result = train(wrapped, _tokens(64, seed=0), _tokens(16, seed=1), cfg, out, seed=1, progress=False,
                       save_model_dir=False, keep_last=0)
        adapters = {n: p.detach().clone() for n, p in wrapped.named_parameters() if is_adapter(n)}
    return model.state_dict(), adapters, result


def test_an_interrupted_lora_run_resumes_to_the_uninterrupted_result(smoke_params, tmp_path, one_thread):
    # dropout is on (smoke's lora.dropout), so the resume must also restore the RNG to be bit-identical
    assert smoke_params.lora.dropout > 0
    cfg = TrainConfig(lr=smoke_params.lora.lr, warmup_steps=2, batch_size=4, max_steps=12, eval_every=4,
                      eval_batches=2, save_every=4, weight_decay=0.01)
    merged, adapters, result = _lora_run(smoke_params, tmp_path / "whole", cfg)
    assert result.steps == 12 and result.resumed_from is None
    assert result.trainable_params == sum(t.numel() for t in adapters.values())

    # the run killed after its checkpoint at step 8: the newer one never written
    shutil.copytree(tmp_path / "whole", tmp_path / "cut")
    shutil.rmtree(tmp_path / "cut" / "checkpoints" / "step-00000012")
    ckpt = tmp_path / "cut" / "checkpoints" / "step-00000008"
    assert not json.loads((ckpt / "trainer_state.json").read_text())["state"]["finished"]
    assert set(adapters) <= set(load_file(str(ckpt / "model.safetensors")))  # peft's names, adapters included
    merged2, adapters2, resumed = _lora_run(smoke_params, tmp_path / "cut", cfg)
    assert resumed.resumed_from == 8 and resumed.steps == 12 and resumed.evals == result.evals
    assert adapters2.keys() == adapters.keys() and all(torch.equal(adapters2[n], t) for n, t in adapters.items())
    assert merged2.keys() == merged.keys() and all(torch.equal(merged2[k], v) for k, v in merged.items())
    assert any(not torch.equal(merged[k], v) for k, v in _model().state_dict().items())  # it did train


# ----------------------------------------------------------------------------------------------------
# Params: the lora section
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key, value, match", [
    ("lora.rank", 0, r"key 'lora.rank' has invalid value 0; allowed: a positive integer"),
    ("lora.alpha", -1, r"key 'lora.alpha' has invalid value -1.0; allowed: a positive number"),
    ("lora.lr", 0, r"key 'lora.lr' has invalid value 0.0; allowed: a positive learning rate"),
    ("lora.dropout", 1.0, r"key 'lora.dropout' has invalid value 1.0; allowed: a number in \[0, 1\)"),
    ("lora.targets", ["q_proj", "q_prj"], r"key 'lora.targets\[1\]' has invalid value 'q_prj'; allowed: one of "
                                          r"'down_proj', .*'v_proj'. Did you mean 'q_proj'"),
    ("lora.targets", ["q_proj", "q_proj"], r"key 'lora.targets' has invalid value \['q_proj', 'q_proj'\]; "
                                           r"allowed: each projection once"),
    ("lora.targets", [], r"key 'lora.targets' has invalid value \[\]; allowed: some of"),
    ("lora.rnak", 4, r"key 'lora.rnak' .*known keys at this level: rank, alpha, lr, dropout, targets. "
                     r"Did you mean 'rank'"),
])
def test_bad_lora_settings_name_the_file_key_value_and_what_is_allowed(key, value, match):
    with pytest.raises(ConfigError, match=r"smoke.yaml \(override " + key.replace(".", r"\.") + "=.*" + match):
        load_params("smoke", {key: value})


def test_a_scale_without_a_lora_section_cannot_run_lora_and_says_so():
    params = load_params("smoke", {"lora": None})  # the others run without it
    assert params.lora is None and "lora" not in params.to_dict()
    with pytest.raises(ConfigError, match=r"key 'lora' has invalid value None; allowed: a 'lora:' section "
                                          r"\(strategy 'lora' is in strategies and reads it\)"):
        load_params("smoke", {"lora": None, "strategies": [*DEFAULTS, "lora"]})
    with pytest.raises(ConfigError, match=r"key 'lora' has invalid value None; allowed: a 'lora:' section "
                                          r"\(strategy 'lora' reads it\)"):
        check_job(params, "lora", "romance")


def test_the_lora_job_key_reads_the_lora_section_and_no_other_job_does(smoke_params):
    other = load_params("smoke", {"lora.rank": 4})
    for strategy in ("expert", "freeze", "l2sp"):
        assert job_key(smoke_params, strategy, "romance", "b", "d") == job_key(other, strategy, "romance", "b", "d")
    assert job_key(smoke_params, "lora", "romance", "b", "d") != job_key(other, "lora", "romance", "b", "d")
    assert job_key(smoke_params, "lora", "romance", "b", "d") != job_key(smoke_params, "expert", "romance", "b", "d")
    entry = get("lora")
    assert (entry.paper, entry.default, entry.role, entry.per_family) == (False, False, "mitigation", True)
    assert "lora" not in smoke_params.strategy_names  # run only where a scale lists it


def test_lora_trains_with_the_family_settings_but_its_own_learning_rate(smoke_params):
    cfg = LORA.train_config(smoke_params, smoke_params.training.family)
    assert cfg == dataclasses.replace(smoke_params.training.family, lr=smoke_params.lora.lr)
    assert cfg.lr != smoke_params.training.family.lr


# ----------------------------------------------------------------------------------------------------
# End to end at smoke scale (one training serves every check: the suite's time is short)
# ----------------------------------------------------------------------------------------------------
def _check_merged_is_base_plus_scaled_BA(params, model_dir, base_dir, run) -> None:
    """The saved checkpoint holds W + (alpha / rank) * B @ A, computed here from the saved adapter, on every
    adapted projection, and every other tensor (embeddings, norms) bit-identical to the base."""
    base = load_file(str(base_dir / "model.safetensors"))
    merged = load_file(str(model_dir / "model.safetensors"))
    adapter = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    config = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (params.lora.rank, params.lora.alpha)
    assert all(is_adapter(n) for n in adapter), "the adapter file holds the adapters only (no embeddings)"
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for name, t in adapter.items():
        weight = unwrapped_name(name).split(".lora_")[0] + ".weight"
        pairs.setdefault(weight, {})["A" if ".lora_A." in name else "B"] = t
    assert len(pairs) == 35 and all(len(ab) == 2 for ab in pairs.values())  # 7 projections x 5 layers
    assert merged.keys() == base.keys()
    scale = params.lora.alpha / params.lora.rank
    for name, w in base.items():
        if name in pairs:
            expected = w + scale * pairs[name]["B"] @ pairs[name]["A"]
            torch.testing.assert_close(merged[name], expected, rtol=0, atol=1e-6)
            assert not torch.equal(merged[name], w), f"{name}: the adapter did not move it"
        else:
            assert torch.equal(merged[name], w), f"{name}: not adapted, must be the base's"
    assert "model.embed_tokens.weight" in base and "model.embed_tokens.weight" not in pairs


@pytest.mark.slow
def test_lora_trains_merges_and_evaluates_through_notebooks_03_and_05_and_shows_in_the_tables(
        smoke_base, smoke_runs, tmp_path, monkeypatch):
    """Notebook 03 trains lora.romance with the vocabulary trimmed (the small scale's path), notebook 05
    evaluates the merged checkpoint, and its column joins the tables."""
    from famlib import pipeline
    from famlib.evaluate.results import load_results
    from famlib.tables import build_tables

    monkeypatch.setenv("FAMLIB_FIGURES", str(tmp_path / "figures"))
    # (smoke's own evaluation settings: the suite and the base's results are shared with the session's other tests)
    overrides = {"strategies": [*DEFAULTS, "lora"], "training.family.trim_vocab": True}
    monkeypatch.setenv("FAMLIB_OVERRIDES", json.dumps(overrides))  # what `famlib paper --set` hands the kernels
    params = load_params("smoke", overrides)
    steps = ["03_train_expert.lora.romance", "05_evaluate.lora.romance"]
    assert pipeline.run(params, only=steps, log=lambda *_: None) == dict.fromkeys(steps, "ran")
    out = smoke_runs / "smoke" / "models" / "lora.romance"
    run = smoke_runs / "smoke" / "train" / "lora.romance"
    assert (tmp_path / "figures" / "smoke" / "drift_lora.romance.png").stat().st_size > 5_000

    prov = json.loads((out / "famlib_provenance.json").read_text())
    assert prov["strategy"] == "lora" and prov["trim_vocab"]["kept_ids"] < prov["trim_vocab"]["vocab_size"]
    assert prov["parameters"]["outside"]["trainable"] == 0
    assert prov["adapter"]["settings"]["lora"]["rank"] == params.lora.rank and prov["adapter"]["merged"]
    facts = json.loads((run / "train_config.json").read_text())
    assert facts["train"]["lr"] == params.lora.lr != params.training.family.lr  # LoRA's own learning rate
    adapter = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    assert sum(t.numel() for t in adapter.values()) == facts["trainable_params"] == prov["train"]["trainable_params"]
    _check_merged_is_base_plus_scaled_BA(params, out, smoke_base, run)

    rows = load_results("smoke")
    mine = rows[rows["model"] == "lora.romance"]
    assert set(mine["strategy"]) == {"lora"} and set(mine["expert_family"]) == {"romance"}
    assert set(mine["language"]) == {"en", "es", "fr", "it", "ca"}  # the romance model answers for its languages
    assert {"perplexity", "comprehension", "translation"} <= set(mine["task"])
    t2 = build_tables(params, rows)["table2"]
    assert t2.frame.at["romance", "lora"] == t2.frame.at["romance", "lora"]  # a number, not NaN
    assert "| LoRA |" in next(line for line in t2.markdown().splitlines() if line.startswith("| |"))


def test_lora_trains_under_one_percent_of_gemma_3_4b():
    """(Layer Freezing trains 53.8% of it: tests/test_layers.py.)"""
    from famlib.layers import meta_model
    from famlib.models import gemma3_4b_text_config

    params = load_params("paper")
    config = gemma3_4b_text_config()
    model = meta_model(config)
    # r * (in + out) per layer: q 2560+2048, k and v 2560+1024 each, o 2048+2560, gate and up 2560+10240 each,
    # down 10240+2560 = 54,784; rank 16; 34 layers
    assert adapter_parameters(model, params.lora.rank, params.lora.targets) == 16 * 54_784 * 34 == 29_802_496
    assert trainable_share(model, params.lora.rank, params.lora.targets) == pytest.approx(0.00768, abs=1e-5)
