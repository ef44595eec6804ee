"""Evaluation time of one model under the previous instrument and the current one, in one run.

The previous instrument (verse cloze, word order, generation cut at the first newline) is checked out from
git at ``--before`` (default: the last commit before the new instrument) into a temporary worktree, and each
tree's own ``benchmarks/bench_evaluate.py`` evaluates the same model directory with the cache off, one after
the other, so both see the same machine. Prints each tree's seconds per axis and the ratio.

    .venv/bin/python benchmarks/bench_instrument.py --scale tiny --model base
    .venv/bin/python benchmarks/bench_instrument.py --scale small --languages es
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEFORE = "68fba76"  # main before issue 17's instrument


def _run(tree: Path, args, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    # every tree reads the models of this checkout's runs/ (bench_evaluate links them into a scratch folder)
    env["FAMLIB_RUNS"] = str(REPO / "runs")
    cmd = [sys.executable, str(tree / "benchmarks" / "bench_evaluate.py"), "--json", str(out), *args]
    subprocess.run(cmd, cwd=tree, env=env, check=True)
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", default="tiny")
    ap.add_argument("--model", default="base")
    ap.add_argument("--languages", default=None, help="comma-separated subset of the model's languages")
    ap.add_argument("--before", default=BEFORE, help="git revision of the previous instrument")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    extra = ["--scale", args.scale, "--model", args.model]
    if args.languages:
        extra += ["--languages", args.languages]
    if args.threads:
        extra += ["--threads", str(args.threads)]
    with tempfile.TemporaryDirectory(prefix="famlib-before-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), args.before], check=True,
                       stdout=subprocess.DEVNULL)
        try:
            before = _run(tree, extra, Path(tmp) / "before.json")
            after = _run(REPO, extra, Path(tmp) / "after.json")
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
    print(f"\n{args.scale} {args.model}: seconds per axis, previous instrument ({args.before}) vs current")
    b, a = before.get("runs", [before])[0], after.get("runs", [after])[0]
    for axis in sorted(set(b.get("axes", {})) | set(a.get("axes", {}))):
        sb = b.get("axes", {}).get(axis, {}).get("seconds")
        sa = a.get("axes", {}).get(axis, {}).get("seconds")
        ratio = f"{sa / sb:.2f}x" if sb and sa else "-"
        print(f"  {axis:14s} {_secs(sb):>8} {_secs(sa):>8}  {ratio}")
    print(f"  {'total':14s} {_secs(b.get('total_seconds')):>8} {_secs(a.get('total_seconds')):>8}")
    for name, run in (("previous", b), ("current", a)):
        for task, error in (run.get("failed") or {}).items():
            print(f"  {name}: {task} FAILED (not timed): {error[:300]}")


def _secs(s) -> str:
    return "-" if s is None else f"{s:.1f}"


if __name__ == "__main__":
    main()
