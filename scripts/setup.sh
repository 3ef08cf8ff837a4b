#!/usr/bin/env bash
# Set up a development environment from scratch: system tools the tests use as independent readers
# (exiftool, ffprobe), as a source of real synthetic speech (espeak-ng, for the audio watermark's speech tests), as
# a real browser for the verification page (chromium + chromedriver, driven by selenium; fonts with Cyrillic for its
# screenshots) and as a real PostgreSQL server (the registry tests start a throwaway cluster of their own with
# initdb/pg_ctl; Debian keeps those under /usr/lib/postgresql/VERSION/bin, off PATH), then a virtualenv with kzlabel
# and its test extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v exiftool >/dev/null 2>&1 || need+=(libimage-exiftool-perl)
command -v ffprobe >/dev/null 2>&1 || need+=(ffmpeg)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
{ command -v initdb || ls /usr/lib/postgresql/*/bin/initdb; } >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "setup: please install ${need[*]} (Debian/Ubuntu package names); tests use them (readers, TTS speech, browser, PostgreSQL)" >&2
    exit 1
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test${KZLABEL_EXTRAS:+,$KZLABEL_EXTRAS}]"
