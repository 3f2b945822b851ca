// Backward of max/min along len of x viewed as [outer, len, inner]: the gradient goes to the
// element the forward chose (idx: its first extreme index, supplied by the caller), as
// torch.max(dim) does:
// dx[o, l, i] = l == idx[o, i] ? dy[o, i] : 0. One thread per dx element; overwrites dx.

struct Params {
    n: u32,
    start: u32,
    len: u32,
    inner: u32,
    win_dy: u32,
    win_idx: u32,
    win_dx: u32,
    _p: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * 256u;
    if (t >= p.n) {
        return;
    }
    let g = p.start + t;
    let row = g / p.inner;
    let i = g - row * p.inner;
    let o = row / p.len;
    let l = row - o * p.len;
    let q = o * p.inner + i;
    dx[g - p.win_dx] = select(0.0, dy[q - p.win_dy], idx[q - p.win_idx] == l);
}
