// grid_sample (bilinear, zero padding, align_corners=False), PyTorch semantics, and its backward:
// input [N, C, H, W], grid [N, P, 2] (P = Hg * Wg points, x then y in [-1, 1]) → out [N, C, P].
// One thread per (item, point) computes the corner weights once and loops over the channels, so
// the grid gradient (a sum over channels) needs no atomics; the input gradient is a scatter-add.
// `*_off` are element skips from the binding starts (chunked launches, src/ops/resample/chunk.rs).

struct Grid {
    items: u32,
    channels: u32,
    in_h: u32,
    in_w: u32,
    points: u32,
    in_off: u32,
    grid_off: u32,
    out_off: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Grid;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> grid: array<f32>;
// Forward output [N, C, P].
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// Backward (bindings follow the launcher's order, so grad_out takes the forward output's slot):
// grad_out [N, C, P], grad_grid [N, P, 2], grad_input [N, C, H, W].
@group(0) @binding(3) var<storage, read> grad_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad_grid: array<f32>;
// SCATTER_BEGIN
@group(0) @binding(5) var<storage, read_write> grad_input: array<atomic<u32>>;
// Portable float add: retry a compare-exchange on the f32 bits until no other thread intervened.
fn scatter_add(i: u32, v: f32) {
    var old = atomicLoad(&grad_input[i]);
    loop {
        let r = atomicCompareExchangeWeak(&grad_input[i], old, bitcast<u32>(bitcast<f32>(old) + v));
        if (r.exchanged) {
            break;
        }
        old = r.old_value;
    }
}
// SCATTER_END

// The four corners of a bilinear tap (order: (x0,y0), (x1,y0), (x0,y1), (x1,y1)): flat offsets
// inside a plane, the fractions, and a 0/1 mask for corners inside the image (zero padding).
// Outside corners point at element 0 and have weight 0, so every read stays in bounds.
struct Corners {
    idx: vec4<u32>,
    mask: vec4<f32>,
    w: vec4<f32>,
    lx: f32,
    ly: f32,
}

fn corners(ix: f32, iy: f32) -> Corners {
    let x0 = floor(ix);
    let y0 = floor(iy);
    let lx = ix - x0;
    let ly = iy - y0;
    let xs = vec4<f32>(x0, x0 + 1.0, x0, x0 + 1.0);
    let ys = vec4<f32>(y0, y0, y0 + 1.0, y0 + 1.0);
    let hi_x = vec4<f32>(f32(p.in_w) - 1.0);
    let hi_y = vec4<f32>(f32(p.in_h) - 1.0);
    let inside = (xs >= vec4<f32>(0.0)) & (xs <= hi_x) & (ys >= vec4<f32>(0.0)) & (ys <= hi_y);
    var c: Corners;
    c.mask = select(vec4<f32>(0.0), vec4<f32>(1.0), inside);
    c.w = c.mask * vec4<f32>((1.0 - lx) * (1.0 - ly), lx * (1.0 - ly), (1.0 - lx) * ly, lx * ly);
    let xi = vec4<u32>(clamp(xs, vec4<f32>(0.0), hi_x));
    let yi = vec4<u32>(clamp(ys, vec4<f32>(0.0), hi_y));
    c.idx = select(vec4<u32>(0u), yi * p.in_w + xi, inside);
    c.lx = lx;
    c.ly = ly;
    return c;
}

// Grid coordinates in [0, 1] (Mask2Former's point_sample coordinates) instead of [-1, 1]:
// the same sample, without a kernel to compute 2·c − 1 first.
override UNIT: bool = false;

// Unnormalise with align_corners=False: -1 (or 0 with UNIT) is the left edge of pixel 0, +1 the
// right edge of the last pixel.
fn tap(t: u32) -> Corners {
    let g = p.grid_off + 2u * t;
    let size = vec2<f32>(f32(p.in_w), f32(p.in_h));
    let xy = vec2<f32>(grid[g], grid[g + 1u]);
    var pix = ((xy + 1.0) * size - 1.0) * 0.5;
    if (UNIT) {
        pix = xy * size - 0.5;
    }
    return corners(pix.x, pix.y);
}

@compute @workgroup_size(WG)
fn grid_sample(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * WG;
    if (t >= p.items * p.points) {
        return;
    }
    let n = t / p.points;
    let pt = t % p.points;
    let c = tap(t);
    let plane = p.in_h * p.in_w;
    for (var ch = 0u; ch < p.channels; ch++) {
        let b = p.in_off + (n * p.channels + ch) * plane;
        let v = vec4<f32>(input[b + c.idx.x], input[b + c.idx.y], input[b + c.idx.z], input[b + c.idx.w]);
        out[p.out_off + (n * p.channels + ch) * p.points + pt] = dot(c.w, v);
    }
}

// grad_input must be zero before this runs (the launcher records the zero fill); grad_grid is
// overwritten.
@compute @workgroup_size(WG)
fn grid_sample_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * WG;
    if (t >= p.items * p.points) {
        return;
    }
    let n = t / p.points;
    let pt = t % p.points;
    let c = tap(t);
    let plane = p.in_h * p.in_w;
    var gx = 0.0;
    var gy = 0.0;
    for (var ch = 0u; ch < p.channels; ch++) {
        let b = p.in_off + (n * p.channels + ch) * plane;
        let go = grad_out[p.out_off + (n * p.channels + ch) * p.points + pt];
        let v = c.mask * vec4<f32>(input[b + c.idx.x], input[b + c.idx.y], input[b + c.idx.z], input[b + c.idx.w]);
        gx += go * ((1.0 - c.ly) * (v.y - v.x) + c.ly * (v.w - v.z));
        gy += go * ((1.0 - c.lx) * (v.z - v.x) + c.lx * (v.w - v.y));
        if (go != 0.0) {
            if (c.w.x != 0.0) { scatter_add(b + c.idx.x, c.w.x * go); }
            if (c.w.y != 0.0) { scatter_add(b + c.idx.y, c.w.y * go); }
            if (c.w.z != 0.0) { scatter_add(b + c.idx.z, c.w.z * go); }
            if (c.w.w != 0.0) { scatter_add(b + c.idx.w, c.w.w * go); }
        }
    }
    // d(ix)/d(grid x) = W / 2 and d(iy)/d(grid y) = H / 2 (W and H for unit coordinates).
    let scale = select(0.5, 1.0, UNIT);
    grad_grid[p.grid_off + 2u * t] = gx * f32(p.in_w) * scale;
    grad_grid[p.grid_off + 2u * t + 1u] = gy * f32(p.in_h) * scale;
}
