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
// Followed by shaders/adamw_common.wgsl (parameters, hyper-parameters, segment table).

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
    if (idle(w)) {
        return;
    }
    let sg = segment_of(w);
    let first = sg.rank * 256u * PER + lid.x;
    for (var k = 0u; k < PER; k++) {
        let j = first + k * 256u;
        if (j < sg.len) {
            update(sg.base + j, sg.lr, sg.wd, sg.scale);
        }
    }
}
