//! Where the criterion looks: bilinear point sampling (torch `grid_sample` of `2c − 1`,
//! `align_corners = False`, zero padding) and the sources of random points (`torch.rand`
//! stand-ins: seeded, or the draws transformers made, replayed).

use std::collections::VecDeque;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{CriterionError, Result};

/// Uniform random points in `[0, 1)²`, `(x, y)` with x along the width.
pub trait PointSource {
    /// `n · p` points (torch `rand(n, p, 2)` in row-major order).
    fn draw(&mut self, n: usize, p: usize) -> Result<Vec<[f32; 2]>>;

    /// `p` points for each row, row `i` belonging to image `images[i]` of the batch. Sources
    /// with one stream (seeded, replayed) draw `rand(len, p, 2)`; [`ImagePoints`] draws each
    /// row from its image's own stream.
    fn draw_images(&mut self, images: &[usize], p: usize) -> Result<Vec<[f32; 2]>> {
        self.draw(images.len(), p)
    }
}

/// Points from a seeded generator (training).
pub struct RandomPoints(ChaCha8Rng);

impl RandomPoints {
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }
}

impl PointSource for RandomPoints {
    fn draw(&mut self, n: usize, p: usize) -> Result<Vec<[f32; 2]>> {
        Ok((0..n * p)
            .map(|_| [self.0.random::<f32>(), self.0.random::<f32>()])
            .collect())
    }
}

/// Points from one seeded generator per image (training): an image's points do not depend on
/// which other images share its batch, so a global batch split over data-parallel ranks draws
/// the points one process drawing the whole batch would.
pub struct ImagePoints(Vec<ChaCha8Rng>);

impl ImagePoints {
    /// One stream per image of the batch, in batch order.
    pub fn new(seeds: impl IntoIterator<Item = u64>) -> Self {
        Self(seeds.into_iter().map(ChaCha8Rng::seed_from_u64).collect())
    }
}

impl PointSource for ImagePoints {
    /// Rows without an image: only a one-image batch has a stream to draw them from.
    fn draw(&mut self, n: usize, p: usize) -> Result<Vec<[f32; 2]>> {
        if self.0.len() != 1 {
            return Err(CriterionError::Length {
                what: "per-image point streams".into(),
                got: self.0.len(),
                expected: 1,
                shape: format!("an unattributed draw of {n} x {p} points"),
            });
        }
        self.draw_images(&vec![0; n], p)
    }

    fn draw_images(&mut self, images: &[usize], p: usize) -> Result<Vec<[f32; 2]>> {
        let mut out = Vec::with_capacity(images.len() * p);
        for &b in images {
            let count = self.0.len();
            let rng = self.0.get_mut(b).ok_or_else(|| CriterionError::Length {
                what: "per-image point streams".into(),
                got: count,
                expected: b + 1,
                shape: format!("a draw for image {b}"),
            })?;
            out.extend((0..p).map(|_| [rng.random::<f32>(), rng.random::<f32>()]));
        }
        Ok(out)
    }
}

/// Recorded draws replayed in order (parity tests): each is `([n, p, 2], values)`.
pub struct ReplayPoints {
    draws: VecDeque<([usize; 3], Vec<f32>)>,
    used: usize,
}

impl ReplayPoints {
    pub fn new(draws: Vec<([usize; 3], Vec<f32>)>) -> Self {
        Self {
            draws: draws.into(),
            used: 0,
        }
    }
    /// Draws not consumed yet.
    pub fn remaining(&self) -> usize {
        self.draws.len()
    }
}

impl PointSource for ReplayPoints {
    fn draw(&mut self, n: usize, p: usize) -> Result<Vec<[f32; 2]>> {
        let (shape, data) = self
            .draws
            .pop_front()
            .ok_or(CriterionError::ReplayExhausted(self.used))?;
        let want = [n, p, 2];
        if shape != want || data.len() != n * p * 2 {
            return Err(CriterionError::ReplayShape {
                index: self.used,
                got: shape,
                want,
            });
        }
        self.used += 1;
        Ok(data.chunks_exact(2).map(|c| [c[0], c[1]]).collect())
    }
}

/// Bilinear taps of point `(x, y) ∈ [0, 1]²` in an `h × w` map (grid_sample, align_corners =
/// False, zero padding): up to four (index, weight) pairs, out-of-map taps dropped.
pub(super) fn taps(h: usize, w: usize, p: [f32; 2]) -> ([(usize, f32); 4], usize) {
    // torch: ((2c − 1) + 1)·size − 1) / 2 = c·size − 0.5, in f32.
    let ix = ((2.0 * p[0] - 1.0 + 1.0) * w as f32 - 1.0) / 2.0;
    let iy = ((2.0 * p[1] - 1.0 + 1.0) * h as f32 - 1.0) / 2.0;
    let x0 = ix.floor();
    let y0 = iy.floor();
    let (fx, fy) = (ix - x0, iy - y0);
    let (x0, y0) = (x0 as i64, y0 as i64);
    let mut out = [(0usize, 0f32); 4];
    let mut n = 0;
    for (dy, wy) in [(0i64, 1.0 - fy), (1, fy)] {
        for (dx, wx) in [(0i64, 1.0 - fx), (1, fx)] {
            let (yy, xx) = (y0 + dy, x0 + dx);
            if yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w {
                out[n] = (yy as usize * w + xx as usize, wy * wx);
                n += 1;
            }
        }
    }
    (out, n)
}

/// The bilinear sample of `map` at `p` (see [`taps`]).
pub(super) fn sample(map: &[f32], h: usize, w: usize, p: [f32; 2]) -> f32 {
    let (t, n) = taps(h, w, p);
    t[..n].iter().map(|&(i, wt)| map[i] * wt).sum()
}
