//! COCO run-length encoding, bit-compatible with pycocotools (`common/maskApi.c`).
//!
//! An RLE covers a `[h, w]` mask in column-major (Fortran) order: `counts` alternate runs of 0s
//! and 1s, starting with 0s (possibly an empty run). The compressed string form packs the counts
//! LEB128-like in 6-bit characters `'0'..='o'`, with counts after the second stored as the
//! difference to the count two places earlier. Polygons are rasterised the way `rleFrPoly` does it
//! (upsample ×5, trace the boundary, keep the y-crossings), so masks from polygons match pixel for
//! pixel.

use super::{DataError, Mask};

/// A COCO run-length encoded binary mask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rle {
    pub height: usize,
    pub width: usize,
    /// Alternating run lengths (0s first), column-major.
    pub counts: Vec<u32>,
}

impl Rle {
    /// Encodes a mask (`rleEncode`).
    pub fn encode(mask: &Mask) -> Rle {
        let (h, w) = (mask.height(), mask.width());
        let mut counts = Vec::new();
        let mut prev = 0u8;
        let mut run = 0u32;
        for x in 0..w {
            for y in 0..h {
                let v = mask.data()[y * w + x];
                if v != prev {
                    counts.push(run);
                    run = 0;
                    prev = v;
                }
                run += 1;
            }
        }
        counts.push(run);
        Rle {
            height: h,
            width: w,
            counts,
        }
    }

    /// Builds an RLE from uncompressed counts, checking they cover exactly `h*w` pixels.
    pub fn from_counts(height: usize, width: usize, counts: Vec<u32>) -> Result<Rle, DataError> {
        let total: u64 = counts.iter().map(|&c| c as u64).sum();
        if total != (height * width) as u64 {
            return Err(DataError::Rle(format!(
                "counts sum to {total}, expected {height}x{width}={}",
                height * width
            )));
        }
        Ok(Rle {
            height,
            width,
            counts,
        })
    }

    /// Decodes to a row-major mask (`rleDecode`).
    pub fn decode(&self) -> Result<Mask, DataError> {
        let (h, w) = (self.height, self.width);
        let mut data = vec![0u8; h * w];
        let mut pos = 0usize;
        let mut v = 0u8;
        for &c in &self.counts {
            let end = pos + c as usize;
            if end > h * w {
                return Err(DataError::Rle(format!(
                    "counts exceed {h}x{w} pixels at run {c}"
                )));
            }
            if v == 1 {
                for p in pos..end {
                    // column-major position p -> (y = p % h, x = p / h)
                    data[(p % h) * w + p / h] = 1;
                }
            }
            pos = end;
            v ^= 1;
        }
        if pos != h * w {
            return Err(DataError::Rle(format!(
                "counts cover {pos} pixels, expected {h}x{w}={}",
                h * w
            )));
        }
        Mask::from_vec(h, w, data)
    }

    /// Number of set pixels (`rleArea`).
    pub fn area(&self) -> u64 {
        self.counts
            .iter()
            .skip(1)
            .step_by(2)
            .map(|&c| c as u64)
            .sum()
    }

    /// The compressed string form (`rleToString`).
    pub fn to_compressed(&self) -> String {
        let mut s = String::new();
        for i in 0..self.counts.len() {
            let mut x = self.counts[i] as i64;
            if i > 2 {
                x -= self.counts[i - 2] as i64;
            }
            loop {
                let mut c = (x & 0x1f) as u8;
                x >>= 5;
                let more = if c & 0x10 != 0 { x != -1 } else { x != 0 };
                if more {
                    c |= 0x20;
                }
                s.push((c + 48) as char);
                if !more {
                    break;
                }
            }
        }
        s
    }

    /// Parses the compressed string form (`rleFrString`) and checks it covers `h*w` pixels.
    pub fn from_compressed(s: &str, height: usize, width: usize) -> Result<Rle, DataError> {
        let bytes = s.as_bytes();
        let mut counts: Vec<u32> = Vec::new();
        let mut p = 0;
        while p < bytes.len() {
            let mut x: i64 = 0;
            let mut k = 0;
            loop {
                let Some(&b) = bytes.get(p) else {
                    return Err(DataError::Rle(format!("string ends inside a count: {s:?}")));
                };
                if !(48..48 + 64).contains(&b) || k > 12 {
                    return Err(DataError::Rle(format!(
                        "invalid character {:?} at {p} in {s:?}",
                        b as char
                    )));
                }
                let c = (b - 48) as i64;
                x |= (c & 0x1f) << (5 * k);
                let more = c & 0x20 != 0;
                p += 1;
                k += 1;
                if !more {
                    if c & 0x10 != 0 {
                        x |= -1i64 << (5 * k);
                    }
                    break;
                }
            }
            let m = counts.len();
            if m > 2 {
                x += counts[m - 2] as i64;
            }
            if !(0..=u32::MAX as i64).contains(&x) {
                return Err(DataError::Rle(format!("count {x} out of range in {s:?}")));
            }
            counts.push(x as u32);
        }
        Rle::from_counts(height, width, counts)
    }

    /// Rasterises one polygon `[x0, y0, x1, y1, ...]` (`rleFrPoly`).
    pub fn from_polygon(xy: &[f64], height: usize, width: usize) -> Rle {
        // Long: a step-by-step port of pycocotools' `rleFrPoly`, kept in its order to compare.
        let (h, w) = (height, width);
        let k = xy.len() / 2;
        let scale = 5.0f64;
        // upsample and get discrete points densely along the entire boundary
        let mut x: Vec<i64> = (0..k)
            .map(|j| (scale * xy[2 * j] + 0.5) as i32 as i64)
            .collect();
        let mut y: Vec<i64> = (0..k)
            .map(|j| (scale * xy[2 * j + 1] + 0.5) as i32 as i64)
            .collect();
        if k > 0 {
            x.push(x[0]);
            y.push(y[0]);
        }
        let mut u: Vec<i64> = Vec::new();
        let mut v: Vec<i64> = Vec::new();
        for j in 0..k {
            let (mut xs, mut xe, mut ys, mut ye) = (x[j], x[j + 1], y[j], y[j + 1]);
            let dx = (xe - xs).abs();
            let dy = (ys - ye).abs();
            let flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
            if flip {
                std::mem::swap(&mut xs, &mut xe);
                std::mem::swap(&mut ys, &mut ye);
            }
            let s = if dx >= dy {
                (ye - ys) as f64 / dx as f64
            } else {
                (xe - xs) as f64 / dy as f64
            };
            if dx >= dy {
                for d in 0..=dx {
                    let t = if flip { dx - d } else { d };
                    u.push(t + xs);
                    v.push((ys as f64 + s * t as f64 + 0.5) as i32 as i64);
                }
            } else {
                for d in 0..=dy {
                    let t = if flip { dy - d } else { d };
                    v.push(t + ys);
                    u.push((xs as f64 + s * t as f64 + 0.5) as i32 as i64);
                }
            }
        }
        // get points along the y-boundary and downsample
        let mut bx: Vec<i64> = Vec::new();
        let mut by: Vec<i64> = Vec::new();
        for j in 1..u.len() {
            if u[j] == u[j - 1] {
                continue;
            }
            let mut xd = (if u[j] < u[j - 1] { u[j] } else { u[j] - 1 }) as f64;
            xd = (xd + 0.5) / scale - 0.5;
            if xd.floor() != xd || xd < 0.0 || xd > w as f64 - 1.0 {
                continue;
            }
            let mut yd = (if v[j] < v[j - 1] { v[j] } else { v[j - 1] }) as f64;
            yd = (yd + 0.5) / scale - 0.5;
            if yd < 0.0 {
                yd = 0.0;
            } else if yd > h as f64 {
                yd = h as f64;
            }
            yd = yd.ceil();
            bx.push(xd as i64);
            by.push(yd as i64);
        }
        // compute the RLE given the y-boundary points
        let mut a: Vec<u32> = bx
            .iter()
            .zip(&by)
            .map(|(&xx, &yy)| (xx * h as i64 + yy) as u32)
            .collect();
        a.push((h * w) as u32);
        a.sort_unstable();
        let mut prev = 0u32;
        for val in a.iter_mut() {
            let t = *val;
            *val = val.wrapping_sub(prev);
            prev = t;
        }
        let mut b: Vec<u32> = vec![a[0]];
        let mut j = 1;
        while j < a.len() {
            if a[j] > 0 {
                b.push(a[j]);
                j += 1;
            } else {
                j += 1;
                if j < a.len() {
                    *b.last_mut().expect("b starts non-empty") += a[j];
                    j += 1;
                }
            }
        }
        Rle {
            height: h,
            width: w,
            counts: b,
        }
    }

    /// Rasterises a COCO polygon list (several parts) and merges the parts, as `annToRLE` does.
    pub fn from_polygons(polys: &[Vec<f64>], height: usize, width: usize) -> Rle {
        let parts: Vec<Rle> = polys
            .iter()
            .map(|p| Rle::from_polygon(p, height, width))
            .collect();
        Rle::merge(&parts, false).unwrap_or(Rle {
            height,
            width,
            counts: vec![(height * width) as u32],
        })
    }

    /// Union (`intersect == false`) or intersection of masks (`rleMerge`).
    /// Returns `None` for an empty list, differing sizes or empty (0-pixel) masks.
    pub fn merge(rles: &[Rle], intersect: bool) -> Option<Rle> {
        let first = rles.first()?;
        let (h, w) = (first.height, first.width);
        let mut cnts = first.counts.clone();
        for b in &rles[1..] {
            // empty counts only describe 0-pixel masks; nothing to merge run by run
            if b.height != h || b.width != w || b.counts.is_empty() || cnts.is_empty() {
                return None;
            }
            let a = std::mem::take(&mut cnts);
            let (mut ca, mut cb) = (a[0], b.counts[0]);
            let (mut v, mut va, mut vb) = (false, false, false);
            let (mut ia, mut ib) = (1usize, 1usize);
            let mut cc = 0u32;
            let mut ct = 1u32;
            while ct > 0 {
                let c = ca.min(cb);
                cc += c;
                ct = 0;
                ca -= c;
                if ca == 0 && ia < a.len() {
                    ca = a[ia];
                    ia += 1;
                    va = !va;
                }
                ct += ca;
                cb -= c;
                if cb == 0 && ib < b.counts.len() {
                    cb = b.counts[ib];
                    ib += 1;
                    vb = !vb;
                }
                ct += cb;
                let vp = v;
                v = if intersect { va && vb } else { va || vb };
                if v != vp || ct == 0 {
                    cnts.push(cc);
                    cc = 0;
                }
            }
        }
        Some(Rle {
            height: h,
            width: w,
            counts: cnts,
        })
    }

    /// Bounding box `[x, y, w, h]` (`rleToBbox`).
    pub fn to_bbox(&self) -> [f64; 4] {
        let h = self.height as u64;
        let m = self.counts.len() / 2 * 2;
        if m == 0 || h == 0 {
            return [0.0; 4];
        }
        let (mut xs, mut ys, mut xe, mut ye) = (self.width as u64, h, 0u64, 0u64);
        let mut cc = 0u64;
        let mut xp = 0u64;
        for j in 0..m {
            cc += self.counts[j] as u64;
            let t = cc - (j % 2) as u64;
            let yy = t % h;
            let xx = (t - yy) / h;
            if j % 2 == 0 {
                xp = xx;
            } else if xp < xx {
                ys = 0;
                ye = h - 1;
            }
            xs = xs.min(xx);
            xe = xe.max(xx);
            ys = ys.min(yy);
            ye = ye.max(yy);
        }
        [
            xs as f64,
            ys as f64,
            (xe - xs + 1) as f64,
            (ye - ys + 1) as f64,
        ]
    }

    /// Intersection over union of a detection with a ground truth mask (`rleIou`); for a crowd
    /// ground truth the union is the detection's area. Differing sizes give -1, as in pycocotools.
    pub fn iou(dt: &Rle, gt: &Rle, gt_crowd: bool) -> f64 {
        if dt.height != gt.height || dt.width != gt.width {
            return -1.0;
        }
        if dt.counts.is_empty() || gt.counts.is_empty() {
            return 0.0;
        }
        let (mut ca, mut cb) = (dt.counts[0], gt.counts[0]);
        let (mut va, mut vb) = (false, false);
        let (mut a, mut b) = (1usize, 1usize);
        let (mut inter, mut union) = (0u64, 0u64);
        let mut ct = 1u32;
        while ct > 0 {
            let c = ca.min(cb);
            if va || vb {
                union += c as u64;
                if va && vb {
                    inter += c as u64;
                }
            }
            ct = 0;
            ca -= c;
            if ca == 0 && a < dt.counts.len() {
                ca = dt.counts[a];
                a += 1;
                va = !va;
            }
            ct += ca;
            cb -= c;
            if cb == 0 && b < gt.counts.len() {
                cb = gt.counts[b];
                b += 1;
                vb = !vb;
            }
            ct += cb;
        }
        if inter == 0 {
            return 0.0;
        }
        if gt_crowd {
            union = dt.area();
        }
        inter as f64 / union as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(h: usize, w: usize, rows: &[&str]) -> Mask {
        let data = rows
            .iter()
            .flat_map(|r| r.bytes().map(|b| u8::from(b == b'#')))
            .collect();
        Mask::from_vec(h, w, data).unwrap()
    }

    #[test]
    fn encode_is_column_major_and_round_trips() {
        let m = mask(3, 4, &["#..#", "##..", "...#"]);
        let rle = Rle::encode(&m);
        // columns: [1,1,0] [0,1,0] [0,0,0] [1,0,1]
        assert_eq!(rle.counts, vec![0, 2, 2, 1, 4, 1, 1, 1]);
        assert_eq!(rle.area(), 5);
        assert_eq!(rle.decode().unwrap(), m);
        let s = rle.to_compressed();
        assert_eq!(Rle::from_compressed(&s, 3, 4).unwrap(), rle);
    }

    #[test]
    fn compressed_string_matches_pycocotools() {
        // pycocotools.mask.encode of a 5x5 mask with a 3x3 square at (1,1): counts [6,3,2,3,2,3,6]
        let rle = Rle::from_counts(5, 5, vec![6, 3, 2, 3, 2, 3, 6]).unwrap();
        assert_eq!(rle.to_compressed(), "6320004");
        // negative differences use the sign bit of the last 5-bit group
        let rle = Rle::from_counts(1, 200, vec![100, 50, 10, 40]).unwrap();
        let s = rle.to_compressed();
        assert_eq!(Rle::from_compressed(&s, 1, 200).unwrap(), rle);
    }

    #[test]
    fn malformed_compressed_is_an_error() {
        assert!(Rle::from_compressed("6320", 5, 5).is_err());
        assert!(Rle::from_compressed("6 3", 5, 5).is_err());
        assert!(Rle::from_compressed("0P", 5, 5).is_err());
    }

    #[test]
    fn polygon_square_and_iou() {
        let rle = Rle::from_polygon(&[1.0, 1.0, 4.0, 1.0, 4.0, 4.0, 1.0, 4.0], 6, 6);
        let m = rle.decode().unwrap();
        assert_eq!(m.area(), 9, "{:?}", rle.counts);
        assert_eq!(rle.to_compressed(), "733000;");
        assert!(m.get(1, 1) && m.get(3, 3) && !m.get(4, 4) && !m.get(0, 0));
        assert_eq!(rle.to_bbox(), [1.0, 1.0, 3.0, 3.0]);
        let other = Rle::encode(&mask(
            6,
            6,
            &["......", ".##...", ".##...", "......", "......", "......"],
        ));
        assert!((Rle::iou(&other, &rle, false) - 4.0 / 9.0).abs() < 1e-12);
        assert!((Rle::iou(&other, &rle, true) - 1.0).abs() < 1e-12);
        let u = Rle::merge(&[rle.clone(), other.clone()], false).unwrap();
        assert_eq!(u.area(), 9);
        let i = Rle::merge(&[rle, other], true).unwrap();
        assert_eq!(i.area(), 4);
    }
}
