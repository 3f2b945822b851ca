// Uniform random numbers in [0, 1) from a counter-based hash (src/ops/criterion): element i of
// stream `stream` under the seed (two u32 words, an input so that each step draws anew without
// a new plan) is `hash(seed, stream, i) >> 8` times 2^-24, exact in f32. Stateless, so a run
// replays the same draws from the same seed (deterministic training and exact resume).
// `reference::uniform` is the same function on the host.

struct Params {
    n: u32,
    stream: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> seed: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

// "lowbias32" (Chris Wellons' hash prospector): a full-avalanche 32-bit mixer.
fn mix32(v: u32) -> u32 {
    var x = v;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.n) {
        return;
    }
    let key = mix32(mix32(seed[0] ^ mix32(seed[1])) ^ (p.stream * 0x9e3779b9u));
    let h = mix32(key ^ mix32(i));
    out[i] = f32(h >> 8u) * (1.0 / 16777216.0);
}
