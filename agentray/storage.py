"""Run artifacts on any storage: a local path, a shared filesystem, or an object store URI
(``s3://bucket/prefix``, ``gs://...``, whatever ``pyarrow.fs`` resolves).

Every stage reads and writes run artifacts through these functions, never through ``Path``
or ``open``. A *location* is a plain string: an absolute local path or a URI. S3 endpoints
and credentials come from the standard variables (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``), which ``pyarrow.fs``
reads, so S3-compatible stores (MinIO, SeaweedFS, Ceph) need no code.

Writes are all-or-nothing: a local file is written beside its target and renamed into
place; an object store makes an object visible only once its upload completed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from agentray.paths import default_home

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Variables that point pyarrow (and Ray Data, Ray Train) at an object store: forwarded to
# every Ray worker so that a task on any node reaches the same bucket.
STORAGE_ENV_PREFIXES = ("AWS_", "GOOGLE_APPLICATION_CREDENTIALS", "AZURE_STORAGE_")


def is_uri(location: str | Path) -> bool:
    return bool(_URI.match(str(location)))


def absolute(location: str | Path) -> str:
    """A URI as given (without a trailing slash); a local path made absolute."""
    text = str(location)
    if is_uri(text):
        return text.rstrip("/")
    return str(Path(text).expanduser().resolve())


def join(location: str | Path, *parts: str) -> str:
    text = str(location)
    if is_uri(text):
        return "/".join([text.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(text, *parts))


def name(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[-1]


def storage_env() -> dict[str, str]:
    """This process's object-store variables, to hand to Ray workers."""
    return {k: v for k, v in os.environ.items() if k.startswith(STORAGE_ENV_PREFIXES)}


def filesystem(location: str | Path) -> tuple[pafs.FileSystem, str]:
    """The ``pyarrow.fs`` filesystem holding ``location``, and its path there."""
    text = str(location)
    if not is_uri(text):
        return pafs.LocalFileSystem(), absolute(text)
    parts = urlsplit(text)
    if parts.scheme == "file":
        return pafs.LocalFileSystem(), parts.path
    fs = _filesystem_for(parts.scheme, parts.netloc, _env_key())
    return fs, f"{parts.netloc}{parts.path}".rstrip("/")


def _env_key() -> tuple[tuple[str, str], ...]:
    # the cache is keyed by the variables too: a test may point AWS_ENDPOINT_URL elsewhere
    return tuple(sorted(storage_env().items()))


@lru_cache(maxsize=32)
def _filesystem_for(scheme: str, netloc: str, _env: tuple) -> pafs.FileSystem:
    fs, _ = pafs.FileSystem.from_uri(f"{scheme}://{netloc}")
    return fs


def exists(location: str | Path) -> bool:
    fs, path = filesystem(location)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def is_dir(location: str | Path) -> bool:
    fs, path = filesystem(location)
    return fs.get_file_info(path).type == pafs.FileType.Directory


def list_files(location: str | Path, suffix: str = "") -> list[str]:
    """Every file under ``location`` (recursive, sorted) ending in ``suffix``, as locations;
    names starting with ``.`` or ``_`` (temporary and marker files) are left out. Empty if
    the location does not exist; ``[location]`` if it is a file."""
    fs, path = filesystem(location)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return []
    base = absolute(location)
    if info.type == pafs.FileType.File:
        return [base]
    found = []
    for entry in fs.get_file_info(pafs.FileSelector(path, recursive=True)):
        relative = entry.path[len(path) :].lstrip("/")
        hidden = any(part.startswith((".", "_")) for part in relative.split("/"))
        if entry.type == pafs.FileType.File and not hidden and relative.endswith(suffix):
            found.append(join(base, relative))
    return sorted(found)


def read_bytes(location: str | Path) -> bytes:
    fs, path = filesystem(location)
    with fs.open_input_stream(path) as f:
        return f.read()


def read_text(location: str | Path) -> str:
    return read_bytes(location).decode("utf-8")


def read_json(location: str | Path):
    return json.loads(read_text(location))


def write_bytes(location: str | Path, data: bytes) -> str:
    """Writes ``data`` all-or-nothing (see the module docstring); returns the location."""
    fs, path = filesystem(location)
    if isinstance(fs, pafs.LocalFileSystem):
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, target)
    else:
        with fs.open_output_stream(path) as f:
            f.write(data)
    return absolute(location)


def write_text(location: str | Path, text: str) -> str:
    return write_bytes(location, text.encode("utf-8"))


def write_json(location: str | Path, data, indent: int | None = 2) -> str:
    return write_text(location, json.dumps(data, indent=indent, default=str))


def remove(location: str | Path) -> None:
    """Deletes a file or a whole folder / prefix; nothing if it does not exist."""
    fs, path = filesystem(location)
    kind = fs.get_file_info(path).type
    if kind == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif kind == pafs.FileType.File:
        fs.delete_file(path)


def makedirs(location: str | Path) -> None:
    """Creates a local folder; object stores have no folders, so nothing there."""
    if not is_uri(location):
        Path(absolute(location)).mkdir(parents=True, exist_ok=True)


def upload_dir(local_dir: str | Path, location: str | Path) -> None:
    """Copies the files of ``local_dir`` under ``location`` (which it does not clear)."""
    fs, path = filesystem(location)
    pafs.copy_files(str(local_dir), path, destination_filesystem=fs, use_threads=True)


def download_dir(location: str | Path, local_dir: str | Path) -> None:
    fs, path = filesystem(location)
    Path(local_dir).mkdir(parents=True, exist_ok=True)
    pafs.copy_files(path, str(local_dir), source_filesystem=fs, use_threads=True)


def publish_dir(local_dir: str | Path, location: str | Path) -> str:
    """Replaces ``location`` with the contents of ``local_dir`` (a local rename when both
    are on this machine's disk; else an upload, after clearing what was there)."""
    target = absolute(location)
    if not is_uri(target):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(local_dir, target)
        except OSError:  # another filesystem
            shutil.copytree(local_dir, target)
            shutil.rmtree(local_dir, ignore_errors=True)
        return target
    remove(target)
    upload_dir(local_dir, target)
    return target


@contextlib.contextmanager
def staged_dir(location: str | Path) -> Iterator[Path]:
    """A local folder to fill; on success it replaces ``location`` (``publish_dir``), on
    an error it is deleted and ``location`` is left as it was. For writers that need a
    local folder: ``save_pretrained``, plots, TensorBoard."""
    target = absolute(location)
    parent = None if is_uri(target) else Path(target).parent
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name(target)}.", dir=parent))
    try:
        yield tmp
        publish_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def local_copy(location: str | Path, cache_dir: str | Path | None = None) -> Path:
    """A local folder with the contents of ``location``: the folder itself when local,
    else a copy in this node's cache (``$AGENTRAY_HOME/storage-cache``), downloaded once and
    again only when the files at ``location`` changed (their names, sizes and times)."""
    if not is_uri(location):
        return Path(absolute(location))
    fs, path = filesystem(location)
    files = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    if not files:
        raise FileNotFoundError(f"{location}: nothing stored there")
    fingerprint = hashlib.sha256(
        json.dumps(sorted((f.path, f.size, str(f.mtime)) for f in files)).encode()
    ).hexdigest()[:16]
    root = Path(cache_dir or default_home() / "storage-cache")
    key = hashlib.sha256(absolute(location).encode()).hexdigest()[:16]
    target = root / f"{key}-{fingerprint}"
    if not (target / ".complete").exists():
        tmp = root / f".{target.name}.{uuid.uuid4().hex[:8]}"
        download_dir(location, tmp)
        (tmp / ".complete").write_text(absolute(location))
        try:
            os.replace(tmp, target)
        except OSError:  # another process on this node finished the same download first
            shutil.rmtree(tmp, ignore_errors=True)
            if not (target / ".complete").exists():
                raise
    return target


def local_path(location: str | Path, cache_dir: str | Path | None = None) -> Path:
    """``local_copy`` for a file or a folder: a local path with the contents of ``location``
    (itself when local); a file is cached like a folder, by its name, size and time."""
    if not is_uri(location):
        return Path(absolute(location))
    fs, path = filesystem(location)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        return local_copy(location, cache_dir)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{location}: nothing stored there")
    fingerprint = hashlib.sha256(f"{info.path}|{info.size}|{info.mtime}".encode()).hexdigest()[:16]
    key = hashlib.sha256(absolute(location).encode()).hexdigest()[:16]
    target = Path(cache_dir or default_home() / "storage-cache") / f"{key}-{fingerprint}"
    target = target / name(absolute(location))
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
        with fs.open_input_stream(path) as source, tmp.open("wb") as f:
            shutil.copyfileobj(source, f)
        os.replace(tmp, target)
    return target
