"""famlib.surgery: revert, soup and interpolate on model directories; identities, refusals, CLI, post-hoc models."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from famlib.naming import ModelIdError
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from famlib import surgery
from famlib.io import sha256_file
from famlib.layers import group_of
from famlib.surgery import SurgeryError
from famlib.cli import build_parser, main as cli_main

LAYERS, FIRST, LAST = 6, 2, 1  # groups: first 0-1, middle 2-4, last 5
SPLIT = dict(first=FIRST, last=LAST)


# ----------------------------------------------------------------------------------------------------
# Fixtures: tiny Gemma 3 models written as Hugging Face directories
# ----------------------------------------------------------------------------------------------------
def _config(**kw):
    from transformers import Gemma3TextConfig

    args = dict(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=LAYERS,
                num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=64,
                sliding_window=16, tie_word_embeddings=True)
    args.update(kw)
    return Gemma3TextConfig(**args)


def _tokenizer(shuffled: bool = False):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    ids = list(range(256))
    if shuffled:  # same size, different meaning of the ids
        ids = ids[1:] + ids[:1]
    tok = Tokenizer(models.WordLevel({f"w{i}": j for i, j in zip(range(256), ids)}, unk_token="w3"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="w3", pad_token="w0", eos_token="w1",
                                   bos_token="w2")


def _save(state, config, path: Path, *, dtype=torch.float32, shard: str | None = None, tokenizer=True) -> Path:
    from transformers import Gemma3ForCausalLM

    with torch.device("meta"):
        model = Gemma3ForCausalLM(config)
    model.load_state_dict(state, assign=True)
    model.tie_weights()
    model.to(dtype).save_pretrained(str(path), **({"max_shard_size": shard} if shard else {}))
    if tokenizer:
        (_tokenizer() if tokenizer is True else tokenizer).save_pretrained(str(path))
    return path


def _random_state(config, seed: int) -> dict[str, torch.Tensor]:
    from transformers import Gemma3ForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Gemma3ForCausalLM(config)
        # Gemma's norms start at 0 (weight = 1 + w): give every tensor values so that nothing is trivially equal.
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
    state = model.state_dict()
    clones = {id(v): v.clone() for v in state.values()}  # a tied head stays the same tensor as the embedding
    return {k: clones[id(v)] for k, v in state.items()}


def _perturbed(state, seed: int, scale: float = 0.02) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {k: v + scale * torch.randn(v.shape, generator=g) for k, v in state.items()}
    if state["lm_head.weight"] is state["model.embed_tokens.weight"]:  # a tied model stays tied
        out["lm_head.weight"] = out["model.embed_tokens.weight"]
    return out


def read_dir(path: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(Path(path).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as fh:
            for k in fh.keys():
                out[k] = fh.get_tensor(k)
    return out


@pytest.fixture(scope="session")
def zoo(tmp_path_factory):
    """base, three tuned relatives, a sharded copy, bf16 copies, an untied pair, and odd ones to refuse."""
    root = tmp_path_factory.mktemp("zoo")
    cfg = _config()
    base = _random_state(cfg, 0)
    d = {"root": root, "config": cfg}
    d["base"] = _save(base, cfg, root / "base")
    for i, name in enumerate(("tuned", "tuned2", "tuned3"), start=1):
        d[name] = _save(_perturbed(base, i), cfg, root / name)
    d["tuned_sharded"] = _save(_perturbed(base, 1), cfg, root / "tuned_sharded", shard="40KB")
    d["base_bf16"] = _save(base, cfg, root / "base_bf16", dtype=torch.bfloat16)
    d["tuned_bf16"] = _save(_perturbed(base, 1), cfg, root / "tuned_bf16", dtype=torch.bfloat16)
    d["tuned2_bf16"] = _save(_perturbed(base, 2), cfg, root / "tuned2_bf16", dtype=torch.bfloat16)
    ucfg = _config(tie_word_embeddings=False)
    ubase = _random_state(ucfg, 0)
    d["ubase"] = _save(ubase, ucfg, root / "ubase")
    d["utuned"] = _save(_perturbed(ubase, 1), ucfg, root / "utuned")
    d["deeper"] = _save(_random_state(_config(num_hidden_layers=LAYERS + 1), 0), _config(num_hidden_layers=LAYERS + 1),
                        root / "deeper")
    d["wider_mlp"] = _save(_random_state(_config(intermediate_size=96), 0), _config(intermediate_size=96),
                           root / "wider_mlp")
    d["other_tok"] = _save(_perturbed(base, 1), cfg, root / "other_tok", tokenizer=_tokenizer(shuffled=True))
    d["no_tok"] = _save(_perturbed(base, 1), cfg, root / "no_tok", tokenizer=False)
    # a file with one tensor renamed and one dropped
    renamed = root / "renamed"
    shutil.copytree(d["tuned"], renamed)
    sd = read_dir(renamed)
    sd["model.layers.0.mlp.up_proj.weight_renamed"] = sd.pop("model.layers.0.mlp.up_proj.weight")
    del sd["model.norm.weight"]
    save_file(sd, str(renamed / "model.safetensors"), metadata={"format": "pt"})
    d["renamed"] = renamed
    # a config that names another architecture
    other = root / "other_arch"
    shutil.copytree(d["tuned"], other)
    c = json.loads((other / "config.json").read_text())
    c["model_type"] = "llama"
    (other / "config.json").write_text(json.dumps(c))
    d["other_arch"] = other
    return d


def groups_of(names):
    return {n: group_of(n, LAYERS, FIRST, LAST) for n in names}


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit for bit: same dtype, shape and bytes."""
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.view(torch.uint8) if a.dtype == torch.bool
                                                                     else a, b)


# ----------------------------------------------------------------------------------------------------
# revert
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("groups", [None, ["middle"], ["first", "last"], ["first", "middle", "last"]])
def test_revert_is_exact(zoo, tmp_path, groups):
    out = surgery.revert(zoo["tuned"], zoo["base"], tmp_path / "rev", groups=groups, **SPLIT)
    got, base, tuned = read_dir(out), read_dir(zoo["base"]), read_dir(zoo["tuned"])
    assert set(got) == set(tuned) and "lm_head.weight" not in got  # tied: the head is the embedding matrix
    chosen = groups or ["middle"]
    for name, group in groups_of(got).items():
        want = base[name] if group in chosen else tuned[name]
        assert same(got[name], want), (name, group)
    # outside parameters are never reverted (famlib.layers rule); every layer reverted leaves only them tuned
    assert same(got["model.embed_tokens.weight"], tuned["model.embed_tokens.weight"])


def test_revert_record(zoo, tmp_path):
    out = surgery.revert(zoo["tuned_sharded"], zoo["base"], tmp_path / "rev", **SPLIT)
    rec = json.loads((out / surgery.RECORD_NAME).read_text())
    assert rec["operation"] == "revert" and rec["groups"] == ["middle"] and rec["reference"] == "tuned"
    assert rec["layer_split"] == {"num_layers": 6, "first": 2, "last": 1,
                                  "layers": {"first": [0, 1], "middle": [2, 3, 4], "last": [5]}}
    tuned_in, base_in = rec["inputs"]
    assert (tuned_in["role"], base_in["role"]) == ("tuned", "base")
    assert base_in["weights_sha256"] == {"model.safetensors": sha256_file(zoo["base"] / "model.safetensors")}
    shards = sorted(p.name for p in zoo["tuned_sharded"].glob("*.safetensors"))
    assert len(shards) > 1 and set(shards) <= set(tuned_in["weights_sha256"])
    assert rec["famlib_version"] == "0.1.0" and rec["tie_word_embeddings"] is True
    assert rec["output_sha256"] == {"model.safetensors": sha256_file(out / "model.safetensors")}
    for f in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (out / f).is_file(), f


def test_revert_untied_head_keeps_tuned(zoo, tmp_path):
    out = surgery.revert(zoo["utuned"], zoo["ubase"], tmp_path / "rev", groups="first,middle,last", **SPLIT)
    got, tuned, base = read_dir(out), read_dir(zoo["utuned"]), read_dir(zoo["ubase"])
    assert same(got["lm_head.weight"], tuned["lm_head.weight"])
    assert not torch.equal(got["lm_head.weight"], base["lm_head.weight"])
    assert all(same(got[n], base[n]) for n, g in groups_of(got).items() if g != "outside")


def test_stray_head_in_a_tied_checkpoint_is_dropped(zoo, tmp_path):
    stray = tmp_path / "stray"
    shutil.copytree(zoo["tuned"], stray)
    sd = read_dir(stray)
    sd["lm_head.weight"] = sd["model.embed_tokens.weight"].clone()
    save_file(sd, str(stray / "model.safetensors"), metadata={"format": "pt"})
    out = surgery.revert(stray, zoo["base"], tmp_path / "rev", **SPLIT)
    assert "lm_head.weight" not in read_dir(out)


# ----------------------------------------------------------------------------------------------------
# soup
# ----------------------------------------------------------------------------------------------------
def _reference_mean(states, weights):
    total = sum(weights)
    return {n: sum(w * s[n].double() for s, w in zip(states, weights)) / total for n in states[0]}


@pytest.mark.parametrize("weights", [None, [1.0, 2.0, 0.5]])
def test_soup_is_the_float32_mean(zoo, tmp_path, weights):
    names = ("tuned", "tuned2", "tuned3")
    out = surgery.soup([zoo[n] for n in names], tmp_path / "soup", weights=weights)
    got, states = read_dir(out), [read_dir(zoo[n]) for n in names]
    ws = weights or [1.0] * 3
    ref = _reference_mean(states, ws)
    for name, t in got.items():
        assert t.dtype == torch.float32
        assert same(t, surgery.soup_tensors((s[name] for s in states), ws)), name  # the documented arithmetic
        torch.testing.assert_close(t.double(), ref[name], rtol=1e-6, atol=1e-7)  # ... is the mean
    rec = json.loads((out / surgery.RECORD_NAME).read_text())
    assert rec["groups"] == ["first", "middle", "last", "outside"] and rec["weights"] == ws


def test_soup_bf16_is_written_in_bf16(zoo, tmp_path):
    out = surgery.soup([zoo["tuned_bf16"], zoo["tuned2_bf16"]], tmp_path / "soup", weights=[3, 1])
    got, a, b = read_dir(out), read_dir(zoo["tuned_bf16"]), read_dir(zoo["tuned2_bf16"])
    for name, t in got.items():
        assert t.dtype == torch.bfloat16
        mean32 = (a[name].float() + (b[name].float() - a[name].float()) * 0.25)  # float32 lerp: the running mean
        assert same(t, mean32.to(torch.bfloat16)), name
        torch.testing.assert_close(t.float(), (0.75 * a[name].double() + 0.25 * b[name].double()).float(),
                                   rtol=2 ** -8, atol=0)


@pytest.mark.parametrize("weights", [None, [1, 2, 0.5]])
@pytest.mark.parametrize("which", ["base", "base_bf16"])
def test_soup_of_identical_models_is_unchanged(zoo, tmp_path, weights, which):
    out = surgery.soup([zoo[which]] * 3, tmp_path / "soup", weights=weights)
    got, want = read_dir(out), read_dir(zoo[which])
    assert set(got) == set(want) and all(same(got[n], want[n]) for n in want)


def test_soup_zero_weight_drops_a_model(zoo, tmp_path):
    out = surgery.soup([zoo["tuned"], zoo["tuned2"]], tmp_path / "soup", weights="0,1")
    got, want = read_dir(out), read_dir(zoo["tuned2"])
    assert all(same(got[n], want[n]) for n in want)


def test_soup_of_sharded_and_single_inputs(zoo, tmp_path):
    a = read_dir(surgery.soup([zoo["tuned_sharded"], zoo["tuned2"]], tmp_path / "a"))
    b = read_dir(surgery.soup([zoo["tuned"], zoo["tuned2"]], tmp_path / "b"))
    assert set(a) == set(b) and all(same(a[n], b[n]) for n in a)


# ----------------------------------------------------------------------------------------------------
# interpolate
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("group", ["first", "middle", "last"])
def test_interpolate_endpoints_and_midpoint(zoo, tmp_path, group):
    base, tuned = read_dir(zoo["base"]), read_dir(zoo["tuned"])
    for alpha in (0.0, 0.5, 1.0):
        got = read_dir(surgery.interpolate(zoo["base"], zoo["tuned"], tmp_path / f"a{alpha}", groups=group,
                                           alpha=alpha, **SPLIT))
        for name, g in groups_of(got).items():
            if g != group or alpha == 1.0:
                assert same(got[name], tuned[name]), (alpha, name)  # other groups untouched
            elif alpha == 0.0:
                assert same(got[name], base[name]), name
            else:
                assert same(got[name], (base[name] + tuned[name]) / 2), name  # the midpoint, one rounding


def test_interpolate_two_groups_and_extrapolation(zoo, tmp_path):
    base, tuned = read_dir(zoo["base"]), read_dir(zoo["tuned"])
    got = read_dir(surgery.interpolate(zoo["base"], zoo["tuned"], tmp_path / "x", groups=["first", "last"],
                                       alpha=1.5, allow_extrapolation=True, **SPLIT))
    for name, g in groups_of(got).items():
        if g in ("first", "last"):
            torch.testing.assert_close(got[name], base[name] + 1.5 * (tuned[name] - base[name]))
        else:
            assert same(got[name], tuned[name])


def test_interpolate_bf16_in_float32(zoo, tmp_path):
    base, tuned = read_dir(zoo["base_bf16"]), read_dir(zoo["tuned_bf16"])
    got = read_dir(surgery.interpolate(zoo["base_bf16"], zoo["tuned_bf16"], tmp_path / "x", groups="middle",
                                       alpha=0.25, **SPLIT))
    for name, g in groups_of(got).items():
        assert got[name].dtype == torch.bfloat16
        if g == "middle":
            assert same(got[name], surgery.interpolate_tensor(base[name], tuned[name], 0.25))
            torch.testing.assert_close(got[name].float(), (0.75 * base[name].float() + 0.25 * tuned[name].float()),
                                       rtol=2 ** -8, atol=1e-6)


# ----------------------------------------------------------------------------------------------------
# Sharded inputs and outputs, and loading with transformers
# ----------------------------------------------------------------------------------------------------
def test_sharded_input_and_output(zoo, tmp_path):
    from transformers import AutoModelForCausalLM

    one = read_dir(surgery.revert(zoo["tuned"], zoo["base"], tmp_path / "one", **SPLIT))
    out = surgery.revert(zoo["tuned_sharded"], zoo["base"], tmp_path / "many", max_shard_size="30KB", **SPLIT)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1 and set(index["weight_map"]) == set(one)
    many = read_dir(out)
    assert all(same(many[n], one[n]) for n in one)
    AutoModelForCausalLM.from_pretrained(str(out))  # transformers reads the streamed shards


def _logits(model, ids):
    model.eval()
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("method, inputs, options", [
    ("revert", ("tuned", "base"), dict(SPLIT)),
    ("revert", ("utuned", "ubase"), dict(SPLIT, groups="first,last")),
    ("soup", ("tuned", "tuned2", "tuned3"), {"weights": [1, 2, 3]}),
    ("interpolate", ("base", "tuned"), dict(SPLIT, groups="middle", alpha=0.3)),
])
def test_output_loads_and_matches_the_operation_in_memory(zoo, tmp_path, method, inputs, options):
    from transformers import AutoModelForCausalLM

    res = surgery.apply(method, [zoo[i] for i in inputs], tmp_path / "out", **options)
    loaded = AutoModelForCausalLM.from_pretrained(str(res.path))
    models = [AutoModelForCausalLM.from_pretrained(str(zoo[i])) for i in inputs]
    state = surgery.apply_state_dicts(method, [m.state_dict() for m in models], config=models[0].config.to_dict(),
                                      **options)
    ref = models[0]
    ref.load_state_dict(state)
    ids = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))
    assert torch.equal(_logits(loaded, ids), _logits(ref, ids))


def test_in_memory_revert_by_hand(zoo):
    """The in-memory path against a hand-written revert (so the two paths are not only equal to each other)."""
    from transformers import AutoModelForCausalLM

    tuned = AutoModelForCausalLM.from_pretrained(str(zoo["tuned"])).state_dict()
    base = AutoModelForCausalLM.from_pretrained(str(zoo["base"])).state_dict()
    got = surgery.apply_state_dicts("revert", [tuned, base], num_layers=LAYERS, **SPLIT)
    for name, g in groups_of(got).items():
        assert got[name] is (base[name] if g == "middle" else tuned[name])


# ----------------------------------------------------------------------------------------------------
# Refusals
# ----------------------------------------------------------------------------------------------------
def _refused(fn, *patterns, error=SurgeryError):
    with pytest.raises(error) as info:
        fn()
    msg = str(info.value)
    for p in patterns:
        assert p in msg, f"{p!r} not in: {msg}"
    return msg


def test_refuses_different_architectures(zoo, tmp_path):
    _refused(lambda: surgery.soup([zoo["tuned"], zoo["deeper"]], tmp_path / "o"),
             "num_hidden_layers is 6", "but 7", str(zoo["deeper"]))
    _refused(lambda: surgery.soup([zoo["tuned"], zoo["other_arch"]], tmp_path / "o"),
             "model_type is 'gemma3_text'", "'llama'", "config.json")
    _refused(lambda: surgery.soup([zoo["tuned"], zoo["utuned"]], tmp_path / "o"), "tie_word_embeddings is True")


def test_refuses_different_tensor_names(zoo, tmp_path):
    _refused(lambda: surgery.revert(zoo["renamed"], zoo["base"], tmp_path / "o", **SPLIT),
             "different tensor names in tuned", "1 only in tuned: model.layers.0.mlp.up_proj.weight_renamed",
             "2 only in base: model.layers.0.mlp.up_proj.weight, model.norm.weight")


def test_refuses_different_shapes(zoo, tmp_path):
    _refused(lambda: surgery.soup([zoo["tuned"], zoo["wider_mlp"]], tmp_path / "o"),
             "18 tensor(s) differ in shape", "model.layers.0.mlp.down_proj.weight (32, 64) vs (32, 96)",
             str(zoo["wider_mlp"]))


def test_refuses_different_dtypes(zoo, tmp_path):
    _refused(lambda: surgery.soup([zoo["tuned"], zoo["tuned_bf16"]], tmp_path / "o"), "differ in dtype",
             "model.embed_tokens.weight F32 vs BF16")


def test_refuses_different_tokenizers(zoo, tmp_path):
    _refused(lambda: surgery.revert(zoo["other_tok"], zoo["base"], tmp_path / "o", **SPLIT),
             "tokenizers differ", "tokenizer.json", "(256 vs 256 tokens)")
    _refused(lambda: surgery.revert(zoo["no_tok"], zoo["base"], tmp_path / "o", **SPLIT),
             f"tuned {zoo['no_tok']} has no tokenizer files but base {zoo['base']} has tokenizer.json")
    _refused(lambda: surgery.revert(zoo["base"], zoo["no_tok"], tmp_path / "o", **SPLIT),
             f"base {zoo['no_tok']} has no tokenizer files but tuned {zoo['base']} has tokenizer.json")


def test_tokenizer_runtime_settings_do_not_count(zoo, tmp_path):
    padded = tmp_path / "padded"
    shutil.copytree(zoo["tuned"], padded)
    tj = json.loads((padded / "tokenizer.json").read_text())
    tj["padding"] = {"strategy": "BatchLongest", "direction": "Left", "pad_to_multiple_of": None, "pad_id": 0,
                     "pad_type_id": 0, "pad_token": "w0"}
    (padded / "tokenizer.json").write_text(json.dumps(tj))
    surgery.revert(padded, zoo["base"], tmp_path / "o", **SPLIT)


@pytest.mark.parametrize("split, patterns", [
    (dict(first=5, last=1), ["first=5, last=1 does not fit", "6 decoder layers", "allowed 1..4"]),
    (dict(first=3, last=3), ["first=3, last=3 does not fit", "middle group is not empty"]),
    (dict(first=0, last=1), ["first=0"]),
    (dict(first=2, last=1, num_layers=8), ["num_layers=8", "num_hidden_layers=6"]),
    (dict(first=None, last=1), ["needs the layer split"]),
])
def test_refuses_a_split_outside_the_depth(zoo, tmp_path, split, patterns):
    _refused(lambda: surgery.revert(zoo["tuned"], zoo["base"], tmp_path / "o", **split), *patterns)


def test_refuses_unknown_or_outside_groups(zoo, tmp_path):
    _refused(lambda: surgery.revert(zoo["tuned"], zoo["base"], tmp_path / "o", groups="midle", **SPLIT),
             "'midle'", "Did you mean 'middle'")
    _refused(lambda: surgery.interpolate(zoo["base"], zoo["tuned"], tmp_path / "o", groups="outside", alpha=0.5,
                                         **SPLIT), "'outside'", "keep the tuned values")
    _refused(lambda: surgery.interpolate(zoo["base"], zoo["tuned"], tmp_path / "o", groups="", alpha=0.5, **SPLIT),
             "name the layer groups")


@pytest.mark.parametrize("alpha", [1.5, -0.1, float("nan"), "x"])
def test_refuses_alpha(zoo, tmp_path, alpha):
    _refused(lambda: surgery.interpolate(zoo["base"], zoo["tuned"], tmp_path / "o", groups="middle", alpha=alpha,
                                         **SPLIT), "alpha")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("weights, pattern", [
    ([1, -1, 1], "weight 2 of [1.0, -1.0, 1.0] is -1"),
    ([0, 0, 0], "sum to 0"),
    ([1, 2], "2 weights [1.0, 2.0] for 3 models"),
    ([1, float("nan"), 1], "finite"),
    ("1,a,2", "expected 3 numbers"),
])
def test_refuses_weights(zoo, tmp_path, weights, pattern):
    _refused(lambda: surgery.soup([zoo["tuned"], zoo["tuned2"], zoo["tuned3"]], tmp_path / "o", weights=weights),
             pattern)


def test_refuses_unknown_method_and_option(zoo, tmp_path):
    _refused(lambda: surgery.get_method("sop"), "unknown surgery method 'sop'", "Did you mean 'soup'",
             "Known: revert, soup, interpolate")
    _refused(lambda: surgery.apply("soup", [zoo["tuned"]], tmp_path / "o", alpha=0.5), "unknown option(s) alpha")
    _refused(lambda: surgery.apply("revert", [zoo["tuned"]], tmp_path / "o", **SPLIT), "takes 2 models")


def test_refuses_to_overwrite(zoo, tmp_path):
    out = surgery.revert(zoo["tuned"], zoo["base"], tmp_path / "o", **SPLIT)
    mtime = (out / "model.safetensors").stat().st_mtime_ns
    again = surgery.apply("revert", [zoo["tuned"], zoo["base"]], out, **SPLIT)
    assert again.status == "unchanged" and (out / "model.safetensors").stat().st_mtime_ns == mtime
    _refused(lambda: surgery.revert(zoo["tuned2"], zoo["base"], out, **SPLIT), "exists", "overwrite=True")
    assert surgery.apply("revert", [zoo["tuned2"], zoo["base"]], out, overwrite=True, **SPLIT).status == "written"
    _refused(lambda: surgery.soup([zoo["tuned"], out], out), "also an input")
    _refused(lambda: surgery.soup([zoo["tuned"], tmp_path / "nowhere"], tmp_path / "p"), "not a directory")


# ----------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------
def test_cli_revert_soup_interpolate(zoo, tmp_path, capsys):
    parser = build_parser()
    args = parser.parse_args(["revert", "--tuned", str(zoo["tuned"]), "--base", str(zoo["base"]),
                              "--out", str(tmp_path / "rev"), "--first", "2", "--last", "1"])
    assert args.func(args) == 0
    assert "wrote" in capsys.readouterr().out
    want = read_dir(surgery.revert(zoo["tuned"], zoo["base"], tmp_path / "rev_api", **SPLIT))
    got = read_dir(tmp_path / "rev")
    assert all(same(got[n], want[n]) for n in want)

    assert cli_main(["soup", str(zoo["tuned"]), str(zoo["tuned2"]), "--out", str(tmp_path / "soup"),
                     "--weights", "1,3"]) == 0
    assert json.loads((tmp_path / "soup" / surgery.RECORD_NAME).read_text())["weights"] == [1.0, 3.0]

    assert cli_main(["interpolate", "--base", str(zoo["base"]), "--tuned", str(zoo["tuned"]), "--groups", "last",
                     "--alpha", "0", "--out", str(tmp_path / "int"), "--first", "2", "--last", "1"]) == 0
    got, base = read_dir(tmp_path / "int"), read_dir(zoo["base"])
    assert same(got["model.layers.5.mlp.up_proj.weight"], base["model.layers.5.mlp.up_proj.weight"])

    # unchanged on a rerun, refused without --force when different, replaced with it
    assert cli_main(["soup", str(zoo["tuned"]), str(zoo["tuned2"]), "--out", str(tmp_path / "soup"),
                     "--weights", "1,3"]) == 0
    assert "already" in capsys.readouterr().out
    assert cli_main(["soup", str(zoo["tuned"]), str(zoo["tuned2"]), "--out", str(tmp_path / "soup")]) == 2
    assert "--force" in capsys.readouterr().err
    assert cli_main(["soup", str(zoo["tuned"]), str(zoo["tuned2"]), "--out", str(tmp_path / "soup"), "--force"]) == 0


def test_cli_errors_name_the_problem(zoo, tmp_path, capsys):
    rc = cli_main(["interpolate", "--base", str(zoo["base"]), "--tuned", str(zoo["tuned"]), "--groups", "middle",
                   "--alpha", "2", "--out", str(tmp_path / "o"), "--first", "2", "--last", "1"])
    assert rc == 2 and "alpha=2 is outside [0, 1]" in capsys.readouterr().err
    assert cli_main(["interpolate", "--base", str(zoo["base"]), "--tuned", str(zoo["tuned"]), "--groups", "middle",
                     "--alpha", "2", "--allow-extrapolation", "--out", str(tmp_path / "o"), "--first", "2",
                     "--last", "1"]) == 0
    rc = cli_main(["revert", "--tuned", str(zoo["tuned"]), "--base", str(zoo["base"]), "--out", str(tmp_path / "r"),
                   "--scale", "smoke"])  # smoke models have 5 layers, these 6
    assert rc == 2 and "num_hidden_layers=6" in capsys.readouterr().err
    rc = cli_main(["revert", "--tuned", str(zoo["tuned"]), "--base", str(zoo["base"]), "--out", str(tmp_path / "r"),
                   "--scale", "smoke", "--first", "1"])
    assert rc == 2 and "either --scale or --first/--last" in capsys.readouterr().err


def _damaged_copy(src: Path, dst: Path, damage: str, file: str = "model.safetensors") -> Path:
    """A copy of a model directory whose weight file is truncated, torn in its header, random bytes or JSON."""
    shutil.copytree(src, dst)
    f = dst / file
    data = f.read_bytes()
    f.write_bytes({"truncated": data[: len(data) // 2], "header_cut": data[:40], "empty": b"",
                   "random": torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0),
                                           dtype=torch.uint8).numpy().tobytes(),
                   "json": (src / "config.json").read_bytes()}[damage])
    return dst


def test_cli_soup_refuses_a_truncated_model_file_in_one_line(zoo, tmp_path):
    """A torn model.safetensors among the inputs: exit code 2, one line naming the file, no traceback, no output."""
    import os
    import subprocess
    import sys

    torn = _damaged_copy(zoo["tuned2"], tmp_path / "torn", "truncated")
    out = tmp_path / "soup"
    proc = subprocess.run([sys.executable, "-m", "famlib.cli", "soup", str(zoo["tuned"]), str(torn), "--out", str(out)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "SafetensorError" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"famlib: {torn / 'model.safetensors'}: cannot be read as safetensors: truncated, "), lines
    assert lines[0].endswith("re-copy or re-save the checkpoint"), lines
    assert not out.exists() and not list(tmp_path.glob(".soup*"))  # nothing written, not even a temporary folder
    assert proc.stdout == ""


@pytest.mark.parametrize("damage, what", [
    ("truncated", "truncated, "), ("header_cut", "truncated inside its header"), ("empty", "empty (0 bytes)"),
    ("random", "not a safetensors file"), ("json", "not a safetensors file, it holds text"),
])
@pytest.mark.parametrize("command", ["soup", "revert", "interpolate"])
def test_cli_names_a_torn_or_foreign_weight_file(zoo, tmp_path, capsys, damage, what, command):
    bad = _damaged_copy(zoo["tuned"], tmp_path / "bad", damage)
    out = tmp_path / "out"
    argv = {"soup": ["soup", str(zoo["tuned2"]), str(bad)],
            "revert": ["revert", "--tuned", str(bad), "--base", str(zoo["base"]), "--first", "2", "--last", "1"],
            "interpolate": ["interpolate", "--base", str(zoo["base"]), "--tuned", str(bad), "--groups", "middle",
                            "--alpha", "0.5", "--first", "2", "--last", "1"]}[command]
    assert cli_main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"famlib: {bad / 'model.safetensors'}: cannot be read as safetensors: "
                                                   f"{what}"), err
    assert "re-copy or re-save the checkpoint" in err
    assert not out.exists()


def test_a_torn_shard_and_a_file_torn_after_opening_are_named(zoo, tmp_path):
    shard = sorted(p.name for p in zoo["tuned_sharded"].glob("model-*.safetensors"))[1]
    bad = _damaged_copy(zoo["tuned_sharded"], tmp_path / "bad_shard", "truncated", file=shard)
    with pytest.raises(SurgeryError, match=re.escape(f"{shard}: cannot be read as safetensors: truncated")):
        surgery.soup([zoo["tuned"], bad], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # headers read fine, then the file is cut (a copy still under way): the tensor read names the file too
    src = surgery.ModelDir(shutil.copytree(zoo["tuned"], tmp_path / "later"))
    f = tmp_path / "later" / "model.safetensors"
    f.write_bytes(f.read_bytes()[:1000])
    with pytest.raises(SurgeryError, match=re.escape(f"{f}: cannot be read as safetensors: truncated")):
        src.get(src.names()[0])


def test_cli_registers_on_another_parser():
    import argparse

    from famlib.surgery.cli import add_subcommands

    ap = argparse.ArgumentParser(prog="famlib")
    add_subcommands(ap.add_subparsers(dest="command", required=True))
    args = ap.parse_args(["soup", "a", "b", "--out", "c"])
    assert args.models == ["a", "b"] and args.func.__name__ == "cmd_soup"


# ----------------------------------------------------------------------------------------------------
# Model ids and the post-hoc models of a scale
# ----------------------------------------------------------------------------------------------------
def test_model_ids(smoke_params, tmp_path, monkeypatch):
    monkeypatch.setenv("FAMLIB_RUNS", str(tmp_path))
    assert surgery.model_id("expert", "slavic") == "expert.slavic"
    assert surgery.model_id("dense_reverted") == "dense_reverted"
    assert surgery.parse_model_id("expert_reverted.romance") == ("expert_reverted", "romance")
    assert surgery.model_path(smoke_params, "freeze.slavic") == tmp_path / "smoke" / "models" / "freeze.slavic"
    _refused(lambda: surgery.model_id("expert"), "one model per family", error=ModelIdError)
    _refused(lambda: surgery.model_id("soup", "slavic"), "single model", error=ModelIdError)
    _refused(lambda: surgery.model_id("exprt", "slavic"), "Did you mean 'expert'", error=ModelIdError)
    _refused(lambda: surgery.model_path(smoke_params, "expert.germanic"), "family 'germanic' is not in", error=ModelIdError)
    ids = surgery.all_model_ids(smoke_params)
    assert ids[:3] == ["base", "dense", "expert.slavic"] and "freeze_soup" in ids and len(ids) == 13


@pytest.fixture()
def fake_runs(smoke_params, tmp_path, monkeypatch):
    """Fake trained models of the smoke scale (5 layers, split 1/3/1) under a temporary runs folder."""
    monkeypatch.setenv("FAMLIB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("FAMLIB_FIGURES", str(tmp_path / "figures"))
    cfg = _config(num_hidden_layers=smoke_params.model.num_layers)
    base = _random_state(cfg, 0)
    _save(base, cfg, surgery.model_path(smoke_params, "base"))
    trained = ["dense"] + [surgery.model_id(s, f) for s in ("expert", "freeze", "l2sp") for f in smoke_params.families]
    for i, mid in enumerate(trained, start=1):
        _save(_perturbed(base, i), cfg, surgery.model_path(smoke_params, mid))
    return tmp_path


def test_build_posthoc_models(smoke_params, fake_runs):
    lines = []
    results = surgery.build_posthoc_models(smoke_params, log=lines.append)
    assert [r.model_id for r in results] == ["dense_reverted", "expert_reverted.slavic", "expert_reverted.romance",
                                             "soup", "freeze_soup"]
    assert {r.status for r in results} == {"written"} and len(lines) == 5
    path = lambda m: surgery.model_path(smoke_params, m)  # noqa: E731
    soup = read_dir(path("soup"))
    experts = [read_dir(path(f"expert.{f}")) for f in smoke_params.families]
    assert all(same(soup[n], surgery.soup_tensors((e[n] for e in experts), [1, 1])) for n in soup)
    rec = json.loads((path("expert_reverted.romance") / surgery.RECORD_NAME).read_text())
    assert rec["model_id"] == "expert_reverted.romance" and rec["input_model_ids"] == ["expert.romance", "base"]
    assert rec["layer_split"]["layers"]["middle"] == [1, 2, 3]

    again = surgery.build_posthoc_models(smoke_params, log=lambda *_: None)
    assert {r.status for r in again} == {"unchanged"}

    dist = surgery.posthoc_distances(smoke_params)
    assert set(dist["model"]) == set(surgery.all_model_ids(smoke_params)) - {"base"}
    ok = surgery.verify_reverted(dist)
    assert len(ok) == 3 and all(line.startswith("OK:") for line in ok)
    table = surgery.group_distances(dist)
    assert table.loc["dense_reverted", "middle"] == 0 and table.loc["dense", "middle"] > 0
    assert table.loc["dense_reverted", "first"] == table.loc["dense", "first"]
    fig = surgery.layer_distance_figure(dist, smoke_params)
    assert len(fig.axes) >= 9


def test_build_posthoc_models_names_missing_inputs(smoke_params, fake_runs):
    shutil.rmtree(surgery.model_path(smoke_params, "freeze.romance"))
    shutil.rmtree(surgery.model_path(smoke_params, "dense"))
    msg = _refused(lambda: surgery.build_posthoc_models(smoke_params, log=lambda *_: None),
                   "2 of 5 post-hoc models cannot be built yet", "dense_reverted needs: dense (",
                   "freeze_soup needs: freeze.romance (", "strategy=freeze, family=romance")
    assert str(surgery.model_path(smoke_params, "freeze.romance")) in msg
    results = surgery.build_posthoc_models(smoke_params, skip_missing=True, log=lambda *_: None)
    status = {r.model_id: r.status for r in results}
    assert status == {"dense_reverted": "missing inputs", "expert_reverted.slavic": "written",
                      "expert_reverted.romance": "written", "soup": "written", "freeze_soup": "missing inputs"}


def test_verify_reverted_catches_a_wrong_revert(smoke_params, fake_runs):
    surgery.build_posthoc_models(smoke_params, only=["dense_reverted"], log=lambda *_: None)
    # replace the reverted model by the dense one: its middle layers are not at the base
    target = surgery.model_path(smoke_params, "dense_reverted")
    shutil.rmtree(target)
    shutil.copytree(surgery.model_path(smoke_params, "dense"), target)
    dist = surgery.posthoc_distances(smoke_params, ["dense", "dense_reverted"])
    _refused(lambda: surgery.verify_reverted(dist), "dense_reverted: layers [1, 2, 3]")


@pytest.mark.slow
def test_notebook_04_runs_on_fake_trained_models(fake_runs):
    import papermill as pm

    from famlib.pipeline import NOTEBOOKS

    out = fake_runs / "04.ipynb"
    pm.execute_notebook(str(NOTEBOOKS / "04_posthoc_surgery.ipynb"), str(out), parameters={"scale": "smoke"},
                        cwd=str(NOTEBOOKS), progress_bar=False, kernel_name="python3")
    text = out.read_text()
    assert "OK: expert_reverted.slavic" in text
    assert (fake_runs / "figures" / "smoke" / "posthoc_layer_distance.png").stat().st_size > 10_000
