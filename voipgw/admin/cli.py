# -*- test-case-name: tests.test_admin -*-
"""
The C{voipgw-admin} entry point.

Each command group lives in its own module exposing
C{register(subparsers)}, which adds its sub-commands; each sub-command sets
C{func(args) -> int} through C{set_defaults}.  Errors meant for the operator
are raised as L{AdminError} and printed without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

COMMAND_GROUPS = (
    "voipgw.admin.db_commands",
    "voipgw.admin.subscriber_commands",
    "voipgw.admin.location_commands",
)


class AdminError(Exception):
    """A failure explained to the operator in one line; exit status 1."""


def buildParser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voipgw-admin", description="Provision and operate a voipgw platform."
    )
    subparsers = parser.add_subparsers(dest="group", metavar="GROUP")
    subparsers.required = True
    for moduleName in COMMAND_GROUPS:
        try:
            module = importlib.import_module(moduleName)
        except ModuleNotFoundError as e:
            if e.name == moduleName:
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = buildParser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AdminError as e:
        print(f"voipgw-admin: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
