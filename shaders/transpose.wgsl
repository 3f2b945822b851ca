// A batch of 2-D transposes in 4×4 blocks (the permutes NCHW ↔ NHWC, [B, C, L] ↔ [B, L, C]):
// out[b, p, q] = x[b, q, p] on 4-byte words, with P and Q and every stride a multiple of 4
// (src/ops/copy/transpose.rs). An invocation loads 4 texels of x (4 rows q, 4 columns p each)
// and stores them transposed as 4 texels of out: 8 vec4 accesses for 16 words, where the
// strided copy (shaders/copy.wgsl `main`) makes 32 scalar ones, each lane by lane on llvmpipe.

struct Params {
    batch: u32,
    p: u32,      // rows of out = columns of x
    q: u32,      // columns of out = rows of x
    xs_b: u32,   // strides in words: x's batch and row strides
    xs_q: u32,
    os_b: u32,   // out's batch and row strides
    os_p: u32,
    x_base: u32,
    o_base: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> tp: Params;
@group(0) @binding(1) var<storage, read> x4: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> out4: array<vec4<u32>>;

@compute @workgroup_size(256)
fn transpose4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * 256u;
    let p4 = tp.p / 4u;
    let q4 = tp.q / 4u;
    let per = p4 * q4;
    if (t >= tp.batch * per) {
        return;
    }
    let b = t / per;
    let rem = t % per;
    // Consecutive lanes take consecutive column blocks of one out row block: their stores are
    // adjacent texels.
    let pb = rem / q4;
    let qb = rem % q4;
    let xi = (tp.x_base + b * tp.xs_b + 4u * qb * tp.xs_q + 4u * pb) / 4u;
    let rs = tp.xs_q / 4u;
    let r0 = x4[xi];
    let r1 = x4[xi + rs];
    let r2 = x4[xi + 2u * rs];
    let r3 = x4[xi + 3u * rs];
    let oi = (tp.o_base + b * tp.os_b + 4u * pb * tp.os_p + 4u * qb) / 4u;
    let os = tp.os_p / 4u;
    out4[oi] = vec4<u32>(r0.x, r1.x, r2.x, r3.x);
    out4[oi + os] = vec4<u32>(r0.y, r1.y, r2.y, r3.y);
    out4[oi + 2u * os] = vec4<u32>(r0.z, r1.z, r2.z, r3.z);
    out4[oi + 3u * os] = vec4<u32>(r0.w, r1.w, r2.w, r3.w);
}
