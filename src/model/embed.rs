//! Host-side constants of the network: sine position embeddings and deformable-attention
//! reference points. They depend only on the feature-map sizes, so each graph uploads them once.

/// Sine position embedding of an `h x w` map with no padding (transformers'
/// `Mask2FormerSinePositionEmbedding`, normalize=True, scale 2π, temperature 10000), as tokens:
/// `[h * w, 2 * num_feats]`, channels ordered (y sin/cos interleaved, then x).
pub fn sine_position_embedding(h: usize, w: usize, num_feats: usize) -> Vec<f32> {
    let scale = 2.0 * std::f64::consts::PI;
    let eps = 1e-6;
    // Computed in f32 like PyTorch, so parity does not depend on rounding in a different order.
    let dim_t: Vec<f32> = (0..num_feats)
        .map(|i| 10000f32.powf(2.0 * (i / 2) as f32 / num_feats as f32))
        .collect();
    let c = 2 * num_feats;
    let mut out = vec![0.0f32; h * w * c];
    for y in 0..h {
        let ye = ((y + 1) as f32 / (h as f32 + eps as f32)) * scale as f32;
        for x in 0..w {
            let xe = ((x + 1) as f32 / (w as f32 + eps as f32)) * scale as f32;
            let row = &mut out[(y * w + x) * c..(y * w + x + 1) * c];
            for i in 0..num_feats {
                let (py, px) = (ye / dim_t[i], xe / dim_t[i]);
                // Even feature indices take sin, odd take cos (the stack/flatten in the original).
                row[i] = if i % 2 == 0 { py.sin() } else { py.cos() };
                row[num_feats + i] = if i % 2 == 0 { px.sin() } else { px.cos() };
            }
        }
    }
    out
}

/// Deformable-attention reference points for the flattened levels with no padding:
/// `[S, L, 2]` (x, y), the centre of each token of its own level, repeated for every level.
pub fn reference_points(shapes: &[(usize, usize)]) -> Vec<f32> {
    let l = shapes.len();
    let s: usize = shapes.iter().map(|(h, w)| h * w).sum();
    let mut out = Vec::with_capacity(s * l * 2);
    for &(h, w) in shapes {
        for y in 0..h {
            for x in 0..w {
                let rx = (x as f32 + 0.5) / w as f32;
                let ry = (y as f32 + 0.5) / h as f32;
                for _ in 0..l {
                    out.push(rx);
                    out.push(ry);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_embedding_layout_and_values() {
        let (h, w, f) = (3, 5, 4);
        let pe = sine_position_embedding(h, w, f);
        assert_eq!(pe.len(), h * w * 2 * f);
        // Token (y=2, x=4), the last one: coordinates are (i+1)/(n+eps)·2π.
        let t = &pe[(2 * w + 4) * 8..];
        let two_pi = 2.0 * std::f32::consts::PI;
        let (vy, vx) = (3.0 / (3.0 + 1e-6) * two_pi, 5.0 / (5.0 + 1e-6) * two_pi);
        assert!((t[0] - vy.sin()).abs() < 1e-6);
        assert!((t[1] - vy.cos()).abs() < 1e-6);
        let d2 = 10000f32.powf(2.0 / 4.0);
        assert!((t[2] - (vy / d2).sin()).abs() < 1e-6);
        assert!((t[4] - vx.sin()).abs() < 1e-6, "x half starts at num_feats");
    }

    #[test]
    fn reference_points_are_token_centres() {
        let r = reference_points(&[(2, 2), (1, 1)]);
        assert_eq!(r.len(), 5 * 2 * 2);
        assert_eq!(&r[0..4], &[0.25, 0.25, 0.25, 0.25]);
        assert_eq!(&r[16..20], &[0.5, 0.5, 0.5, 0.5]);
    }
}
