// Writes one 32-bit value into every element of a buffer (zeros, constants, NaN poison).

struct Params {
    n: u32,
    value: u32, // bit pattern, so f32, u32 and i32 tensors share the kernel
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // 2-D grid past 65535 workgroups: linear index over x then y.
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) {
        return;
    }
    out[i] = p.value;
}
