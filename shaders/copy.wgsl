// The strided copy every movement op reuses (permute, slice, pad, concat, contiguous copies).
// Over an index space `shape` (at most 8 dims), element c goes to
//   out[o_base + Σ_d c_d·os_d]
// from x at coordinates x_d = c_d·step_d + start_d: if every x_d lies in [0, lim_d) the value is
// x[x_base + Σ_d x_d·xs_d], otherwise the pad value. Words are copied as u32 bits, so f32, u32
// and i32 tensors share the kernel.
//
// Entry points (globals of different entry points share bindings):
// - `main`: any copy, 4 words of a row per thread, each loaded and stored on its own;
// - `main_v4`: copies whose innermost dim moves whole, aligned texels (unit strides and step,
//   extent, limit and start multiples of 4, every other stride and both bases multiples of 4),
//   one vec4 load and store per thread: on lavapipe every buffer access runs lane by lane, so
//   one vec4 access costs what a scalar one does (docs/PERFORMANCE.md, "Session 11").

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
// main_v4
@group(0) @binding(1) var<storage, read> x4: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> out4: array<vec4<u32>>;

// The first word of row `row`'s x and out (window-relative, before the innermost dim's term)
// and whether the row lies inside x on every outer dim.
struct RowAt {
    ix: u32,
    io: u32,
    inside: bool,
}

fn row_at(row: u32) -> RowAt {
    let last = p.rank - 1u;
    var rest = row;
    var r = RowAt(p.x_base, p.o_base, true);
    for (var d = last; d > 0u; d--) {
        let k = d - 1u;
        let n = p.shape[k / 4u][k % 4u];
        let c = rest % n;
        rest = rest / n;
        r.io += c * p.os[k / 4u][k % 4u];
        let xc = i32(c * p.step[k / 4u][k % 4u]) + p.x0[k / 4u][k % 4u];
        r.inside = r.inside && xc >= 0 && u32(xc) < p.lim[k / 4u][k % 4u];
        r.ix += u32(max(xc, 0)) * p.xs[k / 4u][k % 4u];
    }
    return r;
}

// Each thread copies up to 4 consecutive elements of one row of the innermost dim, so the
// divisions that locate the row (costly per lane on CPU adapters) are shared by 4 elements.
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * 256u;
    let last = p.rank - 1u;
    let n0 = p.shape[last / 4u][last % 4u];
    let tpr = (n0 + 3u) / 4u;
    let row = p.start / n0 + t / tpr;
    let c0 = 4u * (t % tpr);
    let end = p.start + p.n;
    if (row * n0 + c0 >= end) {
        return;
    }
    let at = row_at(row);
    let os = p.os[last / 4u][last % 4u];
    let xs = p.xs[last / 4u][last % 4u];
    let step = p.step[last / 4u][last % 4u];
    let x0 = p.x0[last / 4u][last % 4u];
    let lim = p.lim[last / 4u][last % 4u];
    for (var j = 0u; j < 4u; j++) {
        let c = c0 + j;
        let g = row * n0 + c;
        if (c >= n0 || g >= end) {
            break;
        }
        if (g < p.start) {
            continue;
        }
        let xc = i32(c * step) + x0;
        var v = p.pad;
        if (at.inside && xc >= 0 && u32(xc) < lim) {
            v = x[at.ix + u32(xc) * xs - p.win_x];
        }
        out[at.io + c * os - p.win_o] = v;
    }
}

// One texel of a row per thread (see the entry list above for when the launcher takes it).
@compute @workgroup_size(256)
fn main_v4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * 256u;
    let last = p.rank - 1u;
    let n0 = p.shape[last / 4u][last % 4u];
    let tpr = n0 / 4u;
    let row = p.start / n0 + t / tpr;
    let c0 = 4u * (t % tpr);
    if (row * n0 + c0 >= p.start + p.n) {
        return;
    }
    let at = row_at(row);
    let xc = i32(c0) + p.x0[last / 4u][last % 4u];
    var v = vec4<u32>(p.pad);
    if (at.inside && xc >= 0 && u32(xc) < p.lim[last / 4u][last % 4u]) {
        v = x4[(at.ix + u32(xc) - p.win_x) / 4u];
    }
    out4[(at.io + c0 - p.win_o) / 4u] = v;
}
