"""The checkpoint file store: write-once files outside the database (docs/audit.md).

Every checkpoint run writes one new file, never touched again::

    <AQTA_CHECKPOINT_DIR>/YYYY/MM/DD/YYYYMMDDTHHMMSSffffffZ-<8 hex>-full.jsonl   (or -delta)

one signed checkpoint (RFC 8785 JSON) per line. A *full* file lists every chain; a
*delta* file only the chains that moved since the file before it. The newest state of
every chain is therefore the newest full file plus the delta files written after it.

A file is written under a temporary name, fsync'd, made read-only and linked to its final
name (which must not exist yet), then its directory is fsync'd: a crash leaves either no
file or a complete one. In production the directory is a separate volume, or a mount of
an object store bucket with write-once (object lock / WORM) retention, that the database's
users cannot write to.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings

FULL, DELTA = "full", "delta"
_NAME = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{8}-(full|delta)\.jsonl$")
_YEAR, _TWO = re.compile(r"^\d{4}$"), re.compile(r"^\d{2}$")
# A line longer than this is not a checkpoint (they are a few hundred bytes).
MAX_LINE = 16_384


class StoreError(Exception):
    """The file store cannot be written."""


def store_root() -> Path:
    return Path(settings.AQTA_CHECKPOINT_DIR)


@dataclass(frozen=True)
class StoredLine:
    """One line of a stored file: where it is, and its text (or why it is unreadable)."""

    file: str  # relative to the store root
    line: int
    text: str
    problem: str = ""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _day_dir(root: Path, now: datetime) -> Path:
    """The day's directory, created (and made durable) if needed."""
    path = root
    for part in (f"{now:%Y}", f"{now:%m}", f"{now:%d}"):
        child = path / part
        if not child.is_dir():
            child.mkdir(mode=0o755, exist_ok=True)
            _fsync_dir(path)
        path = child
    return path


def store_write(documents: list[str], *, full: bool, now: datetime) -> str:
    """Write a new file of ``documents`` (one per line); its path relative to the root."""
    root = store_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        moment = now.astimezone(UTC)
        directory = _day_dir(root, moment)
        name = f"{moment:%Y%m%dT%H%M%S%f}Z-{secrets.token_hex(4)}-{FULL if full else DELTA}.jsonl"
        temporary = directory / f".{name}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write("".join(f"{document}\n" for document in documents).encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o444)
        os.link(temporary, directory / name)  # refuses an existing name: never overwrites
        os.unlink(temporary)
        _fsync_dir(directory)
    except OSError as error:
        raise StoreError(f"cannot write to the checkpoint store {root}: {error}") from error
    return str((directory / name).relative_to(root))


def _sorted_children(path: Path, pattern: re.Pattern[str]) -> list[Path]:
    try:
        names = [entry.name for entry in os.scandir(path)]
    except OSError:
        return []
    return [path / name for name in sorted(names, reverse=True) if pattern.match(name)]


def store_files() -> Iterator[Path]:
    """Every stored file, newest first."""
    root = store_root()
    for year in _sorted_children(root, _YEAR):
        for month in _sorted_children(year, _TWO):
            for day in _sorted_children(month, _TWO):
                yield from _sorted_children(day, _NAME)


def is_full(path: Path) -> bool:
    return path.name.endswith(f"-{FULL}.jsonl")


def file_time(path: Path) -> datetime:
    return datetime.strptime(path.name[:22], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)


def store_lines(path: Path) -> Iterator[StoredLine]:
    """The lines of one stored file; an unreadable file or line says why."""
    relative = str(path.relative_to(store_root()))
    try:
        raw = path.read_bytes()
    except OSError as error:
        yield StoredLine(relative, 0, "", f"the file cannot be read: {error.strerror}")
        return
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line:
            continue
        if len(line) > MAX_LINE:
            yield StoredLine(relative, number, "", "the line is too long to be a checkpoint")
            continue
        try:
            yield StoredLine(relative, number, line.decode("utf-8"))
        except UnicodeDecodeError:
            yield StoredLine(relative, number, "", "the line is not UTF-8")
