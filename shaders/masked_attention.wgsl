// Multi-head attention of Q queries over K keys with an optional boolean mask (true = not
// attended; a row that masks every key attends to all of them, as Mask2Former does) and an
// optional additive float mask. Split-K ("flash decoding"): each thread owns one (split, batch,
// head, query) and runs an online softmax over its key range, keys in chunks of KB held in
// registers; a combine pass merges the splits and writes the log-sum-exp for backward.
//
// Layouts: q [B, Q, heads·D], k, v [B, K, heads·D] (vec4), mask [B, mask_heads, Q, K] u32 or
// f32 bits (p.mask_f32: a uniform, so both share one pipeline), additive [B, add_heads, Q, K]
// f32, mask_heads/add_heads ∈ {0 (none), 1 (shared by heads), heads}. Rows (b, h, q) are numbered ((b·heads + h)·Q + q).

struct Params {
    batch: u32,
    nq: u32,
    nk: u32,
    heads: u32,
    c4: u32, // heads · D / 4
    mask_heads: u32,
    add_heads: u32,
    splits: u32,
    chunk: u32, // keys per split
    scale: f32,
    n_threads: u32,
    mask_f32: u32, // 1: the boolean mask is f32 (nonzero = set), 0: u32
}

@group(0) @binding(0) var<uniform> p: Params;

override D4: u32 = 8u; // head_dim / 4
const MAX_D4: u32 = 16u;
const KB: u32 = 8u; // keys per register chunk
const WG: u32 = 64u;
const NEG_BIG: f32 = -3.0e38;

fn thread_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

fn is_set(raw: u32) -> bool {
    if (p.mask_f32 != 0u) {
        return bitcast<f32>(raw) != 0.0;
    }
    return raw != 0u;
}

// ---- row flags: 1 where the boolean mask hides every key of the row ------------------------

@group(0) @binding(1) var<storage, read> rf_mask: array<u32>;
@group(0) @binding(2) var<storage, read_write> rf_flags: array<u32>; // [B, mask_heads, Q]

@compute @workgroup_size(64)
fn row_flags(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = thread_index(gid, nwg);
    if (t >= p.n_threads) {
        return;
    }
    let base = t * p.nk;
    var all = 1u;
    for (var j = 0u; j < p.nk; j++) {
        if (!is_set(rf_mask[base + j])) {
            all = 0u;
            break;
        }
    }
    rf_flags[t] = all;
}

// GPU shape: one workgroup per row, its lanes scanning strided keys. A fully masked row (a query
// whose predicted mask is empty) is scanned to the end, so one thread per row would walk up to
// 15,200 keys serially.
var<workgroup> rf_open: atomic<u32>;

@compute @workgroup_size(64)
fn row_flags_wg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    // The row is uniform over the workgroup, so every lane reaches the barriers.
    let t = wid.x + wid.y * nwg.x;
    if (lid == 0u) {
        atomicStore(&rf_open, 0u);
    }
    workgroupBarrier();
    if (t < p.n_threads) {
        let base = t * p.nk;
        for (var j = lid; j < p.nk; j += WG) {
            if (!is_set(rf_mask[base + j])) {
                atomicOr(&rf_open, 1u);
                break;
            }
        }
    }
    workgroupBarrier();
    if (lid == 0u && t < p.n_threads) {
        rf_flags[t] = 1u - atomicLoad(&rf_open);
    }
}

// ---- forward, one key split per thread ------------------------------------------------------

@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> mask: array<u32>;
@group(0) @binding(5) var<storage, read> additive: array<f32>;
@group(0) @binding(6) var<storage, read> flags: array<u32>;
@group(0) @binding(7) var<storage, read_write> part_acc: array<vec4<f32>>; // [S, rows, D4]
@group(0) @binding(8) var<storage, read_write> part_ml: array<vec2<f32>>; // [S, rows] (max, sum)

// K and V are read only through these (their texel form reads texel views: ops/common/texel.rs).
fn ld_k(i: u32) -> vec4<f32> { return k[i]; }
fn ld_v(i: u32) -> vec4<f32> { return v[i]; }

// Where the row's mask and additive entries start (0xffffffff = none), and whether the boolean
// mask applies (a fully masked row attends everywhere).
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

// Logit bias of key j for the row: −inf-like when masked (reported by the bool), else additive.
fn key_bias(r: RowMasks, j: u32) -> vec2<f32> {
    var masked = 0.0;
    if (r.mask_base != 0xffffffffu && is_set(mask[r.mask_base + j])) {
        masked = 1.0;
    }
    var add = 0.0;
    if (r.add_base != 0xffffffffu) {
        add = additive[r.add_base + j];
    }
    return vec2<f32>(add, masked);
}

@compute @workgroup_size(64)
fn forward_split(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
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
    var qv: array<vec4<f32>, MAX_D4>;
    let qbase = (b * p.nq + qi) * p.c4 + h * D4;
    for (var c = 0u; c < D4; c++) {
        qv[c] = q[qbase + c] * p.scale;
    }
    var acc: array<vec4<f32>, MAX_D4>;
    for (var c = 0u; c < D4; c++) {
        acc[c] = vec4<f32>(0.0);
    }
    var m = NEG_BIG;
    var l = 0.0;
    let j0 = split * p.chunk;
    let j1 = min(j0 + p.chunk, p.nk);
    let kbase = b * p.nk;
    for (var jc = j0; jc < j1; jc += KB) {
        // The chunk's keys: a count known at compile time (KB) lets the shader compiler unroll
        // both key loops, and lavapipe's JIT time follows the unrolled size (issue 13, cold start).
        let nb = min(KB, j1 - jc);
        var sc: array<f32, KB>;
        var cmax = NEG_BIG;
        for (var u = 0u; u < nb; u++) {
            let j = jc + u;
            let kb = (kbase + j) * p.c4 + h * D4;
            var d = vec4<f32>(0.0);
            for (var c = 0u; c < D4; c++) {
                d = fma(qv[c], ld_k(kb + c), d);
            }
            let mb = key_bias(rm, j);
            var s = d.x + d.y + d.z + d.w + mb.x;
            // Masked keys drop out: they never raise the max, weigh 0.
            if (mb.y != 0.0) {
                s = NEG_BIG;
            }
            sc[u] = s;
            cmax = max(cmax, s);
        }
        let mn = max(m, cmax);
        let alpha = exp(m - mn);
        l *= alpha;
        for (var c = 0u; c < D4; c++) {
            acc[c] *= alpha;
        }
        for (var u = 0u; u < nb; u++) {
            let pj = select(exp(sc[u] - mn), 0.0, sc[u] == NEG_BIG);
            l += pj;
            let vb = (kbase + jc + u) * p.c4 + h * D4;
            for (var c = 0u; c < D4; c++) {
                acc[c] = fma(vec4<f32>(pj), ld_v(vb + c), acc[c]);
            }
        }
        m = mn;
    }
    for (var c = 0u; c < D4; c++) {
        part_acc[t * D4 + c] = acc[c];
    }
    part_ml[t] = vec2<f32>(m, l);
}

// ---- forward combine: merge the splits of one row -------------------------------------------

@group(0) @binding(1) var<storage, read> c_acc: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> c_ml: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> lse: array<f32>; // [B, heads, Q]

@compute @workgroup_size(64)
fn forward_combine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = thread_index(gid, nwg);
    let rows = p.batch * p.heads * p.nq;
    if (row >= rows) {
        return;
    }
    let qi = row % p.nq;
    let h = (row / p.nq) % p.heads;
    let b = row / (p.nq * p.heads);
    var mx = NEG_BIG;
    for (var s = 0u; s < p.splits; s++) {
        mx = max(mx, c_ml[s * rows + row].x);
    }
    var l = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        let ml = c_ml[s * rows + row];
        l += ml.y * exp(ml.x - mx);
    }
    let inv = 1.0 / l;
    let obase = (b * p.nq + qi) * p.c4 + h * D4;
    for (var c = 0u; c < D4; c++) {
        var a = vec4<f32>(0.0);
        for (var s = 0u; s < p.splits; s++) {
            let i = s * rows + row;
            a = fma(c_acc[i * D4 + c], vec4<f32>(exp(c_ml[i].x - mx)), a);
        }
        out[obase + c] = a * inv;
    }
    lse[row] = mx + log(l);
}
