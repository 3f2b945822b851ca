// LayerNorm on CPU adapters with its row operands read through texel views (src/runtime/texel.rs):
// the math of layer_norm.wgsl's `rows_thread*` and layer_norm_backward.wgsl's `dx_thread`, one
// invocation per row, four columns a step (C a multiple of 4). On lavapipe (Mesa 22.x) every
// storage-buffer load runs lane by lane, a texel load is one gather; the stores stay buffer stores,
// one vec4 per four columns. Each view holds its tensor from element 0: texel i is elements 4i..4i+3.

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    _pad: u32,
}

// The backward's parameter block (layer_norm_backward.wgsl's): the parameter gradients' partial
// sums run over chunks of chunk_rows rows.
struct BackwardParams {
    rows: u32,
    cols: u32,
    chunk_rows: u32,
    chunks: u32,
}

// Entry points use one or the other (globals of different entries may share a binding).
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(0) var<uniform> pb: BackwardParams;

// Forward: x [rows, C], w and b [C] as views; y [rows, C]; mean and rstd [rows] (the `_stats` entry).
@group(0) @binding(1) var x: texture_storage_2d<rgba32float, read>;
@group(0) @binding(2) var w: texture_storage_2d<rgba32float, read>;
@group(0) @binding(3) var b: texture_storage_2d<rgba32float, read>;
@group(0) @binding(4) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> rstd_out: array<f32>;

// Backward dx: dy, x [rows, C] and w [C] as views; mean and rstd [rows]; dx [rows, C].
@group(0) @binding(1) var dy: texture_storage_2d<rgba32float, read>;
@group(0) @binding(2) var bx: texture_storage_2d<rgba32float, read>;
@group(0) @binding(3) var bw: texture_storage_2d<rgba32float, read>;
@group(0) @binding(4) var<storage, read> mean: array<f32>;
@group(0) @binding(5) var<storage, read> rstd: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<vec4<f32>>;

// Backward parameter partials: dy and x as above (views), mean and rstd [rows]; part
// [2 · chunks, C]: the weight's partial sums in rows 0..chunks, the bias's after them.
@group(0) @binding(7) var<storage, read_write> part: array<vec4<f32>>;

const WG_THREAD: u32 = 64u;

// Texel i of a view 2048 texels wide (runtime::TEXEL_ROW).
fn at(i: u32) -> vec2<u32> {
    return vec2<u32>(i & 2047u, i >> 11u);
}

fn row_of(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    // 2-D grid past 65535 workgroups: linear index over x then y.
    return gid.x + gid.y * nwg.x * WG_THREAD;
}

fn hsum(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

// Mean and rstd of the row starting at texel `base`: two passes (mean, then squared deviations),
// four partial sums, as `thread_row_stats`.
fn row_stats(base: u32) -> vec2<f32> {
    let n4 = p.cols >> 2u;
    var s = vec4<f32>(0.0);
    for (var i = 0u; i < n4; i++) {
        s += textureLoad(x, at(base + i));
    }
    let mean = hsum(s) / f32(p.cols);
    var q = vec4<f32>(0.0);
    for (var i = 0u; i < n4; i++) {
        let d = textureLoad(x, at(base + i)) - mean;
        q += d * d;
    }
    return vec2<f32>(mean, inverseSqrt(hsum(q) / f32(p.cols) + p.eps));
}

fn row_write(base: u32, stats: vec2<f32>) {
    let n4 = p.cols >> 2u;
    for (var i = 0u; i < n4; i++) {
        let xv = textureLoad(x, at(base + i));
        y[base + i] = (xv - stats.x) * stats.y * textureLoad(w, at(i)) + textureLoad(b, at(i));
    }
}

@compute @workgroup_size(WG_THREAD)
fn rows_texel(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = row_of(gid, nwg);
    if (r >= p.rows) {
        return;
    }
    let base = r * (p.cols >> 2u);
    row_write(base, row_stats(base));
}

@compute @workgroup_size(WG_THREAD)
fn rows_texel_stats(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = row_of(gid, nwg);
    if (r >= p.rows) {
        return;
    }
    let base = r * (p.cols >> 2u);
    let s = row_stats(base);
    row_write(base, s);
    mean_out[r] = s.x;
    rstd_out[r] = s.y;
}

// dx = rstd · (g − mean(g) − x̂ · mean(g · x̂)) with g = dy · w and x̂ = (x − mean) · rstd, for
// row r.
fn dx_row(r: u32) {
    let n4 = pb.cols >> 2u;
    let base = r * n4;
    let m = mean[r];
    let s = rstd[r];
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    for (var i = 0u; i < n4; i++) {
        let g = textureLoad(dy, at(base + i)) * textureLoad(bw, at(i));
        c1 += g;
        c2 += g * (textureLoad(bx, at(base + i)) - m) * s;
    }
    let k1 = hsum(c1) / f32(pb.cols);
    let k2 = hsum(c2) / f32(pb.cols);
    for (var i = 0u; i < n4; i++) {
        let xh = (textureLoad(bx, at(base + i)) - m) * s;
        let g = textureLoad(dy, at(base + i)) * textureLoad(bw, at(i));
        dx[base + i] = s * (g - k1 - xh * k2);
    }
}

// The parameter gradients' partial sums over one chunk of rows (layer_norm_backward.wgsl's
// `param_partials`, same order of summation), four columns of chunk i / (C / 4) per call:
// dweight += dy · x̂ and dbias += dy.
fn partials_at(i: u32) {
    let n4 = pb.cols >> 2u;
    let c = i % n4;
    let k = i / n4;
    let r0 = k * pb.chunk_rows;
    let r1 = min(r0 + pb.chunk_rows, pb.rows);
    var sw = vec4<f32>(0.0);
    var sb = vec4<f32>(0.0);
    for (var r = r0; r < r1; r++) {
        let g = textureLoad(dy, at(r * n4 + c));
        sw += g * (textureLoad(bx, at(r * n4 + c)) - mean[r]) * rstd[r];
        sb += g;
    }
    part[k * n4 + c] = sw;
    part[(pb.chunks + k) * n4 + c] = sb;
}

// The backward's two independent passes in one launch (each launch costs lavapipe tens of µs):
// the first ⌈rows / 64⌉ workgroups compute dx a row per invocation, the rest the parameter
// partials; `param_reduce` (layer_norm_backward.wgsl) sums the partials after it.
@compute @workgroup_size(WG_THREAD)
fn backward_texel(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = row_of(gid, nwg);
    let dx_threads = (pb.rows + WG_THREAD - 1u) / WG_THREAD * WG_THREAD;
    if (t < dx_threads) {
        if (t < pb.rows) {
            dx_row(t);
        }
        return;
    }
    let i = t - dx_threads;
    if (i < (pb.cols >> 2u) * pb.chunks) {
        partials_at(i);
    }
}
