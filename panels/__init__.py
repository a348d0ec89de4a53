"""annoloop's App panels (Python panels registered by the plugin)."""

PANELS: tuple = ()
