"""Every INI example in docs/ parses with the real configuration code."""

from __future__ import annotations

import configparser
import glob
import os
import re

from twisted.trial import unittest

from voipgw.auth.config import AuthConfig
from voipgw.config import parseConfig
from voipgw.location.config import LocationConfig
from voipgw.registrar.config import RegistrarConfig
from voipgw.subscribers.config import SubscriberConfig

DOCS = os.path.join(os.path.dirname(__file__), "..", "docs")
SECTION_PARSERS = {
    "subscribers": SubscriberConfig.fromSection,
    "location": LocationConfig.fromSection,
    "registrar": RegistrarConfig.fromSection,
    "auth": AuthConfig.fromSection,
}


def iniBlocks() -> list[tuple[str, str]]:
    blocks = []
    for path in sorted(glob.glob(os.path.join(DOCS, "*.md"))):
        text = open(path, encoding="utf-8").read()
        for block in re.findall(r"```ini\n(.*?)```", text, re.S):
            if block.lstrip().startswith("["):
                blocks.append((os.path.basename(path), block))
    return blocks


class DocsConfigTests(unittest.SynchronousTestCase):
    def test_blocksFound(self) -> None:
        names = {name for name, _ in iniBlocks()}
        self.assertIn("deployment.md", names)

    def test_everyBlockParses(self) -> None:
        for name, block in iniBlocks():
            block = block.replace("REPLACE-WITH-THE-GENERATED-SECRET", "x" * 64)
            parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#", ";"))
            parser.read_string(block)
            sections = {s: dict(parser[s]) for s in parser.sections()}
            if any(k.startswith("tls_") for k in sections.get("transport", {})):
                sections["transport"] = {k: v for k, v in sections["transport"].items() if not k.startswith("tls_")}
                if "node" in sections:
                    sections["node"]["listen"] = ", ".join(
                        s for s in sections["node"].get("listen", "").split(", ") if not s.startswith("tls:")) or "udp:127.0.0.1:5060"
            try:
                parseConfig(sections)
                for section, parse in SECTION_PARSERS.items():
                    if section in sections:
                        parse(sections[section])
            except Exception as e:
                self.fail(f"{name}: {e}\n{block}")
