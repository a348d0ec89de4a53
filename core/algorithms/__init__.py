"""Pure parts shared by every stage (numpy in, numpy out): camera geometry, work shards."""
