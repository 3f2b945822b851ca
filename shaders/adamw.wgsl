// AdamW (decoupled weight decay, Loshchilov & Hutter; the PyTorch torch.optim.AdamW update) over
// many parameters in one launch: gradient clipping scale, both moments, bias correction, decay
// and the parameter update. The launch binds one window of four arenas with the same layout
// (gradients, parameters, first and second moments) and a table of segments: a tensor, or the
// part of one inside the window, with its parameter group's lr multiplier and weight decay.
// Each segment takes ceil(len / 256) consecutive workgroups; a workgroup finds its segment by a
// binary search over the segments' first workgroups (about log2(segments) iterations).
// Per-step values (lr, bias corrections) come from a small storage buffer the host rewrites
// before each submit, so the dispatches are built once.

struct Params {
    segments: u32,   // entries of the table
    workgroups: u32, // workgroups of all segments
}

struct Segment {
    offset: u32,       // first element in the window
    len: u32,          // elements
    first_wg: u32,     // the segment's first workgroup
    lr_mult: f32,      // the parameter group's learning-rate multiplier
    weight_decay: f32, // the parameter group's decoupled weight decay
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

// Written by the host in f64 and rounded once (1 - 0.999 in f32 would be off by 1e-5):
// hyper[0] lr, [1] beta1, [2] 1 - beta1, [3] beta2, [4] 1 - beta2, [5] eps,
// [6] 1 - beta1^t, [7] 1 - beta2^t, [8] max gradient norm (0: no clipping).
// All zero before the first AdamW::begin_step: then the kernel changes nothing.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> hyper: array<f32, 12>;
@group(0) @binding(2) var<storage, read> sumsq: array<f32>;
@group(0) @binding(3) var<storage, read> table: array<Segment>;
@group(0) @binding(4) var<storage, read> grad: array<f32>;
@group(0) @binding(5) var<storage, read_write> param: array<f32>;
@group(0) @binding(6) var<storage, read_write> m: array<f32>;
@group(0) @binding(7) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    // 2-D grid past 65535 workgroups: linear workgroup index over x then y.
    let w = wid.x + wid.y * nwg.x;
    if (w >= p.workgroups || hyper[6] == 0.0) {
        return;
    }
    // The last segment whose first workgroup is at most w: table[lo].first_wg <= w < table[hi].
    var lo = 0u;
    var hi = p.segments;
    while (hi - lo > 1u) {
        let mid = (lo + hi) / 2u;
        if (table[mid].first_wg <= w) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let s = table[lo];
    let j = (w - s.first_wg) * 256u + lid.x;
    if (j >= s.len) {
        return;
    }
    let i = s.offset + j;
    let lr = hyper[0] * s.lr_mult;
    // torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1.
    var scale = 1.0;
    if (hyper[8] > 0.0) {
        scale = min(1.0, hyper[8] / (sqrt(sumsq[0]) + 1e-6));
    }
    let g = grad[i] * scale;
    let mi = hyper[1] * m[i] + hyper[2] * g;
    let vi = hyper[3] * v[i] + hyper[4] * g * g;
    m[i] = mi;
    v[i] = vi;
    let denom = sqrt(vi) / sqrt(hyper[7]) + hyper[5];
    param[i] = param[i] * (1.0 - lr * s.weight_decay) - (lr / hyper[6]) * mi / denom;
}
