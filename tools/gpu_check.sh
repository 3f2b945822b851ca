#!/usr/bin/env bash
# One-call GPU check, run from the repository root on a lent GPU machine over what
# tools/gpu_pack.sh packed (.gpu-pack/, and .gl/ with the Vulkan loader when the machine has none):
#
#   device run: command="bash tools/gpu_check.sh", carry=[".gpu-pack", ".gl"], timeout_s=540
#
# In order (each step's output goes to the log; a failing step is reported and the next runs):
#   1. adapter and features (and the demo model's cold start on this adapter, per pipeline);
#   2. the kernel tests (every op's f64-reference tests) and the parity tests under the GPU policy;
#   3. GEMM microbenchmarks at the model's shapes and at 4096³ (examples/gemm_shapes);
#   4. the Swin-T forward profile at 800×1216 (examples/profile_model);
#   5. a training-step breakdown (train on synthetic data, demo config, --timeline-every);
#   6. ours and PyTorch (CUDA) side by side (tools/bench_side_by_side.py) where python3 has
#      torch and transformers.
# Everything is logged to $OUT/gpu_check.log (or ./gpu_check.log when OUT is unset), which comes
# back from the device tool; the side-by-side table to $OUT/BENCHMARKS.md.
#
# On this project's machines without a GPU (lavapipe) the same script runs with
# GPU_CHECK_QUICK=1: smaller shapes and fewer steps, to check the script itself.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-.}
LOG="$OUT/gpu_check.log"
BIN=.gpu-pack/bin
QUICK=${GPU_CHECK_QUICK:-0}
: >"$LOG"

step() { echo -e "\n=== $* ($(date -u +%H:%M:%S))" | tee -a "$LOG"; }
run() {
    # Runs a command with its output in the log; a failure is logged and does not stop the check.
    local limit=$1
    shift
    timeout "$limit" "$@" >>"$LOG" 2>&1
    local rc=$?
    [[ $rc -eq 0 ]] || echo "!!! exit $rc: $*" | tee -a "$LOG"
    return 0
}

[[ -f .gpu-pack/bin.tar.gz ]] || { echo "no .gpu-pack/bin.tar.gz: run tools/gpu_pack.sh first and carry .gpu-pack" >&2; exit 2; }
[[ -d $BIN ]] || tar -C .gpu-pack -xzf .gpu-pack/bin.tar.gz
# The Vulkan loader, as the device README says, when the machine has none.
if ! ldconfig -p | grep -q libvulkan.so.1 && compgen -G ".gl/*.deb" >/dev/null; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
if [[ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json && -z ${VK_DRIVER_FILES:-} ]]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
# Paths baked into the binaries (demo model, fixtures) point at the packing checkout.
baked=$(cat .gpu-pack/manifest_dir 2>/dev/null || true)
if [[ -n $baked && ! -e $baked ]]; then
    mkdir -p "$(dirname "$baked")" && ln -s "$PWD" "$baked"
fi
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}

step "1. adapter, features, demo-model cold start"
{ uname -a; nvidia-smi -L 2>/dev/null; lscpu 2>/dev/null | grep -m1 "Model name"; } >>"$LOG" 2>&1
MESA_SHADER_CACHE_DIR=$(mktemp -d) run 120 "$BIN/cold_start"

step "2. kernel tests and parity tests under the GPU policy"
lib=$(ls $BIN/mask2former-lib 2>/dev/null)
if [[ $QUICK == 1 ]]; then
    M2F_KERNEL_POLICY=gpu run 300 "$lib" --test-threads 2 ops::matmul::tests::large_block
else
    M2F_KERNEL_POLICY=gpu run 300 "$lib" ops::
    M2F_KERNEL_POLICY=gpu run 200 "$BIN/parity"
    M2F_KERNEL_POLICY=gpu run 200 "$BIN/loss_parity"
fi
grep -E "^test result|FAILED|panicked" "$LOG" | tail -8

step "3. GEMM at the model's shapes and 4096^3"
if [[ $QUICK == 1 ]]; then run 300 "$BIN/gemm_shapes" --quick; else run 120 "$BIN/gemm_shapes"; fi
# The FPN's convolutions: the implicit GEMM (Auto on GPUs) against im2col + gemm.
for path in implicit gemm; do
    M2F_CONV_PATH=$path run 120 "$lib" --ignored --nocapture ops::conv2d::tests::forward::timing
done

step "4. Swin-T forward profile"
if [[ $QUICK == 1 ]]; then run 300 "$BIN/profile_model" 256 256; else run 120 "$BIN/profile_model" 800 1216; fi

step "5. training step breakdown (demo config, synthetic data)"
steps=$([[ $QUICK == 1 ]] && echo 2 || echo 12)
run 240 "$BIN/train" --data synthetic --steps "$steps" --eval-every 0 --checkpoint-every 1000 \
    --timeline-every "$((steps / 2))" --out "$(mktemp -d)/run" --overwrite

step "6. ours and PyTorch side by side"
if python3 -c "import torch, transformers, safetensors" 2>/dev/null; then
    sizes=$([[ $QUICK == 1 ]] && echo 64x64 || echo 384x512,800x1216)
    config=$([[ $QUICK == 1 ]] && echo assets/demo-config.json || echo assets/swin-tiny-config.json)
    run 300 python3 tools/bench_side_by_side.py --ours "$BIN/bench_model" --sizes "$sizes" \
        --config "$config" --runs 3 --out "$OUT/BENCHMARKS.md"
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" >>"$LOG" 2>&1
else
    echo "python3 has no torch/transformers/safetensors: skipped" | tee -a "$LOG"
fi
step "done"
grep -E "^!!!" "$LOG" || echo "all steps exited 0" | tee -a "$LOG"
