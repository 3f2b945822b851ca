#!/usr/bin/env bash
# Packs what tools/gpu_check.sh needs on a lent GPU machine into .gpu-pack/ (release binaries and
# test executables, stripped; must stay within the device tool's 64 MiB with the working tree),
# and with --loader the Vulkan loader packages into .gl/ (the device README's recipe; that
# machine has the NVIDIA driver but may lack libvulkan).
#
#   tools/gpu_pack.sh [--loader]
#
# Then, with the device tool: run(command="bash tools/gpu_check.sh", carry=[".gpu-pack", ".gl"]).
# Both folders are ignored through .git/info/exclude (added here), so they travel only as `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
PACK=.gpu-pack
LIMIT_MIB=44 # the working tree travels too (git ls-files: about 16 MiB)

exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
for d in /$PACK/ /.gl/; do
    grep -qxF "$d" "$exclude" 2>/dev/null || echo "$d" >>"$exclude"
done

# Binaries are staged outside the tree and travel as one gzip tarball (stripped they are ~70 MiB,
# compressed about a third of that); gpu_check.sh unpacks it into .gpu-pack/bin.
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/bin"
rm -rf "$PACK" && mkdir -p "$PACK"
cargo build --release --bin train \
    --example bench_model --example cold_start --example gemm_shapes --example profile_model
cp target/release/train "$STAGE/bin/"
for e in bench_model cold_start gemm_shapes profile_model; do cp "target/release/examples/$e" "$STAGE/bin/"; done

# The library's unit tests (every kernel's f64-reference tests) and the parity tests, as
# executables: cargo prints their paths as JSON.
cargo test --release --no-run --lib --test parity --test loss_parity --message-format=json 2>/dev/null |
    python3 -c '
import json, sys, shutil
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        name = m["target"]["name"] + ("-lib" if "lib" in m["target"]["kind"] else "")
        shutil.copy(m["executable"], sys.argv[1] + "/" + name)
        print("test executable:", name)
' "$STAGE/bin"
strip "$STAGE"/bin/* 2>/dev/null || true
ls -la "$STAGE/bin"
tar -C "$STAGE" -czf "$PACK/bin.tar.gz" bin
# Tests, the demo model and fixtures are found through the build's CARGO_MANIFEST_DIR: the check
# links this path to the checkout it runs in.
pwd >"$PACK/manifest_dir"

if [[ "${1:-}" == "--loader" ]]; then
    o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
    mkdir -p .gl /tmp/amd64/partial
    # shellcheck disable=SC2086
    apt-get $o update -qq
    # shellcheck disable=SC2086
    (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi

dirs=("$PACK")
[[ -d .gl ]] && dirs+=(.gl)
size=$(du -sbc "${dirs[@]}" | tail -1 | cut -f1)
echo "pack: $((size >> 20)) MiB (limit ${LIMIT_MIB} MiB with the working tree)"
if ((size >> 20 > LIMIT_MIB)); then
    echo "pack too large for the device tool" >&2
    exit 1
fi
