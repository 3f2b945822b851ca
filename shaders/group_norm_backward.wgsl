// GroupNorm backward on x [N, C, S] from the forward's saved mean/rstd [N, G].
//   xhat = (x - mean) * rstd;  z = xhat * w[c] + b[c];  dz = dy, or dy * (z > 0) with the fused ReLU
//   dw[c] = sum_{n,s} dz * xhat,   db[c] = sum_{n,s} dz                         (overwrite)
//   dx = rstd * (w[c] dz - A[n,g] - xhat B[n,g]),                                (overwrites)
//   A = mean over the segment of w dz, B = mean over the segment of w dz xhat.
// Four deterministic stages, no atomics, through a workspace ws:
//   ws[0 .. NC)        s1[n,c] = sum_s dz          ws[NC .. 2NC)        s2[n,c] = sum_s dz xhat
//   ws[2NC .. 2NC+NG)  A[n,g]                      ws[2NC+NG .. 2NC+2NG) B[n,g]
// 1. channel_sums_{thread,wg}: one invocation (CPU adapters) or one workgroup (GPUs) per (n, c).
// 2. param_grads: one invocation per channel.  3. group_sums: one per (n, g).  4. dx: one per element.
// Entry points use disjoint sets of globals; globals of different entry points may share a binding.

struct Params {
    n: u32,
    c: u32,
    s: u32,
    groups: u32,
}

override RELU: bool = false;

@group(0) @binding(0) var<uniform> p: Params;

// channel_sums_* and dx bindings
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read> b: array<f32>;
@group(0) @binding(5) var<storage, read> mean: array<f32>;
@group(0) @binding(6) var<storage, read> rstd: array<f32>;
@group(0) @binding(7) var<storage, read_write> ws: array<f32>;   // channel_sums_*
@group(0) @binding(7) var<storage, read> ws_in: array<f32>;      // dx
@group(0) @binding(8) var<storage, read_write> dx: array<f32>;   // dx
// dx_apply_v4 bindings: as dx_apply's, with dy, x and dx as vec4 (S a multiple of 4)
@group(0) @binding(1) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> dx4: array<vec4<f32>>;

// param_grads bindings
@group(0) @binding(1) var<storage, read> ws_pg: array<f32>;
@group(0) @binding(2) var<storage, read_write> dw: array<f32>;
@group(0) @binding(3) var<storage, read_write> db: array<f32>;

// group_sums bindings
@group(0) @binding(1) var<storage, read> w_gs: array<f32>;
@group(0) @binding(2) var<storage, read_write> ws_gs: array<f32>;

const WG: u32 = 64u;
const WG_CH: u32 = 256u;
const BLOCK: u32 = 256u;

fn linear(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// (dz, dz * xhat) at flat index i of channel ch in segment seg.
fn grad_terms(i: u32, ch: u32, seg: u32) -> vec2<f32> {
    let xh = (x[i] - mean[seg]) * rstd[seg];
    var g = dy[i];
    if (RELU && xh * w[ch] + b[ch] <= 0.0) {
        g = 0.0;
    }
    return vec2<f32>(g, g * xh);
}

// ---- 1. per-(n, c) sums ------------------------------------------------------------------------

@compute @workgroup_size(WG)
fn channel_sums_thread(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let nc = linear(gid, nwg);
    if (nc >= p.n * p.c) {
        return;
    }
    let ch = nc % p.c;
    let seg = nc / (p.c / p.groups);
    let base = nc * p.s;
    var total = vec2<f32>(0.0);
    // Blocked sums keep the rounding error growth at BLOCK + S/BLOCK terms.
    for (var b0 = 0u; b0 < p.s; b0 += BLOCK) {
        var t = vec2<f32>(0.0);
        for (var i = b0; i < min(b0 + BLOCK, p.s); i += 1u) {
            t += grad_terms(base + i, ch, seg);
        }
        total += t;
    }
    ws[nc] = total.x;
    ws[p.n * p.c + nc] = total.y;
}

// `channel_sums_thread` for planes of whole vec4s: 4 values a step, the per-channel values
// loaded once.
@compute @workgroup_size(WG)
fn channel_sums_v4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let nc = linear(gid, nwg);
    if (nc >= p.n * p.c) {
        return;
    }
    let ch = nc % p.c;
    let seg = nc / (p.c / p.groups);
    let m = mean[seg];
    let r = rstd[seg];
    let wc = w[ch];
    let bc = b[ch];
    let s4 = p.s / 4u;
    let base = nc * s4;
    var total = vec2<f32>(0.0);
    // Blocked sums keep the rounding error growth at BLOCK + S/BLOCK terms.
    for (var b0 = 0u; b0 < s4; b0 += BLOCK / 4u) {
        var t1 = vec4<f32>(0.0);
        var t2 = vec4<f32>(0.0);
        for (var i = b0; i < min(b0 + BLOCK / 4u, s4); i += 1u) {
            let xh = (x4[base + i] - m) * r;
            var g = dy4[base + i];
            if (RELU) {
                g = select(g, vec4<f32>(0.0), xh * wc + bc <= vec4<f32>(0.0));
            }
            t1 += g;
            t2 += g * xh;
        }
        total += vec2<f32>((t1.x + t1.y) + (t1.z + t1.w), (t2.x + t2.y) + (t2.z + t2.w));
    }
    ws[nc] = total.x;
    ws[p.n * p.c + nc] = total.y;
}

var<workgroup> red: array<vec2<f32>, WG_CH>;

@compute @workgroup_size(WG_CH)
fn channel_sums_wg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let nc = wid.x + wid.y * nwg.x;
    if (nc >= p.n * p.c) {
        return;
    }
    let ch = nc % p.c;
    let seg = nc / (p.c / p.groups);
    let base = nc * p.s;
    var t = vec2<f32>(0.0);
    for (var i = lid; i < p.s; i += WG_CH) {
        t += grad_terms(base + i, ch, seg);
    }
    red[lid] = t;
    workgroupBarrier();
    for (var k = WG_CH / 2u; k > 0u; k >>= 1u) {
        if (lid < k) {
            red[lid] += red[lid + k];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        ws[nc] = red[0].x;
        ws[p.n * p.c + nc] = red[0].y;
    }
}

// ---- 2. weight and bias gradients --------------------------------------------------------------

@compute @workgroup_size(WG)
fn param_grads(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let ch = linear(gid, nwg);
    if (ch >= p.c) {
        return;
    }
    var s1 = 0.0;
    var s2 = 0.0;
    for (var n = 0u; n < p.n; n += 1u) {
        s1 += ws_pg[n * p.c + ch];
        s2 += ws_pg[p.n * p.c + n * p.c + ch];
    }
    dw[ch] = s2;
    db[ch] = s1;
}

// ---- 3. per-(n, g) means of w dz and w dz xhat --------------------------------------------------

@compute @workgroup_size(WG)
fn group_sums(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let seg = linear(gid, nwg);
    let ng = p.n * p.groups;
    if (seg >= ng) {
        return;
    }
    let cpg = p.c / p.groups;
    let n = seg / p.groups;
    let c0 = (seg % p.groups) * cpg;
    var a = 0.0;
    var bb = 0.0;
    for (var k = 0u; k < cpg; k += 1u) {
        let ch = c0 + k;
        a += w_gs[ch] * ws_gs[n * p.c + ch];
        bb += w_gs[ch] * ws_gs[p.n * p.c + n * p.c + ch];
    }
    let len = f32(cpg * p.s);
    ws_gs[2u * p.n * p.c + seg] = a / len;
    ws_gs[2u * p.n * p.c + ng + seg] = bb / len;
}

// ---- 4. dx --------------------------------------------------------------------------------------

// Workgroups tile each (n, c) plane as in the forward's `apply`, so per-channel values are uniform.
@compute @workgroup_size(WG)
fn dx_apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let per_plane = (p.s + WG - 1u) / WG;
    let wl = wid.x + wid.y * nwg.x;
    let nc = wl / per_plane;
    let j = (wl % per_plane) * WG + lid;
    if (nc >= p.n * p.c || j >= p.s) {
        return;
    }
    let i = nc * p.s + j;
    let ch = nc % p.c;
    let seg = nc / (p.c / p.groups);
    let r = rstd[seg];
    let xh = (x[i] - mean[seg]) * r;
    var g = dy[i];
    if (RELU && xh * w[ch] + b[ch] <= 0.0) {
        g = 0.0;
    }
    let off = 2u * p.n * p.c;
    let a = ws_in[off + seg];
    let bb = ws_in[off + p.n * p.groups + seg];
    dx[i] = r * (w[ch] * g - a - xh * bb);
}

// `dx_apply` for S a multiple of 4: 4 consecutive values of a plane an invocation, so the
// per-channel and per-group loads serve 4 outputs, and dy, x and dx move as vec4.
@compute @workgroup_size(WG)
fn dx_apply_v4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let s4 = p.s / 4u;
    let per_plane = (s4 + WG - 1u) / WG;
    let wl = wid.x + wid.y * nwg.x;
    let nc = wl / per_plane;
    let j = (wl % per_plane) * WG + lid;
    if (nc >= p.n * p.c || j >= s4) {
        return;
    }
    let i = nc * s4 + j;
    let ch = nc % p.c;
    let seg = nc / (p.c / p.groups);
    let r = rstd[seg];
    let xh = (x4[i] - mean[seg]) * r;
    var g = dy4[i];
    if (RELU) {
        g = select(g, vec4<f32>(0.0), xh * w[ch] + b[ch] <= vec4<f32>(0.0));
    }
    let off = 2u * p.n * p.c;
    let a = ws_in[off + seg];
    let bb = ws_in[off + p.n * p.groups + seg];
    dx4[i] = r * (w[ch] * g - a - xh * bb);
}
