"""
Installs voipgw and its twistd plugin.

The plugin module lives in twisted/plugins/ without an __init__.py (that
package belongs to Twisted); listing "twisted.plugins" here installs just
our voipgw_plugin.py into it.

The SIP message layer (voipgw.build.COMPILED_MODULES) is compiled to C with
mypyc when mypyc and a C compiler are available: the same source, type
checked, parses SIP about six times faster (docs/performance.md).  When they are
not, or with C{VOIPGW_PURE_PYTHON=1}, voipgw installs as pure Python and
works the same, only slower; a worker logs which build it runs.
"""
import ast
import glob
import os
import sys

from setuptools import find_packages, setup
from setuptools.command.build_ext import build_ext



def compiledSources() -> list[str]:
    """The files of C{voipgw.build.COMPILED_MODULES} (read, not imported)."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "voipgw", "build.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COMPILED_MODULES":
            return [name.replace(".", "/") + ".py" for name in ast.literal_eval(node.value)]
    raise RuntimeError("voipgw/build.py has no COMPILED_MODULES")


def removeStaleExtensions() -> None:
    """
    Delete the compiled modules an earlier build left in build/: setuptools
    packs whatever build/lib holds, so a module since taken off
    COMPILED_MODULES (or a pure-Python build after a compiled one) would
    install a stale extension that shadows its source and fails to import.
    The build that follows makes the current ones again.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    for lib in glob.glob(os.path.join(here, "build", "lib*")):
        stale = glob.glob(os.path.join(lib, "voipgw", "**", "*.so"), recursive=True)
        stale += glob.glob(os.path.join(lib, "voipgw__mypyc*.so"))
        for path in stale:
            os.remove(path)


def compiledExtensions() -> list:
    removeStaleExtensions()
    if os.environ.get("VOIPGW_PURE_PYTHON", "") not in ("", "0"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("voipgw: mypyc not available, installing pure Python", file=sys.stderr)
        return []
    return mypycify(compiledSources(), opt_level="3", debug_level="0", group_name="voipgw")


class OptionalBuildExt(build_ext):
    """Build the compiled modules if possible; otherwise fall back to pure Python."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # no compiler, no Python headers, ...
            print(f"voipgw: compiling with mypyc failed ({e}); installing pure Python", file=sys.stderr)
            self.extensions = []


setup(
    packages=find_packages(exclude=["tests", "tests.*", "bench", "bench.*", "docs", "docs.*"])
    + ["twisted.plugins", "voipgw.sqlfiles"],
    # The MySQL schema lives in sql/ at the top of the checkout and is
    # installed as voipgw/sqlfiles/ (see voipgw.db.migrations.sqlDirectory).
    package_dir={"voipgw.sqlfiles": "sql"},
    package_data={"twisted.plugins": ["voipgw_plugin.py"], "voipgw.sqlfiles": ["*/*.sql"]},
    ext_modules=compiledExtensions(),
    cmdclass={"build_ext": OptionalBuildExt},
)
