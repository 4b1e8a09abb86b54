# -*- test-case-name: tests.test_transaction_docs -*-
"""The examples of docs/transactions.md run and hold."""

from __future__ import annotations

import os
import re

from twisted.trial.unittest import SynchronousTestCase

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "transactions.md")


class DocExamplesTests(SynchronousTestCase):
    def test_examples(self) -> None:
        with open(DOC) as f:
            blocks = re.findall(r"^```python\n(.*?)^```", f.read(), re.S | re.M)
        self.assertEqual(len(blocks), 2)
        namespace: dict[str, object] = {}
        for i, block in enumerate(blocks):
            exec(compile(block, f"{DOC}:block{i}", "exec"), namespace)
        self.assertEqual(namespace["caller"].events, ["timeout"])  # type: ignore[attr-defined]
