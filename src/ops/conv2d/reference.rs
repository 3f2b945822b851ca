//! Plain-Rust Conv2d in f64: the specification the kernels are tested against. Layouts as in
//! the module docs: x `[N, Cin, H, W]`, weight `[Cout, Cin/groups, KH, KW]`, out `[N, Cout, Ho, Wo]`.

use super::{Conv2dOptions, ConvDims};

/// Calls `f(x index, weight index, out index)` for every multiply-add of the convolution whose
/// input tap lies inside `x` (padding contributes zeros and is skipped).
fn for_each_tap(d: &ConvDims, o: &Conv2dOptions, mut f: impl FnMut(usize, usize, usize)) {
    let g = o.groups;
    let (cin_g, cout_g) = (d.cin / g, d.cout / g);
    for n in 0..d.n {
        for co in 0..d.cout {
            let grp = co / cout_g;
            for oy in 0..d.ho {
                for ox in 0..d.wo {
                    let oi = ((n * d.cout + co) * d.ho + oy) * d.wo + ox;
                    for ci in 0..cin_g {
                        for ky in 0..d.kh {
                            let iy = (oy * o.stride[0] + ky * o.dilation[0]) as isize
                                - o.padding[0] as isize;
                            if iy < 0 || iy >= d.h as isize {
                                continue;
                            }
                            for kx in 0..d.kw {
                                let ix = (ox * o.stride[1] + kx * o.dilation[1]) as isize
                                    - o.padding[1] as isize;
                                if ix < 0 || ix >= d.w as isize {
                                    continue;
                                }
                                let xi = ((n * d.cin + grp * cin_g + ci) * d.h + iy as usize) * d.w
                                    + ix as usize;
                                let wi = ((co * cin_g + ci) * d.kh + ky) * d.kw + kx;
                                f(xi, wi, oi);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Forward: `out [N, Cout, Ho, Wo]`.
pub fn forward(
    x: &[f64],
    weight: &[f64],
    bias: Option<&[f64]>,
    d: &ConvDims,
    o: &Conv2dOptions,
) -> Vec<f64> {
    let plane = d.ho * d.wo;
    let mut out: Vec<f64> = (0..d.n * d.cout * plane)
        .map(|i| bias.map_or(0.0, |b| b[(i / plane) % d.cout]))
        .collect();
    for_each_tap(d, o, |xi, wi, oi| out[oi] += weight[wi] * x[xi]);
    out
}

/// Backward for upstream gradient `dy`: `(dx, dweight, dbias)`; `dbias` is the per-channel sum
/// of `dy` (whether or not the forward had a bias).
pub fn backward(
    dy: &[f64],
    x: &[f64],
    weight: &[f64],
    d: &ConvDims,
    o: &Conv2dOptions,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; weight.len()];
    for_each_tap(d, o, |xi, wi, oi| {
        dx[xi] += weight[wi] * dy[oi];
        dw[wi] += x[xi] * dy[oi];
    });
    let plane = d.ho * d.wo;
    let mut db = vec![0.0; d.cout];
    for (i, v) in dy.iter().enumerate() {
        db[(i / plane) % d.cout] += v;
    }
    (dx, dw, db)
}
