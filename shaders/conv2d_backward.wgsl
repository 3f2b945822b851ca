// Conv2d backward, NCHW, layouts and Params as in conv2d.wgsl. All outputs are overwritten.
// - `dx_direct`: dx[n, ci, iy, ix] = sum_{co in group, ky, kx} w[co, ci_g, ky, kx] · dy[n, co, oy, ox]
//   over the taps with oy·sh = iy + ph − ky·dh and ox·sw = ix + pw − kx·dw exactly (the transposed
//   convolution). Register block: CO_B input channels × PX_B input pixels along a row.
// - `dw_direct`: dw[co, k] = sum_{n, oy, ox} dy[n, co, oy, ox] · x[n, tap k of (oy, ox)], k over
//   (ci_g, ky, kx). Register block: CO_B output channels × PX_B weight taps; one invocation reduces
//   over images n0..n1 × rows oy0..oy1 (the whole batch and plane unless llvmpipe's loop budget
//   splits it into launches that accumulate; deterministic, no atomics), in per-row partial sums so the
//   rounding error grows with the row length plus the row count rather than their product.
// - `db_sum`: db[co] = sum_{n, oy, ox} dy[n, co, oy, ox], one invocation per channel.
// Entry points use disjoint sets of globals; globals of different entry points may share a binding.

struct Params {
    n: u32, cin: u32, h: u32, w: u32,
    cout: u32, ho: u32, wo: u32, groups: u32,
    kh: u32, kw: u32, sh: u32, sw: u32,
    ph: u32, pw: u32, dh: u32, dw: u32,
    cin_g: u32, cout_g: u32, has_bias: u32,
    // dw_direct: images n0..n1 × output rows oy0..oy1 of the reduction; accumulate: add to dw.
    n0: u32, n1: u32, oy0: u32, oy1: u32, accumulate: u32,
}

override CO_B: u32 = 8u;
override PX_B: u32 = 8u;
const MAXC: u32 = 16u; // channel block (CO_B) bound
const MAXB: u32 = 8u;  // pixel / tap block (PX_B) bound
const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
// dx_direct
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
// dw_direct
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;
// db_sum
@group(0) @binding(2) var<storage, read_write> db: array<f32>;

fn linear(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// ---- dx -----------------------------------------------------------------------------------------

@compute @workgroup_size(WG)
fn dx_direct(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    // z: (n, input-channel block), uniform per workgroup so weight loads are uniform; x, y: pixels.
    let xblocks = (p.w + PX_B - 1u) / PX_B;
    let per_group = (p.cin_g + CO_B - 1u) / CO_B;
    let nb = p.groups * per_group;
    let t = linear(gid, nwg);
    if (t >= p.h * xblocks) {
        return;
    }
    let ix0 = (t % xblocks) * PX_B;
    let iy = t / xblocks;
    let cb = wid.z % nb;
    let nn = wid.z / nb;
    let g = cb / per_group;
    let cil0 = (cb % per_group) * CO_B; // first input channel inside the group
    let count = min(CO_B, p.cin_g - cil0);

    let taps = p.kh * p.kw;
    var acc: array<array<f32, MAXB>, MAXC>;
    for (var col = 0u; col < p.cout_g; col += 1u) {
        let co = g * p.cout_g + col;
        let dyc = (nn * p.cout + co) * p.ho;
        let wc = (co * p.cin_g + cil0) * taps;
        for (var ky = 0u; ky < p.kh; ky += 1u) {
            let ny = i32(iy + p.ph) - i32(ky * p.dh);
            if (ny < 0 || u32(ny) % p.sh != 0u || u32(ny) / p.sh >= p.ho) {
                continue;
            }
            let dyrow = (dyc + u32(ny) / p.sh) * p.wo;
            for (var kx = 0u; kx < p.kw; kx += 1u) {
                var dv: array<f32, MAXB>;
                for (var j = 0u; j < PX_B; j += 1u) {
                    let nx = i32(ix0 + j + p.pw) - i32(kx * p.dw);
                    let ux = u32(max(nx, 0));
                    let hit = nx >= 0 && ux % p.sw == 0u && ux / p.sw < p.wo;
                    dv[j] = select(0.0, dy[dyrow + min(ux / p.sw, p.wo - 1u)], hit);
                }
                let wk = wc + ky * p.kw + kx;
                for (var i = 0u; i < CO_B; i += 1u) {
                    let wv = wt[wk + min(i, count - 1u) * taps];
                    for (var j = 0u; j < PX_B; j += 1u) {
                        acc[i][j] = fma(wv, dv[j], acc[i][j]);
                    }
                }
            }
        }
    }
    for (var i = 0u; i < CO_B; i += 1u) {
        if (i < count) {
            let base = ((nn * p.cin + g * p.cin_g + cil0 + i) * p.h + iy) * p.w;
            for (var j = 0u; j < PX_B; j += 1u) {
                if (ix0 + j < p.w) {
                    dx[base + ix0 + j] = acc[i][j];
                }
            }
        }
    }
}

// ---- dweight ------------------------------------------------------------------------------------

@compute @workgroup_size(WG)
fn dw_direct(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let taps = p.kh * p.kw;
    let kn = p.cin_g * taps; // weights per output channel
    let kblocks = (kn + PX_B - 1u) / PX_B;
    let per_group = (p.cout_g + CO_B - 1u) / CO_B;
    let t = linear(gid, nwg);
    if (t >= kblocks) {
        return;
    }
    // z: output-channel block, uniform per workgroup so the dy loads are uniform; x, y: tap blocks.
    let k0 = t * PX_B;
    let cb = wid.z;
    let g = cb / per_group;
    let c0 = g * p.cout_g + (cb % per_group) * CO_B;
    let count = min(CO_B, p.cout_g - (cb % per_group) * CO_B);

    let plane = p.h * p.w;
    var xch: array<u32, MAXB>;
    var offy: array<i32, MAXB>;
    var offx: array<i32, MAXB>;
    for (var j = 0u; j < PX_B; j += 1u) {
        let k = min(k0 + j, kn - 1u);
        let tap = k % taps;
        xch[j] = (g * p.cin_g + k / taps) * plane;
        offy[j] = i32((tap / p.kw) * p.dh) - i32(p.ph);
        offx[j] = i32((tap % p.kw) * p.dw) - i32(p.pw);
    }
    var total: array<array<f32, MAXB>, MAXC>;
    for (var nn = p.n0; nn < p.n1; nn += 1u) {
        let xn = nn * p.cin * plane;
        for (var oy = p.oy0; oy < p.oy1; oy += 1u) {
            var acc: array<array<f32, MAXB>, MAXC>;
            for (var ox = 0u; ox < p.wo; ox += 1u) {
                var dv: array<f32, MAXC>;
                for (var i = 0u; i < CO_B; i += 1u) {
                    dv[i] = dy[((nn * p.cout + c0 + min(i, count - 1u)) * p.ho + oy) * p.wo + ox];
                }
                for (var j = 0u; j < PX_B; j += 1u) {
                    let iy = i32(oy * p.sh) + offy[j];
                    let ix = i32(ox * p.sw) + offx[j];
                    let inside = iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w);
                    let xi = xn + xch[j] + u32(clamp(iy, 0, i32(p.h) - 1)) * p.w
                        + u32(clamp(ix, 0, i32(p.w) - 1));
                    let xv = select(0.0, x[xi], inside);
                    for (var i = 0u; i < CO_B; i += 1u) {
                        acc[i][j] = fma(dv[i], xv, acc[i][j]);
                    }
                }
            }
            for (var i = 0u; i < CO_B; i += 1u) {
                for (var j = 0u; j < PX_B; j += 1u) {
                    total[i][j] += acc[i][j];
                }
            }
        }
    }
    for (var i = 0u; i < CO_B; i += 1u) {
        for (var j = 0u; j < PX_B; j += 1u) {
            if (i < count && k0 + j < kn) {
                let o = (c0 + i) * kn + k0 + j;
                dw[o] = select(total[i][j], dw[o] + total[i][j], p.accumulate != 0u);
            }
        }
    }
}

// ---- dbias --------------------------------------------------------------------------------------

@compute @workgroup_size(WG)
fn db_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let co = linear(gid, nwg);
    if (co >= p.cout) {
        return;
    }
    var total = 0.0;
    for (var nn = 0u; nn < p.n; nn += 1u) {
        for (var oy = 0u; oy < p.ho; oy += 1u) {
            let base = ((nn * p.cout + co) * p.ho + oy) * p.wo;
            var row = 0.0;
            for (var ox = 0u; ox < p.wo; ox += 1u) {
                row += dy[base + ox];
            }
            total += row;
        }
    }
    db[co] = total;
}
