"""famlib.vocab: vocabulary trimming for CPT. A tiny random Gemma 3 (vocabulary 512), a random subset of ids.

What is checked: the trimmed model computes exactly the full model's logits on the kept columns; its
gradient is exactly the gradient of the full model under a softmax restricted to the kept ids; exporting
writes the trained rows back and leaves the dropped rows bit-identical; special ids, ``padding_idx``, an
untied head, the training context manager (with ``famlib.train.train`` and L2-SP) and the errors.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import AutoModelForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig  # noqa: E402

from famlib.config import L2SPConfig, TrainConfig  # noqa: E402
from famlib.strategies import LayerRangeL2SP  # noqa: E402
from famlib.train import param_groups, train  # noqa: E402
from famlib.vocab import (TrimmedVocab, VocabError, export_full, trim_model, trimmed_for_training,  # noqa: E402
                          untrim_into, used_token_ids)

V, SEQ = 512, 16
PAD, EOS, BOS = 0, 1, 2


def tiny_model(tied: bool = True, layers: int = 3, seed: int = 0) -> Gemma3ForCausalLM:
    config = Gemma3TextConfig(vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                              max_position_embeddings=64, sliding_window=8, tie_word_embeddings=tied,
                              pad_token_id=PAD, eos_token_id=EOS, bos_token_id=BOS)
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(config)
    with torch.no_grad():  # a visible embed_scale would hide a lost one: make it non-trivial anyway
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


class FakeTokenizer:
    bos_token_id, eos_token_id, pad_token_id, unk_token_id = BOS, EOS, PAD, None


def data(rows: int, seed: int, ids: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ids[rng.integers(0, len(ids), size=(rows, SEQ))].astype(np.uint16)


# A random third of the vocabulary occurs in the data (specials are kept by used_token_ids).
IDS_IN_DATA = np.sort(np.random.default_rng(0).choice(np.arange(3, V), size=160, replace=False))
TRAIN, VALID = data(32, 1, IDS_IN_DATA), data(8, 2, IDS_IN_DATA)
KEEP = used_token_ids([TRAIN, VALID], FakeTokenizer())


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One thread in this module (the machine's cores are shared); the session's setting is restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def logits(model, x: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.from_numpy(x.astype(np.int64)), use_cache=False).logits


# ----------------------------------------------------------------------------------------------------
# used_token_ids
# ----------------------------------------------------------------------------------------------------
def test_used_token_ids_union_specials_extra(tmp_path):
    a = np.array([[5, 7], [7, 9]], dtype=np.uint32)
    np.array([11, 5], np.uint16).tofile(tmp_path / "tokens.bin")
    b = np.memmap(tmp_path / "tokens.bin", dtype=np.uint16, mode="r", shape=(1, 2))
    got = used_token_ids([a, None, b], FakeTokenizer(), extra=[300])
    assert got.dtype == np.int64 and got.tolist() == [PAD, EOS, BOS, 5, 7, 9, 11, 300]
    assert used_token_ids(a).tolist() == [5, 7, 9]  # one array, no tokenizer
    assert set(KEEP.tolist()) == set(np.unique(np.concatenate([TRAIN, VALID]))) | {PAD, EOS, BOS}
    assert 100 < len(KEEP) < V // 2


def test_used_token_ids_errors():
    with pytest.raises(VocabError, match="dtype float"):
        used_token_ids([np.zeros(3, np.float32)])
    with pytest.raises(VocabError, match="negative"):
        used_token_ids([np.array([-1, 2])])
    with pytest.raises(VocabError, match="not an integer"):
        used_token_ids([np.array([1])], extra=["x"])


# ----------------------------------------------------------------------------------------------------
# (a) The same logits on the kept columns
# ----------------------------------------------------------------------------------------------------
def test_trimmed_logits_equal_full_logits_on_kept_columns():
    full = tiny_model()
    tv = trim_model(full, KEEP)
    assert isinstance(tv, TrimmedVocab) and tv.vocab_size == len(KEEP) and tv.full_vocab_size == V
    m = tv.model
    assert m.config.vocab_size == len(KEEP) and full.config.vocab_size == V  # the original is untouched
    assert m.get_input_embeddings().weight.shape == (len(KEEP), 64)
    assert m.lm_head.weight is m.get_input_embeddings().weight  # still tied
    assert type(m.get_input_embeddings()).__name__ == "Gemma3TextScaledWordEmbedding"
    assert float(m.get_input_embeddings().embed_scale) == pytest.approx(64 ** 0.5)
    x = VALID
    ref = logits(full, x)[..., torch.from_numpy(KEEP)]
    got = logits(m, tv.remap(x))
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    # The loss is over the kept vocabulary: lower than the full loss (the dropped ids' mass is left out).
    xt = torch.from_numpy(x.astype(np.int64))
    trim_x = torch.from_numpy(tv.remap(x).astype(np.int64))
    with torch.no_grad():
        full_loss = full(input_ids=xt, labels=xt).loss
        trim_loss = m(input_ids=trim_x, labels=trim_x).loss
    assert float(trim_loss) < float(full_loss)


def test_remap_and_unmap_roundtrip():
    tv = trim_model(tiny_model(), KEEP)
    r = tv.remap(TRAIN)
    assert r.dtype == np.uint16 and r.shape == TRAIN.shape and r.max() < len(KEEP)
    np.testing.assert_array_equal(tv.unmap(r), TRAIN.astype(np.int64))
    out = np.zeros(TRAIN.shape, np.int64)
    assert tv.remap(TRAIN, out=out) is out and (out == r).all()
    assert tv.old_to_new[KEEP].tolist() == list(range(len(KEEP)))
    assert (tv.old_to_new[np.setdiff1d(np.arange(V), KEEP)] == -1).all()


def test_special_ids_and_padding_idx_are_remapped():
    full = tiny_model()
    full.generation_config.eos_token_id = [EOS, 300]  # a list, as in Gemma 3's hub generation config
    keep = np.concatenate([np.array([PAD, EOS, BOS]), IDS_IN_DATA])
    keep = keep[keep != 300] if 300 in keep else keep
    tv = trim_model(full, keep)
    o2n = tv.old_to_new
    c, g = tv.model.config, tv.model.generation_config
    assert (c.pad_token_id, c.eos_token_id, c.bos_token_id) == (o2n[PAD], o2n[EOS], o2n[BOS])
    assert g.eos_token_id == [o2n[EOS]]  # 300 was dropped
    assert tv.model.get_input_embeddings().padding_idx == o2n[PAD]
    assert tv.model.model.padding_idx == o2n[PAD] and tv.model.vocab_size == len(keep)
    assert full.generation_config.eos_token_id == [EOS, 300] and full.model.padding_idx == PAD

    # Ids shift when low ids are dropped: keep the specials but not 3..9
    keep2 = np.array([0, 1, 2, 10, 20, 30])
    tv2 = trim_model(tiny_model(), keep2)
    assert tv2.model.config.pad_token_id == 0 and tv2.unmap([3, 4, 5]).tolist() == [10, 20, 30]
    # A dropped pad id becomes None (no padding row)
    tv3 = trim_model(tiny_model(), np.array([1, 2, 10]))
    assert tv3.model.config.pad_token_id is None and tv3.model.get_input_embeddings().padding_idx is None


# ----------------------------------------------------------------------------------------------------
# (b) Training: the exact objective, then export
# ----------------------------------------------------------------------------------------------------
def test_trimmed_gradient_is_full_gradient_of_the_kept_softmax():
    """Trimmed training == full model trained with the softmax restricted to the kept ids (gradients equal)."""
    full = tiny_model()
    tv = trim_model(full, KEEP)
    x = torch.from_numpy(TRAIN[:4].astype(np.int64))
    xt = torch.from_numpy(tv.remap(TRAIN[:4]).astype(np.int64))
    keep_t = torch.from_numpy(KEEP)

    full.train(), tv.model.train()
    z = full(input_ids=x, use_cache=False).logits[..., keep_t]  # full model, kept columns only
    target = xt[:, 1:].reshape(-1)  # the same targets, in trimmed ids
    torch.nn.functional.cross_entropy(z[:, :-1].reshape(-1, len(KEEP)).float(), target).backward()
    tv.model(input_ids=xt, labels=xt, use_cache=False).loss.backward()

    g_full = dict((n, p.grad) for n, p in full.named_parameters())
    for name, p in tv.model.named_parameters():
        if name == "model.embed_tokens.weight":
            torch.testing.assert_close(p.grad, g_full[name][keep_t], atol=1e-6, rtol=1e-5)
            dropped = torch.ones(V, dtype=torch.bool)
            dropped[keep_t] = False
            assert (g_full[name][dropped] == 0).all()  # dropped rows get nothing under this objective
        else:
            torch.testing.assert_close(p.grad, g_full[name], atol=1e-6, rtol=1e-5)


def one_adamw_step(model, x: np.ndarray) -> float:
    model.train()
    groups, _ = param_groups(model, weight_decay=0.1)
    opt = torch.optim.AdamW(groups, lr=1e-2)
    xt = torch.from_numpy(x.astype(np.int64))
    loss = model(input_ids=xt, labels=xt, use_cache=False).loss
    loss.backward()
    opt.step()
    model.eval()
    return float(loss.detach())


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_train_step_then_export(tied, tmp_path):
    base = tiny_model(tied=tied)
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    tv = trim_model(base, KEEP)  # independent copy: base is not touched by training
    one_adamw_step(tv.model, tv.remap(TRAIN[:8]))
    for k, v in base.state_dict().items():
        assert torch.equal(v, base_state[k]), k

    full = export_full(tv.model, copy.deepcopy(base), tv.keep_ids)
    keep_t = torch.from_numpy(KEEP)
    dropped = torch.from_numpy(np.setdiff1d(np.arange(V), KEEP))
    vocab_names = ["model.embed_tokens.weight"] + ([] if tied else ["lm_head.weight"])
    fs, ts = full.state_dict(), tv.model.state_dict()
    for name in vocab_names:
        assert torch.equal(fs[name][dropped], base_state[name][dropped]), f"{name}: dropped rows moved"
        assert torch.equal(fs[name][keep_t], ts[name]), f"{name}: kept rows are not the trained ones"
        assert not torch.equal(fs[name][keep_t], base_state[name][keep_t])
    for name, t in ts.items():
        if name not in vocab_names and name != "lm_head.weight":
            assert torch.equal(fs[name], t), name
    if tied:
        assert full.lm_head.weight is full.model.embed_tokens.weight
    else:
        assert full.lm_head.weight is not full.model.embed_tokens.weight
        assert not torch.equal(fs["lm_head.weight"], fs["model.embed_tokens.weight"])

    # A normal full-vocabulary checkpoint: saved, loaded back by transformers, same logits.
    export_full(tv.model, copy.deepcopy(base), tv.keep_ids, out_dir=tmp_path / "m")
    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "m"), dtype=torch.float32)
    assert loaded.config.vocab_size == V and loaded.config.pad_token_id == PAD
    assert loaded.config.tie_word_embeddings == tied
    torch.testing.assert_close(logits(loaded, VALID), logits(full, VALID))
    # ... and on the kept columns it is the trained trimmed model
    torch.testing.assert_close(logits(loaded, VALID)[..., keep_t], logits(tv.model, tv.remap(VALID)),
                               atol=1e-5, rtol=1e-5)


def test_untrim_into_a_safetensors_style_state_dict():
    base = tiny_model()
    tv = trim_model(base, KEEP)
    one_adamw_step(tv.model, tv.remap(TRAIN[:8]))
    sd = {k: v.clone() for k, v in base.state_dict().items() if k != "lm_head.weight"}  # tied head not stored
    untrim_into(tv.model, sd, KEEP)
    assert torch.equal(sd["model.embed_tokens.weight"][torch.from_numpy(KEEP)],
                       tv.model.model.embed_tokens.weight.detach())
    assert torch.equal(sd["model.norm.weight"], tv.model.model.norm.weight.detach())


def test_untied_logits_and_head_rows():
    full = tiny_model(tied=False)
    tv = trim_model(full, KEEP)
    m = tv.model
    assert m.lm_head.weight is not m.model.embed_tokens.weight
    assert m.lm_head.weight.shape == (len(KEEP), 64) and m.lm_head.out_features == len(KEEP)
    torch.testing.assert_close(m.lm_head.weight, full.lm_head.weight[torch.from_numpy(KEEP)])
    torch.testing.assert_close(logits(m, tv.remap(VALID)), logits(full, VALID)[..., torch.from_numpy(KEEP)],
                               atol=1e-5, rtol=1e-5)


def test_share_weights_shares_everything_but_the_vocabulary():
    full = tiny_model()
    full.model.embed_tokens.weight.requires_grad_(False)
    tv = trim_model(full, KEEP, share_weights=True)
    fp = dict(full.named_parameters())
    for name, p in tv.model.named_parameters():
        if name == "model.embed_tokens.weight":
            assert p is not fp[name] and p.requires_grad is False  # requires_grad carried over
        else:
            assert p is fp[name], name
    assert tv.model.model.layers[0] is not full.model.layers[0]  # modules are copies, tensors shared
    assert full.config.vocab_size == V and full.model.embed_tokens.weight.shape[0] == V


# ----------------------------------------------------------------------------------------------------
# The training helper, with famlib.train.train and L2-SP
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("outside", [0.0, 0.01], ids=["outside0", "outside-anchored"])
def test_trimmed_for_training_with_train_and_l2sp(outside, tmp_path):
    model = tiny_model()
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(lr=1e-2, warmup_steps=1, batch_size=4, max_steps=3, eval_every=2, save_every=100,
                      weight_decay=0.1)
    with trimmed_for_training(model, TRAIN, VALID, FakeTokenizer()) as (tmodel, train_t, val_t):
        assert tmodel.config.vocab_size == len(KEEP) and train_t.max() < len(KEEP) and val_t.shape == VALID.shape
        lambdas = L2SPConfig(first=0.001, middle=0.05, last=0.001, outside=outside)
        reg = LayerRangeL2SP(tmodel, lambdas, first=1, last=1)  # built on the trimmed model
        emb_anchored = any(a.shape[0] == len(KEEP) for anchors in reg.anchors.values() for a in anchors)
        assert emb_anchored == (outside > 0)
        result = train(tmodel, train_t, val_t, cfg, tmp_path / "run", seed=0, regularizer=reg,
                       progress=False, save_model_dir=False)
        assert result.steps == 3
    sd = model.state_dict()
    keep_t, dropped = torch.from_numpy(KEEP), torch.from_numpy(np.setdiff1d(np.arange(V), KEEP))
    emb = "model.embed_tokens.weight"
    assert sd[emb].shape[0] == V and model.config.vocab_size == V
    assert torch.equal(sd[emb][dropped], base_state[emb][dropped])
    assert torch.equal(sd[emb][keep_t], tmodel.model.embed_tokens.weight.detach())
    assert not torch.equal(sd[emb][keep_t], base_state[emb][keep_t])
    assert not torch.equal(sd["model.layers.0.mlp.up_proj.weight"], base_state["model.layers.0.mlp.up_proj.weight"])
    torch.testing.assert_close(logits(model, VALID)[..., keep_t], logits(tmodel, val_t), atol=1e-5, rtol=1e-5)

    # The same job again on a fresh copy of the base: train() finds the finished run's checkpoint (same
    # names, shapes and data), resumes from it, and the written-back model is the same.
    again = tiny_model()
    with trimmed_for_training(again, TRAIN, VALID, FakeTokenizer()) as (tmodel2, train_t, val_t):
        reg = LayerRangeL2SP(tmodel2, lambdas, first=1, last=1)
        result2 = train(tmodel2, train_t, val_t, cfg, tmp_path / "run", seed=0, regularizer=reg,
                        progress=False, save_model_dir=False)
    assert result2.resumed_from == 3
    for k, v in again.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_trimmed_for_training_writes_back_on_error():
    model = tiny_model()
    with pytest.raises(RuntimeError, match="boom"):
        with trimmed_for_training(model, TRAIN, None, FakeTokenizer()) as (tmodel, _, val_t):
            assert val_t is None
            with torch.no_grad():
                tmodel.model.embed_tokens.weight.add_(1.0)
            raise RuntimeError("boom")
    keep = torch.from_numpy(used_token_ids(TRAIN, FakeTokenizer()))  # no validation set this time
    assert torch.equal(model.model.embed_tokens.weight[keep], tmodel.model.embed_tokens.weight)


# ----------------------------------------------------------------------------------------------------
# (d) Errors
# ----------------------------------------------------------------------------------------------------
def test_errors():
    full = tiny_model()
    with pytest.raises(VocabError, match="outside the model's vocabulary"):
        trim_model(full, np.array([1, V]))
    with pytest.raises(VocabError, match="more than once"):
        trim_model(full, np.array([1, 5, 5]))
    with pytest.raises(VocabError, match="non-empty 1-D"):
        trim_model(full, np.array([], np.int64))
    with pytest.raises(VocabError, match="dtype float"):
        trim_model(full, np.array([1.0, 2.0]))
    with pytest.raises(VocabError, match="not an nn.Embedding"):
        trim_model(torch.nn.Linear(2, 2), KEEP)

    tv = trim_model(full, KEEP)
    dropped = int(np.setdiff1d(np.arange(V), KEEP)[0])
    with pytest.raises(VocabError, match=f"token id {dropped} occurs in the tokens but is not in the trimmed"):
        tv.remap(np.array([[int(KEEP[0]), dropped]]))
    with pytest.raises(VocabError, match=f"token id {V} is outside the full vocabulary"):
        tv.remap(np.array([V]))
    with pytest.raises(VocabError, match=f"trimmed id {len(KEEP)} is outside"):
        tv.unmap([len(KEEP)])

    other = Gemma3ForCausalLM(Gemma3TextConfig(vocab_size=V // 2, hidden_size=64, intermediate_size=128,
                                               num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=1,
                                               head_dim=32, sliding_window=8))
    with pytest.raises(VocabError, match="256 embedding rows"):
        tv.untrim_into(other)
    small = tiny_model(layers=2)
    with pytest.raises(VocabError, match="lacks"):
        untrim_into(tv.model, small, KEEP)
