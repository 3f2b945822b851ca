//! Plain-Rust specification of the resampling ops in f64 (forward and backward), following
//! PyTorch's CPU kernels: `upsample_bilinear2d` (align_corners=False), legacy `upsample_nearest2d`
//! and `grid_sampler_2d` (bilinear, zeros padding, align_corners=False). Layouts are NCHW with the
//! N·C planes flattened; grids are [N, P, 2] with x before y.

/// PyTorch's `area_pixel_compute_scale` for align_corners=False: 1/scale_factor when one was
/// given, else in/out, rounded to f32 as PyTorch computes it.
pub fn source_scale(size_in: usize, size_out: usize, scale_factor: Option<f64>) -> f32 {
    match scale_factor {
        Some(s) if s > 0.0 => (1.0 / s) as f32,
        _ => size_in as f32 / size_out as f32,
    }
}

/// Lower/upper source index and the upper weight for destination index `d` (one axis).
fn linear_tap(d: usize, scale: f32, size_in: usize, size_out: usize) -> (usize, usize, f64) {
    if size_in == size_out {
        // PyTorch copies when the sizes match, whatever scale factor was given.
        return (d, d, 0.0);
    }
    let s = (scale as f64 * (d as f64 + 0.5) - 0.5).max(0.0);
    let i0 = (s.floor() as usize).min(size_in - 1);
    let l1 = (s - i0 as f64).clamp(0.0, 1.0);
    (i0, (i0 + 1).min(size_in - 1), l1)
}

/// Bilinear resize of `planes` planes of `inp` = (h, w) to `out` = (oh, ow).
pub fn bilinear(
    x: &[f64],
    planes: usize,
    inp: (usize, usize),
    out: (usize, usize),
    scale: (f32, f32),
) -> Vec<f64> {
    let (h, w) = inp;
    let (oh, ow) = out;
    let mut y = vec![0.0; planes * oh * ow];
    for pl in 0..planes {
        let src = &x[pl * h * w..(pl + 1) * h * w];
        for oy in 0..oh {
            let (y0, y1, ly) = linear_tap(oy, scale.0, h, oh);
            for ox in 0..ow {
                let (x0, x1, lx) = linear_tap(ox, scale.1, w, ow);
                y[(pl * oh + oy) * ow + ox] = (1.0 - ly)
                    * ((1.0 - lx) * src[y0 * w + x0] + lx * src[y0 * w + x1])
                    + ly * ((1.0 - lx) * src[y1 * w + x0] + lx * src[y1 * w + x1]);
            }
        }
    }
    y
}

/// Gradient of [`bilinear`] with respect to its input (the adjoint: scatter each output's
/// gradient to its four taps).
pub fn bilinear_backward(
    grad_out: &[f64],
    planes: usize,
    inp: (usize, usize),
    out: (usize, usize),
    scale: (f32, f32),
) -> Vec<f64> {
    let (h, w) = inp;
    let (oh, ow) = out;
    let mut g = vec![0.0; planes * h * w];
    for pl in 0..planes {
        for oy in 0..oh {
            let (y0, y1, ly) = linear_tap(oy, scale.0, h, oh);
            for ox in 0..ow {
                let (x0, x1, lx) = linear_tap(ox, scale.1, w, ow);
                let go = grad_out[(pl * oh + oy) * ow + ox];
                let b = pl * h * w;
                g[b + y0 * w + x0] += (1.0 - ly) * (1.0 - lx) * go;
                g[b + y0 * w + x1] += (1.0 - ly) * lx * go;
                g[b + y1 * w + x0] += ly * (1.0 - lx) * go;
                g[b + y1 * w + x1] += ly * lx * go;
            }
        }
    }
    g
}

/// PyTorch's legacy nearest source index (`nearest_idx`), computed in f32 exactly as PyTorch does
/// since the index is discrete.
pub fn nearest_index(d: usize, size_in: usize, size_out: usize, scale: f32) -> usize {
    if size_out == size_in {
        d
    } else if size_out == 2 * size_in {
        d >> 1
    } else {
        ((d as f32 * scale).floor() as usize).min(size_in - 1)
    }
}

/// Legacy nearest resize of `planes` planes.
pub fn nearest(
    x: &[f64],
    planes: usize,
    inp: (usize, usize),
    out: (usize, usize),
    scale: (f32, f32),
) -> Vec<f64> {
    let (h, w) = inp;
    let (oh, ow) = out;
    let mut y = vec![0.0; planes * oh * ow];
    for pl in 0..planes {
        for oy in 0..oh {
            let sy = nearest_index(oy, h, oh, scale.0);
            for ox in 0..ow {
                let sx = nearest_index(ox, w, ow, scale.1);
                y[(pl * oh + oy) * ow + ox] = x[(pl * h + sy) * w + sx];
            }
        }
    }
    y
}

/// The bilinear taps of grid point (gx, gy) on an (h, w) image: (y, x, weight) of the corners
/// inside the image, and the fractions (lx, ly) for the grid gradient.
fn grid_taps(gx: f64, gy: f64, h: usize, w: usize) -> ([(i64, i64, f64); 4], f64, f64) {
    let ix = ((gx + 1.0) * w as f64 - 1.0) / 2.0;
    let iy = ((gy + 1.0) * h as f64 - 1.0) / 2.0;
    let (x0, y0) = (ix.floor(), iy.floor());
    let (lx, ly) = (ix - x0, iy - y0);
    let (x0, y0) = (x0 as i64, y0 as i64);
    (
        [
            (y0, x0, (1.0 - lx) * (1.0 - ly)),
            (y0, x0 + 1, lx * (1.0 - ly)),
            (y0 + 1, x0, (1.0 - lx) * ly),
            (y0 + 1, x0 + 1, lx * ly),
        ],
        lx,
        ly,
    )
}

fn at(plane: &[f64], y: i64, x: i64, h: usize, w: usize) -> f64 {
    if y >= 0 && x >= 0 && (y as usize) < h && (x as usize) < w {
        plane[y as usize * w + x as usize]
    } else {
        0.0
    }
}

/// grid_sample: `x` [n, c, h, w], `grid` [n, points, 2] → [n, c, points].
pub fn grid_sample(x: &[f64], grid: &[f64], n: usize, c: usize, hw: (usize, usize)) -> Vec<f64> {
    let (h, w) = hw;
    let points = grid.len() / (2 * n.max(1));
    let mut y = vec![0.0; n * c * points];
    for b in 0..n {
        for p in 0..points {
            let g = &grid[(b * points + p) * 2..];
            let (taps, _, _) = grid_taps(g[0], g[1], h, w);
            for ch in 0..c {
                let plane = &x[(b * c + ch) * h * w..(b * c + ch + 1) * h * w];
                y[(b * c + ch) * points + p] = taps
                    .iter()
                    .map(|&(ty, tx, wt)| wt * at(plane, ty, tx, h, w))
                    .sum();
            }
        }
    }
    y
}

/// Gradients of [`grid_sample`] with respect to `x` and `grid`.
pub fn grid_sample_backward(
    x: &[f64],
    grid: &[f64],
    grad_out: &[f64],
    n: usize,
    c: usize,
    hw: (usize, usize),
) -> (Vec<f64>, Vec<f64>) {
    let (h, w) = hw;
    let points = grid.len() / (2 * n.max(1));
    let mut gx = vec![0.0; x.len()];
    let mut gg = vec![0.0; grid.len()];
    for b in 0..n {
        for p in 0..points {
            let g = &grid[(b * points + p) * 2..];
            let (taps, lx, ly) = grid_taps(g[0], g[1], h, w);
            let (mut dix, mut diy) = (0.0, 0.0);
            for ch in 0..c {
                let base = (b * c + ch) * h * w;
                let plane = &x[base..base + h * w];
                let go = grad_out[(b * c + ch) * points + p];
                let v: Vec<f64> = taps
                    .iter()
                    .map(|&(ty, tx, _)| at(plane, ty, tx, h, w))
                    .collect();
                dix += go * ((1.0 - ly) * (v[1] - v[0]) + ly * (v[3] - v[2]));
                diy += go * ((1.0 - lx) * (v[2] - v[0]) + lx * (v[3] - v[1]));
                for &(ty, tx, wt) in &taps {
                    if ty >= 0 && tx >= 0 && (ty as usize) < h && (tx as usize) < w {
                        gx[base + ty as usize * w + tx as usize] += wt * go;
                    }
                }
            }
            gg[(b * points + p) * 2] = dix * w as f64 / 2.0;
            gg[(b * points + p) * 2 + 1] = diy * h as f64 / 2.0;
        }
    }
    (gx, gg)
}
