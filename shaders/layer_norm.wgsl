// LayerNorm forward over the last dimension: y = (x - mean) * rstd * w + b, rstd = 1/sqrt(var + eps),
// biased variance (PyTorch). x and y are [rows, cols] row-major; w, b are [cols].
//
// Two variants with the same bindings:
// - `rows_thread*`: one invocation per row, no workgroup memory (CPU adapters such as lavapipe, where
//   barriers are expensive and each SIMD lane happily walks its own row).
// - `rows_wg*`: one workgroup of 256 invocations per row with a tree reduction in workgroup memory (GPUs);
//   rows of any length are covered by a strided loop.
// The `*_stats` entry points also write the per-row mean and rstd that the backward pass needs; the plain
// ones do not touch those bindings, so inference binds only x, w, b and y.

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> rstd_out: array<f32>;

const WG_THREAD: u32 = 64u;
const WG_ROW: u32 = 256u;

// ---- one row per invocation ---------------------------------------------------------------------

// Mean and rstd of one row, two passes (mean, then squared deviations) so large offsets do not cancel.
// Four partial sums shorten the dependency chain and keep rounding error growth low.
fn thread_row_stats(base: u32) -> vec2<f32> {
    let n = p.cols;
    var s = vec4<f32>(0.0);
    var i = 0u;
    for (; i + 4u <= n; i += 4u) {
        s += vec4<f32>(x[base + i], x[base + i + 1u], x[base + i + 2u], x[base + i + 3u]);
    }
    var t = (s.x + s.y) + (s.z + s.w);
    for (; i < n; i += 1u) {
        t += x[base + i];
    }
    let mean = t / f32(n);
    var q = vec4<f32>(0.0);
    i = 0u;
    for (; i + 4u <= n; i += 4u) {
        let d = vec4<f32>(x[base + i], x[base + i + 1u], x[base + i + 2u], x[base + i + 3u]) - mean;
        q += d * d;
    }
    var v = (q.x + q.y) + (q.z + q.w);
    for (; i < n; i += 1u) {
        let d = x[base + i] - mean;
        v += d * d;
    }
    return vec2<f32>(mean, inverseSqrt(v / f32(n) + p.eps));
}

fn thread_row_write(base: u32, stats: vec2<f32>) {
    for (var i = 0u; i < p.cols; i += 1u) {
        y[base + i] = (x[base + i] - stats.x) * stats.y * w[i] + b[i];
    }
}

fn thread_row(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    // 2-D grid past 65535 workgroups: linear index over x then y.
    return gid.x + gid.y * nwg.x * WG_THREAD;
}

@compute @workgroup_size(WG_THREAD)
fn rows_thread(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = thread_row(gid, nwg);
    if (r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    thread_row_write(base, thread_row_stats(base));
}

@compute @workgroup_size(WG_THREAD)
fn rows_thread_stats(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = thread_row(gid, nwg);
    if (r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    let s = thread_row_stats(base);
    thread_row_write(base, s);
    mean_out[r] = s.x;
    rstd_out[r] = s.y;
}

// ---- one row per workgroup ----------------------------------------------------------------------

var<workgroup> red: array<f32, WG_ROW>;

// Sum of `v` over the workgroup. Ends with a barrier so `red` may be reused straight away.
fn wg_sum(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG_ROW / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

fn wg_row(base: u32, lid: u32) -> vec2<f32> {
    var t = 0.0;
    for (var i = lid; i < p.cols; i += WG_ROW) {
        t += x[base + i];
    }
    let mean = wg_sum(t, lid) / f32(p.cols);
    var q = 0.0;
    for (var i = lid; i < p.cols; i += WG_ROW) {
        let d = x[base + i] - mean;
        q += d * d;
    }
    let rstd = inverseSqrt(wg_sum(q, lid) / f32(p.cols) + p.eps);
    for (var i = lid; i < p.cols; i += WG_ROW) {
        y[base + i] = (x[base + i] - mean) * rstd * w[i] + b[i];
    }
    return vec2<f32>(mean, rstd);
}

@compute @workgroup_size(WG_ROW)
fn rows_wg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let r = wid.x + wid.y * nwg.x;
    if (r >= p.rows) {
        return;
    }
    _ = wg_row(r * p.cols, lid);
}

@compute @workgroup_size(WG_ROW)
fn rows_wg_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let r = wid.x + wid.y * nwg.x;
    if (r >= p.rows) {
        return;
    }
    let s = wg_row(r * p.cols, lid);
    if (lid == 0u) {
        mean_out[r] = s.x;
        rstd_out[r] = s.y;
    }
}
