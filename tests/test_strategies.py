"""The four training strategies: the layer rule applied, Freeze leaves the middle bit-identical, L2-SP's
gradient is the penalty's, and bad jobs are refused with clear errors."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from famlib.config import L2SPConfig
from famlib.errors import ConfigError
from famlib.layers import group_of
from famlib.models import build_scratch_model
from famlib.strategies import LayerRangeL2SP
from famlib.strategies.training import apply_strategy, check_job, train_strategy

ARCH = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=6, num_attention_heads=2,
            num_key_value_heads=1, head_dim=16, max_position_embeddings=64, sliding_window=16)


def _tiny():
    return build_scratch_model(ARCH, vocab_size=128, seed=0)


def test_l2sp_gradient_matches_autograd_of_the_explicit_penalty():
    torch.manual_seed(0)
    model = _tiny()
    lambdas = L2SPConfig(first=0.001, middle=0.05, last=0.002, outside=0.003)
    reg = LayerRangeL2SP(model, lambdas, first=2, last=1)
    assert reg.penalty_and_grad(model) == 0.0  # zero at the anchor
    anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)

    model.zero_grad()
    explicit = sum(getattr(lambdas, group_of(n, 6, 2, 1)) * ((p - anchor[n]) ** 2).sum()
                   for n, p in model.named_parameters())
    explicit.backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters()}

    model.zero_grad(set_to_none=True)
    value = reg.penalty_and_grad(model)
    assert value == pytest.approx(float(explicit.detach()), rel=1e-5)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, want[n], rtol=1e-5, atol=1e-8, msg=n)


def test_l2sp_outside_first_anchors_embeddings_and_final_norm_with_the_first_lambda_as_the_authors_code():
    from famlib.config import load_params

    model = _tiny()
    reg = LayerRangeL2SP(model, L2SPConfig(first=0.001, middle=0.05, last=0.002, outside="first"), first=2, last=1)
    outside = {n for n, _ in model.named_parameters() if group_of(n, 6, 2, 1) == "outside"}
    assert outside and {"model.embed_tokens.weight", "model.norm.weight"} <= outside
    assert outside <= set(reg.lambdas[0.001])  # with the first group's layers, at lambda_first
    assert not outside & (set(reg.lambdas[0.05]) | set(reg.lambdas[0.002]))
    default = LayerRangeL2SP(model, L2SPConfig(first=0.001, middle=0.05, last=0.002), first=2, last=1)
    assert not outside & {n for names in default.lambdas.values() for n in names}  # default: not anchored
    # params files: the paper scale follows the authors' code; the offline scales keep 0 (job keys unchanged)
    assert load_params("paper").l2sp.of("outside") == load_params("paper").l2sp.first == 0.001
    assert load_params("smoke").l2sp.of("outside") == 0.0
    assert load_params("smoke", {"l2sp.outside": "first", "l2sp.first": 0.01}).l2sp.of("outside") == 0.01
    with pytest.raises(Exception, match=r"l2sp\.outside.*'last'.*a number or 'first'"):
        load_params("smoke", {"l2sp.outside": "last"})


def test_l2sp_adds_to_existing_gradients_and_skips_frozen_parameters():
    model = _tiny()
    for n, p in model.named_parameters():
        p.requires_grad_(group_of(n, 6, 2, 1) != "middle")
    reg = LayerRangeL2SP(model, L2SPConfig(0.1, 0.1, 0.1, 0.1), first=2, last=1)
    assert all(group_of(n, 6, 2, 1) != "middle" for names in reg.lambdas.values() for n in names)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)
    for p in model.parameters():
        p.grad = torch.ones_like(p) if p.requires_grad else None
    reg.penalty_and_grad(model)
    for n, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, torch.full_like(p, 1 + 2 * 0.1 * 0.5))
        else:
            assert p.grad is None, n


def test_freeze_rule_freezes_exactly_the_middle_group(smoke_params):
    model = build_scratch_model(smoke_params.model.architecture, 300, seed=0)
    reg, counts = apply_strategy(smoke_params, "freeze", model)
    assert reg is None
    for n, p in model.named_parameters():
        assert p.requires_grad == (group_of(n, 5, 1, 1) != "middle"), n
    assert counts["middle"]["trainable"] == 0 and counts["middle"]["frozen"] > 0
    assert counts["outside"]["frozen"] == 0 and counts["first"]["frozen"] == 0
    reg, counts = apply_strategy(smoke_params, "l2sp", model)
    assert isinstance(reg, LayerRangeL2SP) and all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("strategy, family, match", [
    ("freez", "romance", r"key 'strategy' has invalid value 'freez'.*Did you mean 'freeze'"),
    ("soup", "romance", r"key 'strategy' has invalid value 'soup'; allowed: a training strategy"),
    ("expert", "germanic", r"key 'family' has invalid value 'germanic'.*'romance', 'slavic'"),
    ("expert", None, r"key 'family' has invalid value None"),
    ("dense", "romance", r"key 'family' has invalid value 'romance'.*for strategy 'dense'"),
])
def test_bad_jobs_are_refused(smoke_params, strategy, family, match):
    with pytest.raises(ConfigError, match=match):
        check_job(smoke_params, strategy, family)


def _layer_tensors(path):
    return load_file(str(path / "model.safetensors"))


def _relative_drift(tuned, base, group, L=5, m=1, n=1):
    num = sum(float(((tuned[k] - base[k]) ** 2).sum()) for k in base if group_of(k, L, m, n) == group)
    den = sum(float((base[k] ** 2).sum()) for k in base if group_of(k, L, m, n) == group)
    return (num / den) ** 0.5


@pytest.mark.slow
def test_freeze_keeps_the_middle_bit_identical_and_l2sp_drifts_less_than_expert(smoke_params, smoke_corpus, smoke_base):
    base = _layer_tensors(smoke_base)
    models = {s: _layer_tensors(train_strategy(smoke_params, s, "romance", smoke_corpus, progress=False))
              for s in ("expert", "freeze", "l2sp")}
    frozen = models["freeze"]
    for k, v in base.items():
        g = group_of(k, 5, 1, 1)
        if g == "middle":
            assert torch.equal(frozen[k], v), f"{k} moved under Layer Freezing"
    assert _relative_drift(frozen, base, "first") > 0 and _relative_drift(frozen, base, "last") > 0
    d_expert = _relative_drift(models["expert"], base, "middle")
    d_l2sp = _relative_drift(models["l2sp"], base, "middle")
    assert d_expert > 0 and d_l2sp < 0.8 * d_expert, (d_l2sp, d_expert)


@pytest.mark.slow
def test_a_finished_job_is_not_redone(smoke_params, smoke_corpus, smoke_base):
    out = train_strategy(smoke_params, "expert", "slavic", smoke_corpus, progress=False)
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    # The finished run keeps its log and result; its checkpoints (3.2 GB each at the small scale) are gone.
    work = out.parent.parent / "train" / "expert.slavic"
    assert (work / "metrics.jsonl").exists() and (work / "result.json").exists()
    assert not (work / "checkpoints").exists()
    assert train_strategy(smoke_params, "expert", "slavic", smoke_corpus, progress=False) == out
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp


def test_training_switches_added_later_leave_old_cache_keys_alone():
    from famlib.config import training_key

    section = {"lr": 1e-3, "batch_size": 8, "trim_vocab": False}
    assert training_key(section) == {"lr": 1e-3, "batch_size": 8}  # what the key hashed before the switch existed
    assert training_key({**section, "trim_vocab": True})["trim_vocab"] is True


@pytest.mark.slow
def test_trimmed_vocabulary_training_saves_a_full_gemma3_and_moves_only_used_rows(smoke_corpus, smoke_base):
    import json

    from famlib.config import load_params
    from famlib.strategies.training import job_key

    params = load_params("smoke", {"training.family.trim_vocab": True})
    out = train_strategy(params, "l2sp", "slavic", smoke_corpus, progress=False)
    prov = json.loads((out / "famlib_provenance.json").read_text())
    kept, vocab = prov["trim_vocab"]["kept_ids"], prov["trim_vocab"]["vocab_size"]
    assert 0 < kept < vocab
    assert job_key(params, "l2sp", "slavic", "b", "d") != job_key(load_params("smoke"), "l2sp", "slavic", "b", "d")
    base, tuned = load_file(smoke_base / "model.safetensors"), load_file(out / "model.safetensors")
    assert set(base) == set(tuned) and all(base[k].shape == tuned[k].shape for k in base)
    emb = next(k for k in base if k.endswith("embed_tokens.weight"))
    moved = (tuned[emb] != base[emb]).any(dim=1)
    assert 0 < int(moved.sum()) <= kept  # rows of ids the data never uses keep the base's values
    assert any(not torch.equal(tuned[k], base[k]) for k in base if ".layers." in k)
