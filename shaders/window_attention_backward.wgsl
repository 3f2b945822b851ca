// Backward of shaders/window_attention.wgsl, deterministic (no atomics):
//   bwd_query  one thread per (batch, window, head, query): recomputes the probabilities from the
//              saved log-sum-exp, writes dq and (p, dscore) of every key of its row to `pds`;
//   bwd_key    one thread per (batch, window, head, key): dk = scale·Σ_i ds·q_i, dv = Σ_i p·dO_i;
//              padding keys write to a per-token scratch reduced by bwd_pad;
//   bwd_table_sum / bwd_table   d(relative_position_bias_table) by gathers: sum dscore over
//              windows per (head, i, j), then over the (i, j) pairs sharing a table entry;
//   bwd_pad    sums the padding tokens' dk / dv (the key / value bias gradients of HF's padding).
// Layouts and numbering as in the forward shader.

struct Params {
    batch: u32,
    height: u32,
    width: u32,
    c4: u32,
    heads: u32,
    hp: u32,
    wp: u32,
    nww: u32,
    nw: u32,
    shift: u32,
    has_pad: u32,
    scale: f32,
    n_rows: u32,
    n_pad: u32,
    seg: u32,      // windows (bwd_table_sum) or padding rows (bwd_pad_partial) per segment
    pad_rows: u32, // rows bwd_pad sums: B·n_pad, or the segments of bwd_pad_partial
}

@group(0) @binding(0) var<uniform> p: Params;

override WIN: u32 = 7u;
override D4: u32 = 8u;
const MAX_D4: u32 = 16u;
const WG: u32 = 64u;

fn region(c: u32, n: u32) -> u32 {
    return select(select(2u, 1u, c + p.shift < n), 0u, c + WIN < n);
}

fn unshift(c: u32, n: u32) -> u32 {
    let t = c + p.shift;
    return select(t, t - n, t >= n);
}

fn thread_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// A row or column of a window: its (b, window, head, token) and where the token sits.
struct Tok {
    b: u32,
    win: u32,
    h: u32,
    i: u32,
    sy: u32, // shifted frame
    sx: u32,
    oy: u32, // padded map
    ox: u32,
    real: bool,
}

fn decode(t: u32) -> Tok {
    let n = WIN * WIN;
    var r = t / n;
    let i = t % n;
    let h = r % p.heads;
    r = r / p.heads;
    let win = r % p.nw;
    let b = r / p.nw;
    let sy = (win / p.nww) * WIN + i / WIN;
    let sx = (win % p.nww) * WIN + i % WIN;
    let oy = unshift(sy, p.hp);
    let ox = unshift(sx, p.wp);
    return Tok(b, win, h, i, sy, sx, oy, ox, oy < p.height && ox < p.width);
}

// Token j of the same window as `a`.
fn sibling(a: Tok, j: u32) -> Tok {
    let sy = (a.win / p.nww) * WIN + j / WIN;
    let sx = (a.win % p.nww) * WIN + j % WIN;
    let oy = unshift(sy, p.hp);
    let ox = unshift(sx, p.wp);
    return Tok(a.b, a.win, a.h, j, sy, sx, oy, ox, oy < p.height && ox < p.width);
}

fn token_base(a: Tok) -> u32 {
    return ((a.b * p.height + a.oy) * p.width + a.ox) * p.c4 + a.h * D4;
}

// ---- query pass -------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> table: array<f32>;
@group(0) @binding(5) var<storage, read> pad_k: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> pad_v: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> out: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read> lse: array<f32>;
@group(0) @binding(9) var<storage, read> dout: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read_write> dq: array<vec4<f32>>;
@group(0) @binding(11) var<storage, read_write> pds: array<vec2<f32>>; // [B, nw, heads, N, N]

// The texel form of bwd_query (CPU adapters, ops/common/texel.rs) reads k and v from views.
fn ld_k(i: u32) -> vec4<f32> { return k[i]; }
fn ld_v(i: u32) -> vec4<f32> { return v[i]; }

@compute @workgroup_size(64)
fn bwd_query(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = thread_index(gid, nwg);
    if (t >= p.n_rows) {
        return;
    }
    let n = WIN * WIN;
    let a = decode(t);
    if (!a.real) {
        // A padding query's output was cropped: no gradient flows through its row.
        for (var j = 0u; j < n; j++) {
            pds[t * n + j] = vec2<f32>(0.0);
        }
        return;
    }
    let base = token_base(a);
    var qv: array<vec4<f32>, MAX_D4>;
    var gv: array<vec4<f32>, MAX_D4>;
    var acc: array<vec4<f32>, MAX_D4>;
    var dsum = vec4<f32>(0.0);
    for (var c = 0u; c < D4; c++) {
        qv[c] = q[base + c] * p.scale;
        gv[c] = dout[base + c];
        dsum = fma(gv[c], out[base + c], dsum);
        acc[c] = vec4<f32>(0.0);
    }
    // D_i = dO_i·O_i = Σ_j p_ij (dO_i·v_j)
    let di = dsum.x + dsum.y + dsum.z + dsum.w;
    let li = lse[t];
    let reg_i = region(a.sy, p.hp) * 3u + region(a.sx, p.wp);
    let iy = a.i / WIN;
    let ix = a.i % WIN;
    let tw = 2u * WIN - 1u;
    for (var j = 0u; j < n; j++) {
        let bt = sibling(a, j);
        let jy = j / WIN;
        let jx = j % WIN;
        var kd = vec4<f32>(0.0);
        var vd = vec4<f32>(0.0);
        var kj: array<vec4<f32>, MAX_D4>;
        if (bt.real) {
            let kb = token_base(bt);
            for (var c = 0u; c < D4; c++) {
                kj[c] = ld_k(kb + c);
                kd = fma(qv[c], kj[c], kd);
                vd = fma(gv[c], ld_v(kb + c), vd);
            }
        } else if (p.has_pad != 0u) {
            for (var c = 0u; c < D4; c++) {
                kj[c] = pad_k[a.h * D4 + c];
                kd = fma(qv[c], kj[c], kd);
                vd = fma(gv[c], pad_v[a.h * D4 + c], vd);
            }
        } else {
            for (var c = 0u; c < D4; c++) {
                kj[c] = vec4<f32>(0.0);
            }
        }
        var s = kd.x + kd.y + kd.z + kd.w + table[((iy + WIN - 1u - jy) * tw + ix + WIN - 1u - jx) * p.heads + a.h];
        if (p.shift > 0u && region(bt.sy, p.hp) * 3u + region(bt.sx, p.wp) != reg_i) {
            s -= 100.0;
        }
        let pij = exp(s - li);
        let ds = pij * (vd.x + vd.y + vd.z + vd.w - di);
        for (var c = 0u; c < D4; c++) {
            acc[c] = fma(vec4<f32>(ds), kj[c], acc[c]);
        }
        pds[t * n + j] = vec2<f32>(pij, ds);
    }
    for (var c = 0u; c < D4; c++) {
        dq[base + c] = acc[c] * p.scale;
    }
}

// ---- key pass ---------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> kq: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> kdout: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> kpds: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read_write> dk: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> dv: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> dpad: array<vec4<f32>>; // [B, n_pad, 2, C/4]

// The texel form of bwd_key reads q and dO from views.
fn ld_kq(i: u32) -> vec4<f32> { return kq[i]; }
fn ld_kdout(i: u32) -> vec4<f32> { return kdout[i]; }

// Index of padding token (y, x) of the padded map among the image's padding tokens: first the
// right-hand strip of the real rows, then the bottom rows.
fn pad_index(y: u32, x: u32) -> u32 {
    if (y < p.height) {
        return y * (p.wp - p.width) + (x - p.width);
    }
    return p.height * (p.wp - p.width) + (y - p.height) * p.wp + x;
}

@compute @workgroup_size(64)
fn bwd_key(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = thread_index(gid, nwg);
    if (t >= p.n_rows) {
        return;
    }
    let n = WIN * WIN;
    let bt = decode(t);
    if (!bt.real && p.has_pad == 0u) {
        return;
    }
    let row0 = t - bt.i; // row of query 0 of this (batch, window, head)
    var gk: array<vec4<f32>, MAX_D4>;
    var gv: array<vec4<f32>, MAX_D4>;
    for (var c = 0u; c < D4; c++) {
        gk[c] = vec4<f32>(0.0);
        gv[c] = vec4<f32>(0.0);
    }
    for (var i = 0u; i < n; i++) {
        let a = sibling(bt, i);
        if (!a.real) {
            continue;
        }
        let pd = kpds[(row0 + i) * n + bt.i];
        let qb = token_base(a);
        for (var c = 0u; c < D4; c++) {
            gk[c] = fma(vec4<f32>(pd.y), ld_kq(qb + c), gk[c]);
            gv[c] = fma(vec4<f32>(pd.x), ld_kdout(qb + c), gv[c]);
        }
    }
    if (bt.real) {
        let kb = token_base(bt);
        for (var c = 0u; c < D4; c++) {
            dk[kb + c] = gk[c] * p.scale;
            dv[kb + c] = gv[c];
        }
    } else {
        let r = (bt.b * p.n_pad + pad_index(bt.oy, bt.ox)) * 2u;
        for (var c = 0u; c < D4; c++) {
            dpad[r * p.c4 + bt.h * D4 + c] = gk[c] * p.scale;
            dpad[(r + 1u) * p.c4 + bt.h * D4 + c] = gv[c];
        }
    }
}

// ---- bias table -------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> tpds: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> dsum: array<f32>; // [heads, N, N]

// One thread per (segment, head, i, j): the sum over the segment's windows, into dsum [S, heads,
// N, N] (S = 1: the table sum itself; else partials that a second pass sums over S).
@compute @workgroup_size(64)
fn bwd_table_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let u = thread_index(gid, nwg); // ((s·heads + h)·N + i)·N + j
    let nn = WIN * WIN * WIN * WIN;
    let windows = p.batch * p.nw;
    let per_seg = p.heads * nn;
    let s = u / per_seg;
    if (s * p.seg >= windows) {
        return;
    }
    let hij = u - s * per_seg;
    let h = hij / nn;
    let ij = hij % nn;
    var acc = 0.0;
    for (var bw = s * p.seg; bw < min(windows, (s + 1u) * p.seg); bw++) {
        acc += tpds[(bw * p.heads + h) * nn + ij].y;
    }
    dsum[u] = acc;
}

@group(0) @binding(1) var<storage, read> sdsum: array<f32>;
@group(0) @binding(2) var<storage, read_write> dtable: array<f32>; // [(2·WIN−1)², heads]

@compute @workgroup_size(64)
fn bwd_table(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let u = thread_index(gid, nwg); // entry·heads + h
    let tw = 2u * WIN - 1u;
    if (u >= tw * tw * p.heads) {
        return;
    }
    let h = u % p.heads;
    let e = u / p.heads;
    // entry e = (iy − jy + WIN − 1)·tw + (ix − jx + WIN − 1): every (i, j) with those offsets.
    let oy = e / tw; // iy − jy + WIN − 1
    let ox = e % tw;
    let n = WIN * WIN;
    var s = 0.0;
    for (var iy = max(oy, WIN - 1u) - (WIN - 1u); iy < min(WIN, oy + 1u); iy++) {
        let jy = iy + WIN - 1u - oy;
        for (var ix = max(ox, WIN - 1u) - (WIN - 1u); ix < min(WIN, ox + 1u); ix++) {
            let jx = ix + WIN - 1u - ox;
            s += sdsum[(h * n + iy * WIN + ix) * n + jy * WIN + jx];
        }
    }
    dtable[u] = s;
}

// ---- padding tokens ---------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> pdpad: array<vec4<f32>>; // [rows, 2, C/4]
@group(0) @binding(2) var<storage, read_write> d_pad_k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> d_pad_v: array<vec4<f32>>;

// Sums pad_rows rows of [rows, 2, C/4] (key, value) into d_pad_k, d_pad_v: the padding tokens'
// gradients themselves, or the segment partials of bwd_pad_partial.
@compute @workgroup_size(64)
fn bwd_pad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = thread_index(gid, nwg);
    if (c >= p.c4) {
        return;
    }
    var sk = vec4<f32>(0.0);
    var sv = vec4<f32>(0.0);
    for (var r = 0u; r < p.pad_rows; r++) {
        sk += pdpad[(2u * r) * p.c4 + c];
        sv += pdpad[(2u * r + 1u) * p.c4 + c];
    }
    d_pad_k[c] = sk;
    d_pad_v[c] = sv;
}

@group(0) @binding(2) var<storage, read_write> pad_part: array<vec4<f32>>; // [S, 2, C/4]

// First pass of a two-pass bwd_pad: one thread per (segment, channel quad), seg rows each (a
// GPU would otherwise sum up to 3,100 padding rows in 24–192 threads).
@compute @workgroup_size(64)
fn bwd_pad_partial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let u = thread_index(gid, nwg);
    let s = u / p.c4;
    let c = u - s * p.c4;
    let rows = p.batch * p.n_pad;
    if (s * p.seg >= rows) {
        return;
    }
    var sk = vec4<f32>(0.0);
    var sv = vec4<f32>(0.0);
    for (var r = s * p.seg; r < min(rows, (s + 1u) * p.seg); r++) {
        sk += pdpad[(2u * r) * p.c4 + c];
        sv += pdpad[(2u * r + 1u) * p.c4 + c];
    }
    pad_part[(2u * s) * p.c4 + c] = sk;
    pad_part[(2u * s + 1u) * p.c4 + c] = sv;
}
