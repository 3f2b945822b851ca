#!/usr/bin/env bash
# Writes the browser test's expected result (web/tests/fixtures/demo.{json,panoptic.png}): the
# native `segment` CLI's panoptic output for assets/demo.png with the bundled demo model.
# Rerun when the native result changes on purpose (web/tests/demo.rs checks that it still holds).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
cargo run --release --bin segment -- --task panoptic --out "$out" assets/demo.png
mkdir -p web/tests/fixtures
cp "$out/demo.json" web/tests/fixtures/demo.json
cp "$out/demo.panoptic.png" web/tests/fixtures/demo.panoptic.png
rm -rf "$out"
ls -l web/tests/fixtures
