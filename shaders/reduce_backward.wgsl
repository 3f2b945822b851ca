// Backward of the reductions over x viewed as [outer, len, inner], one thread per dx element:
// `expand` (sum, mean): dx[o, l, i] = scale · dy[o, i]. (Max and min have no backward.)

struct Params {
    n: u32,
    start: u32,
    len: u32,
    inner: u32,
    win_dy: u32,
    win_dx: u32,
    scale: f32,
    _p: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn expand(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * 256u;
    if (t >= p.n) {
        return;
    }
    let g = p.start + t;
    let row = g / p.inner;
    let i = g - row * p.inner;
    let o = row / p.len;
    dx[g - p.win_dx] = p.scale * dy[o * p.inner + i - p.win_dy];
}
