// Resampling of NCHW planes: bilinear interpolation (align_corners=False, PyTorch semantics), its
// backward as a gather (each input pixel sums the output pixels that read it: deterministic, no
// atomics), legacy nearest, and grid_sample forward (bilinear, zero padding, align_corners=False).
//
// A launch covers `planes` planes of one chunk; `in_off` / `out_off` are element skips from the
// binding starts (bindings begin at aligned offsets, see src/ops/resample/chunk.rs). Threads are
// on a 2-D grid (x + y * num_workgroups.x) and return past the end.

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

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Resize;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn thread_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

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

@compute @workgroup_size(WG)
fn bilinear(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = thread_index(gid, nwg);
    let plane_out = p.out_h * p.out_w;
    if (i >= p.planes * plane_out) {
        return;
    }
    let ox = i % p.out_w;
    let oy = (i / p.out_w) % p.out_h;
    let pl = i / plane_out;
    let ty = linear_tap(oy, p.scale_h, p.in_h);
    let tx = linear_tap(ox, p.scale_w, p.in_w);
    let base = p.in_off + pl * p.in_h * p.in_w;
    let r0 = base + ty.i0 * p.in_w;
    let r1 = base + ty.i1 * p.in_w;
    let top = mix(src[r0 + tx.i0], src[r0 + tx.i1], tx.l1);
    let bottom = mix(src[r1 + tx.i0], src[r1 + tx.i1], tx.l1);
    dst[p.out_off + i] = (1.0 - ty.l1) * top + ty.l1 * bottom;
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
fn bilinear_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = thread_index(gid, nwg);
    let plane_in = p.in_h * p.in_w;
    if (i >= p.planes * plane_in) {
        return;
    }
    let ix = i % p.in_w;
    let iy = (i / p.in_w) % p.in_h;
    let pl = i / plane_in;
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
fn nearest(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = thread_index(gid, nwg);
    let plane_out = p.out_h * p.out_w;
    if (i >= p.planes * plane_out) {
        return;
    }
    let ox = i % p.out_w;
    let oy = (i / p.out_w) % p.out_h;
    let pl = i / plane_out;
    let sy = nearest_index(oy, p.scale_h, p.in_h, p.out_h);
    let sx = nearest_index(ox, p.scale_w, p.in_w, p.out_w);
    dst[p.out_off + i] = src[p.in_off + (pl * p.in_h + sy) * p.in_w + sx];
}
