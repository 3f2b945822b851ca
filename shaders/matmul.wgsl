// Appended to shaders/matmul_common.wgsl (its parameter block, bindings and epilogue): the
// buffer entries. The texel entries are appended to it too (matmul_texel*.wgsl), so a run that
// needs only those does not parse these (issue 13, cold start).
// Followed by shaders/gemm_tile.wgsl (the `gemm` entry's workgroup tile).

// ---- naive: one output per thread ---------------------------------------------------------

@compute @workgroup_size(16, 16, 1)
fn naive(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = gid.x;
    let m = gid.y;
    let sl = slice_of(gid.z);
    if (m >= p.m || n >= p.n) {
        return;
    }
    let ab = p.a_off + sl.bz * p.a_bs + m * p.a_rs;
    let bb = p.b_off + sl.bz * p.b_bs + n * p.b_cs;
    var acc = 0.0;
    for (var k = sl.k_lo; k < sl.k_hi; k++) {
        acc = fma(ld_a(ab + k * p.a_cs), ld_b(bb + k * p.b_rs), acc);
    }
    epilogue(gid.z, m, n, acc);
}

// ---- regblock: register blocks per thread, registers only --------------------------------

// A_MODE: 0 scalar loads (any layout); 1 vec4 along k (a_cs = 1, a_rs, a_off multiple of 4);
// 2 vec4 along m (a_rs = 1, a_cs and m multiple of 4). B_MODE: 0 scalar; 1 vec4 along n
// (b_cs = 1, b_rs and n multiple of 4); 2 vec4 along k (b_rs = 1, b_cs multiple of 4).
// Offsets and batch strides are multiples of 4 whenever a vector mode is chosen.
override A_MODE: u32 = 0u;
override B_MODE: u32 = 0u;

// BEGIN GENERATED regblock (src/ops/matmul/gen_regblock.py)
// regblock: 8×16 outputs per thread, workgroup 8×8 = 64×128 outputs.
@compute @workgroup_size(8, 8, 1)
fn regblock(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let n0 = (wg.x * 8u + lid.x) * 16u;
    let m0 = (wg.y * 8u + lid.y) * 8u;
    // z = batch · ksplit + slice (split-K launches; ksplit = 1 otherwise): C's slot and A's
    // and B's batch and reduction range.
    let cz = wg.z;
    let sl = slice_of(wg.z);
    let bz = sl.bz;
    // No barriers in this kernel, so threads past the edge may leave early.
    if (m0 >= p.m || n0 >= p.n) {
        return;
    }
    let a_base = p.a_off + bz * p.a_bs;
    let b_base = p.b_off + bz * p.b_bs;
    // Rows and columns past the edge are clamped to the last valid one: every load stays in
    // bounds without a branch, and those results are dropped by the store's bounds check.
    let ar0 = a_base + min(m0 + 0u, p.m - 1u) * p.a_rs;
    let ar1 = a_base + min(m0 + 1u, p.m - 1u) * p.a_rs;
    let ar2 = a_base + min(m0 + 2u, p.m - 1u) * p.a_rs;
    let ar3 = a_base + min(m0 + 3u, p.m - 1u) * p.a_rs;
    let ar4 = a_base + min(m0 + 4u, p.m - 1u) * p.a_rs;
    let ar5 = a_base + min(m0 + 5u, p.m - 1u) * p.a_rs;
    let ar6 = a_base + min(m0 + 6u, p.m - 1u) * p.a_rs;
    let ar7 = a_base + min(m0 + 7u, p.m - 1u) * p.a_rs;
    let bc0 = b_base + min(n0 + 0u, p.n - 1u) * p.b_cs;
    let bc1 = b_base + min(n0 + 1u, p.n - 1u) * p.b_cs;
    let bc2 = b_base + min(n0 + 2u, p.n - 1u) * p.b_cs;
    let bc3 = b_base + min(n0 + 3u, p.n - 1u) * p.b_cs;
    let bc4 = b_base + min(n0 + 4u, p.n - 1u) * p.b_cs;
    let bc5 = b_base + min(n0 + 5u, p.n - 1u) * p.b_cs;
    let bc6 = b_base + min(n0 + 6u, p.n - 1u) * p.b_cs;
    let bc7 = b_base + min(n0 + 7u, p.n - 1u) * p.b_cs;
    let bc8 = b_base + min(n0 + 8u, p.n - 1u) * p.b_cs;
    let bc9 = b_base + min(n0 + 9u, p.n - 1u) * p.b_cs;
    let bc10 = b_base + min(n0 + 10u, p.n - 1u) * p.b_cs;
    let bc11 = b_base + min(n0 + 11u, p.n - 1u) * p.b_cs;
    let bc12 = b_base + min(n0 + 12u, p.n - 1u) * p.b_cs;
    let bc13 = b_base + min(n0 + 13u, p.n - 1u) * p.b_cs;
    let bc14 = b_base + min(n0 + 14u, p.n - 1u) * p.b_cs;
    let bc15 = b_base + min(n0 + 15u, p.n - 1u) * p.b_cs;
    // c{i}_{h} holds C[m0 + i][n0 + 4h .. n0 + 4h + 4].
    var c0_0 = vec4<f32>(0.0); var c0_1 = vec4<f32>(0.0); var c0_2 = vec4<f32>(0.0); var c0_3 = vec4<f32>(0.0);
    var c1_0 = vec4<f32>(0.0); var c1_1 = vec4<f32>(0.0); var c1_2 = vec4<f32>(0.0); var c1_3 = vec4<f32>(0.0);
    var c2_0 = vec4<f32>(0.0); var c2_1 = vec4<f32>(0.0); var c2_2 = vec4<f32>(0.0); var c2_3 = vec4<f32>(0.0);
    var c3_0 = vec4<f32>(0.0); var c3_1 = vec4<f32>(0.0); var c3_2 = vec4<f32>(0.0); var c3_3 = vec4<f32>(0.0);
    var c4_0 = vec4<f32>(0.0); var c4_1 = vec4<f32>(0.0); var c4_2 = vec4<f32>(0.0); var c4_3 = vec4<f32>(0.0);
    var c5_0 = vec4<f32>(0.0); var c5_1 = vec4<f32>(0.0); var c5_2 = vec4<f32>(0.0); var c5_3 = vec4<f32>(0.0);
    var c6_0 = vec4<f32>(0.0); var c6_1 = vec4<f32>(0.0); var c6_2 = vec4<f32>(0.0); var c6_3 = vec4<f32>(0.0);
    var c7_0 = vec4<f32>(0.0); var c7_1 = vec4<f32>(0.0); var c7_2 = vec4<f32>(0.0); var c7_3 = vec4<f32>(0.0);
    let k4 = sl.k_lo + ((sl.k_hi - sl.k_lo) & ~3u);
    for (var k = sl.k_lo; k < k4; k += 4u) {
        // a{i} = A[m0 + i][k .. k + 4]
        var a0: vec4<f32>;
        var a1: vec4<f32>;
        var a2: vec4<f32>;
        var a3: vec4<f32>;
        var a4: vec4<f32>;
        var a5: vec4<f32>;
        var a6: vec4<f32>;
        var a7: vec4<f32>;
        if (A_MODE == 1u) {
            a0 = a[(ar0 + k) >> 2u];
            a1 = a[(ar1 + k) >> 2u];
            a2 = a[(ar2 + k) >> 2u];
            a3 = a[(ar3 + k) >> 2u];
            a4 = a[(ar4 + k) >> 2u];
            a5 = a[(ar5 + k) >> 2u];
            a6 = a[(ar6 + k) >> 2u];
            a7 = a[(ar7 + k) >> 2u];
        } else if (A_MODE == 2u) {
            // Four rows at a time along m, transposed into a{i} in registers.
            let mv0 = (a_base + min(m0 + 0u, p.m - 4u)) >> 2u;
            let mv1 = (a_base + min(m0 + 4u, p.m - 4u)) >> 2u;
            let t0_0 = a[mv0 + (((k + 0u) * p.a_cs) >> 2u)];
            let t0_1 = a[mv1 + (((k + 0u) * p.a_cs) >> 2u)];
            let t1_0 = a[mv0 + (((k + 1u) * p.a_cs) >> 2u)];
            let t1_1 = a[mv1 + (((k + 1u) * p.a_cs) >> 2u)];
            let t2_0 = a[mv0 + (((k + 2u) * p.a_cs) >> 2u)];
            let t2_1 = a[mv1 + (((k + 2u) * p.a_cs) >> 2u)];
            let t3_0 = a[mv0 + (((k + 3u) * p.a_cs) >> 2u)];
            let t3_1 = a[mv1 + (((k + 3u) * p.a_cs) >> 2u)];
            a0 = vec4<f32>(t0_0.x, t1_0.x, t2_0.x, t3_0.x);
            a1 = vec4<f32>(t0_0.y, t1_0.y, t2_0.y, t3_0.y);
            a2 = vec4<f32>(t0_0.z, t1_0.z, t2_0.z, t3_0.z);
            a3 = vec4<f32>(t0_0.w, t1_0.w, t2_0.w, t3_0.w);
            a4 = vec4<f32>(t0_1.x, t1_1.x, t2_1.x, t3_1.x);
            a5 = vec4<f32>(t0_1.y, t1_1.y, t2_1.y, t3_1.y);
            a6 = vec4<f32>(t0_1.z, t1_1.z, t2_1.z, t3_1.z);
            a7 = vec4<f32>(t0_1.w, t1_1.w, t2_1.w, t3_1.w);
        } else {
            a0 = vec4<f32>(ld_a(ar0 + (k + 0u) * p.a_cs), ld_a(ar0 + (k + 1u) * p.a_cs), ld_a(ar0 + (k + 2u) * p.a_cs), ld_a(ar0 + (k + 3u) * p.a_cs));
            a1 = vec4<f32>(ld_a(ar1 + (k + 0u) * p.a_cs), ld_a(ar1 + (k + 1u) * p.a_cs), ld_a(ar1 + (k + 2u) * p.a_cs), ld_a(ar1 + (k + 3u) * p.a_cs));
            a2 = vec4<f32>(ld_a(ar2 + (k + 0u) * p.a_cs), ld_a(ar2 + (k + 1u) * p.a_cs), ld_a(ar2 + (k + 2u) * p.a_cs), ld_a(ar2 + (k + 3u) * p.a_cs));
            a3 = vec4<f32>(ld_a(ar3 + (k + 0u) * p.a_cs), ld_a(ar3 + (k + 1u) * p.a_cs), ld_a(ar3 + (k + 2u) * p.a_cs), ld_a(ar3 + (k + 3u) * p.a_cs));
            a4 = vec4<f32>(ld_a(ar4 + (k + 0u) * p.a_cs), ld_a(ar4 + (k + 1u) * p.a_cs), ld_a(ar4 + (k + 2u) * p.a_cs), ld_a(ar4 + (k + 3u) * p.a_cs));
            a5 = vec4<f32>(ld_a(ar5 + (k + 0u) * p.a_cs), ld_a(ar5 + (k + 1u) * p.a_cs), ld_a(ar5 + (k + 2u) * p.a_cs), ld_a(ar5 + (k + 3u) * p.a_cs));
            a6 = vec4<f32>(ld_a(ar6 + (k + 0u) * p.a_cs), ld_a(ar6 + (k + 1u) * p.a_cs), ld_a(ar6 + (k + 2u) * p.a_cs), ld_a(ar6 + (k + 3u) * p.a_cs));
            a7 = vec4<f32>(ld_a(ar7 + (k + 0u) * p.a_cs), ld_a(ar7 + (k + 1u) * p.a_cs), ld_a(ar7 + (k + 2u) * p.a_cs), ld_a(ar7 + (k + 3u) * p.a_cs));
        }
        // b{kk}_{h} = B[k + kk][n0 + 4h .. n0 + 4h + 4]
        var b0_0: vec4<f32>; var b0_1: vec4<f32>; var b0_2: vec4<f32>; var b0_3: vec4<f32>;
        var b1_0: vec4<f32>; var b1_1: vec4<f32>; var b1_2: vec4<f32>; var b1_3: vec4<f32>;
        var b2_0: vec4<f32>; var b2_1: vec4<f32>; var b2_2: vec4<f32>; var b2_3: vec4<f32>;
        var b3_0: vec4<f32>; var b3_1: vec4<f32>; var b3_2: vec4<f32>; var b3_3: vec4<f32>;
        if (B_MODE == 1u) {
            let nv0 = min(n0 + 0u, p.n - 4u);
            let nv1 = min(n0 + 4u, p.n - 4u);
            let nv2 = min(n0 + 8u, p.n - 4u);
            let nv3 = min(n0 + 12u, p.n - 4u);
            let row0 = b_base + (k + 0u) * p.b_rs;
            b0_0 = b[(row0 + nv0) >> 2u];
            b0_1 = b[(row0 + nv1) >> 2u];
            b0_2 = b[(row0 + nv2) >> 2u];
            b0_3 = b[(row0 + nv3) >> 2u];
            let row1 = b_base + (k + 1u) * p.b_rs;
            b1_0 = b[(row1 + nv0) >> 2u];
            b1_1 = b[(row1 + nv1) >> 2u];
            b1_2 = b[(row1 + nv2) >> 2u];
            b1_3 = b[(row1 + nv3) >> 2u];
            let row2 = b_base + (k + 2u) * p.b_rs;
            b2_0 = b[(row2 + nv0) >> 2u];
            b2_1 = b[(row2 + nv1) >> 2u];
            b2_2 = b[(row2 + nv2) >> 2u];
            b2_3 = b[(row2 + nv3) >> 2u];
            let row3 = b_base + (k + 3u) * p.b_rs;
            b3_0 = b[(row3 + nv0) >> 2u];
            b3_1 = b[(row3 + nv1) >> 2u];
            b3_2 = b[(row3 + nv2) >> 2u];
            b3_3 = b[(row3 + nv3) >> 2u];
        } else if (B_MODE == 2u) {
            // One vec4 along k per column, transposed into b{kk}_{h} in registers.
            let u0 = b[(bc0 + k) >> 2u];
            let u1 = b[(bc1 + k) >> 2u];
            let u2 = b[(bc2 + k) >> 2u];
            let u3 = b[(bc3 + k) >> 2u];
            let u4 = b[(bc4 + k) >> 2u];
            let u5 = b[(bc5 + k) >> 2u];
            let u6 = b[(bc6 + k) >> 2u];
            let u7 = b[(bc7 + k) >> 2u];
            let u8 = b[(bc8 + k) >> 2u];
            let u9 = b[(bc9 + k) >> 2u];
            let u10 = b[(bc10 + k) >> 2u];
            let u11 = b[(bc11 + k) >> 2u];
            let u12 = b[(bc12 + k) >> 2u];
            let u13 = b[(bc13 + k) >> 2u];
            let u14 = b[(bc14 + k) >> 2u];
            let u15 = b[(bc15 + k) >> 2u];
            b0_0 = vec4<f32>(u0.x, u1.x, u2.x, u3.x);
            b0_1 = vec4<f32>(u4.x, u5.x, u6.x, u7.x);
            b0_2 = vec4<f32>(u8.x, u9.x, u10.x, u11.x);
            b0_3 = vec4<f32>(u12.x, u13.x, u14.x, u15.x);
            b1_0 = vec4<f32>(u0.y, u1.y, u2.y, u3.y);
            b1_1 = vec4<f32>(u4.y, u5.y, u6.y, u7.y);
            b1_2 = vec4<f32>(u8.y, u9.y, u10.y, u11.y);
            b1_3 = vec4<f32>(u12.y, u13.y, u14.y, u15.y);
            b2_0 = vec4<f32>(u0.z, u1.z, u2.z, u3.z);
            b2_1 = vec4<f32>(u4.z, u5.z, u6.z, u7.z);
            b2_2 = vec4<f32>(u8.z, u9.z, u10.z, u11.z);
            b2_3 = vec4<f32>(u12.z, u13.z, u14.z, u15.z);
            b3_0 = vec4<f32>(u0.w, u1.w, u2.w, u3.w);
            b3_1 = vec4<f32>(u4.w, u5.w, u6.w, u7.w);
            b3_2 = vec4<f32>(u8.w, u9.w, u10.w, u11.w);
            b3_3 = vec4<f32>(u12.w, u13.w, u14.w, u15.w);
        } else {
            b0_0 = vec4<f32>(ld_b(bc0 + (k + 0u) * p.b_rs), ld_b(bc1 + (k + 0u) * p.b_rs), ld_b(bc2 + (k + 0u) * p.b_rs), ld_b(bc3 + (k + 0u) * p.b_rs));
            b0_1 = vec4<f32>(ld_b(bc4 + (k + 0u) * p.b_rs), ld_b(bc5 + (k + 0u) * p.b_rs), ld_b(bc6 + (k + 0u) * p.b_rs), ld_b(bc7 + (k + 0u) * p.b_rs));
            b0_2 = vec4<f32>(ld_b(bc8 + (k + 0u) * p.b_rs), ld_b(bc9 + (k + 0u) * p.b_rs), ld_b(bc10 + (k + 0u) * p.b_rs), ld_b(bc11 + (k + 0u) * p.b_rs));
            b0_3 = vec4<f32>(ld_b(bc12 + (k + 0u) * p.b_rs), ld_b(bc13 + (k + 0u) * p.b_rs), ld_b(bc14 + (k + 0u) * p.b_rs), ld_b(bc15 + (k + 0u) * p.b_rs));
            b1_0 = vec4<f32>(ld_b(bc0 + (k + 1u) * p.b_rs), ld_b(bc1 + (k + 1u) * p.b_rs), ld_b(bc2 + (k + 1u) * p.b_rs), ld_b(bc3 + (k + 1u) * p.b_rs));
            b1_1 = vec4<f32>(ld_b(bc4 + (k + 1u) * p.b_rs), ld_b(bc5 + (k + 1u) * p.b_rs), ld_b(bc6 + (k + 1u) * p.b_rs), ld_b(bc7 + (k + 1u) * p.b_rs));
            b1_2 = vec4<f32>(ld_b(bc8 + (k + 1u) * p.b_rs), ld_b(bc9 + (k + 1u) * p.b_rs), ld_b(bc10 + (k + 1u) * p.b_rs), ld_b(bc11 + (k + 1u) * p.b_rs));
            b1_3 = vec4<f32>(ld_b(bc12 + (k + 1u) * p.b_rs), ld_b(bc13 + (k + 1u) * p.b_rs), ld_b(bc14 + (k + 1u) * p.b_rs), ld_b(bc15 + (k + 1u) * p.b_rs));
            b2_0 = vec4<f32>(ld_b(bc0 + (k + 2u) * p.b_rs), ld_b(bc1 + (k + 2u) * p.b_rs), ld_b(bc2 + (k + 2u) * p.b_rs), ld_b(bc3 + (k + 2u) * p.b_rs));
            b2_1 = vec4<f32>(ld_b(bc4 + (k + 2u) * p.b_rs), ld_b(bc5 + (k + 2u) * p.b_rs), ld_b(bc6 + (k + 2u) * p.b_rs), ld_b(bc7 + (k + 2u) * p.b_rs));
            b2_2 = vec4<f32>(ld_b(bc8 + (k + 2u) * p.b_rs), ld_b(bc9 + (k + 2u) * p.b_rs), ld_b(bc10 + (k + 2u) * p.b_rs), ld_b(bc11 + (k + 2u) * p.b_rs));
            b2_3 = vec4<f32>(ld_b(bc12 + (k + 2u) * p.b_rs), ld_b(bc13 + (k + 2u) * p.b_rs), ld_b(bc14 + (k + 2u) * p.b_rs), ld_b(bc15 + (k + 2u) * p.b_rs));
            b3_0 = vec4<f32>(ld_b(bc0 + (k + 3u) * p.b_rs), ld_b(bc1 + (k + 3u) * p.b_rs), ld_b(bc2 + (k + 3u) * p.b_rs), ld_b(bc3 + (k + 3u) * p.b_rs));
            b3_1 = vec4<f32>(ld_b(bc4 + (k + 3u) * p.b_rs), ld_b(bc5 + (k + 3u) * p.b_rs), ld_b(bc6 + (k + 3u) * p.b_rs), ld_b(bc7 + (k + 3u) * p.b_rs));
            b3_2 = vec4<f32>(ld_b(bc8 + (k + 3u) * p.b_rs), ld_b(bc9 + (k + 3u) * p.b_rs), ld_b(bc10 + (k + 3u) * p.b_rs), ld_b(bc11 + (k + 3u) * p.b_rs));
            b3_3 = vec4<f32>(ld_b(bc12 + (k + 3u) * p.b_rs), ld_b(bc13 + (k + 3u) * p.b_rs), ld_b(bc14 + (k + 3u) * p.b_rs), ld_b(bc15 + (k + 3u) * p.b_rs));
        }
        c0_0 = fma(vec4<f32>(a0.w), b3_0, fma(vec4<f32>(a0.z), b2_0, fma(vec4<f32>(a0.y), b1_0, fma(vec4<f32>(a0.x), b0_0, c0_0))));
        c0_1 = fma(vec4<f32>(a0.w), b3_1, fma(vec4<f32>(a0.z), b2_1, fma(vec4<f32>(a0.y), b1_1, fma(vec4<f32>(a0.x), b0_1, c0_1))));
        c0_2 = fma(vec4<f32>(a0.w), b3_2, fma(vec4<f32>(a0.z), b2_2, fma(vec4<f32>(a0.y), b1_2, fma(vec4<f32>(a0.x), b0_2, c0_2))));
        c0_3 = fma(vec4<f32>(a0.w), b3_3, fma(vec4<f32>(a0.z), b2_3, fma(vec4<f32>(a0.y), b1_3, fma(vec4<f32>(a0.x), b0_3, c0_3))));
        c1_0 = fma(vec4<f32>(a1.w), b3_0, fma(vec4<f32>(a1.z), b2_0, fma(vec4<f32>(a1.y), b1_0, fma(vec4<f32>(a1.x), b0_0, c1_0))));
        c1_1 = fma(vec4<f32>(a1.w), b3_1, fma(vec4<f32>(a1.z), b2_1, fma(vec4<f32>(a1.y), b1_1, fma(vec4<f32>(a1.x), b0_1, c1_1))));
        c1_2 = fma(vec4<f32>(a1.w), b3_2, fma(vec4<f32>(a1.z), b2_2, fma(vec4<f32>(a1.y), b1_2, fma(vec4<f32>(a1.x), b0_2, c1_2))));
        c1_3 = fma(vec4<f32>(a1.w), b3_3, fma(vec4<f32>(a1.z), b2_3, fma(vec4<f32>(a1.y), b1_3, fma(vec4<f32>(a1.x), b0_3, c1_3))));
        c2_0 = fma(vec4<f32>(a2.w), b3_0, fma(vec4<f32>(a2.z), b2_0, fma(vec4<f32>(a2.y), b1_0, fma(vec4<f32>(a2.x), b0_0, c2_0))));
        c2_1 = fma(vec4<f32>(a2.w), b3_1, fma(vec4<f32>(a2.z), b2_1, fma(vec4<f32>(a2.y), b1_1, fma(vec4<f32>(a2.x), b0_1, c2_1))));
        c2_2 = fma(vec4<f32>(a2.w), b3_2, fma(vec4<f32>(a2.z), b2_2, fma(vec4<f32>(a2.y), b1_2, fma(vec4<f32>(a2.x), b0_2, c2_2))));
        c2_3 = fma(vec4<f32>(a2.w), b3_3, fma(vec4<f32>(a2.z), b2_3, fma(vec4<f32>(a2.y), b1_3, fma(vec4<f32>(a2.x), b0_3, c2_3))));
        c3_0 = fma(vec4<f32>(a3.w), b3_0, fma(vec4<f32>(a3.z), b2_0, fma(vec4<f32>(a3.y), b1_0, fma(vec4<f32>(a3.x), b0_0, c3_0))));
        c3_1 = fma(vec4<f32>(a3.w), b3_1, fma(vec4<f32>(a3.z), b2_1, fma(vec4<f32>(a3.y), b1_1, fma(vec4<f32>(a3.x), b0_1, c3_1))));
        c3_2 = fma(vec4<f32>(a3.w), b3_2, fma(vec4<f32>(a3.z), b2_2, fma(vec4<f32>(a3.y), b1_2, fma(vec4<f32>(a3.x), b0_2, c3_2))));
        c3_3 = fma(vec4<f32>(a3.w), b3_3, fma(vec4<f32>(a3.z), b2_3, fma(vec4<f32>(a3.y), b1_3, fma(vec4<f32>(a3.x), b0_3, c3_3))));
        c4_0 = fma(vec4<f32>(a4.w), b3_0, fma(vec4<f32>(a4.z), b2_0, fma(vec4<f32>(a4.y), b1_0, fma(vec4<f32>(a4.x), b0_0, c4_0))));
        c4_1 = fma(vec4<f32>(a4.w), b3_1, fma(vec4<f32>(a4.z), b2_1, fma(vec4<f32>(a4.y), b1_1, fma(vec4<f32>(a4.x), b0_1, c4_1))));
        c4_2 = fma(vec4<f32>(a4.w), b3_2, fma(vec4<f32>(a4.z), b2_2, fma(vec4<f32>(a4.y), b1_2, fma(vec4<f32>(a4.x), b0_2, c4_2))));
        c4_3 = fma(vec4<f32>(a4.w), b3_3, fma(vec4<f32>(a4.z), b2_3, fma(vec4<f32>(a4.y), b1_3, fma(vec4<f32>(a4.x), b0_3, c4_3))));
        c5_0 = fma(vec4<f32>(a5.w), b3_0, fma(vec4<f32>(a5.z), b2_0, fma(vec4<f32>(a5.y), b1_0, fma(vec4<f32>(a5.x), b0_0, c5_0))));
        c5_1 = fma(vec4<f32>(a5.w), b3_1, fma(vec4<f32>(a5.z), b2_1, fma(vec4<f32>(a5.y), b1_1, fma(vec4<f32>(a5.x), b0_1, c5_1))));
        c5_2 = fma(vec4<f32>(a5.w), b3_2, fma(vec4<f32>(a5.z), b2_2, fma(vec4<f32>(a5.y), b1_2, fma(vec4<f32>(a5.x), b0_2, c5_2))));
        c5_3 = fma(vec4<f32>(a5.w), b3_3, fma(vec4<f32>(a5.z), b2_3, fma(vec4<f32>(a5.y), b1_3, fma(vec4<f32>(a5.x), b0_3, c5_3))));
        c6_0 = fma(vec4<f32>(a6.w), b3_0, fma(vec4<f32>(a6.z), b2_0, fma(vec4<f32>(a6.y), b1_0, fma(vec4<f32>(a6.x), b0_0, c6_0))));
        c6_1 = fma(vec4<f32>(a6.w), b3_1, fma(vec4<f32>(a6.z), b2_1, fma(vec4<f32>(a6.y), b1_1, fma(vec4<f32>(a6.x), b0_1, c6_1))));
        c6_2 = fma(vec4<f32>(a6.w), b3_2, fma(vec4<f32>(a6.z), b2_2, fma(vec4<f32>(a6.y), b1_2, fma(vec4<f32>(a6.x), b0_2, c6_2))));
        c6_3 = fma(vec4<f32>(a6.w), b3_3, fma(vec4<f32>(a6.z), b2_3, fma(vec4<f32>(a6.y), b1_3, fma(vec4<f32>(a6.x), b0_3, c6_3))));
        c7_0 = fma(vec4<f32>(a7.w), b3_0, fma(vec4<f32>(a7.z), b2_0, fma(vec4<f32>(a7.y), b1_0, fma(vec4<f32>(a7.x), b0_0, c7_0))));
        c7_1 = fma(vec4<f32>(a7.w), b3_1, fma(vec4<f32>(a7.z), b2_1, fma(vec4<f32>(a7.y), b1_1, fma(vec4<f32>(a7.x), b0_1, c7_1))));
        c7_2 = fma(vec4<f32>(a7.w), b3_2, fma(vec4<f32>(a7.z), b2_2, fma(vec4<f32>(a7.y), b1_2, fma(vec4<f32>(a7.x), b0_2, c7_2))));
        c7_3 = fma(vec4<f32>(a7.w), b3_3, fma(vec4<f32>(a7.z), b2_3, fma(vec4<f32>(a7.y), b1_3, fma(vec4<f32>(a7.x), b0_3, c7_3))));
    }
    // The last k % 4 steps, scalar loads.
    for (var k = k4; k < sl.k_hi; k++) {
        let s0 = vec4<f32>(ld_b(bc0 + k * p.b_rs), ld_b(bc1 + k * p.b_rs), ld_b(bc2 + k * p.b_rs), ld_b(bc3 + k * p.b_rs));
        let s1 = vec4<f32>(ld_b(bc4 + k * p.b_rs), ld_b(bc5 + k * p.b_rs), ld_b(bc6 + k * p.b_rs), ld_b(bc7 + k * p.b_rs));
        let s2 = vec4<f32>(ld_b(bc8 + k * p.b_rs), ld_b(bc9 + k * p.b_rs), ld_b(bc10 + k * p.b_rs), ld_b(bc11 + k * p.b_rs));
        let s3 = vec4<f32>(ld_b(bc12 + k * p.b_rs), ld_b(bc13 + k * p.b_rs), ld_b(bc14 + k * p.b_rs), ld_b(bc15 + k * p.b_rs));
        let r0 = vec4<f32>(ld_a(ar0 + k * p.a_cs));
        c0_0 = fma(r0, s0, c0_0);
        c0_1 = fma(r0, s1, c0_1);
        c0_2 = fma(r0, s2, c0_2);
        c0_3 = fma(r0, s3, c0_3);
        let r1 = vec4<f32>(ld_a(ar1 + k * p.a_cs));
        c1_0 = fma(r1, s0, c1_0);
        c1_1 = fma(r1, s1, c1_1);
        c1_2 = fma(r1, s2, c1_2);
        c1_3 = fma(r1, s3, c1_3);
        let r2 = vec4<f32>(ld_a(ar2 + k * p.a_cs));
        c2_0 = fma(r2, s0, c2_0);
        c2_1 = fma(r2, s1, c2_1);
        c2_2 = fma(r2, s2, c2_2);
        c2_3 = fma(r2, s3, c2_3);
        let r3 = vec4<f32>(ld_a(ar3 + k * p.a_cs));
        c3_0 = fma(r3, s0, c3_0);
        c3_1 = fma(r3, s1, c3_1);
        c3_2 = fma(r3, s2, c3_2);
        c3_3 = fma(r3, s3, c3_3);
        let r4 = vec4<f32>(ld_a(ar4 + k * p.a_cs));
        c4_0 = fma(r4, s0, c4_0);
        c4_1 = fma(r4, s1, c4_1);
        c4_2 = fma(r4, s2, c4_2);
        c4_3 = fma(r4, s3, c4_3);
        let r5 = vec4<f32>(ld_a(ar5 + k * p.a_cs));
        c5_0 = fma(r5, s0, c5_0);
        c5_1 = fma(r5, s1, c5_1);
        c5_2 = fma(r5, s2, c5_2);
        c5_3 = fma(r5, s3, c5_3);
        let r6 = vec4<f32>(ld_a(ar6 + k * p.a_cs));
        c6_0 = fma(r6, s0, c6_0);
        c6_1 = fma(r6, s1, c6_1);
        c6_2 = fma(r6, s2, c6_2);
        c6_3 = fma(r6, s3, c6_3);
        let r7 = vec4<f32>(ld_a(ar7 + k * p.a_cs));
        c7_0 = fma(r7, s0, c7_0);
        c7_1 = fma(r7, s1, c7_1);
        c7_2 = fma(r7, s2, c7_2);
        c7_3 = fma(r7, s3, c7_3);
    }
    // Epilogue: the accumulators go to a private array once so that the row loop below is
    // not unrolled (inlined copies of the GELU path would bloat the kernel).
    var acc: array<vec4<f32>, 32>;
    acc[0u] = c0_0;
    acc[1u] = c0_1;
    acc[2u] = c0_2;
    acc[3u] = c0_3;
    acc[4u] = c1_0;
    acc[5u] = c1_1;
    acc[6u] = c1_2;
    acc[7u] = c1_3;
    acc[8u] = c2_0;
    acc[9u] = c2_1;
    acc[10u] = c2_2;
    acc[11u] = c2_3;
    acc[12u] = c3_0;
    acc[13u] = c3_1;
    acc[14u] = c3_2;
    acc[15u] = c3_3;
    acc[16u] = c4_0;
    acc[17u] = c4_1;
    acc[18u] = c4_2;
    acc[19u] = c4_3;
    acc[20u] = c5_0;
    acc[21u] = c5_1;
    acc[22u] = c5_2;
    acc[23u] = c5_3;
    acc[24u] = c6_0;
    acc[25u] = c6_1;
    acc[26u] = c6_2;
    acc[27u] = c6_3;
    acc[28u] = c7_0;
    acc[29u] = c7_1;
    acc[30u] = c7_2;
    acc[31u] = c7_3;
    let nv = min(p.n - n0, 16u);
    for (var i = 0u; i < min(p.m - m0, 8u); i++) {
        store4(cz, m0 + i, n0 + 0u, nv - min(nv, 0u), acc[i * 4u + 0u]);
        store4(cz, m0 + i, n0 + 4u, nv - min(nv, 4u), acc[i * 4u + 1u]);
        store4(cz, m0 + i, n0 + 8u, nv - min(nv, 8u), acc[i * 4u + 2u]);
        store4(cz, m0 + i, n0 + 12u, nv - min(nv, 12u), acc[i * 4u + 3u]);
    }
}

// regblock_vec: 24×16 outputs per thread, workgroup 8×8 = 192×128 outputs.
// Row-major A and B only (A_MODE = B_MODE = 1 layouts), K a multiple of 4.
@compute @workgroup_size(8, 8, 1)
fn regblock_vec(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let n0 = (wg.x * 8u + lid.x) * 16u;
    let m0 = (wg.y * 8u + lid.y) * 24u;
    // z = batch · ksplit + slice (split-K launches; ksplit = 1 otherwise): C's slot and A's
    // and B's batch and reduction range.
    let cz = wg.z;
    let sl = slice_of(wg.z);
    let bz = sl.bz;
    // No barriers in this kernel, so threads past the edge may leave early.
    if (m0 >= p.m || n0 >= p.n) {
        return;
    }
    // Everything in vec4 units. Rows and column groups past the edge are clamped to the last
    // valid one (N is a multiple of 4, so a group is all valid or all past the edge); those
    // results are dropped by the store's bounds check.
    let a4 = (p.a_off + bz * p.a_bs) >> 2u;
    let b4 = (p.b_off + bz * p.b_bs) >> 2u;
    let ars = p.a_rs >> 2u;
    let brs = p.b_rs >> 2u;
    let ar0 = a4 + min(m0 + 0u, p.m - 1u) * ars;
    let ar1 = a4 + min(m0 + 1u, p.m - 1u) * ars;
    let ar2 = a4 + min(m0 + 2u, p.m - 1u) * ars;
    let ar3 = a4 + min(m0 + 3u, p.m - 1u) * ars;
    let ar4 = a4 + min(m0 + 4u, p.m - 1u) * ars;
    let ar5 = a4 + min(m0 + 5u, p.m - 1u) * ars;
    let ar6 = a4 + min(m0 + 6u, p.m - 1u) * ars;
    let ar7 = a4 + min(m0 + 7u, p.m - 1u) * ars;
    let ar8 = a4 + min(m0 + 8u, p.m - 1u) * ars;
    let ar9 = a4 + min(m0 + 9u, p.m - 1u) * ars;
    let ar10 = a4 + min(m0 + 10u, p.m - 1u) * ars;
    let ar11 = a4 + min(m0 + 11u, p.m - 1u) * ars;
    let ar12 = a4 + min(m0 + 12u, p.m - 1u) * ars;
    let ar13 = a4 + min(m0 + 13u, p.m - 1u) * ars;
    let ar14 = a4 + min(m0 + 14u, p.m - 1u) * ars;
    let ar15 = a4 + min(m0 + 15u, p.m - 1u) * ars;
    let ar16 = a4 + min(m0 + 16u, p.m - 1u) * ars;
    let ar17 = a4 + min(m0 + 17u, p.m - 1u) * ars;
    let ar18 = a4 + min(m0 + 18u, p.m - 1u) * ars;
    let ar19 = a4 + min(m0 + 19u, p.m - 1u) * ars;
    let ar20 = a4 + min(m0 + 20u, p.m - 1u) * ars;
    let ar21 = a4 + min(m0 + 21u, p.m - 1u) * ars;
    let ar22 = a4 + min(m0 + 22u, p.m - 1u) * ars;
    let ar23 = a4 + min(m0 + 23u, p.m - 1u) * ars;
    let bn0 = b4 + (min(n0 + 0u, p.n - 4u) >> 2u);
    let bn1 = b4 + (min(n0 + 4u, p.n - 4u) >> 2u);
    let bn2 = b4 + (min(n0 + 8u, p.n - 4u) >> 2u);
    let bn3 = b4 + (min(n0 + 12u, p.n - 4u) >> 2u);
    // c{i}_{h} holds C[m0 + i][n0 + 4h .. n0 + 4h + 4].
    var c0_0 = vec4<f32>(0.0); var c0_1 = vec4<f32>(0.0); var c0_2 = vec4<f32>(0.0); var c0_3 = vec4<f32>(0.0);
    var c1_0 = vec4<f32>(0.0); var c1_1 = vec4<f32>(0.0); var c1_2 = vec4<f32>(0.0); var c1_3 = vec4<f32>(0.0);
    var c2_0 = vec4<f32>(0.0); var c2_1 = vec4<f32>(0.0); var c2_2 = vec4<f32>(0.0); var c2_3 = vec4<f32>(0.0);
    var c3_0 = vec4<f32>(0.0); var c3_1 = vec4<f32>(0.0); var c3_2 = vec4<f32>(0.0); var c3_3 = vec4<f32>(0.0);
    var c4_0 = vec4<f32>(0.0); var c4_1 = vec4<f32>(0.0); var c4_2 = vec4<f32>(0.0); var c4_3 = vec4<f32>(0.0);
    var c5_0 = vec4<f32>(0.0); var c5_1 = vec4<f32>(0.0); var c5_2 = vec4<f32>(0.0); var c5_3 = vec4<f32>(0.0);
    var c6_0 = vec4<f32>(0.0); var c6_1 = vec4<f32>(0.0); var c6_2 = vec4<f32>(0.0); var c6_3 = vec4<f32>(0.0);
    var c7_0 = vec4<f32>(0.0); var c7_1 = vec4<f32>(0.0); var c7_2 = vec4<f32>(0.0); var c7_3 = vec4<f32>(0.0);
    var c8_0 = vec4<f32>(0.0); var c8_1 = vec4<f32>(0.0); var c8_2 = vec4<f32>(0.0); var c8_3 = vec4<f32>(0.0);
    var c9_0 = vec4<f32>(0.0); var c9_1 = vec4<f32>(0.0); var c9_2 = vec4<f32>(0.0); var c9_3 = vec4<f32>(0.0);
    var c10_0 = vec4<f32>(0.0); var c10_1 = vec4<f32>(0.0); var c10_2 = vec4<f32>(0.0); var c10_3 = vec4<f32>(0.0);
    var c11_0 = vec4<f32>(0.0); var c11_1 = vec4<f32>(0.0); var c11_2 = vec4<f32>(0.0); var c11_3 = vec4<f32>(0.0);
    var c12_0 = vec4<f32>(0.0); var c12_1 = vec4<f32>(0.0); var c12_2 = vec4<f32>(0.0); var c12_3 = vec4<f32>(0.0);
    var c13_0 = vec4<f32>(0.0); var c13_1 = vec4<f32>(0.0); var c13_2 = vec4<f32>(0.0); var c13_3 = vec4<f32>(0.0);
    var c14_0 = vec4<f32>(0.0); var c14_1 = vec4<f32>(0.0); var c14_2 = vec4<f32>(0.0); var c14_3 = vec4<f32>(0.0);
    var c15_0 = vec4<f32>(0.0); var c15_1 = vec4<f32>(0.0); var c15_2 = vec4<f32>(0.0); var c15_3 = vec4<f32>(0.0);
    var c16_0 = vec4<f32>(0.0); var c16_1 = vec4<f32>(0.0); var c16_2 = vec4<f32>(0.0); var c16_3 = vec4<f32>(0.0);
    var c17_0 = vec4<f32>(0.0); var c17_1 = vec4<f32>(0.0); var c17_2 = vec4<f32>(0.0); var c17_3 = vec4<f32>(0.0);
    var c18_0 = vec4<f32>(0.0); var c18_1 = vec4<f32>(0.0); var c18_2 = vec4<f32>(0.0); var c18_3 = vec4<f32>(0.0);
    var c19_0 = vec4<f32>(0.0); var c19_1 = vec4<f32>(0.0); var c19_2 = vec4<f32>(0.0); var c19_3 = vec4<f32>(0.0);
    var c20_0 = vec4<f32>(0.0); var c20_1 = vec4<f32>(0.0); var c20_2 = vec4<f32>(0.0); var c20_3 = vec4<f32>(0.0);
    var c21_0 = vec4<f32>(0.0); var c21_1 = vec4<f32>(0.0); var c21_2 = vec4<f32>(0.0); var c21_3 = vec4<f32>(0.0);
    var c22_0 = vec4<f32>(0.0); var c22_1 = vec4<f32>(0.0); var c22_2 = vec4<f32>(0.0); var c22_3 = vec4<f32>(0.0);
    var c23_0 = vec4<f32>(0.0); var c23_1 = vec4<f32>(0.0); var c23_2 = vec4<f32>(0.0); var c23_3 = vec4<f32>(0.0);
    for (var kq = sl.k_lo >> 2u; kq < (sl.k_hi >> 2u); kq++) {
        // a{i} = A[m0 + i][4kq .. 4kq + 4]; b{kk}_{h} = B[4kq + kk][n0 + 4h .. n0 + 4h + 4]
        let a0 = a[ar0 + kq];
        let a1 = a[ar1 + kq];
        let a2 = a[ar2 + kq];
        let a3 = a[ar3 + kq];
        let a4 = a[ar4 + kq];
        let a5 = a[ar5 + kq];
        let a6 = a[ar6 + kq];
        let a7 = a[ar7 + kq];
        let a8 = a[ar8 + kq];
        let a9 = a[ar9 + kq];
        let a10 = a[ar10 + kq];
        let a11 = a[ar11 + kq];
        let a12 = a[ar12 + kq];
        let a13 = a[ar13 + kq];
        let a14 = a[ar14 + kq];
        let a15 = a[ar15 + kq];
        let a16 = a[ar16 + kq];
        let a17 = a[ar17 + kq];
        let a18 = a[ar18 + kq];
        let a19 = a[ar19 + kq];
        let a20 = a[ar20 + kq];
        let a21 = a[ar21 + kq];
        let a22 = a[ar22 + kq];
        let a23 = a[ar23 + kq];
        let row0 = (kq * 4u + 0u) * brs;
        let b0_0 = b[row0 + bn0]; let b0_1 = b[row0 + bn1]; let b0_2 = b[row0 + bn2]; let b0_3 = b[row0 + bn3];
        let row1 = (kq * 4u + 1u) * brs;
        let b1_0 = b[row1 + bn0]; let b1_1 = b[row1 + bn1]; let b1_2 = b[row1 + bn2]; let b1_3 = b[row1 + bn3];
        let row2 = (kq * 4u + 2u) * brs;
        let b2_0 = b[row2 + bn0]; let b2_1 = b[row2 + bn1]; let b2_2 = b[row2 + bn2]; let b2_3 = b[row2 + bn3];
        let row3 = (kq * 4u + 3u) * brs;
        let b3_0 = b[row3 + bn0]; let b3_1 = b[row3 + bn1]; let b3_2 = b[row3 + bn2]; let b3_3 = b[row3 + bn3];
        c0_0 = fma(vec4<f32>(a0.w), b3_0, fma(vec4<f32>(a0.z), b2_0, fma(vec4<f32>(a0.y), b1_0, fma(vec4<f32>(a0.x), b0_0, c0_0))));
        c0_1 = fma(vec4<f32>(a0.w), b3_1, fma(vec4<f32>(a0.z), b2_1, fma(vec4<f32>(a0.y), b1_1, fma(vec4<f32>(a0.x), b0_1, c0_1))));
        c0_2 = fma(vec4<f32>(a0.w), b3_2, fma(vec4<f32>(a0.z), b2_2, fma(vec4<f32>(a0.y), b1_2, fma(vec4<f32>(a0.x), b0_2, c0_2))));
        c0_3 = fma(vec4<f32>(a0.w), b3_3, fma(vec4<f32>(a0.z), b2_3, fma(vec4<f32>(a0.y), b1_3, fma(vec4<f32>(a0.x), b0_3, c0_3))));
        c1_0 = fma(vec4<f32>(a1.w), b3_0, fma(vec4<f32>(a1.z), b2_0, fma(vec4<f32>(a1.y), b1_0, fma(vec4<f32>(a1.x), b0_0, c1_0))));
        c1_1 = fma(vec4<f32>(a1.w), b3_1, fma(vec4<f32>(a1.z), b2_1, fma(vec4<f32>(a1.y), b1_1, fma(vec4<f32>(a1.x), b0_1, c1_1))));
        c1_2 = fma(vec4<f32>(a1.w), b3_2, fma(vec4<f32>(a1.z), b2_2, fma(vec4<f32>(a1.y), b1_2, fma(vec4<f32>(a1.x), b0_2, c1_2))));
        c1_3 = fma(vec4<f32>(a1.w), b3_3, fma(vec4<f32>(a1.z), b2_3, fma(vec4<f32>(a1.y), b1_3, fma(vec4<f32>(a1.x), b0_3, c1_3))));
        c2_0 = fma(vec4<f32>(a2.w), b3_0, fma(vec4<f32>(a2.z), b2_0, fma(vec4<f32>(a2.y), b1_0, fma(vec4<f32>(a2.x), b0_0, c2_0))));
        c2_1 = fma(vec4<f32>(a2.w), b3_1, fma(vec4<f32>(a2.z), b2_1, fma(vec4<f32>(a2.y), b1_1, fma(vec4<f32>(a2.x), b0_1, c2_1))));
        c2_2 = fma(vec4<f32>(a2.w), b3_2, fma(vec4<f32>(a2.z), b2_2, fma(vec4<f32>(a2.y), b1_2, fma(vec4<f32>(a2.x), b0_2, c2_2))));
        c2_3 = fma(vec4<f32>(a2.w), b3_3, fma(vec4<f32>(a2.z), b2_3, fma(vec4<f32>(a2.y), b1_3, fma(vec4<f32>(a2.x), b0_3, c2_3))));
        c3_0 = fma(vec4<f32>(a3.w), b3_0, fma(vec4<f32>(a3.z), b2_0, fma(vec4<f32>(a3.y), b1_0, fma(vec4<f32>(a3.x), b0_0, c3_0))));
        c3_1 = fma(vec4<f32>(a3.w), b3_1, fma(vec4<f32>(a3.z), b2_1, fma(vec4<f32>(a3.y), b1_1, fma(vec4<f32>(a3.x), b0_1, c3_1))));
        c3_2 = fma(vec4<f32>(a3.w), b3_2, fma(vec4<f32>(a3.z), b2_2, fma(vec4<f32>(a3.y), b1_2, fma(vec4<f32>(a3.x), b0_2, c3_2))));
        c3_3 = fma(vec4<f32>(a3.w), b3_3, fma(vec4<f32>(a3.z), b2_3, fma(vec4<f32>(a3.y), b1_3, fma(vec4<f32>(a3.x), b0_3, c3_3))));
        c4_0 = fma(vec4<f32>(a4.w), b3_0, fma(vec4<f32>(a4.z), b2_0, fma(vec4<f32>(a4.y), b1_0, fma(vec4<f32>(a4.x), b0_0, c4_0))));
        c4_1 = fma(vec4<f32>(a4.w), b3_1, fma(vec4<f32>(a4.z), b2_1, fma(vec4<f32>(a4.y), b1_1, fma(vec4<f32>(a4.x), b0_1, c4_1))));
        c4_2 = fma(vec4<f32>(a4.w), b3_2, fma(vec4<f32>(a4.z), b2_2, fma(vec4<f32>(a4.y), b1_2, fma(vec4<f32>(a4.x), b0_2, c4_2))));
        c4_3 = fma(vec4<f32>(a4.w), b3_3, fma(vec4<f32>(a4.z), b2_3, fma(vec4<f32>(a4.y), b1_3, fma(vec4<f32>(a4.x), b0_3, c4_3))));
        c5_0 = fma(vec4<f32>(a5.w), b3_0, fma(vec4<f32>(a5.z), b2_0, fma(vec4<f32>(a5.y), b1_0, fma(vec4<f32>(a5.x), b0_0, c5_0))));
        c5_1 = fma(vec4<f32>(a5.w), b3_1, fma(vec4<f32>(a5.z), b2_1, fma(vec4<f32>(a5.y), b1_1, fma(vec4<f32>(a5.x), b0_1, c5_1))));
        c5_2 = fma(vec4<f32>(a5.w), b3_2, fma(vec4<f32>(a5.z), b2_2, fma(vec4<f32>(a5.y), b1_2, fma(vec4<f32>(a5.x), b0_2, c5_2))));
        c5_3 = fma(vec4<f32>(a5.w), b3_3, fma(vec4<f32>(a5.z), b2_3, fma(vec4<f32>(a5.y), b1_3, fma(vec4<f32>(a5.x), b0_3, c5_3))));
        c6_0 = fma(vec4<f32>(a6.w), b3_0, fma(vec4<f32>(a6.z), b2_0, fma(vec4<f32>(a6.y), b1_0, fma(vec4<f32>(a6.x), b0_0, c6_0))));
        c6_1 = fma(vec4<f32>(a6.w), b3_1, fma(vec4<f32>(a6.z), b2_1, fma(vec4<f32>(a6.y), b1_1, fma(vec4<f32>(a6.x), b0_1, c6_1))));
        c6_2 = fma(vec4<f32>(a6.w), b3_2, fma(vec4<f32>(a6.z), b2_2, fma(vec4<f32>(a6.y), b1_2, fma(vec4<f32>(a6.x), b0_2, c6_2))));
        c6_3 = fma(vec4<f32>(a6.w), b3_3, fma(vec4<f32>(a6.z), b2_3, fma(vec4<f32>(a6.y), b1_3, fma(vec4<f32>(a6.x), b0_3, c6_3))));
        c7_0 = fma(vec4<f32>(a7.w), b3_0, fma(vec4<f32>(a7.z), b2_0, fma(vec4<f32>(a7.y), b1_0, fma(vec4<f32>(a7.x), b0_0, c7_0))));
        c7_1 = fma(vec4<f32>(a7.w), b3_1, fma(vec4<f32>(a7.z), b2_1, fma(vec4<f32>(a7.y), b1_1, fma(vec4<f32>(a7.x), b0_1, c7_1))));
        c7_2 = fma(vec4<f32>(a7.w), b3_2, fma(vec4<f32>(a7.z), b2_2, fma(vec4<f32>(a7.y), b1_2, fma(vec4<f32>(a7.x), b0_2, c7_2))));
        c7_3 = fma(vec4<f32>(a7.w), b3_3, fma(vec4<f32>(a7.z), b2_3, fma(vec4<f32>(a7.y), b1_3, fma(vec4<f32>(a7.x), b0_3, c7_3))));
        c8_0 = fma(vec4<f32>(a8.w), b3_0, fma(vec4<f32>(a8.z), b2_0, fma(vec4<f32>(a8.y), b1_0, fma(vec4<f32>(a8.x), b0_0, c8_0))));
        c8_1 = fma(vec4<f32>(a8.w), b3_1, fma(vec4<f32>(a8.z), b2_1, fma(vec4<f32>(a8.y), b1_1, fma(vec4<f32>(a8.x), b0_1, c8_1))));
        c8_2 = fma(vec4<f32>(a8.w), b3_2, fma(vec4<f32>(a8.z), b2_2, fma(vec4<f32>(a8.y), b1_2, fma(vec4<f32>(a8.x), b0_2, c8_2))));
        c8_3 = fma(vec4<f32>(a8.w), b3_3, fma(vec4<f32>(a8.z), b2_3, fma(vec4<f32>(a8.y), b1_3, fma(vec4<f32>(a8.x), b0_3, c8_3))));
        c9_0 = fma(vec4<f32>(a9.w), b3_0, fma(vec4<f32>(a9.z), b2_0, fma(vec4<f32>(a9.y), b1_0, fma(vec4<f32>(a9.x), b0_0, c9_0))));
        c9_1 = fma(vec4<f32>(a9.w), b3_1, fma(vec4<f32>(a9.z), b2_1, fma(vec4<f32>(a9.y), b1_1, fma(vec4<f32>(a9.x), b0_1, c9_1))));
        c9_2 = fma(vec4<f32>(a9.w), b3_2, fma(vec4<f32>(a9.z), b2_2, fma(vec4<f32>(a9.y), b1_2, fma(vec4<f32>(a9.x), b0_2, c9_2))));
        c9_3 = fma(vec4<f32>(a9.w), b3_3, fma(vec4<f32>(a9.z), b2_3, fma(vec4<f32>(a9.y), b1_3, fma(vec4<f32>(a9.x), b0_3, c9_3))));
        c10_0 = fma(vec4<f32>(a10.w), b3_0, fma(vec4<f32>(a10.z), b2_0, fma(vec4<f32>(a10.y), b1_0, fma(vec4<f32>(a10.x), b0_0, c10_0))));
        c10_1 = fma(vec4<f32>(a10.w), b3_1, fma(vec4<f32>(a10.z), b2_1, fma(vec4<f32>(a10.y), b1_1, fma(vec4<f32>(a10.x), b0_1, c10_1))));
        c10_2 = fma(vec4<f32>(a10.w), b3_2, fma(vec4<f32>(a10.z), b2_2, fma(vec4<f32>(a10.y), b1_2, fma(vec4<f32>(a10.x), b0_2, c10_2))));
        c10_3 = fma(vec4<f32>(a10.w), b3_3, fma(vec4<f32>(a10.z), b2_3, fma(vec4<f32>(a10.y), b1_3, fma(vec4<f32>(a10.x), b0_3, c10_3))));
        c11_0 = fma(vec4<f32>(a11.w), b3_0, fma(vec4<f32>(a11.z), b2_0, fma(vec4<f32>(a11.y), b1_0, fma(vec4<f32>(a11.x), b0_0, c11_0))));
        c11_1 = fma(vec4<f32>(a11.w), b3_1, fma(vec4<f32>(a11.z), b2_1, fma(vec4<f32>(a11.y), b1_1, fma(vec4<f32>(a11.x), b0_1, c11_1))));
        c11_2 = fma(vec4<f32>(a11.w), b3_2, fma(vec4<f32>(a11.z), b2_2, fma(vec4<f32>(a11.y), b1_2, fma(vec4<f32>(a11.x), b0_2, c11_2))));
        c11_3 = fma(vec4<f32>(a11.w), b3_3, fma(vec4<f32>(a11.z), b2_3, fma(vec4<f32>(a11.y), b1_3, fma(vec4<f32>(a11.x), b0_3, c11_3))));
        c12_0 = fma(vec4<f32>(a12.w), b3_0, fma(vec4<f32>(a12.z), b2_0, fma(vec4<f32>(a12.y), b1_0, fma(vec4<f32>(a12.x), b0_0, c12_0))));
        c12_1 = fma(vec4<f32>(a12.w), b3_1, fma(vec4<f32>(a12.z), b2_1, fma(vec4<f32>(a12.y), b1_1, fma(vec4<f32>(a12.x), b0_1, c12_1))));
        c12_2 = fma(vec4<f32>(a12.w), b3_2, fma(vec4<f32>(a12.z), b2_2, fma(vec4<f32>(a12.y), b1_2, fma(vec4<f32>(a12.x), b0_2, c12_2))));
        c12_3 = fma(vec4<f32>(a12.w), b3_3, fma(vec4<f32>(a12.z), b2_3, fma(vec4<f32>(a12.y), b1_3, fma(vec4<f32>(a12.x), b0_3, c12_3))));
        c13_0 = fma(vec4<f32>(a13.w), b3_0, fma(vec4<f32>(a13.z), b2_0, fma(vec4<f32>(a13.y), b1_0, fma(vec4<f32>(a13.x), b0_0, c13_0))));
        c13_1 = fma(vec4<f32>(a13.w), b3_1, fma(vec4<f32>(a13.z), b2_1, fma(vec4<f32>(a13.y), b1_1, fma(vec4<f32>(a13.x), b0_1, c13_1))));
        c13_2 = fma(vec4<f32>(a13.w), b3_2, fma(vec4<f32>(a13.z), b2_2, fma(vec4<f32>(a13.y), b1_2, fma(vec4<f32>(a13.x), b0_2, c13_2))));
        c13_3 = fma(vec4<f32>(a13.w), b3_3, fma(vec4<f32>(a13.z), b2_3, fma(vec4<f32>(a13.y), b1_3, fma(vec4<f32>(a13.x), b0_3, c13_3))));
        c14_0 = fma(vec4<f32>(a14.w), b3_0, fma(vec4<f32>(a14.z), b2_0, fma(vec4<f32>(a14.y), b1_0, fma(vec4<f32>(a14.x), b0_0, c14_0))));
        c14_1 = fma(vec4<f32>(a14.w), b3_1, fma(vec4<f32>(a14.z), b2_1, fma(vec4<f32>(a14.y), b1_1, fma(vec4<f32>(a14.x), b0_1, c14_1))));
        c14_2 = fma(vec4<f32>(a14.w), b3_2, fma(vec4<f32>(a14.z), b2_2, fma(vec4<f32>(a14.y), b1_2, fma(vec4<f32>(a14.x), b0_2, c14_2))));
        c14_3 = fma(vec4<f32>(a14.w), b3_3, fma(vec4<f32>(a14.z), b2_3, fma(vec4<f32>(a14.y), b1_3, fma(vec4<f32>(a14.x), b0_3, c14_3))));
        c15_0 = fma(vec4<f32>(a15.w), b3_0, fma(vec4<f32>(a15.z), b2_0, fma(vec4<f32>(a15.y), b1_0, fma(vec4<f32>(a15.x), b0_0, c15_0))));
        c15_1 = fma(vec4<f32>(a15.w), b3_1, fma(vec4<f32>(a15.z), b2_1, fma(vec4<f32>(a15.y), b1_1, fma(vec4<f32>(a15.x), b0_1, c15_1))));
        c15_2 = fma(vec4<f32>(a15.w), b3_2, fma(vec4<f32>(a15.z), b2_2, fma(vec4<f32>(a15.y), b1_2, fma(vec4<f32>(a15.x), b0_2, c15_2))));
        c15_3 = fma(vec4<f32>(a15.w), b3_3, fma(vec4<f32>(a15.z), b2_3, fma(vec4<f32>(a15.y), b1_3, fma(vec4<f32>(a15.x), b0_3, c15_3))));
        c16_0 = fma(vec4<f32>(a16.w), b3_0, fma(vec4<f32>(a16.z), b2_0, fma(vec4<f32>(a16.y), b1_0, fma(vec4<f32>(a16.x), b0_0, c16_0))));
        c16_1 = fma(vec4<f32>(a16.w), b3_1, fma(vec4<f32>(a16.z), b2_1, fma(vec4<f32>(a16.y), b1_1, fma(vec4<f32>(a16.x), b0_1, c16_1))));
        c16_2 = fma(vec4<f32>(a16.w), b3_2, fma(vec4<f32>(a16.z), b2_2, fma(vec4<f32>(a16.y), b1_2, fma(vec4<f32>(a16.x), b0_2, c16_2))));
        c16_3 = fma(vec4<f32>(a16.w), b3_3, fma(vec4<f32>(a16.z), b2_3, fma(vec4<f32>(a16.y), b1_3, fma(vec4<f32>(a16.x), b0_3, c16_3))));
        c17_0 = fma(vec4<f32>(a17.w), b3_0, fma(vec4<f32>(a17.z), b2_0, fma(vec4<f32>(a17.y), b1_0, fma(vec4<f32>(a17.x), b0_0, c17_0))));
        c17_1 = fma(vec4<f32>(a17.w), b3_1, fma(vec4<f32>(a17.z), b2_1, fma(vec4<f32>(a17.y), b1_1, fma(vec4<f32>(a17.x), b0_1, c17_1))));
        c17_2 = fma(vec4<f32>(a17.w), b3_2, fma(vec4<f32>(a17.z), b2_2, fma(vec4<f32>(a17.y), b1_2, fma(vec4<f32>(a17.x), b0_2, c17_2))));
        c17_3 = fma(vec4<f32>(a17.w), b3_3, fma(vec4<f32>(a17.z), b2_3, fma(vec4<f32>(a17.y), b1_3, fma(vec4<f32>(a17.x), b0_3, c17_3))));
        c18_0 = fma(vec4<f32>(a18.w), b3_0, fma(vec4<f32>(a18.z), b2_0, fma(vec4<f32>(a18.y), b1_0, fma(vec4<f32>(a18.x), b0_0, c18_0))));
        c18_1 = fma(vec4<f32>(a18.w), b3_1, fma(vec4<f32>(a18.z), b2_1, fma(vec4<f32>(a18.y), b1_1, fma(vec4<f32>(a18.x), b0_1, c18_1))));
        c18_2 = fma(vec4<f32>(a18.w), b3_2, fma(vec4<f32>(a18.z), b2_2, fma(vec4<f32>(a18.y), b1_2, fma(vec4<f32>(a18.x), b0_2, c18_2))));
        c18_3 = fma(vec4<f32>(a18.w), b3_3, fma(vec4<f32>(a18.z), b2_3, fma(vec4<f32>(a18.y), b1_3, fma(vec4<f32>(a18.x), b0_3, c18_3))));
        c19_0 = fma(vec4<f32>(a19.w), b3_0, fma(vec4<f32>(a19.z), b2_0, fma(vec4<f32>(a19.y), b1_0, fma(vec4<f32>(a19.x), b0_0, c19_0))));
        c19_1 = fma(vec4<f32>(a19.w), b3_1, fma(vec4<f32>(a19.z), b2_1, fma(vec4<f32>(a19.y), b1_1, fma(vec4<f32>(a19.x), b0_1, c19_1))));
        c19_2 = fma(vec4<f32>(a19.w), b3_2, fma(vec4<f32>(a19.z), b2_2, fma(vec4<f32>(a19.y), b1_2, fma(vec4<f32>(a19.x), b0_2, c19_2))));
        c19_3 = fma(vec4<f32>(a19.w), b3_3, fma(vec4<f32>(a19.z), b2_3, fma(vec4<f32>(a19.y), b1_3, fma(vec4<f32>(a19.x), b0_3, c19_3))));
        c20_0 = fma(vec4<f32>(a20.w), b3_0, fma(vec4<f32>(a20.z), b2_0, fma(vec4<f32>(a20.y), b1_0, fma(vec4<f32>(a20.x), b0_0, c20_0))));
        c20_1 = fma(vec4<f32>(a20.w), b3_1, fma(vec4<f32>(a20.z), b2_1, fma(vec4<f32>(a20.y), b1_1, fma(vec4<f32>(a20.x), b0_1, c20_1))));
        c20_2 = fma(vec4<f32>(a20.w), b3_2, fma(vec4<f32>(a20.z), b2_2, fma(vec4<f32>(a20.y), b1_2, fma(vec4<f32>(a20.x), b0_2, c20_2))));
        c20_3 = fma(vec4<f32>(a20.w), b3_3, fma(vec4<f32>(a20.z), b2_3, fma(vec4<f32>(a20.y), b1_3, fma(vec4<f32>(a20.x), b0_3, c20_3))));
        c21_0 = fma(vec4<f32>(a21.w), b3_0, fma(vec4<f32>(a21.z), b2_0, fma(vec4<f32>(a21.y), b1_0, fma(vec4<f32>(a21.x), b0_0, c21_0))));
        c21_1 = fma(vec4<f32>(a21.w), b3_1, fma(vec4<f32>(a21.z), b2_1, fma(vec4<f32>(a21.y), b1_1, fma(vec4<f32>(a21.x), b0_1, c21_1))));
        c21_2 = fma(vec4<f32>(a21.w), b3_2, fma(vec4<f32>(a21.z), b2_2, fma(vec4<f32>(a21.y), b1_2, fma(vec4<f32>(a21.x), b0_2, c21_2))));
        c21_3 = fma(vec4<f32>(a21.w), b3_3, fma(vec4<f32>(a21.z), b2_3, fma(vec4<f32>(a21.y), b1_3, fma(vec4<f32>(a21.x), b0_3, c21_3))));
        c22_0 = fma(vec4<f32>(a22.w), b3_0, fma(vec4<f32>(a22.z), b2_0, fma(vec4<f32>(a22.y), b1_0, fma(vec4<f32>(a22.x), b0_0, c22_0))));
        c22_1 = fma(vec4<f32>(a22.w), b3_1, fma(vec4<f32>(a22.z), b2_1, fma(vec4<f32>(a22.y), b1_1, fma(vec4<f32>(a22.x), b0_1, c22_1))));
        c22_2 = fma(vec4<f32>(a22.w), b3_2, fma(vec4<f32>(a22.z), b2_2, fma(vec4<f32>(a22.y), b1_2, fma(vec4<f32>(a22.x), b0_2, c22_2))));
        c22_3 = fma(vec4<f32>(a22.w), b3_3, fma(vec4<f32>(a22.z), b2_3, fma(vec4<f32>(a22.y), b1_3, fma(vec4<f32>(a22.x), b0_3, c22_3))));
        c23_0 = fma(vec4<f32>(a23.w), b3_0, fma(vec4<f32>(a23.z), b2_0, fma(vec4<f32>(a23.y), b1_0, fma(vec4<f32>(a23.x), b0_0, c23_0))));
        c23_1 = fma(vec4<f32>(a23.w), b3_1, fma(vec4<f32>(a23.z), b2_1, fma(vec4<f32>(a23.y), b1_1, fma(vec4<f32>(a23.x), b0_1, c23_1))));
        c23_2 = fma(vec4<f32>(a23.w), b3_2, fma(vec4<f32>(a23.z), b2_2, fma(vec4<f32>(a23.y), b1_2, fma(vec4<f32>(a23.x), b0_2, c23_2))));
        c23_3 = fma(vec4<f32>(a23.w), b3_3, fma(vec4<f32>(a23.z), b2_3, fma(vec4<f32>(a23.y), b1_3, fma(vec4<f32>(a23.x), b0_3, c23_3))));
    }
    // Epilogue: the accumulators go to a private array once so that the row loop below is
    // not unrolled (inlined copies of the GELU path would bloat the kernel).
    var acc: array<vec4<f32>, 96>;
    acc[0u] = c0_0;
    acc[1u] = c0_1;
    acc[2u] = c0_2;
    acc[3u] = c0_3;
    acc[4u] = c1_0;
    acc[5u] = c1_1;
    acc[6u] = c1_2;
    acc[7u] = c1_3;
    acc[8u] = c2_0;
    acc[9u] = c2_1;
    acc[10u] = c2_2;
    acc[11u] = c2_3;
    acc[12u] = c3_0;
    acc[13u] = c3_1;
    acc[14u] = c3_2;
    acc[15u] = c3_3;
    acc[16u] = c4_0;
    acc[17u] = c4_1;
    acc[18u] = c4_2;
    acc[19u] = c4_3;
    acc[20u] = c5_0;
    acc[21u] = c5_1;
    acc[22u] = c5_2;
    acc[23u] = c5_3;
    acc[24u] = c6_0;
    acc[25u] = c6_1;
    acc[26u] = c6_2;
    acc[27u] = c6_3;
    acc[28u] = c7_0;
    acc[29u] = c7_1;
    acc[30u] = c7_2;
    acc[31u] = c7_3;
    acc[32u] = c8_0;
    acc[33u] = c8_1;
    acc[34u] = c8_2;
    acc[35u] = c8_3;
    acc[36u] = c9_0;
    acc[37u] = c9_1;
    acc[38u] = c9_2;
    acc[39u] = c9_3;
    acc[40u] = c10_0;
    acc[41u] = c10_1;
    acc[42u] = c10_2;
    acc[43u] = c10_3;
    acc[44u] = c11_0;
    acc[45u] = c11_1;
    acc[46u] = c11_2;
    acc[47u] = c11_3;
    acc[48u] = c12_0;
    acc[49u] = c12_1;
    acc[50u] = c12_2;
    acc[51u] = c12_3;
    acc[52u] = c13_0;
    acc[53u] = c13_1;
    acc[54u] = c13_2;
    acc[55u] = c13_3;
    acc[56u] = c14_0;
    acc[57u] = c14_1;
    acc[58u] = c14_2;
    acc[59u] = c14_3;
    acc[60u] = c15_0;
    acc[61u] = c15_1;
    acc[62u] = c15_2;
    acc[63u] = c15_3;
    acc[64u] = c16_0;
    acc[65u] = c16_1;
    acc[66u] = c16_2;
    acc[67u] = c16_3;
    acc[68u] = c17_0;
    acc[69u] = c17_1;
    acc[70u] = c17_2;
    acc[71u] = c17_3;
    acc[72u] = c18_0;
    acc[73u] = c18_1;
    acc[74u] = c18_2;
    acc[75u] = c18_3;
    acc[76u] = c19_0;
    acc[77u] = c19_1;
    acc[78u] = c19_2;
    acc[79u] = c19_3;
    acc[80u] = c20_0;
    acc[81u] = c20_1;
    acc[82u] = c20_2;
    acc[83u] = c20_3;
    acc[84u] = c21_0;
    acc[85u] = c21_1;
    acc[86u] = c21_2;
    acc[87u] = c21_3;
    acc[88u] = c22_0;
    acc[89u] = c22_1;
    acc[90u] = c22_2;
    acc[91u] = c22_3;
    acc[92u] = c23_0;
    acc[93u] = c23_1;
    acc[94u] = c23_2;
    acc[95u] = c23_3;
    let nv = min(p.n - n0, 16u);
    for (var i = 0u; i < min(p.m - m0, 24u); i++) {
        store4(cz, m0 + i, n0 + 0u, nv - min(nv, 0u), acc[i * 4u + 0u]);
        store4(cz, m0 + i, n0 + 4u, nv - min(nv, 4u), acc[i * 4u + 1u]);
        store4(cz, m0 + i, n0 + 8u, nv - min(nv, 8u), acc[i * 4u + 2u]);
        store4(cz, m0 + i, n0 + 12u, nv - min(nv, 12u), acc[i * 4u + 3u]);
    }
}

// regblock_vec_ta: 24×16 outputs per thread, workgroup 8×8 = 192×128 outputs.
// A stored [K, M] (trans_a) and row-major B, M and N multiples of 4, any K.
@compute @workgroup_size(8, 8, 1)
fn regblock_vec_ta(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let n0 = (wg.x * 8u + lid.x) * 16u;
    let m0 = (wg.y * 8u + lid.y) * 24u;
    // z = batch · ksplit + slice (split-K launches; ksplit = 1 otherwise): C's slot and A's
    // and B's batch and reduction range.
    let cz = wg.z;
    let sl = slice_of(wg.z);
    let bz = sl.bz;
    // No barriers in this kernel, so threads past the edge may leave early.
    if (m0 >= p.m || n0 >= p.n) {
        return;
    }
    // Everything in vec4 units. Row and column groups past the edge are clamped to the last
    // valid one (M and N are multiples of 4, so a group is all valid or all past the edge);
    // those results are dropped by the store's bounds check.
    let a4 = (p.a_off + bz * p.a_bs) >> 2u;
    let b4 = (p.b_off + bz * p.b_bs) >> 2u;
    let acs = p.a_cs >> 2u;
    let brs = p.b_rs >> 2u;
    let am0 = a4 + (min(m0 + 0u, p.m - 4u) >> 2u);
    let am1 = a4 + (min(m0 + 4u, p.m - 4u) >> 2u);
    let am2 = a4 + (min(m0 + 8u, p.m - 4u) >> 2u);
    let am3 = a4 + (min(m0 + 12u, p.m - 4u) >> 2u);
    let am4 = a4 + (min(m0 + 16u, p.m - 4u) >> 2u);
    let am5 = a4 + (min(m0 + 20u, p.m - 4u) >> 2u);
    let bn0 = b4 + (min(n0 + 0u, p.n - 4u) >> 2u);
    let bn1 = b4 + (min(n0 + 4u, p.n - 4u) >> 2u);
    let bn2 = b4 + (min(n0 + 8u, p.n - 4u) >> 2u);
    let bn3 = b4 + (min(n0 + 12u, p.n - 4u) >> 2u);
    // c{i}_{h} holds C[m0 + i][n0 + 4h .. n0 + 4h + 4].
    var c0_0 = vec4<f32>(0.0); var c0_1 = vec4<f32>(0.0); var c0_2 = vec4<f32>(0.0); var c0_3 = vec4<f32>(0.0);
    var c1_0 = vec4<f32>(0.0); var c1_1 = vec4<f32>(0.0); var c1_2 = vec4<f32>(0.0); var c1_3 = vec4<f32>(0.0);
    var c2_0 = vec4<f32>(0.0); var c2_1 = vec4<f32>(0.0); var c2_2 = vec4<f32>(0.0); var c2_3 = vec4<f32>(0.0);
    var c3_0 = vec4<f32>(0.0); var c3_1 = vec4<f32>(0.0); var c3_2 = vec4<f32>(0.0); var c3_3 = vec4<f32>(0.0);
    var c4_0 = vec4<f32>(0.0); var c4_1 = vec4<f32>(0.0); var c4_2 = vec4<f32>(0.0); var c4_3 = vec4<f32>(0.0);
    var c5_0 = vec4<f32>(0.0); var c5_1 = vec4<f32>(0.0); var c5_2 = vec4<f32>(0.0); var c5_3 = vec4<f32>(0.0);
    var c6_0 = vec4<f32>(0.0); var c6_1 = vec4<f32>(0.0); var c6_2 = vec4<f32>(0.0); var c6_3 = vec4<f32>(0.0);
    var c7_0 = vec4<f32>(0.0); var c7_1 = vec4<f32>(0.0); var c7_2 = vec4<f32>(0.0); var c7_3 = vec4<f32>(0.0);
    var c8_0 = vec4<f32>(0.0); var c8_1 = vec4<f32>(0.0); var c8_2 = vec4<f32>(0.0); var c8_3 = vec4<f32>(0.0);
    var c9_0 = vec4<f32>(0.0); var c9_1 = vec4<f32>(0.0); var c9_2 = vec4<f32>(0.0); var c9_3 = vec4<f32>(0.0);
    var c10_0 = vec4<f32>(0.0); var c10_1 = vec4<f32>(0.0); var c10_2 = vec4<f32>(0.0); var c10_3 = vec4<f32>(0.0);
    var c11_0 = vec4<f32>(0.0); var c11_1 = vec4<f32>(0.0); var c11_2 = vec4<f32>(0.0); var c11_3 = vec4<f32>(0.0);
    var c12_0 = vec4<f32>(0.0); var c12_1 = vec4<f32>(0.0); var c12_2 = vec4<f32>(0.0); var c12_3 = vec4<f32>(0.0);
    var c13_0 = vec4<f32>(0.0); var c13_1 = vec4<f32>(0.0); var c13_2 = vec4<f32>(0.0); var c13_3 = vec4<f32>(0.0);
    var c14_0 = vec4<f32>(0.0); var c14_1 = vec4<f32>(0.0); var c14_2 = vec4<f32>(0.0); var c14_3 = vec4<f32>(0.0);
    var c15_0 = vec4<f32>(0.0); var c15_1 = vec4<f32>(0.0); var c15_2 = vec4<f32>(0.0); var c15_3 = vec4<f32>(0.0);
    var c16_0 = vec4<f32>(0.0); var c16_1 = vec4<f32>(0.0); var c16_2 = vec4<f32>(0.0); var c16_3 = vec4<f32>(0.0);
    var c17_0 = vec4<f32>(0.0); var c17_1 = vec4<f32>(0.0); var c17_2 = vec4<f32>(0.0); var c17_3 = vec4<f32>(0.0);
    var c18_0 = vec4<f32>(0.0); var c18_1 = vec4<f32>(0.0); var c18_2 = vec4<f32>(0.0); var c18_3 = vec4<f32>(0.0);
    var c19_0 = vec4<f32>(0.0); var c19_1 = vec4<f32>(0.0); var c19_2 = vec4<f32>(0.0); var c19_3 = vec4<f32>(0.0);
    var c20_0 = vec4<f32>(0.0); var c20_1 = vec4<f32>(0.0); var c20_2 = vec4<f32>(0.0); var c20_3 = vec4<f32>(0.0);
    var c21_0 = vec4<f32>(0.0); var c21_1 = vec4<f32>(0.0); var c21_2 = vec4<f32>(0.0); var c21_3 = vec4<f32>(0.0);
    var c22_0 = vec4<f32>(0.0); var c22_1 = vec4<f32>(0.0); var c22_2 = vec4<f32>(0.0); var c22_3 = vec4<f32>(0.0);
    var c23_0 = vec4<f32>(0.0); var c23_1 = vec4<f32>(0.0); var c23_2 = vec4<f32>(0.0); var c23_3 = vec4<f32>(0.0);
    for (var k = sl.k_lo; k < sl.k_hi; k++) {
        // a{q} = A[m0 + 4q .. m0 + 4q + 4][k]; b{h} = B[k][n0 + 4h .. n0 + 4h + 4]
        let ak = k * acs;
        let bk = k * brs;
        let a0 = a[ak + am0]; let a1 = a[ak + am1]; let a2 = a[ak + am2]; let a3 = a[ak + am3]; let a4 = a[ak + am4]; let a5 = a[ak + am5];
        let b0 = b[bk + bn0]; let b1 = b[bk + bn1]; let b2 = b[bk + bn2]; let b3 = b[bk + bn3];
        c0_0 = fma(vec4<f32>(a0.x), b0, c0_0);
        c0_1 = fma(vec4<f32>(a0.x), b1, c0_1);
        c0_2 = fma(vec4<f32>(a0.x), b2, c0_2);
        c0_3 = fma(vec4<f32>(a0.x), b3, c0_3);
        c1_0 = fma(vec4<f32>(a0.y), b0, c1_0);
        c1_1 = fma(vec4<f32>(a0.y), b1, c1_1);
        c1_2 = fma(vec4<f32>(a0.y), b2, c1_2);
        c1_3 = fma(vec4<f32>(a0.y), b3, c1_3);
        c2_0 = fma(vec4<f32>(a0.z), b0, c2_0);
        c2_1 = fma(vec4<f32>(a0.z), b1, c2_1);
        c2_2 = fma(vec4<f32>(a0.z), b2, c2_2);
        c2_3 = fma(vec4<f32>(a0.z), b3, c2_3);
        c3_0 = fma(vec4<f32>(a0.w), b0, c3_0);
        c3_1 = fma(vec4<f32>(a0.w), b1, c3_1);
        c3_2 = fma(vec4<f32>(a0.w), b2, c3_2);
        c3_3 = fma(vec4<f32>(a0.w), b3, c3_3);
        c4_0 = fma(vec4<f32>(a1.x), b0, c4_0);
        c4_1 = fma(vec4<f32>(a1.x), b1, c4_1);
        c4_2 = fma(vec4<f32>(a1.x), b2, c4_2);
        c4_3 = fma(vec4<f32>(a1.x), b3, c4_3);
        c5_0 = fma(vec4<f32>(a1.y), b0, c5_0);
        c5_1 = fma(vec4<f32>(a1.y), b1, c5_1);
        c5_2 = fma(vec4<f32>(a1.y), b2, c5_2);
        c5_3 = fma(vec4<f32>(a1.y), b3, c5_3);
        c6_0 = fma(vec4<f32>(a1.z), b0, c6_0);
        c6_1 = fma(vec4<f32>(a1.z), b1, c6_1);
        c6_2 = fma(vec4<f32>(a1.z), b2, c6_2);
        c6_3 = fma(vec4<f32>(a1.z), b3, c6_3);
        c7_0 = fma(vec4<f32>(a1.w), b0, c7_0);
        c7_1 = fma(vec4<f32>(a1.w), b1, c7_1);
        c7_2 = fma(vec4<f32>(a1.w), b2, c7_2);
        c7_3 = fma(vec4<f32>(a1.w), b3, c7_3);
        c8_0 = fma(vec4<f32>(a2.x), b0, c8_0);
        c8_1 = fma(vec4<f32>(a2.x), b1, c8_1);
        c8_2 = fma(vec4<f32>(a2.x), b2, c8_2);
        c8_3 = fma(vec4<f32>(a2.x), b3, c8_3);
        c9_0 = fma(vec4<f32>(a2.y), b0, c9_0);
        c9_1 = fma(vec4<f32>(a2.y), b1, c9_1);
        c9_2 = fma(vec4<f32>(a2.y), b2, c9_2);
        c9_3 = fma(vec4<f32>(a2.y), b3, c9_3);
        c10_0 = fma(vec4<f32>(a2.z), b0, c10_0);
        c10_1 = fma(vec4<f32>(a2.z), b1, c10_1);
        c10_2 = fma(vec4<f32>(a2.z), b2, c10_2);
        c10_3 = fma(vec4<f32>(a2.z), b3, c10_3);
        c11_0 = fma(vec4<f32>(a2.w), b0, c11_0);
        c11_1 = fma(vec4<f32>(a2.w), b1, c11_1);
        c11_2 = fma(vec4<f32>(a2.w), b2, c11_2);
        c11_3 = fma(vec4<f32>(a2.w), b3, c11_3);
        c12_0 = fma(vec4<f32>(a3.x), b0, c12_0);
        c12_1 = fma(vec4<f32>(a3.x), b1, c12_1);
        c12_2 = fma(vec4<f32>(a3.x), b2, c12_2);
        c12_3 = fma(vec4<f32>(a3.x), b3, c12_3);
        c13_0 = fma(vec4<f32>(a3.y), b0, c13_0);
        c13_1 = fma(vec4<f32>(a3.y), b1, c13_1);
        c13_2 = fma(vec4<f32>(a3.y), b2, c13_2);
        c13_3 = fma(vec4<f32>(a3.y), b3, c13_3);
        c14_0 = fma(vec4<f32>(a3.z), b0, c14_0);
        c14_1 = fma(vec4<f32>(a3.z), b1, c14_1);
        c14_2 = fma(vec4<f32>(a3.z), b2, c14_2);
        c14_3 = fma(vec4<f32>(a3.z), b3, c14_3);
        c15_0 = fma(vec4<f32>(a3.w), b0, c15_0);
        c15_1 = fma(vec4<f32>(a3.w), b1, c15_1);
        c15_2 = fma(vec4<f32>(a3.w), b2, c15_2);
        c15_3 = fma(vec4<f32>(a3.w), b3, c15_3);
        c16_0 = fma(vec4<f32>(a4.x), b0, c16_0);
        c16_1 = fma(vec4<f32>(a4.x), b1, c16_1);
        c16_2 = fma(vec4<f32>(a4.x), b2, c16_2);
        c16_3 = fma(vec4<f32>(a4.x), b3, c16_3);
        c17_0 = fma(vec4<f32>(a4.y), b0, c17_0);
        c17_1 = fma(vec4<f32>(a4.y), b1, c17_1);
        c17_2 = fma(vec4<f32>(a4.y), b2, c17_2);
        c17_3 = fma(vec4<f32>(a4.y), b3, c17_3);
        c18_0 = fma(vec4<f32>(a4.z), b0, c18_0);
        c18_1 = fma(vec4<f32>(a4.z), b1, c18_1);
        c18_2 = fma(vec4<f32>(a4.z), b2, c18_2);
        c18_3 = fma(vec4<f32>(a4.z), b3, c18_3);
        c19_0 = fma(vec4<f32>(a4.w), b0, c19_0);
        c19_1 = fma(vec4<f32>(a4.w), b1, c19_1);
        c19_2 = fma(vec4<f32>(a4.w), b2, c19_2);
        c19_3 = fma(vec4<f32>(a4.w), b3, c19_3);
        c20_0 = fma(vec4<f32>(a5.x), b0, c20_0);
        c20_1 = fma(vec4<f32>(a5.x), b1, c20_1);
        c20_2 = fma(vec4<f32>(a5.x), b2, c20_2);
        c20_3 = fma(vec4<f32>(a5.x), b3, c20_3);
        c21_0 = fma(vec4<f32>(a5.y), b0, c21_0);
        c21_1 = fma(vec4<f32>(a5.y), b1, c21_1);
        c21_2 = fma(vec4<f32>(a5.y), b2, c21_2);
        c21_3 = fma(vec4<f32>(a5.y), b3, c21_3);
        c22_0 = fma(vec4<f32>(a5.z), b0, c22_0);
        c22_1 = fma(vec4<f32>(a5.z), b1, c22_1);
        c22_2 = fma(vec4<f32>(a5.z), b2, c22_2);
        c22_3 = fma(vec4<f32>(a5.z), b3, c22_3);
        c23_0 = fma(vec4<f32>(a5.w), b0, c23_0);
        c23_1 = fma(vec4<f32>(a5.w), b1, c23_1);
        c23_2 = fma(vec4<f32>(a5.w), b2, c23_2);
        c23_3 = fma(vec4<f32>(a5.w), b3, c23_3);
    }
    // Epilogue: the accumulators go to a private array once so that the row loop below is
    // not unrolled (inlined copies of the GELU path would bloat the kernel).
    var acc: array<vec4<f32>, 96>;
    acc[0u] = c0_0;
    acc[1u] = c0_1;
    acc[2u] = c0_2;
    acc[3u] = c0_3;
    acc[4u] = c1_0;
    acc[5u] = c1_1;
    acc[6u] = c1_2;
    acc[7u] = c1_3;
    acc[8u] = c2_0;
    acc[9u] = c2_1;
    acc[10u] = c2_2;
    acc[11u] = c2_3;
    acc[12u] = c3_0;
    acc[13u] = c3_1;
    acc[14u] = c3_2;
    acc[15u] = c3_3;
    acc[16u] = c4_0;
    acc[17u] = c4_1;
    acc[18u] = c4_2;
    acc[19u] = c4_3;
    acc[20u] = c5_0;
    acc[21u] = c5_1;
    acc[22u] = c5_2;
    acc[23u] = c5_3;
    acc[24u] = c6_0;
    acc[25u] = c6_1;
    acc[26u] = c6_2;
    acc[27u] = c6_3;
    acc[28u] = c7_0;
    acc[29u] = c7_1;
    acc[30u] = c7_2;
    acc[31u] = c7_3;
    acc[32u] = c8_0;
    acc[33u] = c8_1;
    acc[34u] = c8_2;
    acc[35u] = c8_3;
    acc[36u] = c9_0;
    acc[37u] = c9_1;
    acc[38u] = c9_2;
    acc[39u] = c9_3;
    acc[40u] = c10_0;
    acc[41u] = c10_1;
    acc[42u] = c10_2;
    acc[43u] = c10_3;
    acc[44u] = c11_0;
    acc[45u] = c11_1;
    acc[46u] = c11_2;
    acc[47u] = c11_3;
    acc[48u] = c12_0;
    acc[49u] = c12_1;
    acc[50u] = c12_2;
    acc[51u] = c12_3;
    acc[52u] = c13_0;
    acc[53u] = c13_1;
    acc[54u] = c13_2;
    acc[55u] = c13_3;
    acc[56u] = c14_0;
    acc[57u] = c14_1;
    acc[58u] = c14_2;
    acc[59u] = c14_3;
    acc[60u] = c15_0;
    acc[61u] = c15_1;
    acc[62u] = c15_2;
    acc[63u] = c15_3;
    acc[64u] = c16_0;
    acc[65u] = c16_1;
    acc[66u] = c16_2;
    acc[67u] = c16_3;
    acc[68u] = c17_0;
    acc[69u] = c17_1;
    acc[70u] = c17_2;
    acc[71u] = c17_3;
    acc[72u] = c18_0;
    acc[73u] = c18_1;
    acc[74u] = c18_2;
    acc[75u] = c18_3;
    acc[76u] = c19_0;
    acc[77u] = c19_1;
    acc[78u] = c19_2;
    acc[79u] = c19_3;
    acc[80u] = c20_0;
    acc[81u] = c20_1;
    acc[82u] = c20_2;
    acc[83u] = c20_3;
    acc[84u] = c21_0;
    acc[85u] = c21_1;
    acc[86u] = c21_2;
    acc[87u] = c21_3;
    acc[88u] = c22_0;
    acc[89u] = c22_1;
    acc[90u] = c22_2;
    acc[91u] = c22_3;
    acc[92u] = c23_0;
    acc[93u] = c23_1;
    acc[94u] = c23_2;
    acc[95u] = c23_3;
    let nv = min(p.n - n0, 16u);
    for (var i = 0u; i < min(p.m - m0, 24u); i++) {
        store4(cz, m0 + i, n0 + 0u, nv - min(nv, 0u), acc[i * 4u + 0u]);
        store4(cz, m0 + i, n0 + 4u, nv - min(nv, 4u), acc[i * 4u + 1u]);
        store4(cz, m0 + i, n0 + 8u, nv - min(nv, 8u), acc[i * 4u + 2u]);
        store4(cz, m0 + i, n0 + 12u, nv - min(nv, 12u), acc[i * 4u + 3u]);
    }
}

// regblock_vec_tb: 24×16 outputs per thread, workgroup 8×8 = 192×128 outputs.
// Row-major A and B stored [N, K] (trans_b), K a multiple of 4, any M and N.
@compute @workgroup_size(8, 8, 1)
fn regblock_vec_tb(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let n0 = (wg.x * 8u + lid.x) * 16u;
    let m0 = (wg.y * 8u + lid.y) * 24u;
    // z = batch · ksplit + slice (split-K launches; ksplit = 1 otherwise): C's slot and A's
    // and B's batch and reduction range.
    let cz = wg.z;
    let sl = slice_of(wg.z);
    let bz = sl.bz;
    // No barriers in this kernel, so threads past the edge may leave early.
    if (m0 >= p.m || n0 >= p.n) {
        return;
    }
    // Everything in vec4 units. Rows and columns past the edge are clamped to the last valid
    // one; those results are dropped by the store's bounds check.
    let a4 = (p.a_off + bz * p.a_bs) >> 2u;
    let b4 = (p.b_off + bz * p.b_bs) >> 2u;
    let ars = p.a_rs >> 2u;
    let bcs = p.b_cs >> 2u;
    let ar0 = a4 + min(m0 + 0u, p.m - 1u) * ars;
    let ar1 = a4 + min(m0 + 1u, p.m - 1u) * ars;
    let ar2 = a4 + min(m0 + 2u, p.m - 1u) * ars;
    let ar3 = a4 + min(m0 + 3u, p.m - 1u) * ars;
    let ar4 = a4 + min(m0 + 4u, p.m - 1u) * ars;
    let ar5 = a4 + min(m0 + 5u, p.m - 1u) * ars;
    let ar6 = a4 + min(m0 + 6u, p.m - 1u) * ars;
    let ar7 = a4 + min(m0 + 7u, p.m - 1u) * ars;
    let ar8 = a4 + min(m0 + 8u, p.m - 1u) * ars;
    let ar9 = a4 + min(m0 + 9u, p.m - 1u) * ars;
    let ar10 = a4 + min(m0 + 10u, p.m - 1u) * ars;
    let ar11 = a4 + min(m0 + 11u, p.m - 1u) * ars;
    let ar12 = a4 + min(m0 + 12u, p.m - 1u) * ars;
    let ar13 = a4 + min(m0 + 13u, p.m - 1u) * ars;
    let ar14 = a4 + min(m0 + 14u, p.m - 1u) * ars;
    let ar15 = a4 + min(m0 + 15u, p.m - 1u) * ars;
    let ar16 = a4 + min(m0 + 16u, p.m - 1u) * ars;
    let ar17 = a4 + min(m0 + 17u, p.m - 1u) * ars;
    let ar18 = a4 + min(m0 + 18u, p.m - 1u) * ars;
    let ar19 = a4 + min(m0 + 19u, p.m - 1u) * ars;
    let ar20 = a4 + min(m0 + 20u, p.m - 1u) * ars;
    let ar21 = a4 + min(m0 + 21u, p.m - 1u) * ars;
    let ar22 = a4 + min(m0 + 22u, p.m - 1u) * ars;
    let ar23 = a4 + min(m0 + 23u, p.m - 1u) * ars;
    let bc0 = b4 + min(n0 + 0u, p.n - 1u) * bcs;
    let bc1 = b4 + min(n0 + 1u, p.n - 1u) * bcs;
    let bc2 = b4 + min(n0 + 2u, p.n - 1u) * bcs;
    let bc3 = b4 + min(n0 + 3u, p.n - 1u) * bcs;
    let bc4 = b4 + min(n0 + 4u, p.n - 1u) * bcs;
    let bc5 = b4 + min(n0 + 5u, p.n - 1u) * bcs;
    let bc6 = b4 + min(n0 + 6u, p.n - 1u) * bcs;
    let bc7 = b4 + min(n0 + 7u, p.n - 1u) * bcs;
    let bc8 = b4 + min(n0 + 8u, p.n - 1u) * bcs;
    let bc9 = b4 + min(n0 + 9u, p.n - 1u) * bcs;
    let bc10 = b4 + min(n0 + 10u, p.n - 1u) * bcs;
    let bc11 = b4 + min(n0 + 11u, p.n - 1u) * bcs;
    let bc12 = b4 + min(n0 + 12u, p.n - 1u) * bcs;
    let bc13 = b4 + min(n0 + 13u, p.n - 1u) * bcs;
    let bc14 = b4 + min(n0 + 14u, p.n - 1u) * bcs;
    let bc15 = b4 + min(n0 + 15u, p.n - 1u) * bcs;
    // c{i}_{h} holds C[m0 + i][n0 + 4h .. n0 + 4h + 4].
    var c0_0 = vec4<f32>(0.0); var c0_1 = vec4<f32>(0.0); var c0_2 = vec4<f32>(0.0); var c0_3 = vec4<f32>(0.0);
    var c1_0 = vec4<f32>(0.0); var c1_1 = vec4<f32>(0.0); var c1_2 = vec4<f32>(0.0); var c1_3 = vec4<f32>(0.0);
    var c2_0 = vec4<f32>(0.0); var c2_1 = vec4<f32>(0.0); var c2_2 = vec4<f32>(0.0); var c2_3 = vec4<f32>(0.0);
    var c3_0 = vec4<f32>(0.0); var c3_1 = vec4<f32>(0.0); var c3_2 = vec4<f32>(0.0); var c3_3 = vec4<f32>(0.0);
    var c4_0 = vec4<f32>(0.0); var c4_1 = vec4<f32>(0.0); var c4_2 = vec4<f32>(0.0); var c4_3 = vec4<f32>(0.0);
    var c5_0 = vec4<f32>(0.0); var c5_1 = vec4<f32>(0.0); var c5_2 = vec4<f32>(0.0); var c5_3 = vec4<f32>(0.0);
    var c6_0 = vec4<f32>(0.0); var c6_1 = vec4<f32>(0.0); var c6_2 = vec4<f32>(0.0); var c6_3 = vec4<f32>(0.0);
    var c7_0 = vec4<f32>(0.0); var c7_1 = vec4<f32>(0.0); var c7_2 = vec4<f32>(0.0); var c7_3 = vec4<f32>(0.0);
    var c8_0 = vec4<f32>(0.0); var c8_1 = vec4<f32>(0.0); var c8_2 = vec4<f32>(0.0); var c8_3 = vec4<f32>(0.0);
    var c9_0 = vec4<f32>(0.0); var c9_1 = vec4<f32>(0.0); var c9_2 = vec4<f32>(0.0); var c9_3 = vec4<f32>(0.0);
    var c10_0 = vec4<f32>(0.0); var c10_1 = vec4<f32>(0.0); var c10_2 = vec4<f32>(0.0); var c10_3 = vec4<f32>(0.0);
    var c11_0 = vec4<f32>(0.0); var c11_1 = vec4<f32>(0.0); var c11_2 = vec4<f32>(0.0); var c11_3 = vec4<f32>(0.0);
    var c12_0 = vec4<f32>(0.0); var c12_1 = vec4<f32>(0.0); var c12_2 = vec4<f32>(0.0); var c12_3 = vec4<f32>(0.0);
    var c13_0 = vec4<f32>(0.0); var c13_1 = vec4<f32>(0.0); var c13_2 = vec4<f32>(0.0); var c13_3 = vec4<f32>(0.0);
    var c14_0 = vec4<f32>(0.0); var c14_1 = vec4<f32>(0.0); var c14_2 = vec4<f32>(0.0); var c14_3 = vec4<f32>(0.0);
    var c15_0 = vec4<f32>(0.0); var c15_1 = vec4<f32>(0.0); var c15_2 = vec4<f32>(0.0); var c15_3 = vec4<f32>(0.0);
    var c16_0 = vec4<f32>(0.0); var c16_1 = vec4<f32>(0.0); var c16_2 = vec4<f32>(0.0); var c16_3 = vec4<f32>(0.0);
    var c17_0 = vec4<f32>(0.0); var c17_1 = vec4<f32>(0.0); var c17_2 = vec4<f32>(0.0); var c17_3 = vec4<f32>(0.0);
    var c18_0 = vec4<f32>(0.0); var c18_1 = vec4<f32>(0.0); var c18_2 = vec4<f32>(0.0); var c18_3 = vec4<f32>(0.0);
    var c19_0 = vec4<f32>(0.0); var c19_1 = vec4<f32>(0.0); var c19_2 = vec4<f32>(0.0); var c19_3 = vec4<f32>(0.0);
    var c20_0 = vec4<f32>(0.0); var c20_1 = vec4<f32>(0.0); var c20_2 = vec4<f32>(0.0); var c20_3 = vec4<f32>(0.0);
    var c21_0 = vec4<f32>(0.0); var c21_1 = vec4<f32>(0.0); var c21_2 = vec4<f32>(0.0); var c21_3 = vec4<f32>(0.0);
    var c22_0 = vec4<f32>(0.0); var c22_1 = vec4<f32>(0.0); var c22_2 = vec4<f32>(0.0); var c22_3 = vec4<f32>(0.0);
    var c23_0 = vec4<f32>(0.0); var c23_1 = vec4<f32>(0.0); var c23_2 = vec4<f32>(0.0); var c23_3 = vec4<f32>(0.0);
    for (var kq = sl.k_lo >> 2u; kq < (sl.k_hi >> 2u); kq++) {
        // a{i} = A[m0 + i][4kq .. 4kq + 4]; u{j} = B[n0 + j][4kq .. 4kq + 4], transposed into
        // b{kk}_{h} = B[n0 + 4h .. n0 + 4h + 4][4kq + kk]
        let a0 = a[ar0 + kq];
        let a1 = a[ar1 + kq];
        let a2 = a[ar2 + kq];
        let a3 = a[ar3 + kq];
        let a4 = a[ar4 + kq];
        let a5 = a[ar5 + kq];
        let a6 = a[ar6 + kq];
        let a7 = a[ar7 + kq];
        let a8 = a[ar8 + kq];
        let a9 = a[ar9 + kq];
        let a10 = a[ar10 + kq];
        let a11 = a[ar11 + kq];
        let a12 = a[ar12 + kq];
        let a13 = a[ar13 + kq];
        let a14 = a[ar14 + kq];
        let a15 = a[ar15 + kq];
        let a16 = a[ar16 + kq];
        let a17 = a[ar17 + kq];
        let a18 = a[ar18 + kq];
        let a19 = a[ar19 + kq];
        let a20 = a[ar20 + kq];
        let a21 = a[ar21 + kq];
        let a22 = a[ar22 + kq];
        let a23 = a[ar23 + kq];
        let u0 = b[bc0 + kq];
        let u1 = b[bc1 + kq];
        let u2 = b[bc2 + kq];
        let u3 = b[bc3 + kq];
        let u4 = b[bc4 + kq];
        let u5 = b[bc5 + kq];
        let u6 = b[bc6 + kq];
        let u7 = b[bc7 + kq];
        let u8 = b[bc8 + kq];
        let u9 = b[bc9 + kq];
        let u10 = b[bc10 + kq];
        let u11 = b[bc11 + kq];
        let u12 = b[bc12 + kq];
        let u13 = b[bc13 + kq];
        let u14 = b[bc14 + kq];
        let u15 = b[bc15 + kq];
        let b0_0 = vec4<f32>(u0.x, u1.x, u2.x, u3.x);
        let b0_1 = vec4<f32>(u4.x, u5.x, u6.x, u7.x);
        let b0_2 = vec4<f32>(u8.x, u9.x, u10.x, u11.x);
        let b0_3 = vec4<f32>(u12.x, u13.x, u14.x, u15.x);
        let b1_0 = vec4<f32>(u0.y, u1.y, u2.y, u3.y);
        let b1_1 = vec4<f32>(u4.y, u5.y, u6.y, u7.y);
        let b1_2 = vec4<f32>(u8.y, u9.y, u10.y, u11.y);
        let b1_3 = vec4<f32>(u12.y, u13.y, u14.y, u15.y);
        let b2_0 = vec4<f32>(u0.z, u1.z, u2.z, u3.z);
        let b2_1 = vec4<f32>(u4.z, u5.z, u6.z, u7.z);
        let b2_2 = vec4<f32>(u8.z, u9.z, u10.z, u11.z);
        let b2_3 = vec4<f32>(u12.z, u13.z, u14.z, u15.z);
        let b3_0 = vec4<f32>(u0.w, u1.w, u2.w, u3.w);
        let b3_1 = vec4<f32>(u4.w, u5.w, u6.w, u7.w);
        let b3_2 = vec4<f32>(u8.w, u9.w, u10.w, u11.w);
        let b3_3 = vec4<f32>(u12.w, u13.w, u14.w, u15.w);
        c0_0 = fma(vec4<f32>(a0.w), b3_0, fma(vec4<f32>(a0.z), b2_0, fma(vec4<f32>(a0.y), b1_0, fma(vec4<f32>(a0.x), b0_0, c0_0))));
        c0_1 = fma(vec4<f32>(a0.w), b3_1, fma(vec4<f32>(a0.z), b2_1, fma(vec4<f32>(a0.y), b1_1, fma(vec4<f32>(a0.x), b0_1, c0_1))));
        c0_2 = fma(vec4<f32>(a0.w), b3_2, fma(vec4<f32>(a0.z), b2_2, fma(vec4<f32>(a0.y), b1_2, fma(vec4<f32>(a0.x), b0_2, c0_2))));
        c0_3 = fma(vec4<f32>(a0.w), b3_3, fma(vec4<f32>(a0.z), b2_3, fma(vec4<f32>(a0.y), b1_3, fma(vec4<f32>(a0.x), b0_3, c0_3))));
        c1_0 = fma(vec4<f32>(a1.w), b3_0, fma(vec4<f32>(a1.z), b2_0, fma(vec4<f32>(a1.y), b1_0, fma(vec4<f32>(a1.x), b0_0, c1_0))));
        c1_1 = fma(vec4<f32>(a1.w), b3_1, fma(vec4<f32>(a1.z), b2_1, fma(vec4<f32>(a1.y), b1_1, fma(vec4<f32>(a1.x), b0_1, c1_1))));
        c1_2 = fma(vec4<f32>(a1.w), b3_2, fma(vec4<f32>(a1.z), b2_2, fma(vec4<f32>(a1.y), b1_2, fma(vec4<f32>(a1.x), b0_2, c1_2))));
        c1_3 = fma(vec4<f32>(a1.w), b3_3, fma(vec4<f32>(a1.z), b2_3, fma(vec4<f32>(a1.y), b1_3, fma(vec4<f32>(a1.x), b0_3, c1_3))));
        c2_0 = fma(vec4<f32>(a2.w), b3_0, fma(vec4<f32>(a2.z), b2_0, fma(vec4<f32>(a2.y), b1_0, fma(vec4<f32>(a2.x), b0_0, c2_0))));
        c2_1 = fma(vec4<f32>(a2.w), b3_1, fma(vec4<f32>(a2.z), b2_1, fma(vec4<f32>(a2.y), b1_1, fma(vec4<f32>(a2.x), b0_1, c2_1))));
        c2_2 = fma(vec4<f32>(a2.w), b3_2, fma(vec4<f32>(a2.z), b2_2, fma(vec4<f32>(a2.y), b1_2, fma(vec4<f32>(a2.x), b0_2, c2_2))));
        c2_3 = fma(vec4<f32>(a2.w), b3_3, fma(vec4<f32>(a2.z), b2_3, fma(vec4<f32>(a2.y), b1_3, fma(vec4<f32>(a2.x), b0_3, c2_3))));
        c3_0 = fma(vec4<f32>(a3.w), b3_0, fma(vec4<f32>(a3.z), b2_0, fma(vec4<f32>(a3.y), b1_0, fma(vec4<f32>(a3.x), b0_0, c3_0))));
        c3_1 = fma(vec4<f32>(a3.w), b3_1, fma(vec4<f32>(a3.z), b2_1, fma(vec4<f32>(a3.y), b1_1, fma(vec4<f32>(a3.x), b0_1, c3_1))));
        c3_2 = fma(vec4<f32>(a3.w), b3_2, fma(vec4<f32>(a3.z), b2_2, fma(vec4<f32>(a3.y), b1_2, fma(vec4<f32>(a3.x), b0_2, c3_2))));
        c3_3 = fma(vec4<f32>(a3.w), b3_3, fma(vec4<f32>(a3.z), b2_3, fma(vec4<f32>(a3.y), b1_3, fma(vec4<f32>(a3.x), b0_3, c3_3))));
        c4_0 = fma(vec4<f32>(a4.w), b3_0, fma(vec4<f32>(a4.z), b2_0, fma(vec4<f32>(a4.y), b1_0, fma(vec4<f32>(a4.x), b0_0, c4_0))));
        c4_1 = fma(vec4<f32>(a4.w), b3_1, fma(vec4<f32>(a4.z), b2_1, fma(vec4<f32>(a4.y), b1_1, fma(vec4<f32>(a4.x), b0_1, c4_1))));
        c4_2 = fma(vec4<f32>(a4.w), b3_2, fma(vec4<f32>(a4.z), b2_2, fma(vec4<f32>(a4.y), b1_2, fma(vec4<f32>(a4.x), b0_2, c4_2))));
        c4_3 = fma(vec4<f32>(a4.w), b3_3, fma(vec4<f32>(a4.z), b2_3, fma(vec4<f32>(a4.y), b1_3, fma(vec4<f32>(a4.x), b0_3, c4_3))));
        c5_0 = fma(vec4<f32>(a5.w), b3_0, fma(vec4<f32>(a5.z), b2_0, fma(vec4<f32>(a5.y), b1_0, fma(vec4<f32>(a5.x), b0_0, c5_0))));
        c5_1 = fma(vec4<f32>(a5.w), b3_1, fma(vec4<f32>(a5.z), b2_1, fma(vec4<f32>(a5.y), b1_1, fma(vec4<f32>(a5.x), b0_1, c5_1))));
        c5_2 = fma(vec4<f32>(a5.w), b3_2, fma(vec4<f32>(a5.z), b2_2, fma(vec4<f32>(a5.y), b1_2, fma(vec4<f32>(a5.x), b0_2, c5_2))));
        c5_3 = fma(vec4<f32>(a5.w), b3_3, fma(vec4<f32>(a5.z), b2_3, fma(vec4<f32>(a5.y), b1_3, fma(vec4<f32>(a5.x), b0_3, c5_3))));
        c6_0 = fma(vec4<f32>(a6.w), b3_0, fma(vec4<f32>(a6.z), b2_0, fma(vec4<f32>(a6.y), b1_0, fma(vec4<f32>(a6.x), b0_0, c6_0))));
        c6_1 = fma(vec4<f32>(a6.w), b3_1, fma(vec4<f32>(a6.z), b2_1, fma(vec4<f32>(a6.y), b1_1, fma(vec4<f32>(a6.x), b0_1, c6_1))));
        c6_2 = fma(vec4<f32>(a6.w), b3_2, fma(vec4<f32>(a6.z), b2_2, fma(vec4<f32>(a6.y), b1_2, fma(vec4<f32>(a6.x), b0_2, c6_2))));
        c6_3 = fma(vec4<f32>(a6.w), b3_3, fma(vec4<f32>(a6.z), b2_3, fma(vec4<f32>(a6.y), b1_3, fma(vec4<f32>(a6.x), b0_3, c6_3))));
        c7_0 = fma(vec4<f32>(a7.w), b3_0, fma(vec4<f32>(a7.z), b2_0, fma(vec4<f32>(a7.y), b1_0, fma(vec4<f32>(a7.x), b0_0, c7_0))));
        c7_1 = fma(vec4<f32>(a7.w), b3_1, fma(vec4<f32>(a7.z), b2_1, fma(vec4<f32>(a7.y), b1_1, fma(vec4<f32>(a7.x), b0_1, c7_1))));
        c7_2 = fma(vec4<f32>(a7.w), b3_2, fma(vec4<f32>(a7.z), b2_2, fma(vec4<f32>(a7.y), b1_2, fma(vec4<f32>(a7.x), b0_2, c7_2))));
        c7_3 = fma(vec4<f32>(a7.w), b3_3, fma(vec4<f32>(a7.z), b2_3, fma(vec4<f32>(a7.y), b1_3, fma(vec4<f32>(a7.x), b0_3, c7_3))));
        c8_0 = fma(vec4<f32>(a8.w), b3_0, fma(vec4<f32>(a8.z), b2_0, fma(vec4<f32>(a8.y), b1_0, fma(vec4<f32>(a8.x), b0_0, c8_0))));
        c8_1 = fma(vec4<f32>(a8.w), b3_1, fma(vec4<f32>(a8.z), b2_1, fma(vec4<f32>(a8.y), b1_1, fma(vec4<f32>(a8.x), b0_1, c8_1))));
        c8_2 = fma(vec4<f32>(a8.w), b3_2, fma(vec4<f32>(a8.z), b2_2, fma(vec4<f32>(a8.y), b1_2, fma(vec4<f32>(a8.x), b0_2, c8_2))));
        c8_3 = fma(vec4<f32>(a8.w), b3_3, fma(vec4<f32>(a8.z), b2_3, fma(vec4<f32>(a8.y), b1_3, fma(vec4<f32>(a8.x), b0_3, c8_3))));
        c9_0 = fma(vec4<f32>(a9.w), b3_0, fma(vec4<f32>(a9.z), b2_0, fma(vec4<f32>(a9.y), b1_0, fma(vec4<f32>(a9.x), b0_0, c9_0))));
        c9_1 = fma(vec4<f32>(a9.w), b3_1, fma(vec4<f32>(a9.z), b2_1, fma(vec4<f32>(a9.y), b1_1, fma(vec4<f32>(a9.x), b0_1, c9_1))));
        c9_2 = fma(vec4<f32>(a9.w), b3_2, fma(vec4<f32>(a9.z), b2_2, fma(vec4<f32>(a9.y), b1_2, fma(vec4<f32>(a9.x), b0_2, c9_2))));
        c9_3 = fma(vec4<f32>(a9.w), b3_3, fma(vec4<f32>(a9.z), b2_3, fma(vec4<f32>(a9.y), b1_3, fma(vec4<f32>(a9.x), b0_3, c9_3))));
        c10_0 = fma(vec4<f32>(a10.w), b3_0, fma(vec4<f32>(a10.z), b2_0, fma(vec4<f32>(a10.y), b1_0, fma(vec4<f32>(a10.x), b0_0, c10_0))));
        c10_1 = fma(vec4<f32>(a10.w), b3_1, fma(vec4<f32>(a10.z), b2_1, fma(vec4<f32>(a10.y), b1_1, fma(vec4<f32>(a10.x), b0_1, c10_1))));
        c10_2 = fma(vec4<f32>(a10.w), b3_2, fma(vec4<f32>(a10.z), b2_2, fma(vec4<f32>(a10.y), b1_2, fma(vec4<f32>(a10.x), b0_2, c10_2))));
        c10_3 = fma(vec4<f32>(a10.w), b3_3, fma(vec4<f32>(a10.z), b2_3, fma(vec4<f32>(a10.y), b1_3, fma(vec4<f32>(a10.x), b0_3, c10_3))));
        c11_0 = fma(vec4<f32>(a11.w), b3_0, fma(vec4<f32>(a11.z), b2_0, fma(vec4<f32>(a11.y), b1_0, fma(vec4<f32>(a11.x), b0_0, c11_0))));
        c11_1 = fma(vec4<f32>(a11.w), b3_1, fma(vec4<f32>(a11.z), b2_1, fma(vec4<f32>(a11.y), b1_1, fma(vec4<f32>(a11.x), b0_1, c11_1))));
        c11_2 = fma(vec4<f32>(a11.w), b3_2, fma(vec4<f32>(a11.z), b2_2, fma(vec4<f32>(a11.y), b1_2, fma(vec4<f32>(a11.x), b0_2, c11_2))));
        c11_3 = fma(vec4<f32>(a11.w), b3_3, fma(vec4<f32>(a11.z), b2_3, fma(vec4<f32>(a11.y), b1_3, fma(vec4<f32>(a11.x), b0_3, c11_3))));
        c12_0 = fma(vec4<f32>(a12.w), b3_0, fma(vec4<f32>(a12.z), b2_0, fma(vec4<f32>(a12.y), b1_0, fma(vec4<f32>(a12.x), b0_0, c12_0))));
        c12_1 = fma(vec4<f32>(a12.w), b3_1, fma(vec4<f32>(a12.z), b2_1, fma(vec4<f32>(a12.y), b1_1, fma(vec4<f32>(a12.x), b0_1, c12_1))));
        c12_2 = fma(vec4<f32>(a12.w), b3_2, fma(vec4<f32>(a12.z), b2_2, fma(vec4<f32>(a12.y), b1_2, fma(vec4<f32>(a12.x), b0_2, c12_2))));
        c12_3 = fma(vec4<f32>(a12.w), b3_3, fma(vec4<f32>(a12.z), b2_3, fma(vec4<f32>(a12.y), b1_3, fma(vec4<f32>(a12.x), b0_3, c12_3))));
        c13_0 = fma(vec4<f32>(a13.w), b3_0, fma(vec4<f32>(a13.z), b2_0, fma(vec4<f32>(a13.y), b1_0, fma(vec4<f32>(a13.x), b0_0, c13_0))));
        c13_1 = fma(vec4<f32>(a13.w), b3_1, fma(vec4<f32>(a13.z), b2_1, fma(vec4<f32>(a13.y), b1_1, fma(vec4<f32>(a13.x), b0_1, c13_1))));
        c13_2 = fma(vec4<f32>(a13.w), b3_2, fma(vec4<f32>(a13.z), b2_2, fma(vec4<f32>(a13.y), b1_2, fma(vec4<f32>(a13.x), b0_2, c13_2))));
        c13_3 = fma(vec4<f32>(a13.w), b3_3, fma(vec4<f32>(a13.z), b2_3, fma(vec4<f32>(a13.y), b1_3, fma(vec4<f32>(a13.x), b0_3, c13_3))));
        c14_0 = fma(vec4<f32>(a14.w), b3_0, fma(vec4<f32>(a14.z), b2_0, fma(vec4<f32>(a14.y), b1_0, fma(vec4<f32>(a14.x), b0_0, c14_0))));
        c14_1 = fma(vec4<f32>(a14.w), b3_1, fma(vec4<f32>(a14.z), b2_1, fma(vec4<f32>(a14.y), b1_1, fma(vec4<f32>(a14.x), b0_1, c14_1))));
        c14_2 = fma(vec4<f32>(a14.w), b3_2, fma(vec4<f32>(a14.z), b2_2, fma(vec4<f32>(a14.y), b1_2, fma(vec4<f32>(a14.x), b0_2, c14_2))));
        c14_3 = fma(vec4<f32>(a14.w), b3_3, fma(vec4<f32>(a14.z), b2_3, fma(vec4<f32>(a14.y), b1_3, fma(vec4<f32>(a14.x), b0_3, c14_3))));
        c15_0 = fma(vec4<f32>(a15.w), b3_0, fma(vec4<f32>(a15.z), b2_0, fma(vec4<f32>(a15.y), b1_0, fma(vec4<f32>(a15.x), b0_0, c15_0))));
        c15_1 = fma(vec4<f32>(a15.w), b3_1, fma(vec4<f32>(a15.z), b2_1, fma(vec4<f32>(a15.y), b1_1, fma(vec4<f32>(a15.x), b0_1, c15_1))));
        c15_2 = fma(vec4<f32>(a15.w), b3_2, fma(vec4<f32>(a15.z), b2_2, fma(vec4<f32>(a15.y), b1_2, fma(vec4<f32>(a15.x), b0_2, c15_2))));
        c15_3 = fma(vec4<f32>(a15.w), b3_3, fma(vec4<f32>(a15.z), b2_3, fma(vec4<f32>(a15.y), b1_3, fma(vec4<f32>(a15.x), b0_3, c15_3))));
        c16_0 = fma(vec4<f32>(a16.w), b3_0, fma(vec4<f32>(a16.z), b2_0, fma(vec4<f32>(a16.y), b1_0, fma(vec4<f32>(a16.x), b0_0, c16_0))));
        c16_1 = fma(vec4<f32>(a16.w), b3_1, fma(vec4<f32>(a16.z), b2_1, fma(vec4<f32>(a16.y), b1_1, fma(vec4<f32>(a16.x), b0_1, c16_1))));
        c16_2 = fma(vec4<f32>(a16.w), b3_2, fma(vec4<f32>(a16.z), b2_2, fma(vec4<f32>(a16.y), b1_2, fma(vec4<f32>(a16.x), b0_2, c16_2))));
        c16_3 = fma(vec4<f32>(a16.w), b3_3, fma(vec4<f32>(a16.z), b2_3, fma(vec4<f32>(a16.y), b1_3, fma(vec4<f32>(a16.x), b0_3, c16_3))));
        c17_0 = fma(vec4<f32>(a17.w), b3_0, fma(vec4<f32>(a17.z), b2_0, fma(vec4<f32>(a17.y), b1_0, fma(vec4<f32>(a17.x), b0_0, c17_0))));
        c17_1 = fma(vec4<f32>(a17.w), b3_1, fma(vec4<f32>(a17.z), b2_1, fma(vec4<f32>(a17.y), b1_1, fma(vec4<f32>(a17.x), b0_1, c17_1))));
        c17_2 = fma(vec4<f32>(a17.w), b3_2, fma(vec4<f32>(a17.z), b2_2, fma(vec4<f32>(a17.y), b1_2, fma(vec4<f32>(a17.x), b0_2, c17_2))));
        c17_3 = fma(vec4<f32>(a17.w), b3_3, fma(vec4<f32>(a17.z), b2_3, fma(vec4<f32>(a17.y), b1_3, fma(vec4<f32>(a17.x), b0_3, c17_3))));
        c18_0 = fma(vec4<f32>(a18.w), b3_0, fma(vec4<f32>(a18.z), b2_0, fma(vec4<f32>(a18.y), b1_0, fma(vec4<f32>(a18.x), b0_0, c18_0))));
        c18_1 = fma(vec4<f32>(a18.w), b3_1, fma(vec4<f32>(a18.z), b2_1, fma(vec4<f32>(a18.y), b1_1, fma(vec4<f32>(a18.x), b0_1, c18_1))));
        c18_2 = fma(vec4<f32>(a18.w), b3_2, fma(vec4<f32>(a18.z), b2_2, fma(vec4<f32>(a18.y), b1_2, fma(vec4<f32>(a18.x), b0_2, c18_2))));
        c18_3 = fma(vec4<f32>(a18.w), b3_3, fma(vec4<f32>(a18.z), b2_3, fma(vec4<f32>(a18.y), b1_3, fma(vec4<f32>(a18.x), b0_3, c18_3))));
        c19_0 = fma(vec4<f32>(a19.w), b3_0, fma(vec4<f32>(a19.z), b2_0, fma(vec4<f32>(a19.y), b1_0, fma(vec4<f32>(a19.x), b0_0, c19_0))));
        c19_1 = fma(vec4<f32>(a19.w), b3_1, fma(vec4<f32>(a19.z), b2_1, fma(vec4<f32>(a19.y), b1_1, fma(vec4<f32>(a19.x), b0_1, c19_1))));
        c19_2 = fma(vec4<f32>(a19.w), b3_2, fma(vec4<f32>(a19.z), b2_2, fma(vec4<f32>(a19.y), b1_2, fma(vec4<f32>(a19.x), b0_2, c19_2))));
        c19_3 = fma(vec4<f32>(a19.w), b3_3, fma(vec4<f32>(a19.z), b2_3, fma(vec4<f32>(a19.y), b1_3, fma(vec4<f32>(a19.x), b0_3, c19_3))));
        c20_0 = fma(vec4<f32>(a20.w), b3_0, fma(vec4<f32>(a20.z), b2_0, fma(vec4<f32>(a20.y), b1_0, fma(vec4<f32>(a20.x), b0_0, c20_0))));
        c20_1 = fma(vec4<f32>(a20.w), b3_1, fma(vec4<f32>(a20.z), b2_1, fma(vec4<f32>(a20.y), b1_1, fma(vec4<f32>(a20.x), b0_1, c20_1))));
        c20_2 = fma(vec4<f32>(a20.w), b3_2, fma(vec4<f32>(a20.z), b2_2, fma(vec4<f32>(a20.y), b1_2, fma(vec4<f32>(a20.x), b0_2, c20_2))));
        c20_3 = fma(vec4<f32>(a20.w), b3_3, fma(vec4<f32>(a20.z), b2_3, fma(vec4<f32>(a20.y), b1_3, fma(vec4<f32>(a20.x), b0_3, c20_3))));
        c21_0 = fma(vec4<f32>(a21.w), b3_0, fma(vec4<f32>(a21.z), b2_0, fma(vec4<f32>(a21.y), b1_0, fma(vec4<f32>(a21.x), b0_0, c21_0))));
        c21_1 = fma(vec4<f32>(a21.w), b3_1, fma(vec4<f32>(a21.z), b2_1, fma(vec4<f32>(a21.y), b1_1, fma(vec4<f32>(a21.x), b0_1, c21_1))));
        c21_2 = fma(vec4<f32>(a21.w), b3_2, fma(vec4<f32>(a21.z), b2_2, fma(vec4<f32>(a21.y), b1_2, fma(vec4<f32>(a21.x), b0_2, c21_2))));
        c21_3 = fma(vec4<f32>(a21.w), b3_3, fma(vec4<f32>(a21.z), b2_3, fma(vec4<f32>(a21.y), b1_3, fma(vec4<f32>(a21.x), b0_3, c21_3))));
        c22_0 = fma(vec4<f32>(a22.w), b3_0, fma(vec4<f32>(a22.z), b2_0, fma(vec4<f32>(a22.y), b1_0, fma(vec4<f32>(a22.x), b0_0, c22_0))));
        c22_1 = fma(vec4<f32>(a22.w), b3_1, fma(vec4<f32>(a22.z), b2_1, fma(vec4<f32>(a22.y), b1_1, fma(vec4<f32>(a22.x), b0_1, c22_1))));
        c22_2 = fma(vec4<f32>(a22.w), b3_2, fma(vec4<f32>(a22.z), b2_2, fma(vec4<f32>(a22.y), b1_2, fma(vec4<f32>(a22.x), b0_2, c22_2))));
        c22_3 = fma(vec4<f32>(a22.w), b3_3, fma(vec4<f32>(a22.z), b2_3, fma(vec4<f32>(a22.y), b1_3, fma(vec4<f32>(a22.x), b0_3, c22_3))));
        c23_0 = fma(vec4<f32>(a23.w), b3_0, fma(vec4<f32>(a23.z), b2_0, fma(vec4<f32>(a23.y), b1_0, fma(vec4<f32>(a23.x), b0_0, c23_0))));
        c23_1 = fma(vec4<f32>(a23.w), b3_1, fma(vec4<f32>(a23.z), b2_1, fma(vec4<f32>(a23.y), b1_1, fma(vec4<f32>(a23.x), b0_1, c23_1))));
        c23_2 = fma(vec4<f32>(a23.w), b3_2, fma(vec4<f32>(a23.z), b2_2, fma(vec4<f32>(a23.y), b1_2, fma(vec4<f32>(a23.x), b0_2, c23_2))));
        c23_3 = fma(vec4<f32>(a23.w), b3_3, fma(vec4<f32>(a23.z), b2_3, fma(vec4<f32>(a23.y), b1_3, fma(vec4<f32>(a23.x), b0_3, c23_3))));
    }
    // Epilogue: the accumulators go to a private array once so that the row loop below is
    // not unrolled (inlined copies of the GELU path would bloat the kernel).
    var acc: array<vec4<f32>, 96>;
    acc[0u] = c0_0;
    acc[1u] = c0_1;
    acc[2u] = c0_2;
    acc[3u] = c0_3;
    acc[4u] = c1_0;
    acc[5u] = c1_1;
    acc[6u] = c1_2;
    acc[7u] = c1_3;
    acc[8u] = c2_0;
    acc[9u] = c2_1;
    acc[10u] = c2_2;
    acc[11u] = c2_3;
    acc[12u] = c3_0;
    acc[13u] = c3_1;
    acc[14u] = c3_2;
    acc[15u] = c3_3;
    acc[16u] = c4_0;
    acc[17u] = c4_1;
    acc[18u] = c4_2;
    acc[19u] = c4_3;
    acc[20u] = c5_0;
    acc[21u] = c5_1;
    acc[22u] = c5_2;
    acc[23u] = c5_3;
    acc[24u] = c6_0;
    acc[25u] = c6_1;
    acc[26u] = c6_2;
    acc[27u] = c6_3;
    acc[28u] = c7_0;
    acc[29u] = c7_1;
    acc[30u] = c7_2;
    acc[31u] = c7_3;
    acc[32u] = c8_0;
    acc[33u] = c8_1;
    acc[34u] = c8_2;
    acc[35u] = c8_3;
    acc[36u] = c9_0;
    acc[37u] = c9_1;
    acc[38u] = c9_2;
    acc[39u] = c9_3;
    acc[40u] = c10_0;
    acc[41u] = c10_1;
    acc[42u] = c10_2;
    acc[43u] = c10_3;
    acc[44u] = c11_0;
    acc[45u] = c11_1;
    acc[46u] = c11_2;
    acc[47u] = c11_3;
    acc[48u] = c12_0;
    acc[49u] = c12_1;
    acc[50u] = c12_2;
    acc[51u] = c12_3;
    acc[52u] = c13_0;
    acc[53u] = c13_1;
    acc[54u] = c13_2;
    acc[55u] = c13_3;
    acc[56u] = c14_0;
    acc[57u] = c14_1;
    acc[58u] = c14_2;
    acc[59u] = c14_3;
    acc[60u] = c15_0;
    acc[61u] = c15_1;
    acc[62u] = c15_2;
    acc[63u] = c15_3;
    acc[64u] = c16_0;
    acc[65u] = c16_1;
    acc[66u] = c16_2;
    acc[67u] = c16_3;
    acc[68u] = c17_0;
    acc[69u] = c17_1;
    acc[70u] = c17_2;
    acc[71u] = c17_3;
    acc[72u] = c18_0;
    acc[73u] = c18_1;
    acc[74u] = c18_2;
    acc[75u] = c18_3;
    acc[76u] = c19_0;
    acc[77u] = c19_1;
    acc[78u] = c19_2;
    acc[79u] = c19_3;
    acc[80u] = c20_0;
    acc[81u] = c20_1;
    acc[82u] = c20_2;
    acc[83u] = c20_3;
    acc[84u] = c21_0;
    acc[85u] = c21_1;
    acc[86u] = c21_2;
    acc[87u] = c21_3;
    acc[88u] = c22_0;
    acc[89u] = c22_1;
    acc[90u] = c22_2;
    acc[91u] = c22_3;
    acc[92u] = c23_0;
    acc[93u] = c23_1;
    acc[94u] = c23_2;
    acc[95u] = c23_3;
    let nv = min(p.n - n0, 16u);
    for (var i = 0u; i < min(p.m - m0, 24u); i++) {
        store4(cz, m0 + i, n0 + 0u, nv - min(nv, 0u), acc[i * 4u + 0u]);
        store4(cz, m0 + i, n0 + 4u, nv - min(nv, 4u), acc[i * 4u + 1u]);
        store4(cz, m0 + i, n0 + 8u, nv - min(nv, 8u), acc[i * 4u + 2u]);
        store4(cz, m0 + i, n0 + 12u, nv - min(nv, 12u), acc[i * 4u + 3u]);
    }
}
// END GENERATED regblock

// ---- tiled: workgroup tiles through workgroup memory (GPUs) --------------------------------

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;

// Stored [k][m] and [k][n] so the inner loop reads consecutive addresses across threads.
var<workgroup> tile_a: array<f32, 1024>; // BK × BM
var<workgroup> tile_b: array<f32, 1024>; // BK × BN

@compute @workgroup_size(16, 16, 1)
fn tiled(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let m_tile = wg.y * BM;
    let n_tile = wg.x * BN;
    let sl = slice_of(wg.z);
    let bz = sl.bz;
    let a_base = p.a_off + bz * p.a_bs;
    let b_base = p.b_off + bz * p.b_bs;
    // Each thread owns rows lid.y + 16i and columns lid.x + 16j of the tile.
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }
    // No early return: every thread must reach the barriers; loads past an edge read 0.
    for (var k0 = sl.k_lo; k0 < sl.k_hi; k0 += BK) {
        for (var r = 0u; r < 4u; r++) {
            let e = li + 256u * r;
            // A tile: consecutive threads take consecutive k of one row (contiguous when a_cs = 1).
            let am = e / BK;
            let ak = e % BK;
            let gm = m_tile + am;
            let gk = k0 + ak;
            var va = 0.0;
            if (gm < p.m && gk < sl.k_hi) {
                va = ld_a(a_base + gm * p.a_rs + gk * p.a_cs);
            }
            tile_a[ak * BM + am] = va;
            // B tile: consecutive threads take consecutive n of one k (contiguous when b_cs = 1).
            let bk = e / BN;
            let bn = e % BN;
            let gn = n_tile + bn;
            let gk2 = k0 + bk;
            var vb = 0.0;
            if (gn < p.n && gk2 < sl.k_hi) {
                vb = ld_b(b_base + gk2 * p.b_rs + gn * p.b_cs);
            }
            tile_b[bk * BN + bn] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var ra: array<f32, 4>;
            var rb: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                ra[i] = tile_a[kk * BM + lid.y + 16u * i];
                rb[i] = tile_b[kk * BN + lid.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] = fma(ra[i], rb[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let m = m_tile + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let n = n_tile + lid.x + 16u * j;
            if (m < p.m && n < p.n) {
                epilogue(wg.z, m, n, acc[i * 4u + j]);
            }
        }
    }
}

// ---- gemm: the GPU kernel ------------------------------------------------------------------
//
// The workgroup tile is shaders/gemm_tile.wgsl's (appended to this source); this entry supplies
// the strided operand fetches and the shared epilogue. The layouts are override constants, so
// NN, NT (B stored [N, K]: every nn.Linear) and TN (A stored [K, M]: weight gradients) each get
// their own pipeline without a transposed copy:
// - A_KMAJOR: A is contiguous along k (NN, NT): a thread loads 4 consecutive k of one row.
//   Otherwise (TN) A is contiguous along m and 4 consecutive m are loaded.
// - B_KMAJOR: the same for B (NT); otherwise 4 consecutive n.
// - A_VEC / B_VEC: the four values are one aligned vec4 load; off (the launcher checks
//   alignment), four scalar loads through the strides, so any layout and any K work.
// Loads past M, N or the slice's k range read 0 (masked per component), so ragged edges need no
// separate path; the epilogue is the shared one (bias, beta·C, pre-activation, activation,
// residual).

override A_VEC: bool = true;
override B_VEC: bool = true;

// Four consecutive elements of A along its contiguous dim from (m, k); 0 past p.m and k_end.
fn gemm_fetch_a(base: u32, m: u32, k: u32, k_end: u32) -> vec4<f32> {
    if (m >= p.m || k >= k_end) {
        return vec4<f32>(0.0);
    }
    let i = base + m * p.a_rs + k * p.a_cs;
    let step = select(p.a_rs, p.a_cs, A_KMAJOR);
    let ok = select(lanes_below(m, p.m), lanes_below(k, k_end), A_KMAJOR);
    if (A_VEC) {
        return select(vec4<f32>(0.0), a[i >> 2u], ok);
    }
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        if (ok[j]) {
            v[j] = ld_a(i + j * step);
        }
    }
    return v;
}

// Four consecutive elements of B along its contiguous dim from (k, n); 0 past p.n and k_end.
fn gemm_fetch_b(base: u32, n: u32, k: u32, k_end: u32) -> vec4<f32> {
    if (n >= p.n || k >= k_end) {
        return vec4<f32>(0.0);
    }
    let i = base + k * p.b_rs + n * p.b_cs;
    let step = select(p.b_cs, p.b_rs, B_KMAJOR);
    let ok = select(lanes_below(n, p.n), lanes_below(k, k_end), B_KMAJOR);
    if (B_VEC) {
        return select(vec4<f32>(0.0), b[i >> 2u], ok);
    }
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        if (ok[j]) {
            v[j] = ld_b(i + j * step);
        }
    }
    return v;
}

@compute @workgroup_size(GT * GT / 64u, 1, 1)
fn gemm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let m0 = wg.y * GT;
    let n0 = wg.x * GT;
    let sl = slice_of(wg.z);
    let a_base = p.a_off + sl.bz * p.a_bs;
    let b_base = p.b_off + sl.bz * p.b_bs;
    let acc = gemm_tile(li, a_base, b_base, m0, n0, sl.k_lo, sl.k_hi);
    let t = gemm_thread(li);
    for (var r = 0u; r < 8u; r++) {
        let m = m0 + (r / 4u) * (GT / 2u) + t.x * 4u + r % 4u;
        if (m < p.m) {
            for (var j = 0u; j < 2u; j++) {
                let n = n0 + j * (GT / 2u) + t.y * 4u;
                store4(wg.z, m, n, select(0u, p.n - n, n < p.n), acc[r * 2u + j]);
            }
        }
    }
}

// ---- splitk_sum: the second pass of a split-K product ---------------------------------------

// Sums the ksplit partial products of each output and applies the epilogue (alpha, bias, beta·C,
// pre-activation, activation). Partials are bound as `a`: partial s of output (b, m, n) at
// a_off + b·a_bs + s·a_cs + m·a_rs + n; p.k is the batch count. One output per thread, a 1-D
// launch split over x and y.
@compute @workgroup_size(64, 1, 1)
fn splitk_sum(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = (wg.y * nwg.x + wg.x) * 64u + li;
    let mn = p.m * p.n;
    if (i >= p.k * mn) {
        return;
    }
    let bz = i / mn;
    let m = (i % mn) / p.n;
    let n = i % p.n;
    let base = p.a_off + bz * p.a_bs + m * p.a_rs + n;
    var acc = 0.0;
    for (var s = 0u; s < p.ksplit; s++) {
        acc += ld_a(base + s * p.a_cs);
    }
    // Never true (a split has ≥ 2 slices): it only makes `b` part of this entry's derived bind
    // group layout, so the shared five-binding dispatch fits.
    if (p.ksplit == 0u) {
        acc = b[0].x;
    }
    epilogue(bz, m, n, acc);
}
