// AdamW (the update of shaders/adamw.wgsl) for CPU adapters: the gradients, parameters and both
// moments are read from texel views (src/runtime/texel.rs) of one chunk of the four arenas, and
// the new parameters and moments are stored into the arenas' buffers, four elements at a time.
// Why: on llvmpipe every buffer load whose address differs between SIMD lanes runs lane by lane
// (the buffer kernel spends 4 such loads an element), while a texel load is one vector gather of
// four elements. The stores stay lane by lane: a texture cannot be written back into a buffer
// within the launch.
//
// The segment table is the buffer kernel's, in texels: a segment is a tensor (or its part in the
// chunk) starting at a texel (the arena's alignment is a multiple of 16 bytes), taking
// ceil(texels / 512) consecutive workgroups, each invocation updating 2 texels 256 apart (most
// tensors are small; on the demo model 2 texels an invocation measured faster than 4 or 8). The
// components past a segment's end (the entry's padding) are written back unchanged (and so would
// be any before its start).
// Followed by shaders/adamw_common.wgsl (parameters, hyper-parameters, segment table).

@group(0) @binding(4) var grad_t: texture_storage_2d<rgba32float, read>;
@group(0) @binding(5) var param_t: texture_storage_2d<rgba32float, read>;
@group(0) @binding(6) var m_t: texture_storage_2d<rgba32float, read>;
@group(0) @binding(7) var v_t: texture_storage_2d<rgba32float, read>;
@group(0) @binding(8) var<storage, read_write> param: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read_write> m: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read_write> v: array<vec4<f32>>;

const PER: u32 = 2u; // texels per invocation (TEXELS_PER_WORKGROUP / WG in src/optim/update.rs)
const WG: u32 = 256u;
// Texels per texture row: runtime::TEXEL_ROW (2048 = 1 << 11).
const ROW_MASK: u32 = 2047u;
const ROW_SHIFT: u32 = 11u;

fn at(t: u32) -> vec2<u32> {
    return vec2<u32>(t & ROW_MASK, t >> ROW_SHIFT);
}

// Texel t of the chunk, its components in elements [base, end) updated.
fn update(t: u32, base: u32, end: u32, lr: f32, wd: f32, scale: f32) {
    let c = at(t);
    let g = textureLoad(grad_t, c) * scale;
    let m0 = textureLoad(m_t, c);
    let v0 = textureLoad(v_t, c);
    let p0 = textureLoad(param_t, c);
    let mi = hyper[1] * m0 + hyper[2] * g;
    let vi = hyper[3] * v0 + hyper[4] * g * g;
    let denom = sqrt(vi) / sqrt(hyper[7]) + hyper[5];
    let pi = p0 * (1.0 - lr * wd) - (lr / hyper[6]) * mi / denom;
    let e = vec4<u32>(4u * t) + vec4<u32>(0u, 1u, 2u, 3u);
    let inside = (e >= vec4<u32>(base)) & (e < vec4<u32>(end));
    param[t] = select(p0, pi, inside);
    m[t] = select(m0, mi, inside);
    v[t] = select(v0, vi, inside);
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    // 2-D grid past 65535 workgroups: linear workgroup index over x then y.
    let w = wid.x + wid.y * nwg.x;
    if (idle(w)) {
        return;
    }
    let sg = segment_of(w);
    let base = sg.base;
    let end = base + sg.len;
    let first = base / 4u + sg.rank * WG * PER + lid.x;
    let last = (end + 3u) / 4u;
    for (var k = 0u; k < PER; k++) {
        let t = first + k * WG;
        if (t < last) {
            update(t, base, end, sg.lr, sg.wd, sg.scale);
        }
    }
}
