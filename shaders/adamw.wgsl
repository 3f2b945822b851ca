// AdamW (decoupled weight decay, Loshchilov & Hutter; the PyTorch torch.optim.AdamW update) over
// many parameters in one launch: gradient clipping scale, both moments, bias correction, decay
// and the parameter update. The launch binds one window of four arenas with the same layout
// (gradients, parameters, first and second moments) and a table of segments: a tensor, or the
// part of one inside the window, with its parameter group's lr multiplier and weight decay.
// Each segment takes ceil(len / 2048) consecutive workgroups, each invocation updating 8
// elements 256 apart (coalesced on GPUs), and the table names each workgroup's segment: one
// load, not a search. On llvmpipe the table reads cost as much as an update, so sharing them
// by 8 updates makes the launch ~20% faster than the per-tensor kernel it replaces (a search
// per invocation made it 1.6x slower).
// Per-step values (lr, bias corrections) come from a small storage buffer the host rewrites
// before each submit, so the dispatches are built once.

struct Params {
    segments: u32,   // segments of the table
    workgroups: u32, // workgroups of all segments
}

// table[8s .. 8s + 5]: segment s's first element in the window, length, first workgroup,
// lr multiplier and weight decay (f32 bits); then table[8 * segments + w]: workgroup w's segment.
// Written by the host in f64 and rounded once (1 - 0.999 in f32 would be off by 1e-5):
// hyper[0] lr, [1] beta1, [2] 1 - beta1, [3] beta2, [4] 1 - beta2, [5] eps,
// [6] 1 - beta1^t, [7] 1 - beta2^t, [8] max gradient norm (0: no clipping).
// All zero before the first AdamW::begin_step: then the kernel changes nothing.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> hyper: array<f32, 12>;
@group(0) @binding(2) var<storage, read> sumsq: array<f32>;
@group(0) @binding(3) var<storage, read> table: array<u32>;
@group(0) @binding(4) var<storage, read> grad: array<f32>;
@group(0) @binding(5) var<storage, read_write> param: array<f32>;
@group(0) @binding(6) var<storage, read_write> m: array<f32>;
@group(0) @binding(7) var<storage, read_write> v: array<f32>;

const PER: u32 = 8u; // elements per invocation (ELEMENTS_PER_WORKGROUP / 256 in src/optim/adamw.rs)

fn update(i: u32, lr: f32, wd: f32, scale: f32) {
    let g = grad[i] * scale;
    let mi = hyper[1] * m[i] + hyper[2] * g;
    let vi = hyper[3] * v[i] + hyper[4] * g * g;
    m[i] = mi;
    v[i] = vi;
    let denom = sqrt(vi) / sqrt(hyper[7]) + hyper[5];
    param[i] = param[i] * (1.0 - lr * wd) - (lr / hyper[6]) * mi / denom;
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    // 2-D grid past 65535 workgroups: linear workgroup index over x then y.
    let w = wid.x + wid.y * nwg.x;
    if (w >= p.workgroups || hyper[6] == 0.0) {
        return;
    }
    let s = 8u * table[8u * p.segments + w];
    let first = (w - table[s + 2u]) * 256u * PER + lid.x;
    let len = table[s + 1u];
    let base = table[s];
    let lr = hyper[0] * bitcast<f32>(table[s + 3u]);
    let wd = bitcast<f32>(table[s + 4u]);
    // torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1.
    var scale = 1.0;
    if (hyper[8] > 0.0) {
        scale = min(1.0, hyper[8] / (sqrt(sumsq[0]) + 1e-6));
    }
    for (var k = 0u; k < PER; k++) {
        let j = first + k * 256u;
        if (j < len) {
            update(base + j, lr, wd, scale);
        }
    }
}
