// The first pass of a two-pass column sum of a row-major [R, C] matrix with C % 4 == 0 (a bias
// gradient: dy [tokens, channels] → [channels]), four columns per thread: thread (s, c4) sums
// rows [s·rn, (s + 1)·rn) of columns 4·c4 .. 4·c4 + 3 into partial[s, 4·c4 ..], in row order (as
// `shaders/sum_to_shape.wgsl`'s `partials`, whose general strided form it replaces for this
// layout). dy is read only through `ld_dy`, so on CPU adapters it runs as a texel form
// (src/ops/common/texel.rs): one vector gather per row instead of four lane-by-lane loads.
// The second pass is `reduce`'s sum over the segments.

struct Params {
    rows: u32,     // R
    c4: u32,       // C / 4
    rn: u32,       // rows per segment
    segments: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> partial: array<vec4<f32>>;

fn ld_dy(i: u32) -> vec4<f32> {
    return dy[i];
}

@compute @workgroup_size(64)
fn partials(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.segments * p.c4) {
        return;
    }
    let s = i / p.c4;
    let c = i - s * p.c4;
    let r1 = min(p.rows, (s + 1u) * p.rn);
    var acc = vec4<f32>(0.0);
    for (var r = s * p.rn; r < r1; r++) {
        acc += ld_dy(r * p.c4 + c);
    }
    partial[i] = acc;
}
