// Gather along `axis`: over the output's index space (at most 8 dims),
//   out[c] = x[Σ_{d≠axis} c_d·xs_d + idx[Σ_d c_d·is_d]·xs_axis]
// (index_select: is is 1 along the axis and 0 elsewhere; torch.gather: idx has out's shape).
// An index past the axis length gives 0 instead of reading out of bounds. u32 words, so any
// 4-byte dtype.

struct Params {
    n: u32,
    start: u32,
    rank: u32,
    axis: u32,
    len: u32,     // x's extent along the axis
    win_x: u32,
    win_i: u32,
    win_o: u32,
    shape: array<vec4<u32>, 2>,
    xs: array<vec4<u32>, 2>,
    is: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read> idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

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
    var v = 0u;
    if (j < p.len) {
        v = x[ix + j * p.xs[p.axis / 4u][p.axis % 4u] - p.win_x];
    }
    out[g - p.win_o] = v;
}
