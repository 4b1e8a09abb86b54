"""Location stores: where each registered address-of-record can be reached."""

from voipgw.location.binding import Binding, normaliseAOR

__all__ = ["Binding", "normaliseAOR"]
