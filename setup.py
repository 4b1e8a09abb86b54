"""
Installs voipgw and its twistd plugin.

The plugin module lives in twisted/plugins/ without an __init__.py (that
package belongs to Twisted); listing "twisted.plugins" here installs just
our voipgw_plugin.py into it.
"""
from setuptools import find_packages, setup

setup(
    packages=find_packages(exclude=["tests", "tests.*", "bench", "bench.*", "docs", "docs.*"])
    + ["twisted.plugins", "voipgw.sqlfiles"],
    # The MySQL schema lives in sql/ at the top of the checkout and is
    # installed as voipgw/sqlfiles/ (see voipgw.db.migrations.sqlDirectory).
    package_dir={"voipgw.sqlfiles": "sql"},
    package_data={"twisted.plugins": ["voipgw_plugin.py"], "voipgw.sqlfiles": ["*/*.sql"]},
)
