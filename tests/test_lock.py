"""requirements/cpu.lock: what is installed is what it locks, environment.yml pins the same, pyproject.toml's
ranges admit it; and the reader and checker behind `make check-lock` on small files of their own."""

from __future__ import annotations

import importlib.metadata

import pytest
from packaging.requirements import Requirement

from famlib import lockfile

HASH = "--hash=sha256:" + "ab" * 32


def test_every_locked_package_is_installed_at_its_locked_version():
    pins = lockfile.read_lock()
    assert "torch" not in pins, "torch comes from the Makefile's TORCH (CPU here, CUDA on a GPU box), not the lock"
    bad = lockfile.installed_mismatches(pins)
    assert not bad, (f"{len(bad)} of {len(pins)} locked packages differ from {lockfile.LOCK}; `make install` "
                     "installs the lock:\n" + "\n".join(bad))


def test_environment_yml_pins_what_the_lock_does():
    pins = lockfile.read_lock()
    env = lockfile.read_environment()
    bad = lockfile.environment_mismatches(pins, env, lockfile.makefile_torch())
    assert not bad, f"{lockfile.ENVIRONMENT} against {lockfile.LOCK} (`make lock` rewrites it):\n" + "\n".join(bad)
    assert env["torch"] == lockfile.makefile_torch()


def test_pyproject_ranges_admit_the_locked_versions():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 on; the lock is for 3.11
    project = tomllib.loads((lockfile.REPO_ROOT / "pyproject.toml").read_text())["project"]
    pins = lockfile.read_lock()
    pins["torch"] = lockfile.makefile_torch()
    lines = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    outside = []
    for line in lines:
        req = Requirement(line)
        name = lockfile.normalise(req.name)
        if name not in pins:
            outside.append(f"{line}: not in the lock")
        elif not req.specifier.contains(pins[name], prereleases=True):
            outside.append(f"{line}: the lock has {pins[name]}")
    assert len(lines) >= 20 and not outside, "\n".join(outside)


def test_names_compare_as_pep_503_says():
    assert {lockfile.normalise(n) for n in ("PyYAML", "pyyaml", "PYYAML")} == {"pyyaml"}
    assert lockfile.normalise("jupyter_server") == lockfile.normalise("Jupyter.Server") == "jupyter-server"
    assert lockfile.normalise("ruamel..yaml__clib") == "ruamel-yaml-clib"


def test_the_reader_takes_pins_with_hashes_and_normalises_their_names(tmp_path):
    lock = tmp_path / "x.lock"
    lock.write_text(f"# a comment\nPyYAML==6.0.4 \\\n    {HASH} \\\n    {HASH}\n    # via famlib\n"
                    f"jupyter_server==2.21.1 \\\n    {HASH}\n")
    assert lockfile.read_lock(lock) == {"pyyaml": "6.0.4", "jupyter-server": "2.21.1"}


@pytest.mark.parametrize("text, says", [
    (f"numpy>=2 \\\n    {HASH}\n", r"x.lock:1: 'numpy>=2 \\\\' is not a name==version requirement"),
    ("numpy==2.4.6\nscipy==1.17.1 \\\n    " + HASH + "\n", r"no --hash for numpy==2.4.6 \(line 1\)"),
    (f"numpy==2.4.6 \\\n    {HASH}\nNumPy==2.4.5 \\\n    {HASH}\n",
     r"x.lock:3: NumPy is locked again \(first at line 1, ==2.4.6; now ==2.4.5\)"),
    (f"numpy==2.4.6 \\\n    --hash=md5:00\n", r"x.lock:2: '--hash=md5:00' is not a --hash=sha256"),
    ("# nothing\n", r"no name==version requirement"),
])
def test_the_reader_refuses_what_is_not_a_hashed_exact_lock_naming_file_and_line(tmp_path, text, says):
    lock = tmp_path / "x.lock"
    lock.write_text(text)
    with pytest.raises(lockfile.LockError, match=says):
        lockfile.read_lock(lock)


def test_environment_differences_are_named_both_ways():
    pins = {"numpy": "2.4.6", "scipy": "1.17.1", "pyyaml": "6.0.4"}
    env = {"numpy": "2.4.5", "pyyaml": "6.0.4", "torch": "2.12.0", "rich": "15.0.0"}
    assert lockfile.environment_mismatches(pins, env, "2.13.0") == [
        "numpy: environment.yml pins ==2.4.5, the lock ==2.4.6",
        "rich==15.0.0: in environment.yml, not in the lock",
        "scipy==1.17.1: not in environment.yml",
        "torch: environment.yml pins ==2.12.0, the Makefile ==2.13.0",
    ]


def test_written_environment_reads_back_as_the_lock(tmp_path):
    pins = lockfile.read_lock()
    env = tmp_path / "environment.yml"
    env.write_text(lockfile.environment_text(pins, "2.13.0"))
    assert lockfile.read_environment(env) == {**pins, "torch": "2.13.0"}


def test_check_lock_fails_naming_the_package_and_both_versions(tmp_path, capsys):
    lock = tmp_path / "x.lock"
    lock.write_text(f"pytest==0.0.1 \\\n    {HASH}\nno-such-package-famlib==1.0 \\\n    {HASH}\n")
    env = tmp_path / "environment.yml"
    env.write_text(lockfile.environment_text(lockfile.read_lock(lock), lockfile.makefile_torch()))
    assert lockfile.main(["--lock", str(lock), "--environment", str(env)]) == 1
    out = capsys.readouterr()
    installed = importlib.metadata.version("pytest")
    assert f"pytest==0.0.1: {installed} installed" in out.out
    assert "no-such-package-famlib==1.0: not installed" in out.out
    assert "2 installed package(s) and 0 environment.yml pin(s) differ" in out.err


def test_an_environment_yml_entry_that_is_not_a_pin_is_named(tmp_path):
    env = tmp_path / "environment.yml"
    env.write_text("dependencies:\n  - pip\n  - pip:\n      - numpy>=2\n")
    with pytest.raises(lockfile.LockError, match=r"environment.yml: key 'dependencies.pip' has entry 'numpy>=2'"):
        lockfile.read_environment(env)
