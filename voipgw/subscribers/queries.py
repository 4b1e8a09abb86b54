# -*- test-case-name: tests.test_subscribers -*-
"""
The subscriber SQL, as synchronous functions of a SQLAlchemy L{Connection}.

The store runs them on database pool threads through
C{Database.runInteraction}; C{voipgw-admin} runs them directly on an engine.
They return plain data (L{Subscriber}, ints, lists), never SQLAlchemy
objects.  Every value is a bound parameter.
"""

from __future__ import annotations

import datetime
import unicodedata
from typing import Any, Iterable, NamedTuple, Sequence

from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from voipgw.subscribers.errors import InvalidSubscriber, SubscriberExists, UnknownSubscriber
from voipgw.subscribers.model import Subscriber, computeHA1
from voipgw.subscribers.schema import (
    CALLER_ID_LENGTH,
    DOMAIN_LENGTH,
    USERNAME_LENGTH,
    subscriberTable as t,
)

SETTINGS = ("enabled", "callerId", "maxContacts")


def _hasControl(value: str) -> bool:
    if value.isascii():
        # the only ASCII characters of category C are the controls, which
        # are exactly the ones isprintable() refuses (a fast path per lookup)
        return not value.isprintable()
    return any(unicodedata.category(c).startswith("C") for c in value)


def _hasSpace(value: str) -> bool:
    if value.isascii() and value.isprintable():
        return " " in value  # the only printable ASCII white space
    return any(c.isspace() for c in value)


def normaliseUsername(username: str) -> str:
    """The stored form of a username: lower case; raise L{InvalidSubscriber}."""
    if not isinstance(username, str) or not username:
        raise InvalidSubscriber("username must not be empty")
    if _hasControl(username) or username != username.strip():
        raise InvalidSubscriber(f"invalid username {username!r}")
    username = username.lower()
    if len(username) > USERNAME_LENGTH:
        raise InvalidSubscriber(f"username longer than {USERNAME_LENGTH} characters")
    return username


def normaliseDomain(domain: str) -> str:
    """The stored form of a domain: lower case; raise L{InvalidSubscriber}."""
    if not isinstance(domain, str) or not domain:
        raise InvalidSubscriber("domain must not be empty")
    if _hasControl(domain) or _hasSpace(domain) or "@" in domain:
        raise InvalidSubscriber(f"invalid domain {domain!r}")
    domain = domain.lower()
    if len(domain) > DOMAIN_LENGTH:
        raise InvalidSubscriber(f"domain longer than {DOMAIN_LENGTH} characters")
    return domain


def normaliseKey(username: str, domain: str) -> tuple[str, str]:
    return normaliseUsername(username), normaliseDomain(domain)


def validateSettings(settings: dict[str, Any]) -> dict[str, Any]:
    """
    Check the optional settings of L{addSubscriber}: C{enabled} (bool),
    C{callerId} (str), C{maxContacts} (int >= 0); return column values.
    """
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        raise InvalidSubscriber(f"unknown subscriber settings: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    if "enabled" in settings:
        if not isinstance(settings["enabled"], bool):
            raise InvalidSubscriber("enabled must be a boolean")
        values["enabled"] = settings["enabled"]
    if "callerId" in settings:
        callerId = settings["callerId"]
        if not isinstance(callerId, str) or _hasControl(callerId) or len(callerId) > CALLER_ID_LENGTH:
            raise InvalidSubscriber(f"invalid caller id {callerId!r}")
        values["caller_id"] = callerId
    if "maxContacts" in settings:
        maxContacts = settings["maxContacts"]
        if isinstance(maxContacts, bool) or not isinstance(maxContacts, int) or not 0 <= maxContacts < 2**31:
            raise InvalidSubscriber(f"max contacts must be a non-negative integer, not {maxContacts!r}")
        values["max_contacts"] = maxContacts
    return values


def validatePassword(password: str) -> str:
    if not isinstance(password, str) or not password:
        raise InvalidSubscriber("password must not be empty")
    return password


def credentialValues(username: str, domain: str, password: str) -> dict[str, str]:
    """The HA1 columns for normalised C{username}, C{domain} (realm = domain)."""
    return {
        "ha1": computeHA1(username, domain, password, "MD5"),
        "ha1_sha256": computeHA1(username, domain, password, "SHA-256"),
    }


def _utc(now: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(now, datetime.timezone.utc).replace(tzinfo=None, microsecond=0)


def _fromRow(row: Any) -> Subscriber:
    return Subscriber(
        username=row.username,
        domain=row.domain,
        ha1=row.ha1,
        ha1Sha256=row.ha1_sha256,
        enabled=bool(row.enabled),
        callerId=row.caller_id,
        maxContacts=int(row.max_contacts),
    )


_COLUMNS = (t.c.username, t.c.domain, t.c.ha1, t.c.ha1_sha256, t.c.enabled, t.c.caller_id, t.c.max_contacts)


#: Built once: SQLAlchemy then finds the compiled form in its cache (the
#: values are bound parameters; the IN list is an "expanding" parameter).
_GET_ONE = select(*_COLUMNS).where(and_(t.c.username == bindparam("u"), t.c.domain == bindparam("d")))
_GET_MANY = select(*_COLUMNS).where(
    and_(t.c.domain == bindparam("d"), t.c.username.in_(bindparam("us", expanding=True)))
)

#: Most usernames in one C{IN (...)} list.
MAX_BATCH = 500


def getSubscriber(conn: Connection, username: str, domain: str) -> Subscriber | None:
    """The subscriber with normalised C{username}, C{domain}, or C{None}."""
    row = conn.execute(_GET_ONE, {"u": username, "d": domain}).first()
    return _fromRow(row) if row is not None else None


def getSubscribers(conn: Connection, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Subscriber]:
    """
    The subscribers of the normalised C{(username, domain)} C{keys} that
    exist, by key: one query per domain and C{MAX_BATCH} usernames.
    """
    byDomain: dict[str, list[str]] = {}
    for username, domain in keys:
        byDomain.setdefault(domain, []).append(username)
    found: dict[tuple[str, str], Subscriber] = {}
    for domain, usernames in byDomain.items():
        for start in range(0, len(usernames), MAX_BATCH):
            chunk = usernames[start : start + MAX_BATCH]
            if len(chunk) == 1:
                row = conn.execute(_GET_ONE, {"u": chunk[0], "d": domain}).first()
                rows = [row] if row is not None else []
            else:
                rows = list(conn.execute(_GET_MANY, {"d": domain, "us": chunk}))
            for row in rows:
                subscriber = _fromRow(row)
                found[(subscriber.username, subscriber.domain)] = subscriber
    return found


def addSubscriber(
    conn: Connection, username: str, domain: str, password: str, now: float, settings: dict[str, Any]
) -> Subscriber:
    """Insert a subscriber (arguments already validated and normalised)."""
    values = {
        "username": username,
        "domain": domain,
        "enabled": True,
        "caller_id": "",
        "max_contacts": 0,
        "created": _utc(now),
        "updated": _utc(now),
        **credentialValues(username, domain, password),
        **settings,
    }
    try:
        conn.execute(t.insert().values(**values))
    except IntegrityError as e:
        raise SubscriberExists(f"subscriber {username}@{domain} already exists") from e
    return Subscriber(
        username=username,
        domain=domain,
        ha1=values["ha1"],
        ha1Sha256=values["ha1_sha256"],
        enabled=values["enabled"],
        callerId=values["caller_id"],
        maxContacts=values["max_contacts"],
    )


def removeSubscriber(conn: Connection, username: str, domain: str) -> None:
    result = conn.execute(t.delete().where(and_(t.c.username == username, t.c.domain == domain)))
    if result.rowcount == 0:
        raise UnknownSubscriber(f"no subscriber {username}@{domain}")


def setPassword(conn: Connection, username: str, domain: str, password: str, now: float) -> None:
    result = conn.execute(
        t.update()
        .where(and_(t.c.username == username, t.c.domain == domain))
        .values(updated=_utc(now), **credentialValues(username, domain, password))
    )
    if result.rowcount == 0:
        raise UnknownSubscriber(f"no subscriber {username}@{domain}")


def listSubscribers(
    conn: Connection, domain: str | None = None, limit: int = 1000, offset: int = 0
) -> list[Subscriber]:
    query = select(*_COLUMNS).order_by(t.c.domain, t.c.username).limit(limit).offset(offset)
    if domain is not None:
        query = query.where(t.c.domain == domain)
    return [_fromRow(row) for row in conn.execute(query)]


_PAGE_AFTER = (
    select(*_COLUMNS)
    .where((t.c.domain > bindparam("d")) | (and_(t.c.domain == bindparam("d"), t.c.username > bindparam("u"))))
    .order_by(t.c.domain, t.c.username)
    .limit(bindparam("n"))
)


def subscribersAfter(conn: Connection, after: tuple[str, str], limit: int) -> list[Subscriber]:
    """Up to C{limit} subscribers after the key C{after} in (domain, username) order (keyset paging)."""
    username, domain = after
    return [_fromRow(row) for row in conn.execute(_PAGE_AFTER, {"d": domain, "u": username, "n": limit})]


def countSubscribers(conn: Connection, domain: str | None = None) -> int:
    query = select(func.count()).select_from(t)
    if domain is not None:
        query = query.where(t.c.domain == domain)
    return int(conn.execute(query).scalar_one())


def existingKeys(conn: Connection, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of the normalised (username, domain) C{keys} are already stored."""
    byDomain: dict[str, list[str]] = {}
    for username, domain in keys:
        byDomain.setdefault(domain, []).append(username)
    found: set[tuple[str, str]] = set()
    for domain, usernames in byDomain.items():
        for start in range(0, len(usernames), 500):
            chunk = usernames[start : start + 500]
            rows = conn.execute(
                select(t.c.username).where(and_(t.c.domain == domain, t.c.username.in_(chunk)))
            )
            found.update((username, domain) for (username,) in rows)
    return found


def insertMany(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """
    Insert complete rows (as built by L{importRow}) with one executemany.
    Raises L{IntegrityError} if any is a duplicate.
    """
    if rows:
        conn.execute(t.insert(), list(rows))


def importRow(username: str, domain: str, password: str, now: float) -> dict[str, Any]:
    """A complete row for L{insertMany} (normalised arguments)."""
    stamp = _utc(now)
    return {
        "username": username,
        "domain": domain,
        "enabled": True,
        "caller_id": "",
        "max_contacts": 0,
        "created": stamp,
        "updated": stamp,
        **credentialValues(username, domain, password),
    }


class ReplicationStatus(NamedTuple):
    """
    A replica's state: C{lag} in seconds (C{None} when unknown: replication
    stopped or the replica cannot reach its master), whether the I/O thread
    (fetching from the master) and the SQL thread (applying) run, and the
    last replication error.
    """

    lag: float | None
    ioRunning: bool
    sqlRunning: bool
    error: str = ""


def replicationStatus(conn: Connection) -> ReplicationStatus:
    """
    The replication status of the server behind C{conn}: C{SHOW SLAVE
    STATUS} on MySQL/MariaDB (a server that is not a replica has lag
    C{None} and nothing running); on other databases (SQLite), a trivial
    query and lag 0.
    """
    if conn.dialect.name not in ("mysql", "mariadb"):
        conn.execute(select(1)).scalar()
        return ReplicationStatus(0.0, True, True)
    row = conn.exec_driver_sql("SHOW SLAVE STATUS").mappings().first()
    if row is None:
        return ReplicationStatus(None, False, False, "not configured as a replica")
    lag = row.get("Seconds_Behind_Master")
    error = row.get("Last_SQL_Error") or row.get("Last_IO_Error") or ""
    return ReplicationStatus(
        None if lag is None else float(lag),
        row.get("Slave_IO_Running") == "Yes",
        row.get("Slave_SQL_Running") == "Yes",
        str(error),
    )


def ping(conn: Connection) -> None:
    conn.execute(select(1)).scalar()
