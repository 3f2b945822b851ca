#!/usr/bin/env python3
"""Writes the `regblock` entry point of shaders/matmul.wgsl (between the GENERATED markers).

llvmpipe keeps private arrays indexed in loops in memory unless its loop unroller gets to them,
and it does not for a kernel this size (a looped block ran ~30x slower), so the register block is
spelled out: every accumulator and operand is a named local. The block shapes were chosen by the
sweep in docs/PERFORMANCE.md ("Block-shape sweep"). If the block changes, change Variant::tile()
in mod.rs (8·TM, 8·TN).

Run from the repository root after changing TM/TN or the load modes: python3 src/ops/matmul/gen_regblock.py
(`--print` writes the generated section to stdout instead; tests/shaders.rs checks the shader with it).
"""
import re
import sys

# (entry point, rows, cols per thread, vector loads only). The general entry keeps 8×16: with its
# three load modes per operand (A_MODE × B_MODE override branches) a larger block made lavapipe's
# LLVM JIT far too slow. The vec_only entry has one code path (row-major A and B, K and N
# multiples of 4), which JITs fast enough at 24×16 (paid once per machine with Mesa's on-disk
# shader cache) and runs faster than 8×16 (JIT times and GFLOP/s: docs/PERFORMANCE.md, "matmul:
# the 24×16 vec4-only register block"). The `ta` and `tb` entries are the same block for A stored
# [K, M] and for B stored [N, K]. Every entry reads its batch and k range from `slice_of` (split-K
# launches run several slices of one batch side by side along z). If TM/TN change, change the
# tiles in mod.rs (Variant::tile() for regblock, LARGE_TILE for the 24×16 entries).
KERNELS = [
    ("regblock", 8, 16, False),
    ("regblock_vec", 24, 16, True),
    ("regblock_vec_ta", 24, 16, "ta"),
    ("regblock_vec_tb", 24, 16, "tb"),
]
PATH = "shaders/matmul.wgsl"


def gen_vec(name, TM, TN):
    """Row-major A and B only: a_cs = b_cs = 1; a_off, a_bs, a_rs, b_off, b_bs, b_rs, N and K
    multiples of 4 (the launcher checks). Indices are kept in vec4 units, one code path, no
    scalar k tail: a much smaller kernel for lavapipe's JIT than the general entry."""
    H = TN // 4
    o = []
    w = o.append
    w(f"// {name}: {TM}×{TN} outputs per thread, workgroup 8×8 = {8 * TM}×{8 * TN} outputs.")
    w("// Row-major A and B only (A_MODE = B_MODE = 1 layouts), K a multiple of 4.")
    w("@compute @workgroup_size(8, 8, 1)")
    w(f"fn {name}(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {{")
    w(f"    let n0 = (wg.x * 8u + lid.x) * {TN}u;")
    w(f"    let m0 = (wg.y * 8u + lid.y) * {TM}u;")
    w("    // z = batch · ksplit + slice (split-K launches; ksplit = 1 otherwise): C's slot and A's")
    w("    // and B's batch and reduction range.")
    w("    let cz = wg.z;")
    w("    let sl = slice_of(wg.z);")
    w("    let bz = sl.bz;")
    w("    // No barriers in this kernel, so threads past the edge may leave early.")
    w("    if (m0 >= p.m || n0 >= p.n) {")
    w("        return;")
    w("    }")
    w("    // Everything in vec4 units. Rows and column groups past the edge are clamped to the last")
    w("    // valid one (N is a multiple of 4, so a group is all valid or all past the edge); those")
    w("    // results are dropped by the store's bounds check.")
    w("    let a4 = (p.a_off + bz * p.a_bs) >> 2u;")
    w("    let b4 = (p.b_off + bz * p.b_bs) >> 2u;")
    w("    let ars = p.a_rs >> 2u;")
    w("    let brs = p.b_rs >> 2u;")
    for i in range(TM):
        w(f"    let ar{i} = a4 + min(m0 + {i}u, p.m - 1u) * ars;")
    for h in range(H):
        w(f"    let bn{h} = b4 + (min(n0 + {4 * h}u, p.n - 4u) >> 2u);")
    w("    // c{i}_{h} holds C[m0 + i][n0 + 4h .. n0 + 4h + 4].")
    for i in range(TM):
        w("    " + " ".join(f"var c{i}_{h} = vec4<f32>(0.0);" for h in range(H)))
    w("    for (var kq = sl.k_lo >> 2u; kq < (sl.k_hi >> 2u); kq++) {")
    w("        // a{i} = A[m0 + i][4kq .. 4kq + 4]; b{kk}_{h} = B[4kq + kk][n0 + 4h .. n0 + 4h + 4]")
    for i in range(TM):
        w(f"        let a{i} = a[ar{i} + kq];")
    for kk in range(4):
        w(f"        let row{kk} = (kq * 4u + {kk}u) * brs;")
        w("        " + " ".join(f"let b{kk}_{h} = b[row{kk} + bn{h}];" for h in range(H)))
    for i in range(TM):
        for h in range(H):
            e = f"c{i}_{h}"
            for kk, comp in enumerate("xyzw"):
                e = f"fma(vec4<f32>(a{i}.{comp}), b{kk}_{h}, {e})"
            w(f"        c{i}_{h} = {e};")
    w("    }")
    epilogue(w, TM, TN)
    return "\n".join(o) + "\n"


def epilogue(w, TM, TN):
    H = TN // 4
    w("    // Epilogue: the accumulators go to a private array once so that the row loop below is")
    w("    // not unrolled (inlined copies of the GELU path would bloat the kernel).")
    w(f"    var acc: array<vec4<f32>, {TM * H}>;")
    for i in range(TM):
        for h in range(H):
            w(f"    acc[{i * H + h}u] = c{i}_{h};")
    w(f"    let nv = min(p.n - n0, {TN}u);")
    w(f"    for (var i = 0u; i < min(p.m - m0, {TM}u); i++) {{")
    for h in range(H):
        w(f"        store4(cz, m0 + i, n0 + {4 * h}u, nv - min(nv, {4 * h}u), acc[i * {H}u + {h}u]);")
    w("    }")
    w("}")


def gen_vec_ta(name, TM, TN):
    """A stored [K, M] (`trans_a`: a_rs = 1, a_cs = M) and row-major B: at fixed k a thread's TM
    values of A are contiguous, so both operands load as vec4s. M, N, a_off, a_bs, a_cs, b_off,
    b_bs, b_rs multiples of 4 (the launcher checks); any K (one k per iteration, no tail)."""
    H = TN // 4
    Q = TM // 4
    o = []
    w = o.append
    w(f"// {name}: {TM}×{TN} outputs per thread, workgroup 8×8 = {8 * TM}×{8 * TN} outputs.")
    w("// A stored [K, M] (trans_a) and row-major B, M and N multiples of 4, any K.")
    w("@compute @workgroup_size(8, 8, 1)")
    w(f"fn {name}(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {{")
    w(f"    let n0 = (wg.x * 8u + lid.x) * {TN}u;")
    w(f"    let m0 = (wg.y * 8u + lid.y) * {TM}u;")
    w("    // z = batch · ksplit + slice (split-K launches; ksplit = 1 otherwise): C's slot and A's")
    w("    // and B's batch and reduction range.")
    w("    let cz = wg.z;")
    w("    let sl = slice_of(wg.z);")
    w("    let bz = sl.bz;")
    w("    // No barriers in this kernel, so threads past the edge may leave early.")
    w("    if (m0 >= p.m || n0 >= p.n) {")
    w("        return;")
    w("    }")
    w("    // Everything in vec4 units. Row and column groups past the edge are clamped to the last")
    w("    // valid one (M and N are multiples of 4, so a group is all valid or all past the edge);")
    w("    // those results are dropped by the store's bounds check.")
    w("    let a4 = (p.a_off + bz * p.a_bs) >> 2u;")
    w("    let b4 = (p.b_off + bz * p.b_bs) >> 2u;")
    w("    let acs = p.a_cs >> 2u;")
    w("    let brs = p.b_rs >> 2u;")
    for q in range(Q):
        w(f"    let am{q} = a4 + (min(m0 + {4 * q}u, p.m - 4u) >> 2u);")
    for h in range(H):
        w(f"    let bn{h} = b4 + (min(n0 + {4 * h}u, p.n - 4u) >> 2u);")
    w("    // c{i}_{h} holds C[m0 + i][n0 + 4h .. n0 + 4h + 4].")
    for i in range(TM):
        w("    " + " ".join(f"var c{i}_{h} = vec4<f32>(0.0);" for h in range(H)))
    w("    for (var k = sl.k_lo; k < sl.k_hi; k++) {")
    w("        // a{q} = A[m0 + 4q .. m0 + 4q + 4][k]; b{h} = B[k][n0 + 4h .. n0 + 4h + 4]")
    w("        let ak = k * acs;")
    w("        let bk = k * brs;")
    w("        " + " ".join(f"let a{q} = a[ak + am{q}];" for q in range(Q)))
    w("        " + " ".join(f"let b{h} = b[bk + bn{h}];" for h in range(H)))
    for i in range(TM):
        q, comp = divmod(i, 4)
        comp = "xyzw"[comp]
        for h in range(H):
            w(f"        c{i}_{h} = fma(vec4<f32>(a{q}.{comp}), b{h}, c{i}_{h});")
    w("    }")
    epilogue(w, TM, TN)
    return "\n".join(o) + "\n"


def gen_vec_tb(name, TM, TN):
    """Row-major A and B stored [N, K] (`trans_b`: b_rs = 1, b_cs = K): per 4 k a thread loads one
    vec4 along k for each of its TN columns and transposes them in registers (free on llvmpipe,
    which keeps each component in its own SIMD register), then runs regblock_vec's FMAs. a_off,
    a_bs, a_rs, b_off, b_bs, b_cs and K multiples of 4 (the launcher checks); any M and N."""
    H = TN // 4
    o = []
    w = o.append
    w(f"// {name}: {TM}×{TN} outputs per thread, workgroup 8×8 = {8 * TM}×{8 * TN} outputs.")
    w("// Row-major A and B stored [N, K] (trans_b), K a multiple of 4, any M and N.")
    w("@compute @workgroup_size(8, 8, 1)")
    w(f"fn {name}(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {{")
    w(f"    let n0 = (wg.x * 8u + lid.x) * {TN}u;")
    w(f"    let m0 = (wg.y * 8u + lid.y) * {TM}u;")
    w("    // z = batch · ksplit + slice (split-K launches; ksplit = 1 otherwise): C's slot and A's")
    w("    // and B's batch and reduction range.")
    w("    let cz = wg.z;")
    w("    let sl = slice_of(wg.z);")
    w("    let bz = sl.bz;")
    w("    // No barriers in this kernel, so threads past the edge may leave early.")
    w("    if (m0 >= p.m || n0 >= p.n) {")
    w("        return;")
    w("    }")
    w("    // Everything in vec4 units. Rows and columns past the edge are clamped to the last valid")
    w("    // one; those results are dropped by the store's bounds check.")
    w("    let a4 = (p.a_off + bz * p.a_bs) >> 2u;")
    w("    let b4 = (p.b_off + bz * p.b_bs) >> 2u;")
    w("    let ars = p.a_rs >> 2u;")
    w("    let bcs = p.b_cs >> 2u;")
    for i in range(TM):
        w(f"    let ar{i} = a4 + min(m0 + {i}u, p.m - 1u) * ars;")
    for j in range(TN):
        w(f"    let bc{j} = b4 + min(n0 + {j}u, p.n - 1u) * bcs;")
    w("    // c{i}_{h} holds C[m0 + i][n0 + 4h .. n0 + 4h + 4].")
    for i in range(TM):
        w("    " + " ".join(f"var c{i}_{h} = vec4<f32>(0.0);" for h in range(H)))
    w("    for (var kq = sl.k_lo >> 2u; kq < (sl.k_hi >> 2u); kq++) {")
    w("        // a{i} = A[m0 + i][4kq .. 4kq + 4]; u{j} = B[n0 + j][4kq .. 4kq + 4], transposed into")
    w("        // b{kk}_{h} = B[n0 + 4h .. n0 + 4h + 4][4kq + kk]")
    for i in range(TM):
        w(f"        let a{i} = a[ar{i} + kq];")
    for j in range(TN):
        w(f"        let u{j} = b[bc{j} + kq];")
    for kk, comp in enumerate("xyzw"):
        for h in range(H):
            args = ", ".join(f"u{4 * h + c}.{comp}" for c in range(4))
            w(f"        let b{kk}_{h} = vec4<f32>({args});")
    for i in range(TM):
        for h in range(H):
            e = f"c{i}_{h}"
            for kk, comp in enumerate("xyzw"):
                e = f"fma(vec4<f32>(a{i}.{comp}), b{kk}_{h}, {e})"
            w(f"        c{i}_{h} = {e};")
    w("    }")
    epilogue(w, TM, TN)
    return "\n".join(o) + "\n"


def gen(name, TM, TN, vec_only):
    if vec_only == "ta":
        return gen_vec_ta(name, TM, TN)
    if vec_only == "tb":
        return gen_vec_tb(name, TM, TN)
    if vec_only:
        return gen_vec(name, TM, TN)
    H = TN // 4  # vec4 columns per thread
    o = []
    w = o.append
    w(f"// {name}: {TM}×{TN} outputs per thread, workgroup 8×8 = {8 * TM}×{8 * TN} outputs.")
    w("@compute @workgroup_size(8, 8, 1)")
    w(f"fn {name}(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {{")
    w(f"    let n0 = (wg.x * 8u + lid.x) * {TN}u;")
    w(f"    let m0 = (wg.y * 8u + lid.y) * {TM}u;")
    w("    // z = batch · ksplit + slice (split-K launches; ksplit = 1 otherwise): C's slot and A's")
    w("    // and B's batch and reduction range.")
    w("    let cz = wg.z;")
    w("    let sl = slice_of(wg.z);")
    w("    let bz = sl.bz;")
    w("    // No barriers in this kernel, so threads past the edge may leave early.")
    w("    if (m0 >= p.m || n0 >= p.n) {")
    w("        return;")
    w("    }")
    w("    let a_base = p.a_off + bz * p.a_bs;")
    w("    let b_base = p.b_off + bz * p.b_bs;")
    w("    // Rows and columns past the edge are clamped to the last valid one: every load stays in")
    w("    // bounds without a branch, and those results are dropped by the store's bounds check.")
    for i in range(TM):
        w(f"    let ar{i} = a_base + min(m0 + {i}u, p.m - 1u) * p.a_rs;")
    for j in range(TN):
        w(f"    let bc{j} = b_base + min(n0 + {j}u, p.n - 1u) * p.b_cs;")
    w("    // c{i}_{h} holds C[m0 + i][n0 + 4h .. n0 + 4h + 4].")
    for i in range(TM):
        w("    " + " ".join(f"var c{i}_{h} = vec4<f32>(0.0);" for h in range(H)))
    w("    let k4 = sl.k_lo + ((sl.k_hi - sl.k_lo) & ~3u);")
    w("    for (var k = sl.k_lo; k < k4; k += 4u) {")
    w("        // a{i} = A[m0 + i][k .. k + 4]")
    for i in range(TM):
        w(f"        var a{i}: vec4<f32>;")

    def a_vec(ind):
        for i in range(TM):
            w(f"{ind}a{i} = a[(ar{i} + k) >> 2u];")

    def b_vec(ind):
        for h in range(H):
            w(f"{ind}let nv{h} = min(n0 + {4 * h}u, p.n - 4u);")
        for kk in range(4):
            w(f"{ind}let row{kk} = b_base + (k + {kk}u) * p.b_rs;")
            for h in range(H):
                w(f"{ind}b{kk}_{h} = b[(row{kk} + nv{h}) >> 2u];")

    w("        if (A_MODE == 1u) {")
    a_vec("            ")
    w("        } else if (A_MODE == 2u) {")
    w("            // Four rows at a time along m, transposed into a{i} in registers.")
    for q in range(TM // 4):
        w(f"            let mv{q} = (a_base + min(m0 + {4 * q}u, p.m - 4u)) >> 2u;")
    for kk in range(4):
        for q in range(TM // 4):
            w(f"            let t{kk}_{q} = a[mv{q} + (((k + {kk}u) * p.a_cs) >> 2u)];")
    for q in range(TM // 4):
        for c, comp in enumerate("xyzw"):
            i = 4 * q + c
            w(f"            a{i} = vec4<f32>(t0_{q}.{comp}, t1_{q}.{comp}, t2_{q}.{comp}, t3_{q}.{comp});")
    w("        } else {")
    for i in range(TM):
        args = ", ".join(f"ld_a(ar{i} + (k + {kk}u) * p.a_cs)" for kk in range(4))
        w(f"            a{i} = vec4<f32>({args});")
    w("        }")
    w("        // b{kk}_{h} = B[k + kk][n0 + 4h .. n0 + 4h + 4]")
    for kk in range(4):
        w("        " + " ".join(f"var b{kk}_{h}: vec4<f32>;" for h in range(H)))
    w("        if (B_MODE == 1u) {")
    b_vec("            ")
    w("        } else if (B_MODE == 2u) {")
    w("            // One vec4 along k per column, transposed into b{kk}_{h} in registers.")
    for j in range(TN):
        w(f"            let u{j} = b[(bc{j} + k) >> 2u];")
    for kk, comp in enumerate("xyzw"):
        for h in range(H):
            args = ", ".join(f"u{4 * h + c}.{comp}" for c in range(4))
            w(f"            b{kk}_{h} = vec4<f32>({args});")
    w("        } else {")
    for kk in range(4):
        for h in range(H):
            args = ", ".join(f"ld_b(bc{4 * h + c} + (k + {kk}u) * p.b_rs)" for c in range(4))
            w(f"            b{kk}_{h} = vec4<f32>({args});")
    w("        }")
    for i in range(TM):
        for h in range(H):
            e = f"c{i}_{h}"
            for kk, comp in enumerate("xyzw"):
                e = f"fma(vec4<f32>(a{i}.{comp}), b{kk}_{h}, {e})"
            w(f"        c{i}_{h} = {e};")
    w("    }")
    w("    // The last k % 4 steps, scalar loads.")
    w("    for (var k = k4; k < sl.k_hi; k++) {")
    for h in range(H):
        args = ", ".join(f"ld_b(bc{4 * h + c} + k * p.b_rs)" for c in range(4))
        w(f"        let s{h} = vec4<f32>({args});")
    for i in range(TM):
        w(f"        let r{i} = vec4<f32>(ld_a(ar{i} + k * p.a_cs));")
        for h in range(H):
            w(f"        c{i}_{h} = fma(r{i}, s{h}, c{i}_{h});")
    w("    }")
    epilogue(w, TM, TN)
    return "\n".join(o) + "\n"


def main():
    # --print: write the generated section to stdout and leave the shader alone
    # (tests/shaders.rs compares it with what shaders/matmul.wgsl holds).
    if sys.argv[1:] == ["--print"]:
        sys.stdout.write("\n".join(gen(*k) for k in KERNELS))
        return
    src = open(PATH).read()
    begin = "// BEGIN GENERATED regblock (src/ops/matmul/gen_regblock.py)\n"
    end = "// END GENERATED regblock\n"
    if begin not in src or end not in src:
        sys.exit(f"{PATH}: generated-section markers not found")
    head, rest = src.split(begin)
    _, tail = rest.split(end)
    open(PATH, "w").write(head + begin + "\n".join(gen(*k) for k in KERNELS) + end + tail)


if __name__ == "__main__":
    main()
