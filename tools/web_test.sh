#!/usr/bin/env bash
# Runs the browser test (web/tests/demo.rs) in headless Chromium through WebGPU: the demo model
# segments assets/demo.png in the page and must agree with the native `segment` result.
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
rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print }' Cargo.lock)
if [ "$(wasm-bindgen-test-runner --version 2>/dev/null | awk '{print $2}')" != "$version" ]; then
  cargo install wasm-bindgen-cli --version "$version"
fi
export CHROMEDRIVER="$(command -v chromedriver)"
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
# SwiftShader is slow: the test segments a 128 px input twice, minutes are not unusual.
export WASM_BINDGEN_TEST_TIMEOUT=900
cd web   # the runner reads webdriver.json (Chromium's flags: WebGPU on, headless) from here
cargo test --release --target wasm32-unknown-unknown --test demo "$@"
