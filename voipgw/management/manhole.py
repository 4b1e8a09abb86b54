# -*- test-case-name: tests.test_manhole -*-
"""
The manhole: an SSH Python shell into a live node (twisted.conch).

Off unless configured.  It binds to loopback unless the operator allows
otherwise, and accepts only configured credentials: an OpenSSH
C{authorized_keys} file and/or a password file of C{user:bcrypt-hash}
lines.  There is no built-in key or password; the SSH host key is read
from C{host_key} or generated on first start in the data directory.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any

import bcrypt
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.application.internet import StreamServerEndpointService
from twisted.conch import manhole, manhole_ssh
from twisted.conch.checkers import IAuthorizedKeysDB, SSHPublicKeyChecker
from twisted.conch.insults import insults
from twisted.conch.ssh import keys
from twisted.cred import credentials, error, portal
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer, threads
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from zope.interface import implementer

from voipgw.config import ConfigError, ManholeConfig

log = Logger()


@implementer(IAuthorizedKeysDB)
class AuthorizedKeysFile:
    """Every key in an OpenSSH authorized_keys file, valid for any user name."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.keys = self._load()

    def _load(self) -> list[keys.Key]:
        try:
            lines = open(self.path, "rb").read().splitlines()
        except OSError as e:
            raise ConfigError(f"[manhole] authorized_keys: cannot read {self.path}: {e.strerror}") from None
        found = []
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith(b"#"):
                continue
            try:
                found.append(keys.Key.fromString(line))
            except Exception:
                raise ConfigError(f"[manhole] authorized_keys: {self.path} line {number} is not a public key") from None
        if not found:
            raise ConfigError(f"[manhole] authorized_keys: {self.path} holds no key")
        return found

    def getAuthorizedKeys(self, username: bytes) -> list[keys.Key]:
        return self.keys


@implementer(ICredentialsChecker)
class BcryptPasswordFile:
    """C{user:bcrypt-hash} lines; hashes are checked off the reactor thread."""

    credentialInterfaces = (credentials.IUsernamePassword,)

    def __init__(self, path: str) -> None:
        self.path = path
        self.users: dict[bytes, bytes] = {}
        try:
            lines = open(path, "rb").read().splitlines()
        except OSError as e:
            raise ConfigError(f"[manhole] passwords: cannot read {path}: {e.strerror}") from None
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith(b"#"):
                continue
            user, sep, hashed = line.partition(b":")
            if not sep or not user or not hashed.startswith(b"$2"):
                raise ConfigError(f"[manhole] passwords: {path} line {number} is not user:bcrypt-hash")
            self.users[user] = hashed
        if not self.users:
            raise ConfigError(f"[manhole] passwords: {path} holds no user")

    def requestAvatarId(self, creds: Any) -> defer.Deferred:
        hashed = self.users.get(creds.username)
        if hashed is None:
            # Spend the same time as a real check, so user names cannot be probed.
            hashed = b"$2b$12$" + b"." * 53
        password = creds.password

        def check() -> bool:
            try:
                return bcrypt.checkpw(password, hashed)
            except ValueError:
                return False

        def result(ok: bool) -> Any:
            if ok and creds.username in self.users:
                return creds.username
            log.warn("manhole login refused for {user}", user=creds.username.decode("utf-8", "replace"))
            raise error.UnauthorizedLogin("bad user name or password")

        return threads.deferToThread(check).addCallback(result)


class OperatorSession(manhole_ssh.TerminalSession):
    """
    Twisted's terminal session, finished: a client that closes its input
    (C{ssh host < script}) ends the session instead of raising, and a window
    resize is accepted.
    """

    def openShell(self, proto: Any) -> None:
        self._sessionProtocol = proto
        super().openShell(proto)

    def eofReceived(self) -> None:
        proto = getattr(self, "_sessionProtocol", None)
        if proto is not None:
            proto.loseConnection()

    def windowChanged(self, newWindowSize: Any) -> None:
        self.height, self.width = newWindowSize[:2]


def hashPassword(password: str) -> str:
    """A line's hash part for the passwords file (used by docs and tests)."""
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt()).decode("ascii")


def loadOrCreateHostKey(path: str) -> keys.Key:
    """Read the SSH host key at C{path}, generating an Ed25519 key if absent."""
    if os.path.exists(path):
        return keys.Key.fromFile(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    key = keys.Key(ed25519.Ed25519PrivateKey.generate())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.toString("openssh"))
    log.info("generated manhole SSH host key {path}", path=path)
    return key


def loopbackEndpoint(description: str, allowRemote: bool) -> str:
    """
    Make sure a stream endpoint binds to loopback: add
    C{interface=127.0.0.1} when none is given, refuse another interface
    unless C{allowRemote}.
    """
    parts = description.split(":")
    kind = parts[0].lower()
    if kind not in ("tcp", "tcp6", "ssl", "unix"):
        raise ConfigError(f"[manhole] listen: unsupported endpoint {description!r}")
    if kind == "unix":
        return description
    interface = None
    for part in parts[1:]:
        if part.startswith("interface="):
            interface = part[len("interface="):].replace("\\:", ":")
    if interface is None:
        return description + (":interface=\\:\\:1" if kind == "tcp6" else ":interface=127.0.0.1")
    try:
        loopback = ipaddress.ip_address(interface).is_loopback
    except ValueError:
        raise ConfigError(f"[manhole] listen: interface {interface!r} is not an IP address") from None
    if not loopback and not allowRemote:
        raise ConfigError(f"[manhole] listen: {interface} is not loopback (set allow_remote = yes to permit it)")
    return description


def makeManholeService(config: ManholeConfig, namespace: dict[str, Any], reactor: Any, dataDir: str) -> StreamServerEndpointService:
    """The manhole service (name C{"manhole"}); L{ConfigError} without credentials."""
    if not config.listen:
        raise ConfigError("[manhole] listen is not set")
    if not config.authorizedKeys and not config.passwords:
        raise ConfigError("[manhole] needs authorized_keys or passwords: it has no built-in credentials")
    checkers: list[Any] = []
    if config.authorizedKeys:
        checkers.append(SSHPublicKeyChecker(AuthorizedKeysFile(config.authorizedKeys)))
    if config.passwords:
        checkers.append(BcryptPasswordFile(config.passwords))
    description = loopbackEndpoint(config.listen, config.allowRemote)

    def chainedProtocolFactory() -> insults.ServerProtocol:
        return insults.ServerProtocol(manhole.ColoredManhole, namespace)

    realm = manhole_ssh.TerminalRealm()
    realm.sessionFactory = OperatorSession
    realm.chainedProtocolFactory = chainedProtocolFactory  # type: ignore[assignment]
    thePortal = portal.Portal(realm, checkers)  # type: ignore[arg-type]
    factory = manhole_ssh.ConchFactory(thePortal)
    hostKey = loadOrCreateHostKey(config.hostKey or os.path.join(dataDir, "manhole_host_key"))
    factory.publicKeys = {hostKey.sshType(): hostKey.public()}  # type: ignore[dict-item]
    factory.privateKeys = {hostKey.sshType(): hostKey}  # type: ignore[dict-item]
    service = StreamServerEndpointService(serverFromString(reactor, description), factory)
    service.setName("manhole")
    return service
