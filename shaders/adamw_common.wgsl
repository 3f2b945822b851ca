// Fragment: what the two AdamW kernels share (shaders/adamw.wgsl over buffers,
// shaders/adamw_texel.wgsl over texel views; each is followed by this file): the launch's
// parameter block, hyper-parameters, gradient-norm sum and segment table, and reading them.
//
// table[8s .. 8s + 5]: segment s's first element in the window, length in elements, first
// workgroup, lr multiplier and weight decay (f32 bits); then table[8 * segments + w]: workgroup
// w's segment. hyper, written by the host in f64 and rounded once (1 - 0.999 in f32 would be off
// by 1e-5): [0] lr, [1] beta1, [2] 1 - beta1, [3] beta2, [4] 1 - beta2, [5] eps,
// [6] 1 - beta1^t, [7] 1 - beta2^t, [8] max gradient norm (0: no clipping). All zero before the
// first AdamW::begin_step: then the kernels change nothing.

struct Params {
    segments: u32,   // segments of the table
    workgroups: u32, // workgroups of all segments
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> hyper: array<f32, 12>;
@group(0) @binding(2) var<storage, read> sumsq: array<f32>;
@group(0) @binding(3) var<storage, read> table: array<u32>;

// One workgroup's segment: its elements [base, base + len), the workgroup's place among the
// segment's workgroups, its learning rate and weight decay, and the gradient-clipping scale.
struct Segment {
    base: u32,
    len: u32,
    rank: u32,
    lr: f32,
    wd: f32,
    scale: f32,
}

// Workgroup w's segment (w < p.workgroups).
fn segment_of(w: u32) -> Segment {
    let s = 8u * table[8u * p.segments + w];
    // torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1.
    var scale = 1.0;
    if (hyper[8] > 0.0) {
        scale = min(1.0, hyper[8] / (sqrt(sumsq[0]) + 1e-6));
    }
    return Segment(
        table[s],
        table[s + 1u],
        w - table[s + 2u],
        hyper[0] * bitcast<f32>(table[s + 3u]),
        bitcast<f32>(table[s + 4u]),
        scale,
    );
}

// Whether workgroup w has nothing to do: past the segments, or before the first step.
fn idle(w: u32) -> bool {
    return w >= p.workgroups || hyper[6] == 0.0;
}
