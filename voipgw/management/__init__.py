"""Live management: the manhole."""
