"""Container byte surgery: pure bytes in, bytes out, no decoding and no I/O.

Floor 3, beside ``formats/`` and below the format handlers that call it; these modules import only the standard
library and :mod:`kzlabel.errors`. Each module walks one container's structure and gets or puts the XMP packet
without touching the coded image, so a metadata edit never costs another lossy encode:

- :mod:`.jpeg`  marker segments; XMP in APP1
- :mod:`.png`   chunks; XMP in an ``iTXt`` chunk
- :mod:`.riff`  RIFF chunks (a walker WAV can share); XMP in WebP's ``XMP `` chunk
- :mod:`.gif`   extension blocks; XMP in the ``XMP DataXMP`` application extension
- :mod:`.bmff`  ISO-BMFF boxes and brands; HEIF/AVIF ``meta`` item tables, XMP as a ``mime`` item, item properties

Malformed input raises :class:`kzlabel.errors.CorruptInput` (never ``struct.error`` or ``IndexError``); a container
that parses but holds no XMP gives ``None`` from ``get_xmp``.
"""
