// Counts the NaN / ±inf values of an f32 buffer and finds the first one's index
// (src/ops/mask_argmax/check.rs): the finiteness check of the mask logits without reading them
// back. The test is on the bits (exponent all ones), which no fast-math assumption can drop.
//
// out[0]: count (starts at 0), out[1]: smallest index (starts at 0xffffffff).

// A launch covers one chunk: `n` values from element `skip` of the binding, which start at flat
// index `base` of the tensor.
struct Params {
    n: u32,
    skip: u32,
    base: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<atomic<u32>>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // 2-D grid past 65535 workgroups: linear index over x then y.
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) {
        return;
    }
    if ((x[p.skip + i] & 0x7f800000u) == 0x7f800000u) {
        atomicAdd(&out[0], 1u);
        atomicMin(&out[1], p.base + i);
    }
}
