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
// vec4 views, as in softmax.wgsl.
@group(0) @binding(1) var<storage, read> y: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> dx: array<vec4<f32>>;

fn ys(i: u32) -> f32 {
    return y[i / 4u][i % 4u];
}

fn dys(i: u32) -> f32 {
    return dy[i / 4u][i % 4u];
}

fn put(i: u32, v: f32) {
    dx[i / 4u][i % 4u] = v;
}

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
    if (p.inner == 1u && p.len % 4u == 0u) {
        // Contiguous rows of whole vec4s.
        let n4 = p.len / 4u;
        let y4 = (b - p.win_y) / 4u;
        let d4 = (b - p.win_dy) / 4u;
        let x4 = (b - p.win_dx) / 4u;
        var s4 = vec4<f32>(0.0);
        for (var l = 0u; l < n4; l++) {
            let g = dy[d4 + l];
            s4 += select(g * y[y4 + l], g, OP == 1u);
        }
        let s = (s4.x + s4.y) + (s4.z + s4.w);
        for (var l = 0u; l < n4; l++) {
            let yv = y[y4 + l];
            let g = dy[d4 + l];
            if (OP == 1u) {
                dx[x4 + l] = g - exp(yv) * s;
            } else {
                dx[x4 + l] = yv * (g - s);
            }
        }
        return;
    }
    var s = 0.0;
    for (var l = 0u; l < p.len; l++) {
        let k = b + l * p.inner;
        s += term(ys(k - p.win_y), dys(k - p.win_dy));
    }
    for (var l = 0u; l < p.len; l++) {
        let k = b + l * p.inner;
        put(k - p.win_dx, grad(ys(k - p.win_y), dys(k - p.win_dy), s));
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
            acc += term(ys(k - p.win_y), dys(k - p.win_dy));
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
            put(k - p.win_dx, grad(ys(k - p.win_y), dys(k - p.win_dy), s));
        }
    }
}
