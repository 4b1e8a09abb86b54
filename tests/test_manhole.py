"""The manhole: refused without credentials, loopback only, real SSH logins."""

from __future__ import annotations

import os
import subprocess
import tempfile

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.trial import unittest

from tests.nodes import startNode
from tests.siptools import freePort, runTool, toolMissing
from voipgw.config import ConfigError, ManholeConfig, parseConfig
from voipgw.management.manhole import BcryptPasswordFile, hashPassword, loadOrCreateHostKey, loopbackEndpoint
from voipgw.node import buildNode


def makeKey(directory: str, name: str) -> str:
    path = os.path.join(directory, name)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
    return path


class ManholeConfigTests(unittest.SynchronousTestCase):
    def test_refusedWithoutCredentials(self) -> None:
        """A manhole with neither authorized_keys nor passwords is a config error."""
        from twisted.internet import reactor

        config = parseConfig({"node": {"data_dir": tempfile.mkdtemp()}, "manhole": {"listen": "tcp:0"}})
        with self.assertRaises(ConfigError) as e:
            buildNode(config, reactor)
        self.assertIn("no built-in credentials", str(e.exception))

    def test_offByDefault(self) -> None:
        from twisted.internet import reactor

        node = buildNode(parseConfig({"node": {"data_dir": tempfile.mkdtemp()}}), reactor)
        self.assertNotIn("manhole", [s.name for s in node])

    def test_loopbackOnly(self) -> None:
        self.assertEqual(loopbackEndpoint("tcp:2222", False), "tcp:2222:interface=127.0.0.1")
        self.assertEqual(loopbackEndpoint("tcp:2222:interface=127.0.0.1", False), "tcp:2222:interface=127.0.0.1")
        with self.assertRaises(ConfigError) as e:
            loopbackEndpoint("tcp:2222:interface=0.0.0.0", False)
        self.assertIn("allow_remote", str(e.exception))
        self.assertEqual(loopbackEndpoint("tcp:2222:interface=192.0.2.5", True), "tcp:2222:interface=192.0.2.5")

    def test_badCredentialFiles(self) -> None:
        directory = tempfile.mkdtemp()
        bad = os.path.join(directory, "bad")
        with open(bad, "w") as f:
            f.write("alice:plaintext-password\n")
        with self.assertRaises(ConfigError) as e:
            BcryptPasswordFile(bad)
        self.assertIn("bcrypt", str(e.exception))
        from voipgw.management.manhole import AuthorizedKeysFile

        with self.assertRaises(ConfigError):
            AuthorizedKeysFile(bad)
        with self.assertRaises(ConfigError):
            AuthorizedKeysFile(os.path.join(directory, "missing"))

    def test_hostKeyGeneratedOnceAndPrivate(self) -> None:
        path = os.path.join(tempfile.mkdtemp(), "sub", "host_key")
        first = loadOrCreateHostKey(path)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        self.assertEqual(loadOrCreateHostKey(path).fingerprint(), first.fingerprint())


class PasswordFileTests(unittest.TestCase):
    async def test_bcryptPasswords(self) -> None:
        path = os.path.join(tempfile.mkdtemp(), "passwords")
        with open(path, "w") as f:
            f.write(f"operator:{hashPassword('correct horse')}\n")
        checker = BcryptPasswordFile(path)
        self.assertEqual(await checker.requestAvatarId(UsernamePassword(b"operator", b"correct horse")), b"operator")
        for user, password in [(b"operator", b"wrong"), (b"nobody", b"correct horse")]:
            with self.assertRaises(UnauthorizedLogin):
                await checker.requestAvatarId(UsernamePassword(user, password))


class ManholeLoginTests(unittest.TestCase):
    timeout = 60

    if toolMissing("ssh"):
        skip = toolMissing("ssh")

    async def startWithKey(self) -> tuple[str, int, str]:
        directory = tempfile.mkdtemp(prefix="voipgw-manhole-")
        key = makeKey(directory, "operator")
        authorized = os.path.join(directory, "authorized_keys")
        with open(key + ".pub") as src, open(authorized, "w") as dst:
            dst.write(src.read())
        port = freePort(kind=1)
        await startNode(self, transports=("udp",), sections={"manhole": {
            "listen": f"tcp:{port}", "authorized_keys": authorized}})
        return directory, port, key

    async def ssh(self, port: int, key: str, command: str) -> tuple[int, str]:
        script = os.path.join(tempfile.mkdtemp(), "session.sh")
        with open(script, "w") as f:
            f.write(
                f"(printf '%s\\r' '{command}'; sleep 1; printf '\\004') | ssh -tt -i {key} "
                f"-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes "
                f"-o PasswordAuthentication=no -p {port} operator@127.0.0.1\n"
            )
        result = await runTool(["/bin/sh", script], timeout=30)
        return result.exitCode, result.stdout + result.stderr

    async def test_inspectLiveNode(self) -> None:
        """An operator with a configured key reaches the named services and counters."""
        _, port, key = await self.startWithKey()
        code, output = await self.ssh(port, key, 'print("svc=" + node.getServiceNamed("transactions").name, "errors=%d" % counters.get("parse_errors"))')
        self.assertIn("svc=transactions errors=0", output)

    async def test_unknownKeyRefused(self) -> None:
        directory, port, _ = await self.startWithKey()
        stranger = makeKey(directory, "stranger")
        code, output = await self.ssh(port, stranger, "print(1)")
        self.assertNotEqual(code, 0)
        self.assertIn("Permission denied", output)
