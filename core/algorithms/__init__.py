"""Pure geometry shared by every stage (numpy in, numpy out)."""
