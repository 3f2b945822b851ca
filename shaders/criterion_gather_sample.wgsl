// Target labels at points (src/ops/criterion), from bit-packed binary masks: bit
// `plane·H·W + y·W + x` of `bits` (little-endian within each u32 word) is pixel (x, y) of a plane.
// out[r, p] is plane idx[r] (or plane r, with IDENTITY) sampled bilinearly at
// coords[r / group, p] in [0, 1] (grid_sample of 2c − 1, align_corners = False, zero padding),
// or 0 where the plane index is ≥ N (an unmatched row). `group` rows share one row of coords
// (the matcher: every target of an image at the image's points). One thread per point. Forward
// only: targets carry no gradient. Binary targets as bits: 32× less to upload and hold than f32.

override IDENTITY: bool = false;

struct Params {
    rows: u32,
    points: u32,
    planes: u32,
    h: u32,
    w: u32,
    group: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> bits: array<u32>;
@group(0) @binding(2) var<storage, read> idx: array<u32>;
@group(0) @binding(3) var<storage, read> coords: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn tap(base: u32, xx: f32, yy: f32) -> f32 {
    if (xx < 0.0 || yy < 0.0 || xx >= f32(p.w) || yy >= f32(p.h)) {
        return 0.0;
    }
    let i = base + u32(yy) * p.w + u32(xx);
    return f32((bits[i >> 5u] >> (i & 31u)) & 1u);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.rows * p.points) {
        return;
    }
    let r = i / p.points;
    var plane = r;
    if (!IDENTITY) {
        plane = idx[r];
    }
    if (plane >= p.planes) {
        out[i] = 0.0;
        return;
    }
    let c = coords[(r / p.group) * p.points + (i - r * p.points)];
    // torch: ((2c − 1 + 1)·size − 1)/2, in f32 as the host criterion computes it.
    let ix = ((2.0 * c.x - 1.0 + 1.0) * f32(p.w) - 1.0) / 2.0;
    let iy = ((2.0 * c.y - 1.0 + 1.0) * f32(p.h) - 1.0) / 2.0;
    let x0 = floor(ix);
    let y0 = floor(iy);
    let fx = ix - x0;
    let fy = iy - y0;
    let base = plane * p.h * p.w;
    // The host's order: corners (x0,y0), (x1,y0), (x0,y1), (x1,y1), weights wy·wx.
    var v = tap(base, x0, y0) * ((1.0 - fy) * (1.0 - fx));
    v += tap(base, x0 + 1.0, y0) * ((1.0 - fy) * fx);
    v += tap(base, x0, y0 + 1.0) * (fy * (1.0 - fx));
    v += tap(base, x0 + 1.0, y0 + 1.0) * (fy * fx);
    out[i] = v;
}
