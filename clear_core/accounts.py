"""Team mode's accounts: the users file, password hashes, sign-in with backoff, and session expiry (pure: no
Streamlit, no database).

Local mode is the default: one person on this machine, a lead. Team mode is on when a users file exists: the file
``$CLEAR_USERS`` names, else ``DB.users.json`` next to the curation database (``users_path``). The file is JSON,
written atomically (a temporary file in the same folder, then ``os.replace``) and readable by its owner only::

    {"format": "clear-review-users", "version": 1,
     "users": [{"name": "alice", "role": "lead", "password_hash": "$argon2id$v=19$...",
                "email": "alice@example.org", "added_at": "2026-11-26T03:08:00Z"}]}

Passwords are stored only as argon2id hashes (``argon2-cffi``, which compares in constant time); a user added with
no password (``password_hash`` null) can only sign in through Streamlit's ``st.login`` (OIDC), matched by ``email``.
A wrong password and an unknown name get the same message, and an unknown name costs the same hash check. After
``Backoff.free_failures`` failed sign-ins for one name from one address, each further try must wait twice as long
as the one before (1 s, 2 s, 4 s ... up to 5 minutes); the counts live in the server's memory. A session ends after
``SessionPolicy.idle_s`` without a request or ``SessionPolicy.max_s`` after sign-in, whichever comes first.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from clear_core.errors import ClearError, InvalidInput
from clear_core.permissions import ROLES, Actor

USERS_ENV = "CLEAR_USERS"  # names the users file; set to turn team mode on with a file anywhere
FILE_FORMAT = "clear-review-users"
FILE_VERSION = 1
MIN_PASSWORD = 8
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
WRONG = "Wrong name or password."
_FIELDS = (
    "name",
    "role",
    "password_hash",
    "email",
    "added_at",
)  # a user's entry in the file  # the one message for an unknown name and a wrong password

# argon2id with argon2-cffi's defaults (RFC 9106's low-memory choice: t=3, 64 MiB, p=4; ~0.5 s on a busy 2-core
# machine). Tests swap in a cheaper hasher; a stored hash carries its own parameters, so verify reads any.
HASHER = PasswordHasher()


class AccountsError(ClearError):
    """A problem with the users file or a users command that the user can act on."""


class SignInRefused(ClearError):
    """A sign-in that did not succeed; the message never says whether the name or the password was wrong."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str | None = None  # None: signs in only through OIDC (st.login), by email
    email: str | None = None
    added_at: str | None = None

    def actor(self) -> Actor:
        return Actor(self.name, self.name, self.role)


@dataclass(frozen=True)
class Users:
    """The users file's contents; ``get`` finds a name ignoring case."""

    users: tuple[User, ...] = ()

    def get(self, name: str) -> User | None:
        key = name.strip().casefold()
        return next((u for u in self.users if u.name.casefold() == key), None)

    def by_email(self, email: str | None) -> User | None:
        if not email:
            return None
        key = email.strip().casefold()
        return next((u for u in self.users if (u.email or "").casefold() == key), None)

    def leads(self) -> list[User]:
        return [u for u in self.users if u.role == "lead"]


# -- where the file is, reading and writing it ------------------------------------------------------------------


def users_path(db_path: str | os.PathLike[str]) -> Path:
    """The users file for a curation database: ``$CLEAR_USERS`` if set, else DB's name with ``.users.json``."""
    named = os.environ.get(USERS_ENV, "").strip()
    return Path(named).expanduser() if named else Path(db_path).expanduser().with_suffix(".users.json")


def team_mode(db_path: str | os.PathLike[str]) -> Path | None:
    """The users file when team mode is on (it exists), else None (local mode). ``$CLEAR_USERS`` naming a file that
    is not there is refused rather than falling back to local mode, where anyone who reaches the app is a lead."""
    path = users_path(db_path)
    if path.is_file():
        return path
    if os.environ.get(USERS_ENV, "").strip():
        raise AccountsError(
            f"{USERS_ENV} names {path}, which does not exist. Add the first lead with: python -m clear_core users "
            f"add NAME --role lead --users {path}; or unset {USERS_ENV} for local mode."
        )
    return None


def load_users(path: str | os.PathLike[str]) -> Users:
    """Read a users file; a file that is not one says where (line, column) and what to do."""
    path = Path(path)
    if not path.exists():
        return Users()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise AccountsError(
            f"{path}, line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg}). Fix it, or remove it and "
            "add the users again with python -m clear_core users add."
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise AccountsError(f"Cannot read the users file {path}: {exc}.") from exc
    if not isinstance(raw, dict) or raw.get("format") != FILE_FORMAT or not isinstance(raw.get("users"), list):
        raise AccountsError(f'{path} is not a CLEAR Review users file (no "format": {FILE_FORMAT!r} with users).')
    if raw.get("version", FILE_VERSION) > FILE_VERSION:
        raise AccountsError(f"{path} was written by a newer CLEAR Review (version {raw['version']}); upgrade.")
    users = []
    for number, entry in enumerate(raw["users"], start=1):
        try:
            user = User(**{k: entry.get(k) for k in _FIELDS})
            _check_name(user.name)
            _check_role(user.role)
        except (AttributeError, TypeError, InvalidInput) as exc:
            raise AccountsError(f"{path}: user {number} is not valid ({exc}); fix or remove it.") from exc
        users.append(user)
    return Users(tuple(users))


def save_users(path: str | os.PathLike[str], users: Users) -> None:
    """Write the users file atomically (temporary file, fsync, rename), readable by its owner only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "format": FILE_FORMAT,
        "version": FILE_VERSION,
        "users": [{k: getattr(u, k) for k in _FIELDS} for u in users.users],
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(body, out, indent=2)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidInput(
            f"User name {name!r} is not allowed: use 1-64 letters, digits, '.', '_', '-' or '@', starting with a "
            "letter or digit."
        )


def _check_role(role: Any) -> None:
    if role not in ROLES:
        raise InvalidInput(f"Unknown role {role!r}; expected one of {', '.join(ROLES)}.")


def add_user(
    users: Users,
    name: str,
    role: str,
    password: str | None,
    *,
    email: str | None = None,
    replace: bool = False,
    now: dt.datetime | None = None,
) -> Users:
    """``users`` with NAME added (or, with ``replace``, given a new role and password); ``password`` None makes an
    OIDC-only user, who needs an ``email``."""
    _check_name(name)
    _check_role(role)
    existing = users.get(name)
    if existing and not replace:
        raise AccountsError(
            f"There is already a user {existing.name!r}; pass --replace to change their role or password"
        )
    if password is None and not email:
        raise AccountsError(f"{name} needs a password, or an --email to sign in with through st.login (OIDC).")
    if password is not None and len(password) < MIN_PASSWORD:
        raise AccountsError(f"The password is too short: use at least {MIN_PASSWORD} characters.")
    if existing and existing.role == "lead" and role != "lead" and len(users.leads()) == 1:
        raise AccountsError(f"{existing.name} is the only lead; add another lead first.")
    user = User(
        name=existing.name if existing else name,
        role=role,
        password_hash=None if password is None else hash_password(password),
        email=email.strip() if email else None,
        added_at=(now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    others = tuple(u for u in users.users if u is not existing)
    return Users((*others, user))


def remove_user(users: Users, name: str) -> Users:
    """``users`` without NAME; the only lead cannot be removed (the team would have nobody to run it, and a users
    file with nobody in it would lock everyone out)."""
    user = users.get(name)
    if user is None:
        raise AccountsError(f"There is no user {name!r}; see python -m clear_core users list.")
    if user.role == "lead" and len(users.leads()) == 1:
        raise AccountsError(
            f"{user.name} is the only lead; add another lead first, or delete the users file to go back to local mode."
        )
    return Users(tuple(u for u in users.users if u is not user))


# -- passwords and sign-in ---------------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    return HASHER.hash(password)


_DUMMY: dict[int, str] = {}


def _dummy_hash() -> str:
    """A hash of nothing anyone types, checked for an unknown name so that it costs what a known one does."""
    key = id(HASHER)
    if key not in _DUMMY:
        _DUMMY[key] = HASHER.hash(os.urandom(16).hex())
    return _DUMMY[key]


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (argon2's constant-time check); a missing or broken hash never
    matches, after the same work as a real check."""
    try:
        return HASHER.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@dataclass
class Backoff:
    """Failed sign-ins per key (name and address), in memory and thread-safe: after ``free_failures`` failures each
    further try waits ``base_s`` doubled per failure, at most ``max_s``. A success clears the key."""

    free_failures: int = 3
    base_s: float = 1.0
    max_s: float = 300.0
    max_keys: int = 10_000
    _failures: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def wait_s(self, key: tuple[str, str], now: float) -> float:
        """Seconds before ``key`` may try again (0: now)."""
        with self._lock:
            count, last = self._failures.get(key, (0, now))
        if count < self.free_failures:
            return 0.0
        delay = min(self.max_s, self.base_s * 2 ** (count - self.free_failures))
        return max(0.0, last + delay - now)

    def failed(self, key: tuple[str, str], now: float) -> None:
        with self._lock:
            if len(self._failures) >= self.max_keys:  # forget the stalest half rather than grow without bound
                stale = sorted(self._failures, key=lambda k: self._failures[k][1])[: self.max_keys // 2]
                for old in stale:
                    del self._failures[old]
            count, _ = self._failures.get(key, (0, now))
            self._failures[key] = (count + 1, now)

    def succeeded(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._failures.pop(key, None)


def authenticate(users: Users, name: str, password: str, *, address: str, backoff: Backoff, now: float) -> User:
    """The user NAME if PASSWORD is theirs, else ``SignInRefused`` with one message for an unknown name and a wrong
    password; too many failures for NAME from ADDRESS are refused without a check until their wait is over."""
    key = (name.strip().casefold(), address or "unknown")
    wait = backoff.wait_s(key, now)
    if wait > 0:
        raise SignInRefused(f"Too many failed sign-ins. Wait {math.ceil(wait)} s, then try again.")
    user = users.get(name) if name.strip() else None
    ok = verify_password(user.password_hash if user else None, password)
    if user is None or not ok:
        backoff.failed(key, now)
        raise SignInRefused(WRONG)
    backoff.succeeded(key)
    return user


# -- sessions ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionPolicy:
    """How long a sign-in lasts: ``idle_s`` without a request, ``max_s`` in all (defaults 2 h and 12 h; set
    ``CLEAR_SESSION_IDLE_MINUTES`` / ``CLEAR_SESSION_HOURS`` to change them)."""

    idle_s: float = 2 * 3600
    max_s: float = 12 * 3600

    @classmethod
    def from_env(cls) -> SessionPolicy:
        try:
            idle = float(os.environ.get("CLEAR_SESSION_IDLE_MINUTES", "") or cls.idle_s / 60) * 60
            total = float(os.environ.get("CLEAR_SESSION_HOURS", "") or cls.max_s / 3600) * 3600
        except ValueError as exc:
            raise AccountsError(f"CLEAR_SESSION_IDLE_MINUTES and CLEAR_SESSION_HOURS must be numbers: {exc}.") from exc
        return cls(idle_s=idle, max_s=total)


@dataclass(frozen=True)
class Session:
    """One browser session's sign-in: who, when, and when they were last seen (seconds since the epoch)."""

    name: str
    signed_in_at: float
    last_seen_at: float
    via: str = "password"  # or "oidc"


def session_problem(session: Session, policy: SessionPolicy, now: float) -> str | None:
    """Why ``session`` is no longer valid at ``now``, or None while it is."""
    if now - session.signed_in_at >= policy.max_s:
        return f"Your session ended {policy.max_s / 3600:g} h after you signed in. Sign in again."
    if now - session.last_seen_at >= policy.idle_s:
        return f"Your session ended after {policy.idle_s / 60:g} minutes without activity. Sign in again."
    return None


def touch(session: Session, now: float) -> Session:
    return Session(session.name, session.signed_in_at, now, session.via)
