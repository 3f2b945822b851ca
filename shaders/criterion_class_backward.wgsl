// The backward of `criterion_class.wgsl`'s `forward` (see there): one thread per logit,
//   dx = dl·(exp(x − lse) − [c = k]).

struct Params {
    rows: u32,
    classes: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> target_class: array<u32>;
@group(0) @binding(3) var<storage, read> lse: array<f32>;
@group(0) @binding(4) var<storage, read> dloss: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(64)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.rows * p.classes) {
        return;
    }
    let r = i / p.classes;
    let c = i - r * p.classes;
    let hit = select(0.0, 1.0, target_class[r] == c);
    dx[i] = dloss[r] * (exp(x[i] - lse[r]) - hit);
}
