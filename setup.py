"""Installs voipgw together with its twistd plugin (twisted/plugins/)."""
from setuptools import setup

setup(
    package_data={"twisted": ["plugins/voipgw_plugin.py"]},
    packages=None,
)
