"""Whether media files can be read, checked before work that would otherwise skip them.

Ultralytics drops an image it cannot read as "corrupt" with a line on stdout and trains
on the rest, so a run would record more samples than it used: the training export and
prediction ask :func:`unreadable_images` first and refuse.
"""

from __future__ import annotations

from collections.abc import Iterable

from PIL import Image

__all__ = ["unreadable_images"]


def unreadable_images(paths: Iterable[str]) -> list[str]:
    """The paths among ``paths`` that are not an image file Pillow can open, sorted.

    Reads each file's header (``Image.verify``), not its pixels, so it stays cheap on
    thousands of images.
    """
    bad = []
    for path in sorted(set(paths)):
        try:
            with Image.open(path) as image:
                image.verify()
        # Missing, unreadable or not an image; any error counts, because Ultralytics patches
        # Image.open once imported (an unknown format then fails looking for a HEIF plugin).
        except Exception:
            bad.append(path)
    return bad
