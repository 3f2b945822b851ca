// Index of the largest (OP 0, argmax) or smallest (OP 1, argmin) element of x viewed as
// [outer, len, inner], along len: idx[o, i] = the first such l, as PyTorch; NaN counts as the
// largest and the smallest (it propagates), its first occurrence wins.
// `rows`: one thread per output; `groups`: one 64-thread workgroup per output with a tree of
// (value, index) pairs in workgroup memory.

override OP: u32 = 0u;

struct Params {
    n: u32,
    start: u32,
    len: u32,
    inner: u32,
    win_x: u32,
    win_o: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> idx: array<u32>;

// Whether (v, l) beats the current best (b, bl): strictly better, or equal with a smaller index.
// NaN test on the bits: drivers may compile `v != v` under no-NaN assumptions.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn better(v: f32, l: u32, b: f32, bl: u32) -> bool {
    let vn = is_nan(v);
    let bn = is_nan(b);
    if (vn || bn) {
        return vn && (!bn || l < bl);
    }
    var strict = v > b;
    if (OP == 1u) {
        strict = v < b;
    }
    return strict || (v == b && l < bl);
}

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
    var best = x[b];
    var bl = 0u;
    for (var l = 1u; l < p.len; l++) {
        let v = x[b + l * p.inner];
        if (better(v, l, best, bl)) {
            best = v;
            bl = l;
        }
    }
    idx[q - p.win_o] = bl;
}

var<workgroup> pv: array<f32, 64>;
var<workgroup> pl: array<u32, 64>;

@compute @workgroup_size(64)
fn groups(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = wid.x + wid.y * nwg.x;
    let live = t < p.n;
    let q = p.start + t;
    // Threads past len hold the sentinel index 0xffffffff, which any real element beats.
    var best = 0.0;
    var bl = 0xffffffffu;
    if (live) {
        let b = base_of(q);
        for (var l = lid; l < p.len; l += 64u) {
            let v = x[b + l * p.inner];
            if (bl == 0xffffffffu || better(v, l, best, bl)) {
                best = v;
                bl = l;
            }
        }
    }
    pv[lid] = best;
    pl[lid] = bl;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s >>= 1u) {
        if (lid < s) {
            let ol = pl[lid + s];
            if (ol != 0xffffffffu && (pl[lid] == 0xffffffffu || better(pv[lid + s], ol, pv[lid], pl[lid]))) {
                pv[lid] = pv[lid + s];
                pl[lid] = ol;
            }
        }
        workgroupBarrier();
    }
    if (live && lid == 0u) {
        idx[q - p.win_o] = pl[0];
    }
}
