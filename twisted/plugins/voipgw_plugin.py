"""The C{twistd voipgw} plugin: a thin ServiceMaker (see voipgw.tap)."""

from twisted.application.service import ServiceMaker

voipgw = ServiceMaker("voipgw", "voipgw.tap", "A carrier SIP node (proxy, registrar, router).", "voipgw")
