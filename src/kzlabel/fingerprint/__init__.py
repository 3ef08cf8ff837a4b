"""Content fingerprints that bind a signed media label to what a person hears and sees (numpy only, no I/O):
:mod:`.sound` for audio and soundtracks, :mod:`.frames` for video frames, :mod:`.common` for what they share."""

from .common import Excerpt
from .sound import (
    SOUND_ALG,
    SampleCheck,
    SoundMatch,
    SoundPrint,
    check_segments,
    match_sound,
    segment_print,
    sound_print,
)

__all__ = [
    "SOUND_ALG",
    "Excerpt",
    "SampleCheck",
    "SoundMatch",
    "SoundPrint",
    "check_segments",
    "match_sound",
    "segment_print",
    "sound_print",
]
