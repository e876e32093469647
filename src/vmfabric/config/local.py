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

Secrets and CA files are found in every session, switch and firewall entry and the
``api`` section, whichever driver or kind declared them (see ``secret_refs``); the API's
TLS certificate and key must load together (``connect``).
- ``write`` (``run``, ``sync`` without ``--dry-run``, ``config check``): the store's
  folder accepts new files (tried with a probe file, which also tells the truth for
  root). A read-only or full file system is not a config error: the store reports it
  when it writes (exit 1), as the README's "Store failure" says.

Nothing here ever shows a secret's value.
"""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from vmfabric.core.errors import ConfigError

if TYPE_CHECKING:
    from vmfabric.config import Config

Problem = tuple[str, str]  # (key path, message)
SECRET_KEYS = frozenset({"password", "api_key", "token"})


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
    for key, entry in _entries(config):
        yield from _entry(config, key, entry, connect)


def _entries(config: Config) -> Iterator[tuple[str, BaseModel]]:
    """(key path, entry) of every session, switch and firewall, and the API section."""
    for section in ("sessions", "switches", "firewalls"):
        for i, entry in enumerate(getattr(config, section, ())):
            yield f"{section}[{i}]", entry
    api = getattr(config, "api", None)
    if isinstance(api, BaseModel):
        yield "api", api


def secret_refs(entry: BaseModel) -> Iterator[tuple[str, str]]:
    """(key, reference) of each secret an entry names: a ``SecretRef`` field, or a field
    named as secrets are (``password``, ``api_key``, ``token``) holding ``env:``/``file:``."""
    for name, info in type(entry).model_fields.items():
        value = getattr(entry, name, None)
        if not isinstance(value, str) or not value.startswith(("env:", "file:")):
            continue
        if name in SECRET_KEYS or any(_is_secret_ref(m) for m in info.metadata):
            yield name, value


def _is_secret_ref(meta: object) -> bool:
    from vmfabric.config import SECRET_REF_CHECK

    return getattr(meta, "func", None) is SECRET_REF_CHECK


def _entry(config: Config, key: str, entry: BaseModel, connect: bool) -> Iterator[Problem]:
    for name, ref in secret_refs(entry):
        problem = _secret(config, ref, connect)
        if problem:
            yield f"{key}.{name}", problem
    ca = getattr(entry, "ca_file", None)
    if isinstance(ca, Path):
        path = config.resolve(ca)
        problem = _ca_problem(path) if connect else _missing(path)
        if problem:
            yield f"{key}.ca_file", problem
    if connect and getattr(entry, "kind", None) == "libvirt":
        yield from _libvirt(entry, key)
    tls = getattr(entry, "tls", None)
    if connect and isinstance(tls, BaseModel):
        problem = _cert_problem(config, tls)
        if problem:
            yield f"{key}.tls", problem


def _cert_problem(config: Config, tls: BaseModel) -> str:
    """Why the certificate chain and key of a TLS listener cannot be loaded, or ``""``."""
    cert, key = (config.resolve(getattr(tls, name)) for name in ("cert", "key"))
    for path in (cert, key):
        problem = _missing(path)
        if problem:
            return problem
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, ValueError) as exc:  # SSLError is an OSError: first
        return f"{cert} and {key} are not a PEM certificate chain and its key ({exc.args[-1]})"
    except OSError as exc:
        return f"cannot read {cert} or {key}: {exc.strerror}"
    return ""


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
    elif write and not _read_only_fs(folder):
        problem = _probe(folder)
        if problem:
            yield "store", f"cannot create files in folder {folder} ({problem}): {_who()}"
        elif path.exists() and not os.access(path, os.R_OK | os.W_OK):
            yield "store", f"store file {path} is not writable: {_who()}"


def _read_only_fs(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _probe(folder: Path) -> str:
    """Why a new file cannot be created in ``folder``, or ``""`` (tried, then removed). A
    read-only file system is not judged: like a full disk it is the state of the machine,
    which the store reports at run time (exit 1) and which may pass (a remount)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".vmfabric-probe-", dir=folder)
    except OSError as exc:
        if exc.errno == errno.EROFS:
            return ""
        return exc.strerror or type(exc).__name__
    os.close(fd)
    os.unlink(name)
    return ""


def _who() -> str:
    return f"run and sync write the store there (running as uid {os.geteuid()})"


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


def _libvirt(session: BaseModel, key: str) -> Iterator[Problem]:
    command = getattr(session, "lldp_command", None)
    if not command:
        return
    program = shlex.split(command)[0]
    found = os.access(program, os.X_OK) if "/" in program else shutil.which(program)
    if not found:
        yield f"{key}.lldp_command", f"program {program!r} is not found (PATH or its path)"
