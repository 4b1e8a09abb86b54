"""The registrar: REGISTER handling with digest authentication (RFC 3261 §10)."""

from voipgw.registrar.config import RegistrarConfig
from voipgw.registrar.service import Registrar, RegistrationRejected

__all__ = ["Registrar", "RegistrarConfig", "RegistrationRejected"]
