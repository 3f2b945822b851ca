// The strided copy every movement op reuses (permute, slice, pad, concat, contiguous copies).
// Over an index space `shape` (at most 8 dims), element c goes to
//   out[o_base + Σ_d c_d·os_d]
// from x at coordinates x_d = c_d·step_d + start_d: if every x_d lies in [0, lim_d) the value is
// x[x_base + Σ_d x_d·xs_d], otherwise the pad value. Words are copied as u32 bits, so f32, u32
// and i32 tensors share the kernel.

struct Params {
    n: u32,
    start: u32,
    rank: u32,
    win_x: u32,
    win_o: u32,
    x_base: u32,
    o_base: u32,
    pad: u32,
    shape: array<vec4<u32>, 2>,
    xs: array<vec4<u32>, 2>,
    os: array<vec4<u32>, 2>,
    x0: array<vec4<i32>, 2>,
    step: array<vec4<u32>, 2>,
    lim: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * 256u;
    if (t >= p.n) {
        return;
    }
    var rest = p.start + t;
    var ix = p.x_base;
    var io = p.o_base;
    var inside = true;
    for (var d = p.rank; d > 0u; d--) {
        let k = d - 1u;
        let n = p.shape[k / 4u][k % 4u];
        let c = rest % n;
        rest = rest / n;
        io += c * p.os[k / 4u][k % 4u];
        let xc = i32(c * p.step[k / 4u][k % 4u]) + p.x0[k / 4u][k % 4u];
        inside = inside && xc >= 0 && u32(xc) < p.lim[k / 4u][k % 4u];
        ix += u32(max(xc, 0)) * p.xs[k / 4u][k % 4u];
    }
    var v = p.pad;
    if (inside) {
        v = x[ix - p.win_x];
    }
    out[io - p.win_o] = v;
}
