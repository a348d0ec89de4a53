"""Selection cores: coverage scoring (ZCore), k-center, targeting and batch planning."""
