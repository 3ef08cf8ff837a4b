"""Render the spoken audio notices shipped in src/kzlabel/assets/ (a dev-time step; the package only reads them).

    apt-get install espeak-ng ffmpeg      # eSpeak NG 1.51: formant synthesis with Kazakh, Russian and English voices
    python scripts/make_spoken_notices.py

For each notice kind (generated / modified) and language (kk, ru, en) the label's own notice text (kzlabel.label.
NOTICES, without the bracketed abbreviation, which a synthesiser spells out letter by letter) is spoken by eSpeak NG
at 150 words per minute and stored as 16 kHz mono FLAC (``notice-KIND-LANG.flac``). eSpeak NG is GPL-3, but its
output audio is not a derived work of the program; the clips are data, like the bundled font.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from kzlabel.label import NOTICES  # noqa: E402

ASSETS = ROOT / "src" / "kzlabel" / "assets"


def main() -> None:
    for kind, texts in NOTICES.items():
        for lang, text in texts.items():
            spoken = re.sub(r"\s*\([^)]*\)", "", text)
            out = ASSETS / f"notice-{kind}-{lang}.flac"
            with tempfile.TemporaryDirectory() as tmp:
                wav = Path(tmp) / "n.wav"
                subprocess.run(["espeak-ng", "-v", lang, "-s", "150", "-w", str(wav), spoken], check=True)
                subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-af", "silenceremove=start_periods=1:"
                                "start_threshold=-50dB,areverse,silenceremove=start_periods=1:start_threshold=-50dB,"
                                "areverse", "-ar", "16000", "-ac", "1", "-sample_fmt", "s16", "-map_metadata", "-1",
                                "-fflags", "+bitexact", "-flags:a", "+bitexact", str(out)], check=True)
            print(out.relative_to(ROOT), spoken)


if __name__ == "__main__":
    main()
