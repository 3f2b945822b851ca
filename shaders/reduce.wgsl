// Reduction of x viewed as [outer, len, inner] along len: out[o, i] = scale · R_l x[o, l, i]
// with R = sum (OP 0), max (1) or min (2); mean is sum with scale = 1/len.
// `rows`: one thread per output, looping over len (CPU adapters: no workgroup memory).
// `rows_cols4`: `rows` for strided rows (inner a multiple of 4): 4 adjacent outputs a thread,
// one vec4 load a step for all four.
// `groups`: one 64-thread workgroup per output, strided partials then a tree in workgroup
// memory (GPUs: long rows spread over many threads).

override OP: u32 = 0u;

struct Params {
    n: u32,      // outputs in this chunk
    start: u32,  // global index of the chunk's first output
    len: u32,
    inner: u32,
    win_x: u32,
    win_o: u32,
    scale: f32,
    _p: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// x is viewed as vec4 (binding rounded up to 16 bytes, window offset a multiple of 8 elements):
// contiguous rows whose length is a multiple of 4 are read 4 at a time, which cuts the per-lane
// memory-access cost on CPU adapters; other shapes index single elements.
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
// rows_cols4: out as vec4 (binding rounded up to 16 bytes)
@group(0) @binding(2) var<storage, read_write> out4: array<vec4<f32>>;

fn xs(i: u32) -> f32 {
    return x[i / 4u][i % 4u];
}

fn identity() -> f32 {
    switch (OP) {
        case 1u: { return -bitcast<f32>(INF_BITS); }
        case 2u: { return bitcast<f32>(INF_BITS); }
        default: { return 0.0; }
    }
}

fn combine(acc: f32, v: f32) -> f32 {
    switch (OP) {
        case 1u: { return max(acc, v); }
        case 2u: { return min(acc, v); }
        default: { return acc + v; }
    }
}

fn combine4(acc: vec4<f32>, v: vec4<f32>) -> vec4<f32> {
    switch (OP) {
        case 1u: { return max(acc, v); }
        case 2u: { return min(acc, v); }
        default: { return acc + v; }
    }
}

// Offset in x of element (q, l) for output q = o·inner + i.
fn base_of(q: u32) -> u32 {
    let o = q / p.inner;
    let i = q - o * p.inner;
    return o * p.len * p.inner + i - p.win_x;
}

@compute @workgroup_size(256)
fn rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * 256u;
    if (t >= p.n) {
        return;
    }
    let q = p.start + t;
    let b = base_of(q);
    var acc = identity();
    if (p.inner == 1u && p.len % 4u == 0u) {
        // Contiguous row of whole vec4s (b is a multiple of 4).
        var a4 = vec4<f32>(identity());
        for (var l = 0u; l < p.len / 4u; l++) {
            a4 = combine4(a4, x[b / 4u + l]);
        }
        acc = combine(combine(a4.x, a4.y), combine(a4.z, a4.w));
    } else {
        for (var l = 0u; l < p.len; l++) {
            acc = combine(acc, xs(b + l * p.inner));
        }
    }
    out[q - p.win_o] = acc * select(p.scale, 1.0, OP != 0u);
}

@compute @workgroup_size(256)
fn rows_cols4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = 4u * (gid.x + gid.y * nwg.x * 256u);
    if (e >= p.n) {
        return;
    }
    let q = p.start + e;
    let b = base_of(q); // a multiple of 4: inner, start and the window are
    var a4 = vec4<f32>(identity());
    for (var l = 0u; l < p.len; l++) {
        a4 = combine4(a4, x[(b + l * p.inner) / 4u]);
    }
    out4[(q - p.win_o) / 4u] = a4 * select(p.scale, 1.0, OP != 0u);
}

var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn groups(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    // Uniform control flow: every thread of a workgroup reaches the barriers.
    let t = wid.x + wid.y * nwg.x;
    let live = t < p.n;
    let q = p.start + t;
    var acc = identity();
    if (live) {
        let b = base_of(q);
        for (var l = lid; l < p.len; l += 64u) {
            acc = combine(acc, xs(b + l * p.inner));
        }
    }
    part[lid] = acc;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s >>= 1u) {
        if (lid < s) {
            part[lid] = combine(part[lid], part[lid + s]);
        }
        workgroupBarrier();
    }
    if (live && lid == 0u) {
        out[q - p.win_o] = part[0] * select(p.scale, 1.0, OP != 0u);
    }
}

// Run-time values, not constants: WGSL makes a constant NaN or infinity an error (browsers
// reject it; naga does not).
var<private> INF_BITS: u32 = 0x7f800000u;
