// Scatter-add, the backward of gather along `axis`: over dy's index space (at most 8 dims),
//   dx[Σ_{d≠axis} c_d·xs_d + idx[Σ_d c_d·is_d]·xs_axis] += dy[c]
// dx must hold zeros (or the gradient to accumulate into) beforehand; indices past the axis
// length are skipped. Several c may hit one element, so the adds are atomic; their order, and
// so the last bits of the sums, varies from run to run.
// Portable variant: a compare-exchange loop on the f32 bits held in atomic<u32> (no float atomics needed).

struct Params {
    n: u32,
    start: u32,
    rank: u32,
    axis: u32,
    len: u32,
    win_x: u32,
    win_i: u32,
    win_o: u32,
    shape: array<vec4<u32>, 2>,
    xs: array<vec4<u32>, 2>,
    is: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> dx: array<atomic<u32>>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * 256u;
    if (t >= p.n) {
        return;
    }
    let g = p.start + t;
    var rest = g;
    var ix = 0u;
    var ii = 0u;
    for (var d = p.rank; d > 0u; d--) {
        let k = d - 1u;
        let n = p.shape[k / 4u][k % 4u];
        let c = rest % n;
        rest = rest / n;
        if (k != p.axis) {
            ix += c * p.xs[k / 4u][k % 4u];
        }
        ii += c * p.is[k / 4u][k % 4u];
    }
    let j = idx[ii - p.win_i];
    if (j >= p.len) {
        return;
    }
    let v = dy[g - p.win_x];
    let at = ix + j * p.xs[p.axis / 4u][p.axis % 4u] - p.win_o;
    var old = atomicLoad(&dx[at]);
    loop {
        let r = atomicCompareExchangeWeak(&dx[at], old, bitcast<u32>(bitcast<f32>(old) + v));
        if (r.exchanged) {
            break;
        }
        old = r.old_value;
    }
}
