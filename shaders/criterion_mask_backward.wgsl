// The backward of `criterion_mask.wgsl`'s `forward` (see there): one thread per point,
//   dx = dl_bce·(s − t)/P − dl_dice·(2t·den − num)/den²·s(1 − s),  s = sigmoid(x).

struct Params {
    rows: u32,
    points: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> t: array<f32>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;
@group(0) @binding(4) var<storage, read> dloss: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(64)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.rows * p.points) {
        return;
    }
    let r = i / p.points;
    let v = x[i];
    let l = t[i];
    let s = 1.0 / (1.0 + exp(-v));
    let num = stats[2u * r];
    let den = stats[2u * r + 1u];
    let d_bce = dloss[2u * r] * (s - l) / f32(p.points);
    let d_dice = -dloss[2u * r + 1u] * (2.0 * l * den - num) / (den * den) * s * (1.0 - s);
    dx[i] = d_bce + d_dice;
}
