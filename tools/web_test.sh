#!/usr/bin/env bash
# Runs the browser tests in headless Chromium through WebGPU: every shader compiles with the
# browser's WGSL compiler (web/tests/shaders.rs), the demo model segments assets/demo.png in the
# page in agreement with the native `segment` result (web/tests/demo.rs), and the demo page
# (web/index.html) shows that result (tools/web_page_check.py).
# Without a GPU, Chromium's WebGPU runs on its bundled SwiftShader (a CPU adapter).
# Installs what it needs when missing: chromium + chromium-driver (Debian/Ubuntu), the wasm32
# target, and wasm-bindgen-cli at the version of the `wasm-bindgen` crate in Cargo.lock.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi
command -v rustup >/dev/null || { echo "tools/web_test.sh: rustup is needed for the wasm32-unknown-unknown target" >&2; exit 1; }
rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print }' Cargo.lock)
if [ "$(wasm-bindgen-test-runner --version 2>/dev/null | awk '{print $2}')" != "$version" ]; then
  cargo install wasm-bindgen-cli --version "$version"
fi
export CHROMEDRIVER="$(command -v chromedriver)"
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
# SwiftShader is a CPU adapter: the demo test takes ~10 s on two cores; the limit leaves room.
export WASM_BINDGEN_TEST_TIMEOUT=900
(cd web   # the runner reads webdriver.json (Chromium's flags: WebGPU on, headless) from here
 cargo test --release --target wasm32-unknown-unknown --test shaders --test demo "$@")

# The demo page itself: build web/pkg, serve the repository root, load the page in Chromium and
# check what it shows against the native result.
tools/web_build.sh
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null' EXIT
sleep 1   # let the server bind before the browser asks
python3 tools/web_page_check.py --url "http://127.0.0.1:$port/web/"
