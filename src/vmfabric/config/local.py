"""Checks of a valid config against this machine: its files, folders and environment.

A config can be well formed and still unusable here: the store's folder is missing, a
``ca_file`` is not there, a password variable is set but empty. These checks run in three
depths, by what the command is about to do:

- every command (``show`` too): what is wrong for anyone who can see it. The SQLite
  store's folder exists, a ``ca_file`` exists, and a secret that can be read is not empty
  and (a file) not readable by others. A secret this user cannot see (variable unset, file
  unreadable) is not judged: ``show`` does not need it;
- ``connect`` (``run``, ``sync``, ``config check``): every secret resolves, every
  ``ca_file`` is a PEM CA bundle, every ``lldp_command`` program is found;
- ``write`` (``run``, ``sync`` without ``--dry-run``, ``config check``): the store's
  folder accepts new files (tried with a probe file, which also tells the truth for root
  and for read-only file systems).

Nothing here ever shows a secret's value.
"""

from __future__ import annotations

import os
import shlex
import shutil
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from vmfabric.core.errors import ConfigError

if TYPE_CHECKING:
    from vmfabric.config import Config, LibvirtSession, VcenterSession

Problem = tuple[str, str]  # (key path, message)


class SecretUnavailableError(ConfigError):
    """The secret cannot be seen by this user (variable unset, file missing or unreadable),
    as opposed to a secret that is wrong for everyone (empty, readable by others)."""


def check_local(config: Config, source: str, *, connect: bool, write: bool) -> None:
    """Raise the first problem of ``config`` on this machine as a one-line ConfigError
    naming ``source`` and the key path."""
    for key, message in local_problems(config, connect=connect, write=write):
        raise ConfigError(message, f"{source}: {key}")


def local_problems(config: Config, *, connect: bool, write: bool) -> Iterator[Problem]:
    """Every problem of ``config`` on this machine, in file order."""
    yield from _store(config, write)
    for i, session in enumerate(config.sessions):
        key = f"sessions[{i}]"
        if session.kind == "vcenter":
            yield from _vcenter(config, session, key, connect)
        elif session.kind == "libvirt" and connect:
            yield from _libvirt(session, key)


def sqlite_path(config: Config) -> Path | None:
    """The SQLite file of the store, or None (memory, or not SQLite)."""
    prefix = "sqlite:///"
    url = config.store_url()
    if not url.startswith(prefix):
        return None
    path = url[len(prefix) :].split("?", 1)[0]
    if path in ("", ":memory:"):
        return None
    return Path(path.removeprefix("file:"))


def _store(config: Config, write: bool) -> Iterator[Problem]:
    path = sqlite_path(config)
    if path is None:
        return
    folder = path.parent
    if not folder.is_dir():
        yield "store", f"folder {folder} of the SQLite store does not exist"
    elif path.is_dir():
        yield "store", f"{path} is a folder, not a SQLite file"
    elif write:
        problem = _probe(folder)
        if problem:
            yield "store", f"cannot create files in folder {folder} ({problem}): {_who()}"
        elif path.exists() and not os.access(path, os.R_OK | os.W_OK):
            yield "store", f"store file {path} is not writable: {_who()}"


def _probe(folder: Path) -> str:
    """Why a new file cannot be created in ``folder``, or ``""`` (tried, then removed)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".vmfabric-probe-", dir=folder)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    os.close(fd)
    os.unlink(name)
    return ""


def _who() -> str:
    return f"run and sync write the store there (running as uid {os.geteuid()})"


def _vcenter(config: Config, session: VcenterSession, key: str, connect: bool) -> Iterator[Problem]:
    problem = _secret(config, session.password, connect)
    if problem:
        yield f"{key}.password", problem
    if session.ca_file is not None:
        ca = config.resolve(session.ca_file)
        problem = _ca_problem(ca) if connect else _missing(ca)
        if problem:
            yield f"{key}.ca_file", problem


def _secret(config: Config, ref: str, connect: bool) -> str:
    from vmfabric.config import resolve_secret

    try:
        resolve_secret(ref, config.base_dir)
    except SecretUnavailableError as exc:
        return str(exc) if connect else ""
    except ConfigError as exc:
        return str(exc)
    return ""


def _missing(path: Path) -> str:
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return f"file {path} does not exist"
    except OSError:
        return ""  # this user cannot see it; the session's user may
    return ""


def _ca_problem(path: Path) -> str:
    problem = _missing(path)
    if problem:
        return problem
    if path.is_dir():
        return f"{path} is a folder, not a CA bundle"
    try:
        ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, ValueError):  # SSLError is an OSError: first
        return f"{path} holds no PEM certificate"
    except OSError as exc:
        return f"cannot read CA bundle {path}: {exc.strerror}"
    return ""


def _libvirt(session: LibvirtSession, key: str) -> Iterator[Problem]:
    if session.lldp_command is None:
        return
    program = shlex.split(session.lldp_command)[0]
    found = os.access(program, os.X_OK) if "/" in program else shutil.which(program)
    if not found:
        yield f"{key}.lldp_command", f"program {program!r} is not found (PATH or its path)"
