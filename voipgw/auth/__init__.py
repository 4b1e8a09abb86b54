"""Digest authentication for the registrar and the proxy."""

from voipgw.auth.config import AuthConfig, loadOrCreateSecret
from voipgw.auth.digest import AuthResult, DigestAuthenticator, digestResponse

__all__ = ["AuthConfig", "loadOrCreateSecret", "AuthResult", "DigestAuthenticator", "digestResponse"]
