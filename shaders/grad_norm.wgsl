// Global gradient norm for clipping: the sum of squares over every gradient tensor, without
// atomics so the result is the same on every run. Two entries share one binding layout:
//   partial: src = one window of the gradient arena (whole blocks: padding is zero), dst =
//            partials. Grid-stride sum of src[i]^2;
//            workgroup w writes its total to dst[base + w].
//   finish:  src = partials, dst = the one-element result. One workgroup sums src[0..n] into
//            dst[base].

struct Params {
    n: u32,    // elements of src to read
    base: u32, // first element of dst to write
}

const WG: u32 = 256u;
var<workgroup> acc: array<f32, WG>;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// Tree sum of acc[] into acc[0].
fn reduce_workgroup(lid: u32) {
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        workgroupBarrier();
        if (lid < s) {
            acc[lid] += acc[lid + s];
        }
    }
}

@compute @workgroup_size(256)
fn partial(@builtin(local_invocation_id) lid3: vec3<u32>,
           @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let lid = lid3.x;
    let stride = nwg.x * WG;
    var s = 0.0;
    for (var i = wid.x * WG + lid; i < p.n; i += stride) {
        let v = src[i];
        s += v * v;
    }
    acc[lid] = s;
    reduce_workgroup(lid);
    if (lid == 0u) {
        dst[p.base + wid.x] = acc[0];
    }
}

@compute @workgroup_size(256)
fn finish(@builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    var s = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        s += src[i];
    }
    acc[lid] = s;
    reduce_workgroup(lid);
    if (lid == 0u) {
        dst[p.base] = acc[0];
    }
}
