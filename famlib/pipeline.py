"""The notebook graph of a scale, executed by papermill.

Each :class:`Step` is one notebook execution with its parameters and the steps it needs. ``run`` executes
them in dependency order (``jobs`` at a time), writes each executed copy to
``runs/<scale>/notebooks/<step>.ipynb`` and a stamp beside it; a step whose notebook, parameters, famlib
code and upstream stamps are unchanged is skipped. A failure stops the run naming the notebook, the cell
and the error; the next run starts again at that step. ``plan`` is the same graph as lines a cluster
scheduler can consume.
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from famlib.config import REPO_ROOT, Params
from famlib.errors import ConfigError, FamlibError, near
from famlib.io import atomic_write_json, sha256_file, sha256_json
from famlib.naming import all_model_ids, model_id
from famlib.paths import notebooks_dir
from famlib.threads import available_cores, env_threads

NOTEBOOKS = REPO_ROOT / "notebooks"


@dataclass(frozen=True)
class Step:
    id: str  # unique and file-name safe: "01_data_prep", "03_train_expert.freeze.romance"
    notebook: str  # file name under notebooks/
    parameters: dict[str, Any] = field(hash=False)
    deps: tuple[str, ...] = ()

    def command(self, scale: str) -> str:
        return f"famlib run --scale {scale} --step {self.id}"


class StepFailed(FamlibError):
    pass


def plan(params: Params) -> list[Step]:
    """The steps of a scale in a valid execution order (each after its dependencies).

    The scale's strategies (``params.strategy_names``, from the registry) decide the steps: one
    ``03_train_expert`` per trained strategy (and family, for a per-family one), ``04_posthoc_surgery`` if any
    post-hoc strategy runs, one ``05_evaluate`` per model; ``06_layer_interpolation`` needs Dense. Only steps
    whose notebook exists are listed, so the graph grows with the repository.
    """
    from famlib.strategies.registry import get

    s = params.scale
    chosen = [get(n) for n in params.strategy_names]
    steps = [Step("01_data_prep", "01_data_prep.ipynb", {"scale": s}),
             Step("02_base_model", "02_base_model.ipynb", {"scale": s}, ("01_data_prep",))]
    trained, made_by = [], {"base": "02_base_model"}
    for st in chosen:
        if st.kind != "trained":
            continue
        for fam in (params.families if st.per_family else [None]):
            mid = model_id(st.name, fam)
            trained.append(Step(f"03_train_expert.{mid}", "03_train_expert.ipynb",
                                {"scale": s, "family": fam, "strategy": st.name}, ("02_base_model",)))
            made_by[mid] = trained[-1].id
    steps += trained
    if any(st.kind == "posthoc" for st in chosen):
        steps.append(Step("04_posthoc_surgery", "04_posthoc_surgery.ipynb", {"scale": s},
                          tuple(t.id for t in trained)))
    evals = []
    for mid in all_model_ids(params):  # "base" first
        dep = made_by.get(mid, "04_posthoc_surgery")  # a model no training step makes is a post-hoc one
        # every model's notebook sets it beside the base, so the base is evaluated first
        deps = (dep,) if mid == "base" else (dep, "05_evaluate.base")
        evals.append(Step(f"05_evaluate.{mid}", "05_evaluate.ipynb", {"scale": s, "model": mid}, deps))
    # Launch order among ready steps is list order. The base's evaluation goes first, beside the trainings,
    # instead of holding up every other evaluation; Dense's evaluation and the interpolation (which reuses
    # Dense's evaluation for alpha = 1) go right after Dense's training, so that the interpolation, the
    # longest single step, runs beside the rest instead of last.
    by_id = {e.id: e for e in evals}
    steps.insert(2, by_id["05_evaluate.base"])
    early = ["05_evaluate.base"]
    final_deps = tuple(e.id for e in evals)
    if "dense" in made_by:  # the section 4.1 analysis moves layer groups between the base and Dense
        interp = Step("06_layer_interpolation", "06_layer_interpolation.ipynb", {"scale": s},
                      (made_by["dense"], "05_evaluate.base", "05_evaluate.dense"))
        at = steps.index(next(st for st in steps if st.id == made_by["dense"])) + 1
        steps[at:at] = [by_id["05_evaluate.dense"], interp]
        early.append("05_evaluate.dense")
        final_deps += ("06_layer_interpolation",)
    steps += [e for e in evals if e.id not in early]
    if params.dose is not None:  # the dose-response study trains its own points from the base (famlib.dose)
        steps.append(Step("08_dose_response", "08_dose_response.ipynb", {"scale": s},
                          ("02_base_model", "05_evaluate.base")))
        final_deps += ("08_dose_response",)  # the report reads its table
    steps.append(Step("07_tables_and_figures", "07_tables_and_figures.ipynb", {"scale": s}, final_deps))
    present = {st.id for st in steps if (NOTEBOOKS / st.notebook).exists()}
    # A step is kept when its notebook exists; dependencies on steps that do not exist yet are dropped.
    return [Step(st.id, st.notebook, st.parameters, tuple(d for d in st.deps if d in present))
            for st in steps if st.id in present]


def runs_dir(params: Params) -> Path:
    from famlib.paths import run_dir

    return run_dir(params.scale)


def _code_hash() -> str:
    """Hash of famlib's source: a code change re-runs the steps (their heavy work is cached by content)."""
    pkg = Path(__file__).resolve().parent
    return sha256_json({str(p.relative_to(pkg)): sha256_file(p) for p in sorted(pkg.rglob("*.py"))})


def check_parameters(step: Step) -> None:
    """Refuse parameters the notebook does not declare (papermill itself only warns and carries on)."""
    import papermill as pm

    declared = pm.inspect_notebook(str(NOTEBOOKS / step.notebook))
    for key, value in step.parameters.items():
        if key not in declared:
            raise ConfigError(f"notebooks/{step.notebook}", key, value,
                              f"parameters declared in its tagged cell: {', '.join(declared)}",
                              near(key, declared) or "This notebook has no such parameter.")


def _step_key(step: Step, params: Params, dep_keys: list[str], code: str) -> str:
    return sha256_json({"notebook": sha256_file(NOTEBOOKS / step.notebook), "parameters": step.parameters,
                        "params": params.fingerprint(), "deps": dep_keys, "code": code})


def _threads(jobs: int, side_by_side: int) -> Optional[int]:
    """Torch threads for a step launched while ``side_by_side`` steps (itself included) can run at once: the
    cores this run may use, shared among them (oversubscribed threads made runs here 8x slower). The cores
    are ``FAMLIB_THREADS`` when set (a test worker's share, a user's choice), else those this process may run
    on. None when a single job runs: the kernel keeps ``FAMLIB_THREADS`` or ``params.threads``.

    ``FAMLIB_THREADS`` is the whole run's budget here, not each kernel's: giving it to each of two kernels on
    2 cores made the smoke pipeline's evaluation steps 4-9x slower (38-101 s against 11 s, measured)."""
    if jobs <= 1:
        return None
    budget = env_threads() or available_cores()
    return max(1, budget // max(1, min(jobs, side_by_side)))


def _kernel_env(threads: Optional[int], env=None) -> dict:
    """A pipeline kernel's environment: ``FAMLIB_THREADS`` (read by famlib.notebook.setup) when given, and
    ``TQDM_DISABLE=1`` unless the caller set it: lm-eval's progress bars (one per request batch) filled
    executed notebooks with thousands of lines. famlib's training bar passes ``disable=`` itself and stays
    (it redraws every 15 s outside a terminal)."""
    env = dict(os.environ if env is None else env)
    env.setdefault("TQDM_DISABLE", "1")
    if threads is not None:
        env["FAMLIB_THREADS"] = str(threads)
    return env


_SOCKET_DIR: Optional[Path] = None


def _socket_dir() -> Path:
    """A short private folder for kernels' Unix sockets (a socket path must stay under ~104 bytes, so not
    under a deep runtime folder); removed when the process exits."""
    global _SOCKET_DIR
    if _SOCKET_DIR is None:
        import atexit
        import shutil
        import tempfile

        _SOCKET_DIR = Path(tempfile.mkdtemp(prefix="famlib-k"))
        atexit.register(shutil.rmtree, _SOCKET_DIR, True)
    return _SOCKET_DIR


def _kernel_manager(threads: Optional[int]):
    """A Jupyter kernel manager class whose kernels start in :func:`_kernel_env`.

    On POSIX the kernel talks to papermill over Unix sockets in a private folder (``ipc`` transport) rather
    than over unencrypted localhost TCP ports, which ipykernel warns about at every start (46 times a run).
    """
    import uuid

    from jupyter_client.manager import AsyncKernelManager

    class FamlibKernelManager(AsyncKernelManager):
        async def _async_pre_start_kernel(self, **kw):
            if os.name == "posix":  # before the connection file is written: it carries transport and ip
                self.transport = "ipc"
                self.ip = str(_socket_dir() / uuid.uuid4().hex[:12])
            kw["env"] = _kernel_env(threads, kw.get("env"))
            return await super()._async_pre_start_kernel(**kw)

    return FamlibKernelManager


def _tasks_failed(params: Params, step: Step) -> int:
    """How many evaluation tasks of ``step`` raised last time (``results_failed.csv``, ``interpolation_failed.csv``).

    Such a step runs again even when its inputs are unchanged: the tasks that failed are tried again (a dataset
    licence accepted since, a network back), and everything it measured before comes from the cache.
    """
    from famlib.evaluate.results import load_failures

    if step.notebook == "05_evaluate.ipynb":
        return int((load_failures(params.scale)["model"].astype(str) == str(step.parameters.get("model"))).sum())
    if step.notebook == "06_layer_interpolation.ipynb":
        return len(load_failures(params.scale, "interpolation"))
    return 0


def _running_copy(out: Path) -> Path:
    """Where papermill writes a step's notebook while it runs (renamed onto ``out`` when it succeeds)."""
    return out.with_name(f".{out.name}.running.ipynb")


def _failed_copy(out: Path) -> Path:
    """Where a failed step's executed notebook is kept."""
    return out.with_name(f"{out.stem}.failed.ipynb")


def execute_notebook(source: Path, out: Path, parameters: dict, cwd: Path, what: str,
                     threads: Optional[int] = None, error: type[Exception] = None) -> None:
    """Run ``source`` headless with papermill into ``out``: the one way famlib executes a notebook.

    The executed copy is written under :func:`_running_copy`'s name and renamed onto ``out`` when every
    cell succeeded, so ``out`` is never a half-run notebook; a failed run is kept as :func:`_failed_copy`
    and raises ``error`` (default :class:`StepFailed`) naming ``what``, the cell and the exception. The
    kernel talks over private Unix sockets and gets ``threads`` torch threads (:func:`_kernel_manager`).
    """
    import papermill as pm

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _running_copy(out)
    try:
        pm.execute_notebook(str(source), str(tmp), parameters=parameters, cwd=str(cwd), progress_bar=False,
                            kernel_name="python3", kernel_manager_class=_kernel_manager(threads))
    except pm.PapermillExecutionError as exc:
        tmp.replace(_failed_copy(out))
        raise (error or StepFailed)(f"{what} failed in cell {exc.exec_count} ({exc.ename}: {exc.evalue}); "
                                    f"executed copy: {_failed_copy(out)}") from None
    except BaseException as exc:  # a dead kernel, a cell timeout, Ctrl-C: what ran is kept as the failed copy
        if tmp.exists():
            tmp.replace(_failed_copy(out))
        if not isinstance(exc, Exception):
            raise
        raise (error or StepFailed)(f"{what} stopped ({type(exc).__name__}: {exc}); executed copy so far: "
                                    f"{_failed_copy(out)}") from exc
    tmp.replace(out)
    _failed_copy(out).unlink(missing_ok=True)  # an earlier failure's copy no longer describes this notebook


def _execute(step: Step, out: Path, threads: Optional[int] = None) -> None:
    execute_notebook(NOTEBOOKS / step.notebook, out, step.parameters, NOTEBOOKS,
                     f"step {step.id}: notebook notebooks/{step.notebook}", threads)


def train_command(params: Params, step: Step, processes: int | str = "N") -> str:
    """The multi-process command of a training step: ``accelerate launch ... -m famlib.cli train ...``."""
    family = step.parameters.get("family")
    return (f"accelerate launch --multi_gpu --num_processes {processes} -m famlib.cli train "
            f"--scale {params.scale} --strategy {step.parameters['strategy']}"
            + (f" --family {family}" if family else ""))


def _refuse_launcher(params: Params, steps: list[Step]) -> None:
    """Refuse to execute notebooks in a multi-process launch, naming the commands that do the job instead.

    Under ``accelerate launch`` every process would execute every notebook: N kernels building the same data,
    writing the same model directory and executed copy. Papermill cannot split one kernel across processes, so
    multi-GPU training goes through ``famlib train``, which is what notebook 03's training cell calls; the step
    run afterwards in one process finds the model trained and only draws its plots.
    """
    from famlib.distributed import DistributedError, launched_processes

    n = launched_processes()
    if n == 1:
        return
    train = [st for st in steps if st.notebook == "03_train_expert.ipynb"]
    one = f"famlib run --scale {params.scale} " + " ".join(f"--step {st.id}" for st in steps)
    if train:
        hint = (" Train with every process through famlib train, then run the step(s) in one process (the "
                "training is then found done):" + "".join(f"\n  {train_command(params, st, n)}" for st in train)
                + f"\n  {one}")
    else:
        hint = f" Run it in one process:\n  {one}"
    raise DistributedError(f"famlib run executes notebooks, and under a launcher each of the {n} processes would "
                           f"execute all of them, racing on the same files.{hint}")


def run(params: Params, jobs: int = 1, only: Optional[list[str]] = None, force: bool = False,
        log=print) -> dict[str, str]:
    """Execute the graph; return ``{step id: "ran" | "skipped"}``. Raises StepFailed on the first failure."""
    steps = plan(params)
    by_id = {st.id: st for st in steps}
    if only:
        unknown = [s for s in only if s not in by_id]
        if unknown:
            raise ConfigError("famlib run", "step", unknown[0], "a step id of `famlib plan`: " + ", ".join(by_id),
                              near(unknown[0], by_id))
        steps = [st for st in steps if st.id in only]
    _refuse_launcher(params, steps)
    for st in steps:
        check_parameters(st)
    code = _code_hash()
    nb_dir = notebooks_dir(params.scale)
    keys: dict[str, str] = {}
    status: dict[str, str] = {}
    pending = list(steps)
    running: dict[Future, Step] = {}
    longest: dict[str, Optional[float]] = {}
    t0 = time.time()
    total = len(steps)

    def stamp_of(st: Step) -> Path:
        return nb_dir / f"{st.id}.stamp.json"

    def key_of(st: Step) -> str:
        dep_keys = [keys.get(d) or _read_key(stamp_of(by_id[d])) for d in st.deps]
        return _step_key(st, params, dep_keys, code)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        while pending or running:
            ready = [st for st in pending if all(d in status or d not in {p.id for p in steps} for d in st.deps)]
            for st in ready:
                if len(running) >= max(1, jobs):
                    break
                pending.remove(st)
                key = key_of(st)
                out = nb_dir / f"{st.id}.ipynb"
                retry = _tasks_failed(params, st)
                if not force and out.exists() and _read_key(stamp_of(st)) == key and not retry:
                    keys[st.id], status[st.id] = key, "skipped"
                    log(f"[{len(status)}/{total} done] {st.id}: unchanged, skipped")
                    continue
                if retry:
                    log(f"{st.id}: {retry} task(s) failed last time (results_failed.csv): running it again")
                threads = _threads(jobs, len(running) + len([r for r in ready if r in pending]) + 1)
                # the longest execution on record, read before this one replaces `out`
                longest[st.id] = _longest(_read_stamp(stamp_of(st)), _executed(out).get("duration"))
                log(f"[{len(status)}/{total} done] {st.id}: starting notebooks/{st.notebook} {st.parameters}"
                    + (f", {threads} thread(s)" if threads else ""))
                fut = pool.submit(_execute, st, out, threads)
                running[fut] = st
                keys[st.id] = key
            if not running:
                if pending and not ready:  # internal: plan() orders steps after their dependencies
                    raise AssertionError(f"unsatisfiable dependencies: {[p.id for p in pending]}")
                continue
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                st = running.pop(fut)
                fut.result()  # re-raises StepFailed; the stamp is not written, so the next run redoes it
                seconds = _executed(nb_dir / f"{st.id}.ipynb").get("duration")
                atomic_write_json(stamp_of(st), {"key": keys[st.id], "step": st.id, "parameters": st.parameters,
                                                 "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": seconds,
                                                 "longest_seconds": max(longest[st.id] or 0, seconds or 0) or None})
                status[st.id] = "ran"
                log(f"[{len(status)}/{total} done] {st.id}: done ({time.time() - t0:.0f} s since start)")
    return status


def _longest(stamp: dict, duration: Optional[float]) -> Optional[float]:
    """The longest recorded execution of a step, in seconds: its stamp's record or ``duration`` (the executed
    notebook's), whichever is longer.

    A step that re-runs after a code change usually finds its heavy work cached and takes seconds; the
    longest execution is the one that did the work, which is what a user planning a run wants to see.
    """
    found = [v for v in (stamp.get("longest_seconds"), duration) if v is not None]
    return max(found) if found else None


def _read_stamp(stamp: Path) -> dict:
    try:
        record = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _read_key(stamp: Path) -> Optional[str]:
    return _read_stamp(stamp).get("key")


def levels(steps: list[Step]) -> dict[str, int]:
    """Dependency depth of each step: 0 for steps without dependencies, else 1 + the deepest dependency.
    Every step of one level can run at the same time once the levels before it have finished."""
    depth: dict[str, int] = {}
    for st in steps:  # plan() lists each step after its dependencies
        depth[st.id] = 1 + max((depth[d] for d in st.deps), default=-1)
    return depth


def plan_lines(params: Params, fmt: str = "tsv", level: Optional[int] = None, command_suffix: str = "") -> list[str]:
    """The job graph, one line per notebook execution.

    Formats: ``tsv`` (index, step id, dependencies, level, parameters, command), ``json`` (the same as JSON
    lines, dependencies also as indices) and ``commands`` (the command only, for GNU parallel or a SLURM
    array). ``level`` keeps the steps of one dependency level (see :func:`levels`). ``command_suffix`` is
    appended to every command (``famlib plan --set K=V`` passes its overrides on to each ``famlib run``).
    """
    steps = plan(params)
    index = {st.id: i for i, st in enumerate(steps, start=1)}
    depth = levels(steps)
    if level is not None:
        if level not in set(depth.values()):
            raise ConfigError("famlib plan", "level", level, f"0 to {max(depth.values())}")
        steps = [st for st in steps if depth[st.id] == level]
    lines = []
    for st in steps:
        if fmt == "json":
            lines.append(json.dumps({"index": index[st.id], "id": st.id, "notebook": st.notebook,
                                     "parameters": st.parameters, "after": list(st.deps),
                                     "after_index": [index[d] for d in st.deps], "level": depth[st.id],
                                     "command": st.command(params.scale) + command_suffix}))
        elif fmt == "commands":
            lines.append(st.command(params.scale) + command_suffix)
        else:
            lines.append("\t".join([str(index[st.id]), st.id, ",".join(st.deps) or "-", str(depth[st.id]),
                                    json.dumps(st.parameters, sort_keys=True), st.command(params.scale) + command_suffix]))
    return lines


def _executed(path: Path) -> dict:
    """papermill's record in an executed notebook: ``start_time``, ``end_time``, ``duration`` (seconds)."""
    try:
        return json.loads(path.read_text()).get("metadata", {}).get("papermill", {}) or {}
    except (OSError, ValueError):
        return {}


def status(params: Params) -> list[dict]:
    """Where a scale's run stands, one dict per step of :func:`plan` (in order).

    ``state`` is ``done`` (its stamp matches what ``famlib paper`` would run now: it would be skipped),
    ``stale`` (executed, but an input changed since, or some of its evaluation tasks failed: it would run
    again, its heavy work mostly cached),
    ``failed`` (the last execution failed; ``<step>.failed.ipynb``), ``started`` (a papermill copy is being
    written: running now, or killed mid-way) or ``pending``. ``seconds`` and ``finished`` come from the last
    execution's papermill record (a re-run that found its work cached records its own, shorter, time);
    ``longest`` is the longest execution on record (see :func:`_longest`), the one that did the work.
    """
    steps = plan(params)
    by_id = {st.id: st for st in steps}
    code = _code_hash()
    nb_dir = notebooks_dir(params.scale)
    keys: dict[str, str] = {}
    rows = []
    for st in steps:  # plan() lists each step after its dependencies
        keys[st.id] = _step_key(st, params, [keys[d] for d in st.deps if d in by_id], code)
        out = nb_dir / f"{st.id}.ipynb"
        failed, started = _failed_copy(out), _running_copy(out)
        stamp_record = _read_stamp(nb_dir / f"{st.id}.stamp.json")
        stamp = stamp_record.get("key")
        record = _executed(out) if out.exists() else {}
        if started.exists():
            state = "started"
        elif failed.exists() and (not out.exists() or failed.stat().st_mtime > out.stat().st_mtime):
            state, record = "failed", _executed(failed)
        elif out.exists() and stamp == keys[st.id] and not _tasks_failed(params, st):
            state = "done"
        elif out.exists() and stamp is not None:
            state = "stale"
        else:
            state = "pending"
        rows.append({"step": st.id, "state": state, "seconds": record.get("duration"),
                     "longest": _longest(stamp_record, record.get("duration")) if state in ("done", "stale") else None,
                     "finished": (record.get("end_time") or "")[:19] or None})
    return rows


def main_status(params: Params) -> int:
    rows = status(params)
    width = max(len(r["step"]) for r in rows)

    def minutes(v: Optional[float]) -> str:
        return f"{v / 60:8.1f} min" if v is not None else " " * 12

    print(f"{'step':<{width}}  {'state':<8}{'last run':>12}{'longest':>12}  finished")
    for r in rows:
        print(f"{r['step']:<{width}}  {r['state']:<8}{minutes(r['seconds'])}{minutes(r['longest'])}  "
              f"{r['finished'] or ''}".rstrip())
    counts = {s: sum(r["state"] == s for r in rows) for s in ("done", "stale", "failed", "started", "pending")}
    # stale steps finished too (under older code or parameters): their times count as much as done ones'
    finished = [r for r in rows if r["state"] in ("done", "stale")]
    last_min = sum(r["seconds"] or 0 for r in finished) / 60
    longest_min = sum(r["longest"] or r["seconds"] or 0 for r in finished) / 60
    print(f"{len(rows)} steps: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
          + f". Finished steps (done or stale): {last_min:.1f} min of step time in their last runs, "
          f"{longest_min:.1f} min in their longest. Outputs in {runs_dir(params)}")
    return 0


def main_run(params: Params, jobs: int, only, force: bool) -> int:
    try:
        status = run(params, jobs=jobs, only=only, force=force)
    except StepFailed as exc:
        print(f"famlib: {exc}\nFix the cause and run the same command again: finished steps are skipped.",
              file=sys.stderr)
        return 1
    ran = sum(v == "ran" for v in status.values())
    print(f"famlib: {len(status)} steps, {ran} ran, {len(status) - ran} unchanged. Outputs in {runs_dir(params)}")
    return 0
