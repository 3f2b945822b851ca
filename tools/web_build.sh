#!/usr/bin/env bash
# Builds the browser package: the `web` crate for wasm32 and its JavaScript bindings in web/pkg.
# Then serve the repository root and open http://localhost:8000/web/ :
#   python3 -m http.server 8000
# Needs: rustup target add wasm32-unknown-unknown; wasm-bindgen-cli at the version of the
# `wasm-bindgen` crate in Cargo.lock (this script installs it when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print }' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$version" ]; then
  cargo install wasm-bindgen-cli --version "$version"
fi
cargo build --release -p mask2former-web --target wasm32-unknown-unknown --lib
wasm-bindgen --target web --no-typescript --out-dir web/pkg \
  target/wasm32-unknown-unknown/release/mask2former_web.wasm
ls -l web/pkg/*.wasm
