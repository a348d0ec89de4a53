"""Pure algorithms of the annotation round trip (numpy and the standard library only)."""
