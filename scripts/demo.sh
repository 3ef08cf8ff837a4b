#!/usr/bin/env bash
# Set up, then run the main job on the bundled samples: create a key, mark each sample, verify each output.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=${1:-out/demo}
mkdir -p "$out"
kz=.venv/bin/kzlabel
[ -f "$out/keys/signing.key" ] || $kz keygen "$out/keys" --org "Demo Owner LLP"
status=0
for sample in fixtures/samples/*; do
  name=$(basename "$sample")
  $kz mark "$sample" -o "$out/$name" --key "$out/keys" --system "DemoGen" --system-version 1.0 --owner "Demo Owner LLP"
  $kz verify "$out/$name" --trust "$out/keys" || status=$?
done
exit $status
