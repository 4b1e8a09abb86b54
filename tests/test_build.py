"""Which build runs: the mypyc-compiled SIP layer where it was built, the sources in a checkout."""

from __future__ import annotations

import os

from twisted.trial import unittest

from voipgw.build import COMPILED_MODULES, buildKind, compiledModules


class BuildKindTests(unittest.TestCase):
    def test_expectedBuild(self) -> None:
        """
        With C{VOIPGW_EXPECT_COMPILED=1} (.ci/run's second pass, against
        the pip-installed package) every listed module is the compiled
        extension; otherwise (the checkout) every one is its Python source,
        so no stale in-place build hides an edit.
        """
        expectCompiled = os.environ.get("VOIPGW_EXPECT_COMPILED", "") not in ("", "0")
        modules = compiledModules()
        self.assertEqual(sorted(modules), sorted(COMPILED_MODULES))
        self.assertEqual({name: expectCompiled for name in COMPILED_MODULES}, modules)
        self.assertEqual(buildKind(), "mypyc" if expectCompiled else "pure-python")

    def test_setupCompilesTheListedModules(self) -> None:
        """setup.py reads the list from voipgw/build.py: one list, not two."""
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        setupPath = os.path.join(root, "setup.py")
        if not os.path.exists(setupPath):
            raise unittest.SkipTest("no checkout beside the tests (the installed-build pass)")
        source = open(setupPath, encoding="utf-8").read()
        namespace: dict = {"__file__": setupPath, "__name__": "setup_under_test"}
        # only the helper, not setup() itself
        helper = source[source.index("def compiledSources"):source.index("def compiledExtensions")]
        exec(compile("import ast, os\n" + helper, setupPath, "exec"), namespace)
        self.assertEqual(
            namespace["compiledSources"](),
            [name.replace(".", "/") + ".py" for name in COMPILED_MODULES],
        )

    def test_setupRemovesStaleExtensions(self) -> None:
        """
        Before building, setup.py deletes the compiled modules an earlier
        build left in build/lib*: setuptools would pack them, and one whose
        module has left COMPILED_MODULES would shadow its source.
        """
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        setupPath = os.path.join(root, "setup.py")
        if not os.path.exists(setupPath):
            raise unittest.SkipTest("no checkout beside the tests (the installed-build pass)")
        source = open(setupPath, encoding="utf-8").read()
        helper = source[source.index("def removeStaleExtensions"):source.index("def compiledExtensions")]
        fakeRoot = self.mktemp()
        lib = os.path.join(fakeRoot, "build", "lib.linux-x86_64-cpython-311")
        package = os.path.join(lib, "voipgw", "transaction")
        os.makedirs(package)
        stale = [os.path.join(package, "layer.cpython-311-x86_64-linux-gnu.so"),
                 os.path.join(lib, "voipgw__mypyc.cpython-311-x86_64-linux-gnu.so")]
        kept = [os.path.join(package, "layer.py"), os.path.join(fakeRoot, "build", "__native_voipgw.c")]
        for path in stale + kept:
            open(path, "w").close()
        namespace: dict = {"__file__": os.path.join(fakeRoot, "setup.py"), "__name__": "setup_under_test"}
        exec(compile("import glob, os\n" + helper, setupPath, "exec"), namespace)
        namespace["removeStaleExtensions"]()
        self.assertEqual([os.path.exists(p) for p in stale], [False, False])
        self.assertEqual([os.path.exists(p) for p in kept], [True, True])


class CompiledLoggerTests(unittest.TestCase):
    """
    Log events of compiled classes carry their own namespace: a compiled
    module has no Python frame for L{Logger} to read it from (it used to
    read the importer's, e.g. C{__main__}), and a native class does not
    call L{Logger.__get__}, so each logger names its class itself.
    """

    def test_namespaces(self) -> None:
        from twisted.internet import task

        from voipgw.auth.digest import DigestAuthenticator
        from voipgw.dispatch import RequestDispatcher
        from voipgw.location.memory import MemoryLocationStore
        from voipgw.registrar.config import RegistrarConfig
        from voipgw.registrar.service import Registrar
        from voipgw.transaction import timers
        from voipgw.workers.replication import ReplicatedLocationStore, ReplicationChannel

        clock = task.Clock()
        objects = [
            DigestAuthenticator(None, b"0123456789abcdef", clock),
            RequestDispatcher(None),
            MemoryLocationStore(clock),
            Registrar(RegistrarConfig(), None, None, ["example.com"], clock),
            ReplicatedLocationStore(None, clock),
            ReplicationChannel("/nonexistent", 0, 2, lambda message: None),
        ]
        self.assertEqual(
            [o.log.namespace for o in objects],
            [f"{type(o).__module__}.{type(o).__name__}" for o in objects],
        )
        self.assertEqual(timers._log.namespace, "voipgw.transaction.timers")
