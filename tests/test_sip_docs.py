# -*- test-case-name: tests.test_sip_docs -*-
"""The examples of docs/sip-message-layer.md run and hold."""

from __future__ import annotations

import os
import re

from twisted.trial.unittest import SynchronousTestCase

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "sip-message-layer.md")


def codeBlocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


class DocExamplesTests(SynchronousTestCase):
    def test_examples(self) -> None:
        with open(DOC) as f:
            blocks = codeBlocks(f.read())
        self.assertGreaterEqual(len(blocks), 6)
        namespace: dict[str, object] = {}
        for i, block in enumerate(blocks):
            try:
                exec(compile(block, f"{DOC}:block{i}", "exec"), namespace)
            except Exception as e:  # pragma: no cover - reported as failure
                self.fail(f"block {i} failed: {e!r}\n{block}")

    def test_blocksAreChecked(self) -> None:
        """A wrong assertion in a block fails: the runner really checks."""
        namespace: dict[str, object] = {}
        self.assertRaises(AssertionError, exec, "assert 1 == 2", namespace)
