"""What every notebook calls first, and small display helpers, so notebooks stay thin."""

from __future__ import annotations

import json
import os
import platform
import warnings
from typing import Any

from famlib.config import Params, load_params
from famlib.errors import ConfigError


def offline_env() -> None:
    """No hub calls on the offline scales: an accidental download fails at once instead of hanging."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def setup(scale: str, overrides: dict[str, Any] | None = None, origins: dict[str, str] | None = None,
          **checks: str) -> Params:
    """Load and validate the parameters of ``scale``; validate ``family=`` / ``strategy=`` / ``language=``.

    ``overrides`` (dotted keys) are applied over ``FAMLIB_OVERRIDES``; ``origins`` says where each came
    from, for messages (see :func:`famlib.config.load_params`). Prints the package versions (so an
    executed notebook records what it ran with). Raises ConfigError, naming where the value came from
    (file and line, ``FAMLIB_OVERRIDES`` or the override), key, value and what is allowed, for any bad
    parameter, injected ones included.
    """
    env = os.environ.get("FAMLIB_OVERRIDES")
    labels = dict(origins or {})
    if env:  # `famlib paper|run --set K=V` puts its overrides here for the kernels it starts
        try:
            injected = json.loads(env)
            if not isinstance(injected, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            raise ConfigError("environment", "FAMLIB_OVERRIDES", env, "a JSON object of dotted keys") from exc
        for k, v in injected.items():
            if k not in (overrides or {}):
                labels[k] = f"FAMLIB_OVERRIDES ({k}={json.dumps(v, ensure_ascii=False)})"
        overrides = {**injected, **(overrides or {})}
    params = load_params(scale, overrides, labels)
    quiet_notebook_warnings()
    if params.data.source == "offline":
        offline_env()
    for key, value in checks.items():
        if value is None:
            continue
        getattr(params, f"check_{key}")(value, key)
    # `famlib paper --jobs N` sets FAMLIB_THREADS so that N kernels share the cores instead of oversubscribing
    from famlib.threads import env_threads, set_threads  # the one thread setter (it honours CPU affinity)

    threads = set_threads(env_threads() or params.threads or None)
    print(versions() + f" | torch threads {threads} | scale {params.scale} ({params.origin})"
          + (f" | overrides {json.dumps(overrides)}" if overrides else ""))
    return params


def quiet_notebook_warnings() -> None:
    """Silence tqdm's "IProgress not found" (once per kernel, from ``tqdm.auto``): without ipywidgets it
    falls back to a text bar, which is what famlib wants in an executed notebook anyway."""
    from tqdm import TqdmWarning

    warnings.filterwarnings("ignore", message="IProgress not found", category=TqdmWarning)


def versions() -> str:
    from famlib.io import package_versions

    found = package_versions(("famlib", "torch", "transformers", "peft", "datasets", "accelerate", "lm_eval",
                                "tokenizers"))
    return f"python {platform.python_version()} | " + " | ".join(f"{k} {v}" for k, v in found.items())


def figure_dir(params: Params):
    """``figures/<scale>/`` (created): where a scale's figures land as PNG and PDF."""
    from famlib.paths import figures_root

    path = figures_root() / params.scale
    path.mkdir(parents=True, exist_ok=True)
    return path
