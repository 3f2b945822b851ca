// Softmax (OP 0) or log-softmax (OP 1) of x viewed as [outer, len, inner] along len, stable:
//   m = max_l x,  s = Σ_l exp(x − m),  y = exp(x − m)/s  or  y = x − m − log s.
// `rows`: one thread per (o, i) column, three passes over it, no workgroup memory (CPU
// adapters). `groups`: one 64-thread workgroup per column, trees in workgroup memory (GPUs).

override OP: u32 = 0u;

struct Params {
    n: u32,      // columns in this chunk
    start: u32,  // global index of the chunk's first column
    len: u32,
    inner: u32,
    win_x: u32,
    win_y: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// vec4 views (bindings rounded up to 16 bytes, window offsets multiples of 8 elements): rows
// along a contiguous axis whose length is a multiple of 4 are read 4 at a time, which cuts the
// per-lane memory-access cost on CPU adapters; other shapes index single elements.
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;

fn xs(i: u32) -> f32 {
    return x[i / 4u][i % 4u];
}

fn put(i: u32, v: f32) {
    y[i / 4u][i % 4u] = v;
}

fn base_of(q: u32) -> u32 {
    let o = q / p.inner;
    let i = q - o * p.inner;
    return o * p.len * p.inner + i;
}

fn finish(v: f32, m: f32, s: f32) -> f32 {
    if (OP == 1u) {
        return v - m - log(s);
    }
    return exp(v - m) / s;
}

@compute @workgroup_size(256)
fn rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * 256u;
    if (t >= p.n) {
        return;
    }
    let b = base_of(p.start + t);
    let bx = b - p.win_x;
    let by = b - p.win_y;
    if (p.inner == 1u && p.len % 4u == 0u) {
        // Contiguous rows of whole vec4s (b, and so bx and by, are multiples of 4).
        let n4 = p.len / 4u;
        let x4 = bx / 4u;
        let y4 = by / 4u;
        var m4 = vec4<f32>(-bitcast<f32>(INF_BITS));
        for (var l = 0u; l < n4; l++) {
            m4 = max(m4, x[x4 + l]);
        }
        let m = max(max(m4.x, m4.y), max(m4.z, m4.w));
        var s4 = vec4<f32>(0.0);
        for (var l = 0u; l < n4; l++) {
            s4 += exp(x[x4 + l] - m);
        }
        let s = (s4.x + s4.y) + (s4.z + s4.w);
        for (var l = 0u; l < n4; l++) {
            let v = x[x4 + l];
            if (OP == 1u) {
                y[y4 + l] = v - (m + log(s));
            } else {
                y[y4 + l] = exp(v - m) / s;
            }
        }
        return;
    }
    var m = -bitcast<f32>(INF_BITS);
    for (var l = 0u; l < p.len; l++) {
        m = max(m, xs(bx + l * p.inner));
    }
    var s = 0.0;
    for (var l = 0u; l < p.len; l++) {
        s += exp(xs(bx + l * p.inner) - m);
    }
    for (var l = 0u; l < p.len; l++) {
        put(by + l * p.inner, finish(xs(bx + l * p.inner), m, s));
    }
}

var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn groups(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    // Uniform control flow: every thread reaches every barrier, dead columns included.
    let t = wid.x + wid.y * nwg.x;
    let live = t < p.n;
    let b = base_of(p.start + t);
    let bx = b - p.win_x;
    var m = -bitcast<f32>(INF_BITS);
    if (live) {
        for (var l = lid; l < p.len; l += 64u) {
            m = max(m, xs(bx + l * p.inner));
        }
    }
    part[lid] = m;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s >>= 1u) {
        if (lid < s) {
            part[lid] = max(part[lid], part[lid + s]);
        }
        workgroupBarrier();
    }
    m = part[0];
    workgroupBarrier();
    var acc = 0.0;
    if (live) {
        for (var l = lid; l < p.len; l += 64u) {
            acc += exp(xs(bx + l * p.inner) - m);
        }
    }
    part[lid] = acc;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s >>= 1u) {
        if (lid < s) {
            part[lid] += part[lid + s];
        }
        workgroupBarrier();
    }
    let total = part[0];
    if (live) {
        let by = b - p.win_y;
        for (var l = lid; l < p.len; l += 64u) {
            put(by + l * p.inner, finish(xs(bx + l * p.inner), m, total));
        }
    }
}

// Run-time values, not constants: WGSL makes a constant NaN or infinity an error (browsers
// reject it; naga does not).
var<private> INF_BITS: u32 = 0x7f800000u;
