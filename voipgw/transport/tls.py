# -*- test-case-name: tests.test_transport_stream -*-
"""TLS contexts for SIP listeners and outbound connections (pyOpenSSL)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from twisted.internet import ssl


class TLSConfigError(ValueError):
    """The TLS settings are incomplete or the files cannot be used."""


@dataclass(frozen=True)
class TLSSettings:
    """
    Certificate and key for the node's TLS listeners; C{ca} (PEM bundle)
    verifies peers: clients when C{verifyClients}, servers when
    C{verifyServers} (on by default whenever C{ca} is set).
    """

    certificate: Optional[str] = None
    privateKey: Optional[str] = None
    ca: Optional[str] = None
    verifyClients: bool = False
    verifyServers: bool = True

    def _readCAs(self) -> list[Any]:
        if not self.ca:
            raise TLSConfigError("peer verification needs a CA bundle (tls_ca)")
        try:
            data = open(self.ca, "rb").read()
        except OSError as e:
            raise TLSConfigError(f"cannot read CA bundle {self.ca}: {e.strerror}") from None
        certs = []
        marker = b"-----END CERTIFICATE-----"
        for chunk in data.split(marker):
            if b"-----BEGIN CERTIFICATE-----" in chunk:
                certs.append(ssl.Certificate.loadPEM(chunk + marker).original)
        if not certs:
            raise TLSConfigError(f"no certificate in CA bundle {self.ca}")
        return certs

    def serverOptions(self) -> ssl.CertificateOptions:
        """Options for a TLS listener; raise L{TLSConfigError} if unusable."""
        if not self.certificate or not self.privateKey:
            raise TLSConfigError("a tls: listener needs tls_certificate and tls_private_key")
        try:
            certPEM = open(self.certificate, "rb").read()
            keyPEM = open(self.privateKey, "rb").read()
        except OSError as e:
            raise TLSConfigError(f"cannot read TLS file {e.filename}: {e.strerror}") from None
        try:
            cert = ssl.PrivateCertificate.loadPEM(certPEM + b"\n" + keyPEM)
        except Exception as e:
            raise TLSConfigError(f"bad TLS certificate or key: {e}") from None
        kwargs: dict[str, Any] = {
            "privateKey": cert.privateKey.original,
            "certificate": cert.original,
            "raiseMinimumTo": ssl.TLSVersion.TLSv1_2,
        }
        if self.verifyClients:
            kwargs.update(verify=True, caCerts=self._readCAs(), requireCertificate=True)
        return ssl.CertificateOptions(**kwargs)

    def clientOptions(self, hostname: str) -> Any:
        """Options for an outbound TLS connection to C{hostname}."""
        clientCert = None
        if self.certificate and self.privateKey:
            clientCert = ssl.PrivateCertificate.loadPEM(
                open(self.certificate, "rb").read() + b"\n" + open(self.privateKey, "rb").read()
            )
        if self.ca and self.verifyServers:
            trust = ssl.trustRootFromCertificates(
                [ssl.Certificate(c) for c in self._readCAs()]
            )
            return ssl.optionsForClientTLS(hostname, trustRoot=trust, clientCertificate=clientCert)
        if self.verifyServers:
            return ssl.optionsForClientTLS(hostname, clientCertificate=clientCert)
        kwargs: dict[str, Any] = {"verify": False}
        if clientCert is not None:
            kwargs.update(privateKey=clientCert.privateKey.original, certificate=clientCert.original)
        return ssl.CertificateOptions(**kwargs)
