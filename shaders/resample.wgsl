// Resampling of NCHW planes: bilinear interpolation (align_corners=False, PyTorch semantics), its
// backward as a gather (each input pixel sums the output pixels that read it: deterministic, no
// atomics), legacy nearest, and grid_sample forward (bilinear, zero padding, align_corners=False).
//
// A launch covers `planes` planes of one chunk; `in_off` / `out_off` are element skips from the
// binding starts (bindings begin at aligned offsets, see src/ops/resample/chunk.rs). The grid is
// 3-D — x: column, y: row (or block of ROWS rows), z: plane — of the tensor written, so no thread
// divides integers (vector integer division is scalarised on CPU adapters).

struct Resize {
    planes: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    in_off: u32,
    out_off: u32,
    _pad: u32,
    // Source pixels per destination pixel (PyTorch's `area_pixel_compute_scale`).
    scale_h: f32,
    scale_w: f32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Resize;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// PyTorch's linear source index: `scale * (d + 0.5) - 0.5` clamped at 0, the lower neighbour
// clamped to the last pixel and the fraction clamped to [0, 1] (`guard_index_and_lambda`).
struct Tap {
    i0: u32,
    i1: u32,
    l1: f32,
}

fn linear_tap(d: u32, scale: f32, size: u32) -> Tap {
    let s = max(scale * (f32(d) + 0.5) - 0.5, 0.0);
    let i0 = min(u32(floor(s)), size - 1u);
    let l1 = clamp(s - f32(i0), 0.0, 1.0);
    var t: Tap;
    t.i0 = i0;
    t.i1 = min(i0 + 1u, size - 1u);
    t.l1 = l1;
    return t;
}

// Output rows per `bilinear` / `nearest` thread (set by the launcher): the column's source taps are computed once, and
// consecutive rows reading the same two source rows reuse the horizontally interpolated values
// (an integer upsample by k reuses them k times), leaving one lerp and one store per pixel.
override ROWS: u32 = 16u;

@compute @workgroup_size(WG)
fn bilinear(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ox = gid.x;
    let pl = gid.z;
    let oy0 = gid.y * ROWS;
    if (ox >= p.out_w || oy0 >= p.out_h || pl >= p.planes) {
        return;
    }
    let tx = linear_tap(ox, p.scale_w, p.in_w);
    let base = p.in_off + pl * p.in_h * p.in_w;
    let obase = p.out_off + pl * p.out_h * p.out_w + ox;
    // Source rows of the cached horizontal lerps (none yet).
    var y0 = 0xffffffffu;
    var y1 = 0xffffffffu;
    var top = 0.0;
    var bottom = 0.0;
    for (var oy = oy0; oy < min(oy0 + ROWS, p.out_h); oy++) {
        let ty = linear_tap(oy, p.scale_h, p.in_h);
        if (ty.i0 != y0 || ty.i1 != y1) {
            let r0 = base + ty.i0 * p.in_w;
            let r1 = base + ty.i1 * p.in_w;
            top = mix(src[r0 + tx.i0], src[r0 + tx.i1], tx.l1);
            bottom = mix(src[r1 + tx.i0], src[r1 + tx.i1], tx.l1);
            y0 = ty.i0;
            y1 = ty.i1;
        }
        dst[obase + oy * p.out_w] = (1.0 - ty.l1) * top + ty.l1 * bottom;
    }
}

// Weight with which destination index `d` reads source index `s` along one axis.
fn tap_weight(t: Tap, s: u32) -> f32 {
    return select(0.0, 1.0 - t.l1, t.i0 == s) + select(0.0, t.l1, t.i1 == s);
}

// First destination index that can read source index `s`: its source coordinate must be at least
// s - 1; half a pixel of margin absorbs rounding (extra candidates get weight 0).
fn first_reader(s: u32, scale: f32) -> u32 {
    let d = (f32(s) - 1.0) / scale - 0.5;
    return u32(max(floor(d), 0.0));
}

// Backward of `bilinear` as a gather: `src` is grad_out [planes, out_h, out_w], `dst` is grad_in
// [planes, in_h, in_w] (overwritten). Rows and columns that read a pixel form contiguous ranges
// because the source index grows with the destination index.
@compute @workgroup_size(WG)
fn bilinear_backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ix = gid.x;
    let iy = gid.y;
    let pl = gid.z;
    if (ix >= p.in_w || iy >= p.in_h || pl >= p.planes) {
        return;
    }
    let i = (pl * p.in_h + iy) * p.in_w + ix;
    let base = p.out_off + pl * p.out_h * p.out_w;
    var acc = 0.0;
    for (var oy = first_reader(iy, p.scale_h); oy < p.out_h; oy++) {
        let ty = linear_tap(oy, p.scale_h, p.in_h);
        if (ty.i0 > iy) {
            break;
        }
        let wy = tap_weight(ty, iy);
        if (wy == 0.0) {
            continue;
        }
        var row = 0.0;
        for (var ox = first_reader(ix, p.scale_w); ox < p.out_w; ox++) {
            let tx = linear_tap(ox, p.scale_w, p.in_w);
            if (tx.i0 > ix) {
                break;
            }
            row += tap_weight(tx, ix) * src[base + oy * p.out_w + ox];
        }
        acc += wy * row;
    }
    dst[p.in_off + i] = acc;
}

// PyTorch's legacy `nearest`: floor(d * scale) clamped to the last pixel, with the exact cases
// out == in (copy) and out == 2 * in (d >> 1) that PyTorch special-cases.
fn nearest_index(d: u32, scale: f32, size_in: u32, size_out: u32) -> u32 {
    if (size_out == size_in) {
        return d;
    }
    if (size_out == 2u * size_in) {
        return d >> 1u;
    }
    return min(u32(floor(f32(d) * scale)), size_in - 1u);
}

@compute @workgroup_size(WG)
fn nearest(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ox = gid.x;
    let pl = gid.z;
    let oy0 = gid.y * ROWS;
    if (ox >= p.out_w || oy0 >= p.out_h || pl >= p.planes) {
        return;
    }
    let sx = nearest_index(ox, p.scale_w, p.in_w, p.out_w);
    let base = p.in_off + pl * p.in_h * p.in_w + sx;
    let obase = p.out_off + pl * p.out_h * p.out_w + ox;
    for (var oy = oy0; oy < min(oy0 + ROWS, p.out_h); oy++) {
        let sy = nearest_index(oy, p.scale_h, p.in_h, p.out_h);
        dst[obase + oy * p.out_w] = src[base + sy * p.in_w];
    }
}
