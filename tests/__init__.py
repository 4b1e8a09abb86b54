"""voipgw's trial test suite."""
