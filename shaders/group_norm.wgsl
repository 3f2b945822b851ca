// GroupNorm forward on x [N, C, S] (S = H·W, row-major): channels split into G groups of C/G; each
// (n, g) segment of (C/G)·S contiguous values is normalised with its own mean and rstd (biased
// variance), then y = xhat · w[c] + b[c], optionally followed by ReLU (override RELU).
//
// Two dispatches: statistics into mean/rstd [N, G], then `apply` (one invocation per element).
// Statistics variants with the same bindings:
// - `stats_thread`: one invocation per segment, no workgroup memory (CPU adapters).
// - `stats_wg`: one workgroup of 256 per segment, tree reduction in workgroup memory.
// - `stats_part` + `stats_combine`: one workgroup of 256 per chunk of a segment writes the chunk's
//   (mean, M2), then one thread per segment merges its chunks (Chan et al.'s pairwise update).
//   GPUs: 32 segments of the FPN's 1/4 level are ~62 MB, too few workgroups for one each.

struct Params {
    n: u32,        // batch
    c: u32,        // channels
    s: u32,        // spatial size H·W
    groups: u32,
    eps: f32,
    chunks: u32,   // stats_part / stats_combine: chunks per segment
    _pad1: u32,
    _pad2: u32,
}

override RELU: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
// stats_* bindings
@group(0) @binding(2) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> rstd_out: array<f32>;
// apply bindings: x, then
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read> mean_in: array<f32>;
@group(0) @binding(5) var<storage, read> rstd_in: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;
// apply_v4 bindings: as apply's, with x and y as vec4 (S a multiple of 4)
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> y4: array<vec4<f32>>;

const WG: u32 = 64u;
const WG_SEG: u32 = 256u;
// Values summed into a block's partial before it joins the running total: the rounding error
// grows with BLOCK + len/BLOCK instead of len (segments reach ~10^5 values in the FPN).
const BLOCK: u32 = 256u;

fn seg_len() -> u32 {
    return (p.c / p.groups) * p.s;
}

// ---- statistics, one segment per invocation -----------------------------------------------------

fn seg_sum(base: u32, len: u32, centre: f32, squares: bool) -> f32 {
    var total = 0.0;
    for (var b0 = 0u; b0 < len; b0 += BLOCK) {
        let end = min(b0 + BLOCK, len);
        var acc = vec4<f32>(0.0);
        var i = b0;
        for (; i + 4u <= end; i += 4u) {
            let v = vec4<f32>(x[base + i], x[base + i + 1u], x[base + i + 2u], x[base + i + 3u]) - centre;
            acc += select(v, v * v, squares);
        }
        var t = (acc.x + acc.y) + (acc.z + acc.w);
        for (; i < end; i += 1u) {
            let v = x[base + i] - centre;
            t += select(v, v * v, squares);
        }
        total += t;
    }
    return total;
}

// Workgroups of WG_STATS (STATS_WG in src/ops/group_norm/mod.rs): lavapipe gives each of its
// threads whole workgroups, and a batch of 2 × 32 groups is 64 segments.
const WG_STATS: u32 = 16u;

@compute @workgroup_size(WG_STATS)
fn stats_thread(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let seg = gid.x + gid.y * nwg.x * WG_STATS;
    if (seg >= p.n * p.groups) {
        return;
    }
    let len = seg_len();
    let base = seg * len;
    let mean = seg_sum(base, len, 0.0, false) / f32(len);
    let var_ = seg_sum(base, len, mean, true) / f32(len);
    mean_out[seg] = mean;
    rstd_out[seg] = inverseSqrt(var_ + p.eps);
}

// seg_sum over whole vec4s (segments and their starts multiples of 4).
fn seg_sum4(base4: u32, len4: u32, centre: f32, squares: bool) -> f32 {
    var total = 0.0;
    for (var b0 = 0u; b0 < len4; b0 += BLOCK / 4u) {
        let end = min(b0 + BLOCK / 4u, len4);
        var acc = vec4<f32>(0.0);
        for (var i = b0; i < end; i += 1u) {
            let v = x4[base4 + i] - centre;
            acc += select(v, v * v, squares);
        }
        total += (acc.x + acc.y) + (acc.z + acc.w);
    }
    return total;
}

// `stats_thread` for segments of whole vec4s: one vec4 load a step instead of four scalar ones.
@compute @workgroup_size(WG_STATS)
fn stats_v4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let seg = gid.x + gid.y * nwg.x * WG_STATS;
    if (seg >= p.n * p.groups) {
        return;
    }
    let len = seg_len();
    let len4 = len / 4u;
    let base4 = seg * len4;
    let mean = seg_sum4(base4, len4, 0.0, false) / f32(len);
    let var_ = seg_sum4(base4, len4, mean, true) / f32(len);
    mean_out[seg] = mean;
    rstd_out[seg] = inverseSqrt(var_ + p.eps);
}

// ---- statistics, one segment per workgroup ------------------------------------------------------

var<workgroup> red: array<f32, WG_SEG>;

fn wg_sum(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var k = WG_SEG / 2u; k > 0u; k >>= 1u) {
        if (lid < k) {
            red[lid] += red[lid + k];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(WG_SEG)
fn stats_wg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let seg = wid.x + wid.y * nwg.x;
    if (seg >= p.n * p.groups) {
        return;
    }
    let len = seg_len();
    let base = seg * len;
    var t = 0.0;
    for (var i = lid; i < len; i += WG_SEG) {
        t += x[base + i];
    }
    let mean = wg_sum(t, lid) / f32(len);
    var q = 0.0;
    for (var i = lid; i < len; i += WG_SEG) {
        let d = x[base + i] - mean;
        q += d * d;
    }
    let var_ = wg_sum(q, lid) / f32(len);
    if (lid == 0u) {
        mean_out[seg] = mean;
        rstd_out[seg] = inverseSqrt(var_ + p.eps);
    }
}

// ---- statistics, chunks of a segment over many workgroups ------------------------------------

// Bindings of stats_part: x, then (mean, M2) per (segment, chunk).
@group(0) @binding(2) var<storage, read_write> part_out: array<vec2<f32>>;
// Bindings of stats_combine: the parts, then mean_out, rstd_out (bindings 2, 3).
@group(0) @binding(1) var<storage, read> part_in: array<vec2<f32>>;

fn chunk_len(len: u32) -> u32 {
    return (len + p.chunks - 1u) / p.chunks;
}

@compute @workgroup_size(WG_SEG)
fn stats_part(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    // The chunk is uniform over the workgroup: every lane reaches the barriers.
    let u = wid.x + wid.y * nwg.x; // segment · chunks + chunk
    if (u >= p.n * p.groups * p.chunks) {
        return;
    }
    let len = seg_len();
    let seg = u / p.chunks;
    let ch = u % p.chunks;
    let cl = chunk_len(len);
    let start = min(ch * cl, len);
    let end = min(start + cl, len);
    let base = seg * len;
    var t = 0.0;
    for (var i = start + lid; i < end; i += WG_SEG) {
        t += x[base + i];
    }
    let count = f32(max(end - start, 1u));
    let mean = wg_sum(t, lid) / count;
    var q = 0.0;
    for (var i = start + lid; i < end; i += WG_SEG) {
        let d = x[base + i] - mean;
        q += d * d;
    }
    let m2 = wg_sum(q, lid);
    if (lid == 0u) {
        part_out[u] = vec2<f32>(mean, m2);
    }
}

@compute @workgroup_size(WG)
fn stats_combine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let seg = gid.x + gid.y * nwg.x * WG;
    if (seg >= p.n * p.groups) {
        return;
    }
    let len = seg_len();
    let cl = chunk_len(len);
    var n_a = 0.0;
    var mean = 0.0;
    var m2 = 0.0;
    for (var ch = 0u; ch < p.chunks; ch++) {
        let start = min(ch * cl, len);
        let n_b = f32(min(start + cl, len) - start);
        if (n_b == 0.0) {
            continue;
        }
        let part = part_in[seg * p.chunks + ch];
        let n = n_a + n_b;
        let delta = part.x - mean;
        mean += delta * (n_b / n);
        m2 += part.y + delta * delta * (n_a * n_b / n);
        n_a = n;
    }
    mean_out[seg] = mean;
    rstd_out[seg] = inverseSqrt(m2 / f32(len) + p.eps);
}

// ---- normalise, scale, shift (and ReLU) ---------------------------------------------------------

// Workgroups tile each (n, c) plane with WG elements, so the plane index is the same for the
// whole workgroup and the per-channel loads (w, b, mean, rstd) are uniform: one scalar load on
// adapters that run invocations as SIMD lanes, instead of a per-lane gather.
@compute @workgroup_size(WG)
fn apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
         @builtin(num_workgroups) nwg: vec3<u32>) {
    let per_plane = (p.s + WG - 1u) / WG;
    let wl = wid.x + wid.y * nwg.x;
    let nc = wl / per_plane;
    let j = (wl % per_plane) * WG + lid;
    if (nc >= p.n * p.c || j >= p.s) {
        return;
    }
    let ch = nc % p.c;
    let seg = nc / (p.c / p.groups); // = n·G + g
    // (x − mean)·(rstd·w) + b, not x·scale + shift: the latter cancels badly when rstd is large.
    let scale = rstd_in[seg] * w[ch];
    let i = nc * p.s + j;
    var v = (x[i] - mean_in[seg]) * scale + b[ch];
    if (RELU) {
        v = max(v, 0.0);
    }
    y[i] = v;
}

// `apply` for S a multiple of 4: an invocation normalises 4 consecutive values of a plane, so
// the per-channel loads (lane by lane on llvmpipe) serve 4 outputs, and x and y move as vec4.
@compute @workgroup_size(WG)
fn apply_v4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let s4 = p.s / 4u;
    let per_plane = (s4 + WG - 1u) / WG;
    let wl = wid.x + wid.y * nwg.x;
    let nc = wl / per_plane;
    let j = (wl % per_plane) * WG + lid;
    if (nc >= p.n * p.c || j >= s4) {
        return;
    }
    let ch = nc % p.c;
    let seg = nc / (p.c / p.groups); // = n·G + g
    let scale = rstd_in[seg] * w[ch];
    var v = (x4[nc * s4 + j] - mean_in[seg]) * scale + b[ch];
    if (RELU) {
        v = max(v, vec4<f32>(0.0));
    }
    y4[nc * s4 + j] = v;
}
