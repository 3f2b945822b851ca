// Mask2Former's importance sampling (src/ops/criterion): per row r, of the M candidate points
// cand [R, M, 2] keep the K most uncertain (largest −|x|, x [R, M] the logits sampled there;
// ties by lowest index), in index order, then the E = P − K uniform points extra [R, E, 2]:
// out [R, P, 2].
// One 256-thread workgroup per row. The K-th smallest key |x| (its f32 bits, which order like
// the values for non-negative floats) is found by a radix select: four passes of 8 bits, each a
// histogram in workgroup atomics over the keys that share the digits found so far. Then the row
// is compacted in chunks of 256 with two workgroup prefix sums (keys below the threshold, and
// the first `need` keys equal to it). Each invocation loops M/256 times per pass, well under
// llvmpipe's loop budget (checked by the launcher).

struct Params {
    rows: u32,
    cand: u32,
    keep: u32,
    extra: u32,
}

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> cand: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read> extra: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read_write> out: array<vec2<f32>>;

var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> scan: array<u32, 256>;
var<workgroup> found: vec2<u32>;

fn key(i: u32) -> u32 {
    return bitcast<u32>(x[i]) & 0x7fffffffu;
}

// Inclusive prefix sum of scan[] (Hillis-Steele); every thread must call it.
fn prefix_sum(lid: u32) {
    for (var o = 1u; o < WG; o <<= 1u) {
        var v = scan[lid];
        if (lid >= o) {
            v += scan[lid - o];
        }
        workgroupBarrier();
        scan[lid] = v;
        workgroupBarrier();
    }
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    // Uniform control flow: every thread reaches every barrier, dead rows included.
    let r = wid.x + wid.y * nwg.x;
    let live = r < p.rows;
    let row = r * p.cand;
    let total = p.keep + p.extra;
    // Radix select of the keep-th smallest key: `prefix` holds its digits found so far and
    // `rank` its 1-based rank among the keys that share them.
    var prefix = 0u;
    var rank = p.keep;
    for (var round = 0u; round < 4u; round++) {
        let shift = 24u - 8u * round;
        var high = 0u;
        if (round > 0u) {
            high = ~((1u << (shift + 8u)) - 1u);
        }
        atomicStore(&hist[lid], 0u);
        workgroupBarrier();
        if (live) {
            for (var i = lid; i < p.cand; i += WG) {
                let k = key(row + i);
                if ((k & high) == prefix) {
                    atomicAdd(&hist[(k >> shift) & 255u], 1u);
                }
            }
        }
        workgroupBarrier();
        if (lid == 0u) {
            var cum = 0u;
            var digit = 255u;
            for (var d = 0u; d < 256u; d++) {
                let c = atomicLoad(&hist[d]);
                if (cum + c >= rank) {
                    digit = d;
                    break;
                }
                cum += c;
            }
            found = vec2<u32>(digit, cum);
        }
        workgroupBarrier();
        let f = found;
        prefix |= f.x << shift;
        rank -= f.y;
        workgroupBarrier();
    }
    // `prefix` is the threshold key; `rank` keys equal to it are kept, by lowest index.
    var taken = 0u;
    var taken_eq = 0u;
    for (var start = 0u; start < p.cand; start += WG) {
        let i = start + lid;
        var k = 0xffffffffu;
        if (live && i < p.cand && p.keep > 0u) {
            k = key(row + i);
        }
        let eq = k == prefix;
        scan[lid] = u32(eq);
        workgroupBarrier();
        prefix_sum(lid);
        let eq_rank = taken_eq + scan[lid] - u32(eq);
        let eq_count = scan[WG - 1u];
        workgroupBarrier();
        let sel = k < prefix || (eq && eq_rank < rank);
        scan[lid] = u32(sel);
        workgroupBarrier();
        prefix_sum(lid);
        if (sel) {
            out[r * total + taken + scan[lid] - 1u] = cand[row + i];
        }
        taken += scan[WG - 1u];
        taken_eq += eq_count;
        workgroupBarrier();
    }
    if (live) {
        for (var j = lid; j < p.extra; j += WG) {
            out[r * total + p.keep + j] = extra[r * p.extra + j];
        }
    }
}
