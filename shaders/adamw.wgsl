// AdamW (decoupled weight decay, Loshchilov & Hutter; the PyTorch torch.optim.AdamW update) in
// one pass over a parameter: gradient clipping scale, both moments, bias correction, decay and
// the parameter update. Per-step values (lr, bias corrections) come from a small storage buffer
// the host rewrites before each submit, so the dispatches are built once.

struct Params {
    n: u32,
    lr_mult: f32,      // the parameter group's learning-rate multiplier
    weight_decay: f32, // the parameter group's decoupled weight decay
}

// Written by the host in f64 and rounded once (1 - 0.999 in f32 would be off by 1e-5):
// hyper[0] lr, [1] beta1, [2] 1 - beta1, [3] beta2, [4] 1 - beta2, [5] eps,
// [6] 1 - beta1^t, [7] 1 - beta2^t, [8] max gradient norm (0: no clipping).
// All zero before the first AdamW::begin_step: then the kernel changes nothing.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> hyper: array<f32, 12>;
@group(0) @binding(2) var<storage, read> sumsq: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> param: array<f32>;
@group(0) @binding(5) var<storage, read_write> m: array<f32>;
@group(0) @binding(6) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // 2-D grid past 65535 workgroups: linear index over x then y.
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) {
        return;
    }
    if (hyper[6] == 0.0) {
        return;
    }
    let lr = hyper[0] * p.lr_mult;
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
    param[i] = param[i] * (1.0 - lr * p.weight_decay) - (lr / hyper[6]) * mi / denom;
}
