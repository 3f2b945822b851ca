//! The instance kernel against the f64 reference (`reference::upsampled`): sizes where the mask
//! does not divide the output, widths off and on multiples of 32 (and under one word), masks
//! spanning several workgroups, a query whose mask is empty and one covering everything, the
//! selected queries out of order; bits and partials poisoned before the launch; under both
//! kernel policies. A bit may differ from the f64 sign only where the f64 logit is within
//! `NEAR_ZERO` of 0 (f32 rounding of the 16 taps); area and bounding box must match the bits
//! the kernel wrote exactly, and Σ sigmoid the f64 sum over those bits to f32 rounding.

use rand::Rng;

use super::reference as r;
use super::*;
use crate::testing::{cpu_policy_runtime, gpu_policy_runtime, rng, seed, uniform};

/// f32 rounding of the taps on logits of magnitude ≤ 6: well below this.
const NEAR_ZERO: f64 = 1e-5;
const POISON: u32 = 0xdead_beef;

/// The per-pixel kernels' sizes (70 columns: 3 words, the last one 6 pixels, 183 words = 3
/// blocks; 131 columns, words running on across rows within a block; 9 columns, under one word),
/// and whole words (96 columns, no padding bits).
const CASES: [Sizes; 4] = [
    super::tests::CASES[0],
    super::tests::CASES[1],
    super::tests::CASES[2],
    Sizes {
        mask: (10, 16),
        input: (40, 64),
        output: (45, 96),
    },
];

/// Queries 0 (all logits negative: an empty mask) and 1 (all positive: every pixel, since
/// bilinear weights are convex), the rest random in [-6, 6].
fn logits(g: &mut impl Rng, q: usize, s: Sizes) -> Vec<f32> {
    let plane = s.mask.0 * s.mask.1;
    let mut x = uniform(g, q * plane, -6.0, 6.0);
    x[..plane].iter_mut().for_each(|v| *v = -0.1 - v.abs());
    x[plane..2 * plane]
        .iter_mut()
        .for_each(|v| *v = 0.1 + v.abs());
    x
}

/// `[x, y, w, h]` and the pixel count of a `[h · w]` mask (zeros when empty).
fn bbox(mask: &[bool], width: usize) -> ([u32; 4], u64) {
    let on: Vec<(usize, usize)> = (0..mask.len())
        .filter(|&i| mask[i])
        .map(|i| (i % width, i / width))
        .collect();
    if on.is_empty() {
        return ([0; 4], 0);
    }
    let x0 = on.iter().map(|p| p.0).min().unwrap();
    let x1 = on.iter().map(|p| p.0).max().unwrap();
    let y0 = on.iter().map(|p| p.1).min().unwrap();
    let y1 = on.iter().map(|p| p.1).max().unwrap();
    let b = [x0, y0, x1 - x0 + 1, y1 - y0 + 1].map(|v| v as u32);
    (b, on.len() as u64)
}

#[test]
fn instance_masks_and_stats_match_the_reference() {
    for rt in [cpu_policy_runtime(), gpu_policy_runtime()] {
        for (ci, s) in CASES.iter().enumerate() {
            let seed = seed();
            let mut g = rng(seed);
            let q = 12;
            let x = logits(&mut g, q, *s);
            let selected = [3u32, 0, 1, 5, 11, 7, 2];
            let n = selected.len();
            let logits_t = rt.upload(&x, &[q, s.mask.0, s.mask.1]).unwrap();
            let up = Upsampling::new(rt, *s).unwrap();
            let table = rt.upload_u32(&selected, &[n]).unwrap();
            let mut out = InstanceMasks::new(rt, n, s.output).unwrap();
            let poison = |t: &Tensor| rt.upload_u32(&vec![POISON; t.numel()], t.shape()).unwrap();
            out.bits = poison(&out.bits);
            out.partials = poison(&out.partials);
            rt.run(&instance_into(rt, &logits_t, &up, &table, &out).unwrap());
            let (bits, stats) = pollster::block_on(out.read(rt)).unwrap();

            let want = r::upsampled(&x, q, *s);
            let (oh, ow) = s.output;
            let wpr = words_per_row(ow);
            let case = format!("case {ci} on {:?} (seed {seed})", rt.kernel_policy());
            for (j, &qi) in selected.iter().enumerate() {
                let words = &bits[j * oh * wpr..(j + 1) * oh * wpr];
                for row in words.chunks(wpr) {
                    let used = ow - 32 * (wpr - 1);
                    let pad = if used == 32 { 0 } else { row[wpr - 1] >> used };
                    assert_eq!(pad, 0, "{case}: query {qi} padding bits set");
                }
                let mask = unpack_mask(words, s.output);
                let f64_logits = &want[qi as usize];
                for (i, (&m, &l)) in mask.iter().zip(f64_logits).enumerate() {
                    assert!(
                        m == (l > 0.0) || l.abs() < NEAR_ZERO,
                        "{case}: query {qi} pixel {i}: bit {m}, f64 logit {l}"
                    );
                }
                let (want_bbox, want_area) = bbox(&mask, ow);
                let st = stats[j];
                assert_eq!(
                    (st.area, st.bbox),
                    (want_area, want_bbox),
                    "{case}: query {qi}"
                );
                let sum: f64 = mask
                    .iter()
                    .zip(f64_logits)
                    .filter(|(&m, _)| m)
                    .map(|(_, &l)| r::sigmoid(l))
                    .sum();
                assert!(
                    (st.sigmoid_sum - sum).abs() <= 1e-6 * sum.max(1.0),
                    "{case}: query {qi} Σ sigmoid {} vs {sum}",
                    st.sigmoid_sum
                );
                match qi {
                    0 => assert_eq!(st.area, 0, "{case}: the empty mask"),
                    1 => assert_eq!(
                        (st.area, st.bbox),
                        ((oh * ow) as u64, [0, 0, ow as u32, oh as u32]),
                        "{case}: the full mask"
                    ),
                    _ => {}
                }
            }
        }
    }
}

#[test]
fn instance_rejects_bad_queries() {
    let rt = cpu_policy_runtime();
    let s = CASES[0];
    let up = Upsampling::new(rt, s).unwrap();
    let x = rt.upload(&vec![0.0; 3 * 77], &[3, 7, 11]).unwrap();
    let e = instance(rt, &x, &up, &[0, 3]).err().unwrap().to_string();
    assert!(e.contains("query 3"), "{e}");
    assert!(instance(rt, &x, &up, &[]).is_err());
    let many: Vec<u32> = (0..=MAX_QUERIES as u32).map(|j| j % 3).collect();
    let e = instance(rt, &x, &up, &many).err().unwrap();
    assert!(matches!(e, Error::Unsupported { .. }), "{e}");
    let other = InstanceMasks::new(rt, 2, (5, 5)).unwrap();
    let table = rt.upload_u32(&[0, 1], &[2]).unwrap();
    assert!(instance_into(rt, &x, &up, &table, &other).is_err());
    assert_eq!(queries_per_launch(rt, s.output).unwrap(), MAX_QUERIES);
}
