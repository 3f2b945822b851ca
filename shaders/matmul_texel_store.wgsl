// Fragment: the texel entries' epilogue (shaders/matmul_texel*.wgsl, written by
// src/ops/matmul/gen_texel.py, are followed by this file). It is `epilogue_with`
// (shaders/matmul_common.wgsl) four columns at a time, storing each output as one vec4: on
// lavapipe every buffer store runs lane by lane, and one vec4 store costs about what a scalar one
// does, so products with a short K (most of a small model's) ran 1.3-1.8× slower storing scalars
// (docs/PERFORMANCE.md, "Session 11"). The launcher takes these entries only where C, the
// pre-activation and the residual are 16-byte aligned views with N a multiple of 4, or C's rows
// are padded to one (texel.rs, `padded_c` in mod.rs).

@group(0) @binding(4) var<storage, read_write> c4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> pre4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> residual4: array<vec4<f32>>;

fn activate4(v: vec4<f32>, act: u32) -> vec4<f32> {
    if (act == ACT_RELU) {
        return max(v, vec4<f32>(0.0));
    }
    if (act == ACT_GELU) {
        return vec4<f32>(activate(v.x, act), activate(v.y, act), activate(v.z, act), activate(v.w, act));
    }
    return v;
}

// Writes outputs n..n+3 of row m in C slot cz (the caller checks m < p.m and n < p.n; past N only
// into padding), given the four columns' biases (`bias4_at(n)`).
fn store4v(cz: u32, m: u32, n: u32, acc: vec4<f32>, bias4: vec4<f32>) {
    let v0 = p.alpha * acc;
    var v = v0 + bias4;
    if ((p.flags & FLAG_BIAS) == 0u) {
        // Keeps alpha·acc bit for bit (a -0.0 plus 0.0 would turn positive).
        v = v0;
    }
    let rel = cz * p.c_bs + m * p.c_rs + n;
    let ci = (p.c_off + rel) >> 2u;
    // beta = 0 never reads C, so an uninitialised (or NaN-poisoned) output is fine.
    if ((p.flags & FLAG_READ_C) != 0u) {
        v += p.beta * c4[ci];
    }
    if ((p.flags & FLAG_WRITE_PRE) != 0u) {
        pre4[(p.p_off + rel) >> 2u] = v;
    }
    var res = activate4(v, (p.flags >> 4u) & 3u);
    if ((p.flags & FLAG_RESIDUAL) != 0u) {
        res += residual4[(p.r_off + rel) >> 2u];
    }
    c4[ci] = res;
}
