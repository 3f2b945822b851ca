// The partial sums of shaders/grad_norm.wgsl for CPU adapters: the gradient window is read from
// a texel view (src/runtime/texel.rs), four elements a load, where the buffer entry's loads run
// lane by lane on llvmpipe. Same parameters and output: workgroup w writes the sum of squares of
// its grid-stride share of src[0..n] to dst[base + w]. The finish entry stays the buffer one.

struct Params {
    n: u32,    // elements of src to read (a multiple of 4: whole texels)
    base: u32, // first element of dst to write
}

const WG: u32 = 256u;
// Texels per texture row: runtime::TEXEL_ROW (2048 = 1 << 11).
const ROW_MASK: u32 = 2047u;
const ROW_SHIFT: u32 = 11u;
var<workgroup> acc: array<f32, WG>;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var src: texture_storage_2d<rgba32float, read>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn partial(@builtin(local_invocation_id) lid3: vec3<u32>,
           @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let lid = lid3.x;
    let stride = nwg.x * WG;
    let texels = p.n / 4u;
    var s = 0.0;
    for (var t = wid.x * WG + lid; t < texels; t += stride) {
        let v = textureLoad(src, vec2<u32>(t & ROW_MASK, t >> ROW_SHIFT));
        s += dot(v, v);
    }
    acc[lid] = s;
    for (var h = WG / 2u; h > 0u; h = h / 2u) {
        workgroupBarrier();
        if (lid < h) {
            acc[lid] += acc[lid + h];
        }
    }
    if (lid == 0u) {
        dst[p.base + wid.x] = acc[0];
    }
}
