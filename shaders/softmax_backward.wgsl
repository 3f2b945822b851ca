// Backward of softmax (OP 0) / log-softmax (OP 1) along len of [outer, len, inner], from the
// forward's output y (overwrites dx):
//   softmax:      dx = y · (dy − Σ_l dy·y)
//   log-softmax:  dx = dy − exp(y) · Σ_l dy
// `rows`: one thread per column; `groups`: one 64-thread workgroup per column.

override OP: u32 = 0u;

struct Params {
    n: u32,
    start: u32,
    len: u32,
    inner: u32,
    win_y: u32,
    win_dy: u32,
    win_dx: u32,
    _p0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

fn base_of(q: u32) -> u32 {
    let o = q / p.inner;
    let i = q - o * p.inner;
    return o * p.len * p.inner + i;
}

fn term(yv: f32, g: f32) -> f32 {
    return select(g * yv, g, OP == 1u);
}

fn grad(yv: f32, g: f32, s: f32) -> f32 {
    if (OP == 1u) {
        return g - exp(yv) * s;
    }
    return yv * (g - s);
}

@compute @workgroup_size(256)
fn rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * 256u;
    if (t >= p.n) {
        return;
    }
    let b = base_of(p.start + t);
    var s = 0.0;
    for (var l = 0u; l < p.len; l++) {
        let k = b + l * p.inner;
        s += term(y[k - p.win_y], dy[k - p.win_dy]);
    }
    for (var l = 0u; l < p.len; l++) {
        let k = b + l * p.inner;
        dx[k - p.win_dx] = grad(y[k - p.win_y], dy[k - p.win_dy], s);
    }
}

var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn groups(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = wid.x + wid.y * nwg.x;
    let live = t < p.n;
    let b = base_of(p.start + t);
    var acc = 0.0;
    if (live) {
        for (var l = lid; l < p.len; l += 64u) {
            let k = b + l * p.inner;
            acc += term(y[k - p.win_y], dy[k - p.win_dy]);
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
    let s = part[0];
    if (live) {
        for (var l = lid; l < p.len; l += 64u) {
            let k = b + l * p.inner;
            dx[k - p.win_dx] = grad(y[k - p.win_y], dy[k - p.win_dy], s);
        }
    }
}
