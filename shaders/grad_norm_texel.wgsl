// The partial sums of shaders/grad_norm.wgsl for CPU adapters: the gradient window is read from
// a texel view (src/runtime/texel.rs), four elements a load, where the buffer entry's loads run
// lane by lane on llvmpipe. Shaped for a CPU: no workgroup memory and no barriers (llvmpipe
// runs a barrier by switching between the workgroup's SIMD batches), a few thousand threads,
// each writing the sum of squares of its grid-stride share of src[0..n] to dst[base + thread].
// The buffer form's finish entry adds the partials.

struct Params {
    n: u32,    // elements of src to read (a multiple of 4: whole texels)
    base: u32, // first element of dst to write
}

const WG: u32 = 64u;
// Texels per texture row: runtime::TEXEL_ROW (2048 = 1 << 11).
const ROW_MASK: u32 = 2047u;
const ROW_SHIFT: u32 = 11u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var src: texture_storage_2d<rgba32float, read>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn partial(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let stride = nwg.x * WG;
    let texels = p.n / 4u;
    var s = 0.0;
    for (var t = gid.x; t < texels; t += stride) {
        let v = textureLoad(src, vec2<u32>(t & ROW_MASK, t >> ROW_SHIFT));
        s += dot(v, v);
    }
    dst[p.base + gid.x] = s;
}
