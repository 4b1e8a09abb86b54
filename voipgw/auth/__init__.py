"""Digest authentication for the registrar and the proxy."""

from voipgw.auth.digest import AuthResult, DigestAuthenticator, digestResponse

__all__ = ["AuthResult", "DigestAuthenticator", "digestResponse"]
