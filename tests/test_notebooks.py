"""Every notebook that exists runs under papermill at smoke scale, through famlib's own runner."""

from __future__ import annotations

import json
import os
from pathlib import Path

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


def test_an_evaluation_step_with_failed_tasks_runs_again_and_the_rest_stays_skipped(smoke_outputs, monkeypatch):
    from famlib.evaluate import results as res

    params = load_params("smoke")
    executed = []

    def fake_execute(step, out, threads=None):  # the notebook's run is not what this tests
        executed.append(step.id)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("{}")

    monkeypatch.setattr(pipeline, "_execute", fake_execute)
    steps = ["05_evaluate.base", "05_evaluate.dense"]
    quiet = dict(only=steps, log=lambda *_: None)
    assert pipeline.run(params, **quiet) == {s: "ran" for s in steps}
    assert pipeline.run(params, **quiet) == {s: "skipped" for s in steps}
    failure = {"model": "dense", "harness_task": "famlib_translation_en-es", "task": "translation",
               "language": "es", "direction": "en-xx", "error": "OSError: gated", "cache_key": "k",
               "evaluated_at": "now"}
    res.write_failed_part("smoke", "dense", failure["harness_task"], "k", failure)
    res.merge_results("smoke")
    executed.clear()
    assert pipeline.run(params, **quiet) == {"05_evaluate.base": "skipped", "05_evaluate.dense": "ran"}
    assert executed == ["05_evaluate.dense"]
    res.part_path("smoke", "dense", failure["harness_task"]).unlink()  # what a successful retry leaves
    res.merge_results("smoke")
    assert pipeline.run(params, **quiet) == {s: "skipped" for s in steps}


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
    params = load_params("smoke")
    lines = pipeline.plan_lines(params)
    assert lines and all(len(line.split("\t")) == 6 for line in lines)
    assert lines[0].split("\t")[1] == "01_data_prep" and lines[0].split("\t")[3] == "0"
    assert lines[0].endswith("famlib run --scale smoke --step 01_data_prep")
    # levels: every step's dependencies sit in earlier levels, so running level by level is valid
    depth = {line.split("\t")[1]: int(line.split("\t")[3]) for line in lines}
    for line in lines:
        deps = line.split("\t")[2]
        for d in ([] if deps == "-" else deps.split(",")):
            assert depth[d] < depth[line.split("\t")[1]]
    level1 = pipeline.plan_lines(params, "commands", level=1)
    assert level1 == ["famlib run --scale smoke --step 02_base_model"]
    with pytest.raises(Exception, match="level"):
        pipeline.plan_lines(params, level=99)


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


def _stamps(runs) -> set[str]:
    return {p.name[: -len(".stamp.json")] for p in (runs / "smoke" / "notebooks").glob("*.stamp.json")}


@pytest.mark.slow
def test_whole_pipeline_at_smoke_scale_survives_a_kill(smoke_corpus, tmp_path, monkeypatch):
    """`famlib paper` killed midway, then run again, redoes only the unfinished steps; a third run skips all.

    The second run executes every remaining notebook (01-07) through papermill, two at a time.
    """
    import os
    import signal
    import subprocess
    import sys
    import time

    smoke_runs = tmp_path / "runs"  # a fresh runs folder: no stamps left by other tests' partial runs
    monkeypatch.setenv("FAMLIB_RUNS", str(smoke_runs))
    monkeypatch.setenv("FAMLIB_FIGURES", str(tmp_path / "figures"))
    env = dict(os.environ)
    params = load_params("smoke")
    steps = [st.id for st in pipeline.plan(params)]
    assert "06_layer_interpolation" in steps and steps[-1] == "07_tables_and_figures"
    (smoke_runs / "smoke" / "notebooks").mkdir(parents=True)
    before = _stamps(smoke_runs)
    log_path = tmp_path / "first_run.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "famlib.cli", "paper", "--scale", "smoke"], env=env,
                                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 300
        while len(_stamps(smoke_runs) - before) < 3 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.5)
        exited = proc.poll()
        if exited is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the runner and its kernel, mid-step
        proc.wait()
    finished = _stamps(smoke_runs)
    tail = log_path.read_text(errors="replace")[-4000:]
    assert exited is None, f"the first run ended by itself (exit status {exited}) before the kill:\n{tail}"
    assert 3 <= len(finished) < len(steps), f"the kill must land midway; {len(finished)} steps done:\n{tail}"
    state = {r["step"]: r["state"] for r in pipeline.status(params)}
    assert {s for s, v in state.items() if v == "done"} == finished
    assert "started" in state.values()  # the step the kill interrupted left its papermill copy
    assert set(state.values()) <= {"done", "started", "pending"}

    status = pipeline.run(params, jobs=2, log=lambda *_: None)
    assert {s for s, v in status.items() if v == "skipped"} == finished
    assert {s for s, v in status.items() if v == "ran"} == set(steps) - finished
    assert pipeline.run(params, jobs=2, log=lambda *_: None) == {s: "skipped" for s in steps}
    rows = pipeline.status(params)
    assert [r["step"] for r in rows] == steps
    assert all(r["state"] == "done" and r["seconds"] > 0 and r["finished"] for r in rows)
    changed = load_params("smoke", {"evaluation.max_items": 3})
    assert {r["state"] for r in pipeline.status(changed)} == {"stale"}  # every step reads the params

    smoke = smoke_runs / "smoke"
    from famlib.evaluate import load_results
    from famlib.naming import all_model_ids

    results = load_results("smoke")
    assert set(results["model"]) == set(all_model_ids(params))
    interp = load_results("smoke", "interpolation")
    assert set(interp["group"]) == {"first", "middle", "last", "all"}
    assert set(interp["alpha"].astype(float)) == set(params.interpolation.alphas)
    # alpha = 1 is Dense itself: its rows are Dense's own evaluation, reused, not a second one
    at_dense = interp[interp["alpha"].astype(float) == 1.0].set_index(["harness_task", "metric"])["value"]
    dense = results[results["model"] == "dense"].set_index(["harness_task", "metric"])["value"]
    assert len(at_dense) and (dense.loc[at_dense.index] == at_dense).all()
    assert (smoke / "results" / "layer_distance.csv").exists()
    for name in ("table2", "table3", "table4", "table5", "table9"):
        assert (smoke / "tables" / f"{name}.md").read_text().count("|") > 10
        assert "\\begin{tabular}" in (smoke / "tables" / f"{name}.tex").read_text()
    for name in ("figure2", "figure3", "figure4", "figure5", "frontier", "drift"):
        assert (tmp_path / "figures" / "smoke" / f"{name}.png").stat().st_size > 10_000, name
        assert (tmp_path / "figures" / "smoke" / f"{name}.pdf").exists(), name
    report = (smoke / "report.md").read_text()
    assert "## Claims across scales" in report
    # the instrument's gates and every difference with its paired interval are in the report
    assert "## The instrument's gates" in report and "`passage_verse_4way`" in report and "`verse_match_2way`" in report
    assert "## Differences from the base, with paired 95 % intervals" in report
    import pandas as pd

    gates = pd.read_csv(smoke / "results" / "gates_table.csv")
    assert set(gates["task"]) == {"passage_verse_4way", "verse_match_2way"}
    assert (gates["random_n"] > 0).all() and set(gates["random_gate"]) <= {"passes", "fails"}
    verdicts = pd.read_csv(tmp_path / "figures" / "smoke" / "claims.csv")["verdict"]
    assert set(verdicts) <= {"holds", "does not hold", "undecided", "not measured"}
    # every result has its per-item records
    for r in results[results["primary"].astype(bool)].itertuples():
        assert (smoke / "results" / "items" / r.model / f"{r.harness_task}.jsonl.gz").exists(), (r.model, r.harness_task)
    assert (tmp_path / "figures" / "smoke" / "claims.csv").read_text().count("\nC") == 11
    # the dose-response study (notebook 08) ran its grid and the report reads its table
    points = pd.read_csv(smoke / "dose" / "points.csv")
    assert points["model"].nunique() == len(params.dose.lrs) * len(params.dose.steps) * len(params.dose.strategies)
    assert "## Dose-response study" in report and "dose_forgetting" in report
    for name in ("dose_forgetting", "dose_tradeoff"):
        assert (tmp_path / "figures" / "smoke" / f"{name}.png").stat().st_size > 10_000, name
    for cid in range(1, 12):
        assert f"C{cid} " in report or f"C{cid}|" in report or f"| C{cid}" in report, f"C{cid} missing from report"
    # every model's provenance holds the resolved parameters it was made with
    from famlib.naming import model_path

    resolved = params.to_dict()
    with_params = []
    for mid in all_model_ids(params):
        mdir = model_path(params, mid)
        prov = mdir / "famlib_provenance.json"
        record = json.loads((prov if prov.exists() else mdir / "famlib_surgery.json").read_text())
        assert record["params"] == resolved, mid
        with_params.append(mid)
    assert {"base", "dense", "soup", "dense_reverted"} <= set(with_params)
    # every executed notebook is kept, named by its parameters
    assert {p.stem for p in (smoke / "notebooks").glob("*.ipynb")} >= set(steps)
    # and holds famlib's output, not lm-eval's or tqdm's notices about choices famlib makes on purpose
    noise = ("Overwriting default num_fewshot", "`pretrained` model kwarg", "already-initialized model",
             "IProgress not found")
    for nb in (smoke / "notebooks").glob("*.ipynb"):
        text = nb.read_text()
        assert not [n for n in noise if n in text], nb.name
    # and ends with what this run found, computed (famlib.summaries), not fixed prose
    found = {"01_data_prep": "Split check: OK", "02_base_model": "bits per byte", "03_train_expert.dense":
             "Relative drift from the base per group", "04_posthoc_surgery": "reverted model(s) checked exactly",
             "06_layer_interpolation": "Change from alpha 0", "07_tables_and_figures": "of the paper's 11 claims",
             "05_evaluate.dense": "dense"}
    for step, text in found.items():
        last = json.loads((smoke / "notebooks" / f"{step}.ipynb").read_text())["cells"][-1]
        shown = "".join("".join(o.get("text", "")) + json.dumps(o.get("data", {})) for o in last.get("outputs", []))
        assert text.lower() in shown.lower(), (step, shown[:500])
    assert all(r["longest"] >= r["seconds"] for r in rows)
    for st in steps:  # each stamp records its own step's execution (two ran side by side)
        stamp = json.loads((smoke / "notebooks" / f"{st}.stamp.json").read_text())
        assert stamp["seconds"] == pipeline._executed(smoke / "notebooks" / f"{st}.ipynb")["duration"], st


def test_overrides_reach_the_notebooks_and_the_cluster_commands(monkeypatch, capsys):
    """`famlib paper|run --set K=V` hands its overrides to the kernels (notebooks load params by scale), and
    `famlib plan --set K=V` puts them on every command it prints."""
    from famlib.cli import main
    from famlib.errors import ConfigError
    from famlib.notebook import setup

    monkeypatch.setenv("FAMLIB_OVERRIDES", "")  # main() sets it; teardown restores the original (absent)
    assert main(["plan", "--scale", "smoke", "--format", "commands", "--set", "evaluation.max_items=7"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.endswith(" --set evaluation.max_items=7") for line in lines)
    assert setup("smoke").evaluation.max_items == 7  # what a kernel started by this process would load
    assert load_params("smoke").evaluation.max_items != 7
    monkeypatch.setenv("FAMLIB_OVERRIDES", "{not json")
    with pytest.raises(ConfigError, match="FAMLIB_OVERRIDES"):
        setup("smoke")


def _one_step_pipeline(tmp_path, monkeypatch, *cells: str):
    """Point the pipeline at a notebooks folder holding only 01_data_prep.ipynb: a parameters cell
    (``scale``) and then ``cells``; runs go to ``tmp_path/runs``. Returns the smoke params."""
    import nbformat

    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params_cell = nbformat.v4.new_code_cell('scale = "tiny"')
    params_cell.metadata["tags"] = ["parameters"]
    nb.cells = [params_cell] + [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, nb_dir / "01_data_prep.ipynb")
    monkeypatch.setattr(pipeline, "NOTEBOOKS", nb_dir)
    monkeypatch.setenv("FAMLIB_RUNS", str(tmp_path / "runs"))
    return load_params("smoke")


def test_a_failing_step_names_notebook_cell_and_error_and_keeps_its_copy(tmp_path, monkeypatch, capsys):
    """A notebook that raises stops the run: the message names the notebook, the cell and the error, the
    executed copy is kept as <step>.failed.ipynb, no stamp is written, and `famlib status` says failed."""
    params = _one_step_pipeline(tmp_path, monkeypatch, "x = 1", "raise ValueError(f'boom at {scale}')")
    assert [st.id for st in pipeline.plan(params)] == ["01_data_prep"]  # only notebooks that exist

    assert pipeline.main_run(params, jobs=1, only=None, force=False) == 1
    err = capsys.readouterr().err
    assert "notebooks/01_data_prep.ipynb failed in cell" in err and "ValueError: boom at smoke" in err
    out = tmp_path / "runs" / "smoke" / "notebooks"
    assert (out / "01_data_prep.failed.ipynb").exists()
    assert not (out / "01_data_prep.stamp.json").exists() and not (out / "01_data_prep.ipynb").exists()
    assert [r["state"] for r in pipeline.status(params)] == ["failed"]
    assert pipeline.main_status(params) == 0
    assert "01_data_prep  failed" in capsys.readouterr().out


def test_a_kernel_that_dies_leaves_a_failed_copy_not_a_running_one_and_a_later_success_clears_it(tmp_path):
    """A dead kernel (here os._exit; in life the OOM killer) is not a cell error: the partial copy is still kept
    as the failed one, the error names the step, and no `.running` copy is left behind."""
    import nbformat

    def notebook(code: str) -> Path:
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell("scale = 'smoke'", metadata={"tags": ["parameters"]}),
                    nbformat.v4.new_code_cell(code)]
        nb.metadata.kernelspec = {"name": "python3", "language": "python", "display_name": "Python 3"}
        nb.metadata.language_info = {"name": "python"}
        path = tmp_path / "source.ipynb"
        nbformat.write(nb, path)
        return path

    out = tmp_path / "out" / "step.ipynb"
    with pytest.raises(pipeline.StepFailed, match=r"step x stopped \(DeadKernelError.*step.failed.ipynb"):
        pipeline.execute_notebook(notebook("import os\nos._exit(9)"), out, {"scale": "smoke"}, tmp_path, "step x")
    assert sorted(q.name for q in out.parent.iterdir()) == ["step.failed.ipynb"]
    pipeline.execute_notebook(notebook("print('fine')"), out, {"scale": "smoke"}, tmp_path, "step x")
    assert sorted(q.name for q in out.parent.iterdir()) == ["step.ipynb"]


def test_pipeline_kernels_run_without_progress_bars(tmp_path, monkeypatch):
    """An unattended step's notebook keeps no progress bars (lm-eval draws one per request batch); a user
    who sets TQDM_DISABLE keeps their value."""
    import nbformat

    params = _one_step_pipeline(
        tmp_path, monkeypatch,
        "import os\nfrom tqdm.auto import tqdm\nprint('TQDM_DISABLE', os.environ.get('TQDM_DISABLE'))\n"
        "for _ in tqdm(range(3), desc='drawn'):\n    pass")
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert pipeline.main_run(params, jobs=1, only=None, force=False) == 0
    executed = nbformat.read(tmp_path / "runs" / "smoke" / "notebooks" / "01_data_prep.ipynb", as_version=4)
    printed = "".join(o.get("text", "") + str(o.get("data", "")) for o in executed.cells[-1].outputs)
    assert "TQDM_DISABLE 1" in printed and "drawn" not in printed
    assert pipeline._kernel_env(2, {"TQDM_DISABLE": "0"}) == {"TQDM_DISABLE": "0", "FAMLIB_THREADS": "2"}


def test_side_by_side_kernels_share_the_thread_budget(monkeypatch):
    """`--jobs N` shares FAMLIB_THREADS (a test worker's share, a user's figure) among the kernels running at
    once instead of giving it to each: two 2-thread kernels on 2 cores made evaluation 4-9x slower."""
    import famlib.threads

    monkeypatch.setenv("FAMLIB_THREADS", "2")
    assert pipeline._threads(jobs=2, side_by_side=2) == 1
    assert pipeline._threads(jobs=2, side_by_side=1) == 2  # alone, it may use the whole budget
    assert pipeline._threads(jobs=4, side_by_side=3) == 1  # never below one
    assert pipeline._threads(jobs=1, side_by_side=1) is None  # one job: the kernel reads FAMLIB_THREADS itself
    monkeypatch.setenv("FAMLIB_THREADS", "8")
    assert pipeline._threads(jobs=2, side_by_side=2) == 4
    monkeypatch.delenv("FAMLIB_THREADS")
    monkeypatch.setattr(pipeline, "available_cores", lambda: 6)
    assert pipeline._threads(jobs=3, side_by_side=5) == 2
    for bad in ("two", "0", "-1", "1.5"):
        monkeypatch.setenv("FAMLIB_THREADS", bad)
        with pytest.raises(ValueError, match=f"^environment: key 'FAMLIB_THREADS' has invalid value '{bad}'; allowed: a positive"):
            pipeline._threads(jobs=2, side_by_side=2)
    monkeypatch.setenv("FAMLIB_THREADS", "")
    assert famlib.threads.env_threads() is None


@pytest.mark.slow
def test_status_keeps_the_longest_execution_after_a_cached_rerun(tmp_path, monkeypatch, capsys):
    """A re-run that finds its work cached records its own short time; `famlib status` still shows the
    execution that did the work, so a user can plan a run from it."""
    params = _one_step_pipeline(tmp_path, monkeypatch, "x = 1")
    # papermill's recorded duration stands in for the clock (a kernel's start alone took 1 to 4 s under load
    # here, so real sleeps made this test flaky): the run that did the work took 100 s, the cached one 1 s
    real, duration = pipeline._executed, {"seconds": 100.0}
    monkeypatch.setattr(pipeline, "_executed",
                        lambda path: {**rec, "duration": duration["seconds"]} if (rec := real(path)) else rec)
    assert pipeline.main_run(params, jobs=1, only=None, force=False) == 0
    first = pipeline.status(params)[0]
    assert first["state"] == "done" and first["longest"] == first["seconds"] == 100.0
    duration["seconds"] = 1.0
    assert pipeline.main_run(params, jobs=1, only=None, force=True) == 0  # the work is now cached
    again = pipeline.status(params)[0]
    assert again["seconds"] == 1.0 and again["longest"] == first["longest"] == 100.0
    capsys.readouterr()
    assert pipeline.main_status(params) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["step", "state", "last", "run", "longest", "finished"]
    assert f"{first['longest'] / 60:.1f} min" in out.splitlines()[1]
    assert f"1 done. Finished steps (done or stale): {again['seconds'] / 60:.1f} min" in out.splitlines()[-1]
    # after a code change the step is stale, not lost: its times still count in the summary
    monkeypatch.setattr(pipeline, "_code_hash", lambda: "another version of famlib")
    assert [r["state"] for r in pipeline.status(params)] == ["stale"]
    assert pipeline.main_status(params) == 0
    summary = capsys.readouterr().out.splitlines()[-1]
    assert summary.startswith("1 steps: 1 stale. Finished steps (done or stale): ")
    assert f"{first['longest'] / 60:.1f} min in their longest" in summary


@pytest.mark.skipif(os.name != "posix", reason="Unix sockets")
def test_pipeline_kernels_talk_over_private_unix_sockets_not_tcp(tmp_path, monkeypatch, capfd):
    """ipykernel warns at every start that TCP transport is unencrypted; on POSIX famlib's kernels use Unix
    sockets in a private folder instead, so a run's log holds no such warning (46 of them at a whole run)."""
    import json as _json

    params = _one_step_pipeline(
        tmp_path, monkeypatch,
        "import json, ipykernel.connect\n"
        "info = json.load(open(ipykernel.connect.get_connection_file()))\n"
        "print('TRANSPORT', info['transport'], info['ip'])")
    assert pipeline.main_run(params, jobs=1, only=None, force=False) == 0
    executed = _json.loads((tmp_path / "runs" / "smoke" / "notebooks" / "01_data_prep.ipynb").read_text())
    printed = "".join("".join(o.get("text", "")) for o in executed["cells"][-1]["outputs"])
    transport, ip = printed.split()[1:3]
    assert transport == "ipc" and ip.startswith(str(pipeline._socket_dir()))
    assert "without encryption" not in capfd.readouterr().err
