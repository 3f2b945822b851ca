// Backward of shaders/masked_attention.wgsl, deterministic (no atomics). Probabilities are
// recomputed from the saved log-sum-exp: p_ij = exp(s_ij − lse_i), masked keys 0.
//   bwd_rowdot     D_i = dO_i·O_i per row (b, h, q);
//   bwd_dq_split   one thread per (split, row): partial dq_i = Σ_j p_ij (dO_i·v_j − D_i) k_j;
//   bwd_dq_combine sums the splits, times scale;
//   bwd_kv         one thread per (batch, head, key): dk_j = scale·Σ_i ds_ij q_i, dv_j = Σ_i p_ij dO_i.
// The row flags (fully masked rows) come from the forward shader's row_flags entry.

struct Params {
    batch: u32,
    nq: u32,
    nk: u32,
    heads: u32,
    c4: u32,
    mask_heads: u32,
    add_heads: u32,
    splits: u32,
    chunk: u32,
    scale: f32,
    n_threads: u32,
    mask_f32: u32, // 1: the boolean mask is f32 (nonzero = set), 0: u32
}

@group(0) @binding(0) var<uniform> p: Params;

override D4: u32 = 8u;
const MAX_D4: u32 = 16u;
const WG: u32 = 64u;

fn thread_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

fn is_set(raw: u32) -> bool {
    if (p.mask_f32 != 0u) {
        return bitcast<f32>(raw) != 0.0;
    }
    return raw != 0u;
}

// ---- D = dO·O ---------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> r_out: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> r_dout: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> r_dot: array<f32>; // [B, heads, Q]

@compute @workgroup_size(64)
fn bwd_rowdot(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = thread_index(gid, nwg);
    if (row >= p.batch * p.heads * p.nq) {
        return;
    }
    let qi = row % p.nq;
    let h = (row / p.nq) % p.heads;
    let b = row / (p.nq * p.heads);
    let base = (b * p.nq + qi) * p.c4 + h * D4;
    var s = vec4<f32>(0.0);
    for (var c = 0u; c < D4; c++) {
        s = fma(r_out[base + c], r_dout[base + c], s);
    }
    r_dot[row] = s.x + s.y + s.z + s.w;
}

// ---- shared by dq and dk/dv -------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> mask: array<u32>;
@group(0) @binding(5) var<storage, read> additive: array<f32>;
@group(0) @binding(6) var<storage, read> flags: array<u32>;
@group(0) @binding(7) var<storage, read> dout: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read> lse: array<f32>;
@group(0) @binding(9) var<storage, read> rowdot: array<f32>;

// Every read of q, k, v and dout goes through these: the texel forms (CPU adapters,
// ops/common/texel.rs) read k and v (bwd_dq_split) or q and dout (bwd_kv) from texel views.
fn ld_q(i: u32) -> vec4<f32> { return q[i]; }
fn ld_k(i: u32) -> vec4<f32> { return k[i]; }
fn ld_v(i: u32) -> vec4<f32> { return v[i]; }
fn ld_dout(i: u32) -> vec4<f32> { return dout[i]; }

struct RowMasks {
    mask_base: u32,
    add_base: u32,
}

fn row_masks(b: u32, h: u32, qi: u32) -> RowMasks {
    var r = RowMasks(0xffffffffu, 0xffffffffu);
    if (p.mask_heads != 0u) {
        let mh = select(0u, h, p.mask_heads > 1u);
        let row = (b * p.mask_heads + mh) * p.nq + qi;
        if (flags[row] == 0u) {
            r.mask_base = row * p.nk;
        }
    }
    if (p.add_heads != 0u) {
        let ah = select(0u, h, p.add_heads > 1u);
        r.add_base = ((b * p.add_heads + ah) * p.nq + qi) * p.nk;
    }
    return r;
}

// p_ij of row (b, h, qi) given q_i·k_j·scale; 0 for a masked key.
fn prob(r: RowMasks, j: u32, qk: f32, lse_i: f32) -> f32 {
    if (r.mask_base != 0xffffffffu && is_set(mask[r.mask_base + j])) {
        return 0.0;
    }
    var s = qk;
    if (r.add_base != 0xffffffffu) {
        s += additive[r.add_base + j];
    }
    return exp(s - lse_i);
}

@group(0) @binding(10) var<storage, read_write> part_dq: array<vec4<f32>>; // [S, rows, D4]

@compute @workgroup_size(64)
fn bwd_dq_split(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = thread_index(gid, nwg);
    if (t >= p.n_threads) {
        return;
    }
    let rows = p.batch * p.heads * p.nq;
    let row = t % rows;
    let split = t / rows;
    let qi = row % p.nq;
    let h = (row / p.nq) % p.heads;
    let b = row / (p.nq * p.heads);
    let rm = row_masks(b, h, qi);
    let base = (b * p.nq + qi) * p.c4 + h * D4;
    var qv: array<vec4<f32>, MAX_D4>;
    var gv: array<vec4<f32>, MAX_D4>;
    var acc: array<vec4<f32>, MAX_D4>;
    for (var c = 0u; c < D4; c++) {
        qv[c] = ld_q(base + c) * p.scale;
        gv[c] = ld_dout(base + c);
        acc[c] = vec4<f32>(0.0);
    }
    let li = lse[row];
    let di = rowdot[row];
    let j0 = split * p.chunk;
    let j1 = min(j0 + p.chunk, p.nk);
    for (var j = j0; j < j1; j++) {
        let kb = (b * p.nk + j) * p.c4 + h * D4;
        var kd = vec4<f32>(0.0);
        var vd = vec4<f32>(0.0);
        for (var c = 0u; c < D4; c++) {
            kd = fma(qv[c], ld_k(kb + c), kd);
            vd = fma(gv[c], ld_v(kb + c), vd);
        }
        let pij = prob(rm, j, kd.x + kd.y + kd.z + kd.w, li);
        let ds = pij * (vd.x + vd.y + vd.z + vd.w - di);
        for (var c = 0u; c < D4; c++) {
            acc[c] = fma(vec4<f32>(ds), ld_k(kb + c), acc[c]);
        }
    }
    for (var c = 0u; c < D4; c++) {
        part_dq[t * D4 + c] = acc[c];
    }
}

@group(0) @binding(10) var<storage, read_write> dk: array<vec4<f32>>;
@group(0) @binding(11) var<storage, read_write> dv: array<vec4<f32>>;

@compute @workgroup_size(64)
fn bwd_kv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = thread_index(gid, nwg); // (b·heads + h)·K + j
    if (t >= p.n_threads) {
        return;
    }
    let j = t % p.nk;
    let h = (t / p.nk) % p.heads;
    let b = t / (p.nk * p.heads);
    let kb = (b * p.nk + j) * p.c4 + h * D4;
    var kv: array<vec4<f32>, MAX_D4>;
    var vv: array<vec4<f32>, MAX_D4>;
    var gk: array<vec4<f32>, MAX_D4>;
    var gvv: array<vec4<f32>, MAX_D4>;
    for (var c = 0u; c < D4; c++) {
        kv[c] = ld_k(kb + c) * p.scale;
        vv[c] = ld_v(kb + c);
        gk[c] = vec4<f32>(0.0);
        gvv[c] = vec4<f32>(0.0);
    }
    for (var qi = 0u; qi < p.nq; qi++) {
        let row = (b * p.heads + h) * p.nq + qi;
        let qb = (b * p.nq + qi) * p.c4 + h * D4;
        var kd = vec4<f32>(0.0);
        var vd = vec4<f32>(0.0);
        for (var c = 0u; c < D4; c++) {
            kd = fma(ld_q(qb + c), kv[c], kd);
            vd = fma(ld_dout(qb + c), vv[c], vd);
        }
        let pij = prob(row_masks(b, h, qi), j, kd.x + kd.y + kd.z + kd.w, lse[row]);
        let ds = pij * (vd.x + vd.y + vd.z + vd.w - rowdot[row]);
        for (var c = 0u; c < D4; c++) {
            gk[c] = fma(vec4<f32>(ds), ld_q(qb + c), gk[c]);
            gvv[c] = fma(vec4<f32>(pij), ld_dout(qb + c), gvv[c]);
        }
    }
    for (var c = 0u; c < D4; c++) {
        dk[kb + c] = gk[c] * p.scale;
        dv[kb + c] = gvv[c];
    }
}

// ---- dq: sum of the splits --------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> c_part: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dq: array<vec4<f32>>;

@compute @workgroup_size(64)
fn bwd_dq_combine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = thread_index(gid, nwg);
    let rows = p.batch * p.heads * p.nq;
    if (row >= rows) {
        return;
    }
    let qi = row % p.nq;
    let h = (row / p.nq) % p.heads;
    let b = row / (p.nq * p.heads);
    let base = (b * p.nq + qi) * p.c4 + h * D4;
    for (var c = 0u; c < D4; c++) {
        var a = vec4<f32>(0.0);
        for (var s = 0u; s < p.splits; s++) {
            a += c_part[(s * rows + row) * D4 + c];
        }
        dq[base + c] = a * p.scale;
    }
}
