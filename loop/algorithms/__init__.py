"""Pure loop arithmetic: label efficiency between strategies' learning curves."""
