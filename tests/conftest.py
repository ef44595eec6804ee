"""Shared fixtures: the smoke-scale parameters, corpus and tokenizer, built once per session."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # an accidental hub call fails at once
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402


def _threads() -> int:
    """Torch threads per test process: the cores shared out among pytest-xdist's workers (``make test``
    runs two on the project's 2-core machines), one each at least. More threads than cores made runs 8x
    slower here. Notebook kernels that tests start inherit the figure through ``FAMLIB_THREADS``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    return max(1, cores // workers)


THREADS = _threads()
torch.set_num_threads(THREADS)
os.environ.setdefault("FAMLIB_THREADS", str(THREADS))  # notebook kernels and subprocesses: the same figure


@pytest.fixture(scope="session")
def smoke_params():
    from famlib.config import load_params

    return load_params("smoke")


@pytest.fixture(scope="session")
def smoke_corpus(smoke_params):
    from famlib.data import build_corpus

    return build_corpus(smoke_params)  # shared cache (data/cache): downloaded once per machine


@pytest.fixture(scope="session")
def smoke_tokenizer(smoke_params, smoke_corpus, tmp_path_factory):
    from famlib.tokenizer import train_tokenizer

    return train_tokenizer(smoke_params, smoke_corpus, tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory):
    """A private runs/ folder for the session, so tests never touch the repository's runs/."""
    path = tmp_path_factory.mktemp("runs")
    old = os.environ.get("FAMLIB_RUNS")
    os.environ["FAMLIB_RUNS"] = str(path)
    yield path
    if old is None:
        os.environ.pop("FAMLIB_RUNS", None)
    else:
        os.environ["FAMLIB_RUNS"] = old


@pytest.fixture(scope="session")
def smoke_base(smoke_params, smoke_corpus, smoke_runs):
    """The smoke base model, pretrained once per session (about 15 s)."""
    from famlib.base import ensure_base

    return ensure_base(smoke_params, smoke_corpus, progress=False)


@pytest.fixture(scope="session")
def harness_tasks(tmp_path_factory):
    """lm-eval's task index (the installed tasks plus the paper's FLORES tasks), as ``famlib doctor`` builds it.

    Indexing takes about 20 s; the tests that read it carry ``xdist_group("lm_eval_index")``, so under
    ``make test`` (``--dist loadgroup``) they share one worker and it is built once.
    """
    from famlib.config import load_params
    from famlib.evaluate import paper

    return paper.harness_task_manager(load_params("paper"), tmp_path_factory.mktemp("harness"))
