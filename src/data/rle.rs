//! COCO run-length encoding, bit-compatible with pycocotools (`common/maskApi.c`), on
//! `hotcoco::mask` (a port of maskApi.c): this type keeps our sizes (`usize`, row-major
//! [`Mask`]) and turns the codec's failures into [`DataError`]s.
//!
//! An RLE covers a `[h, w]` mask in column-major (Fortran) order: `counts` alternate runs of 0s
//! and 1s, starting with 0s (possibly an empty run). The compressed string form packs the counts
//! LEB128-like in 6-bit characters. Polygons are rasterised as `rleFrPoly` does, so masks from
//! polygons match pycocotools pixel for pixel.

use hotcoco::mask;

use super::{DataError, Mask};

/// A COCO run-length encoded binary mask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rle {
    pub height: usize,
    pub width: usize,
    /// Alternating run lengths (0s first), column-major.
    pub counts: Vec<u32>,
}

/// `(h, w)` as the codec's 32-bit sizes; RLE counts are 32-bit, so a mask must have fewer than
/// 2³² pixels.
fn dims(height: usize, width: usize) -> Result<(u32, u32), DataError> {
    match (u32::try_from(height), u32::try_from(width)) {
        (Ok(h), Ok(w)) if (h as u64) * (w as u64) <= u32::MAX as u64 => Ok((h, w)),
        _ => Err(DataError::Rle(format!(
            "a {height}x{width} mask has more pixels than 32-bit RLE counts can hold"
        ))),
    }
}

fn codec_error(e: hotcoco::Error) -> DataError {
    DataError::Rle(e.to_string())
}

impl Rle {
    fn from_hotcoco(rle: hotcoco::Rle) -> Rle {
        Rle {
            height: rle.h as usize,
            width: rle.w as usize,
            counts: rle.counts,
        }
    }

    /// The codec's view; callers have checked the sizes (every constructor does).
    fn to_hotcoco(&self) -> hotcoco::Rle {
        hotcoco::Rle {
            h: self.height as u32,
            w: self.width as u32,
            counts: self.counts.clone(),
        }
    }

    /// Encodes a mask (`rleEncode`). Runs are counted here, column by column, straight off the
    /// row-major mask (the codec wants a column-major copy first).
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
        dims(height, width)?;
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
        let covered: u64 = self.counts.iter().map(|&c| c as u64).sum();
        if covered != (h * w) as u64 {
            return Err(DataError::Rle(format!(
                "counts cover {covered} pixels, expected {h}x{w}={}",
                h * w
            )));
        }
        let column_major = mask::decode(&self.to_hotcoco());
        let mut data = vec![0u8; h * w];
        for (p, &v) in column_major.iter().enumerate() {
            // column-major position p -> (y = p % h, x = p / h)
            data[(p % h) * w + p / h] = v;
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
        mask::rle_to_string(&self.to_hotcoco())
    }

    /// Parses the compressed string form (`rleFrString`) and checks it covers `h*w` pixels.
    pub fn from_compressed(s: &str, height: usize, width: usize) -> Result<Rle, DataError> {
        let (h, w) = dims(height, width)?;
        let rle =
            mask::rle_from_string(s, h, w).map_err(|e| DataError::Rle(format!("{s:?}: {e}")))?;
        Rle::from_counts(height, width, rle.counts)
    }

    /// Rasterises one polygon `[x0, y0, x1, y1, ...]` (`rleFrPoly`).
    pub fn from_polygon(xy: &[f64], height: usize, width: usize) -> Result<Rle, DataError> {
        let (h, w) = dims(height, width)?;
        let rle = mask::fr_poly(xy, h, w).map_err(codec_error)?;
        Ok(Rle::from_hotcoco(rle))
    }

    /// Rasterises a COCO polygon list (several parts) and merges the parts, as `annToRLE` does.
    pub fn from_polygons(
        polys: &[Vec<f64>],
        height: usize,
        width: usize,
    ) -> Result<Rle, DataError> {
        let (h, w) = dims(height, width)?;
        let rle = mask::fr_polys(polys, h, w).map_err(codec_error)?;
        Ok(Rle::from_hotcoco(rle))
    }

    /// Union (`intersect == false`) or intersection of masks (`rleMerge`).
    /// Returns `None` for an empty list or differing sizes.
    pub fn merge(rles: &[Rle], intersect: bool) -> Option<Rle> {
        let first = rles.first()?;
        if rles
            .iter()
            .any(|r| (r.height, r.width) != (first.height, first.width))
        {
            return None;
        }
        let parts: Vec<hotcoco::Rle> = rles.iter().map(Rle::to_hotcoco).collect();
        mask::merge(&parts, intersect).ok().map(Rle::from_hotcoco)
    }

    /// Bounding box `[x, y, w, h]` (`rleToBbox`).
    pub fn to_bbox(&self) -> [f64; 4] {
        mask::to_bbox(&self.to_hotcoco())
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
    fn malformed_input_is_an_error() {
        assert!(Rle::from_compressed("6320", 5, 5).is_err());
        assert!(Rle::from_compressed("6 3", 5, 5).is_err());
        assert!(Rle::from_compressed("0P", 5, 5).is_err());
        assert!(Rle::from_counts(2, 2, vec![1, 2]).is_err());
        let short = Rle {
            height: 2,
            width: 2,
            counts: vec![1, 2],
        };
        assert!(short.decode().is_err());
        let err = Rle::from_polygon(&[0.0, 0.0, 1.0, 1.0, 0.0, 1.0], 1 << 20, 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(err.contains("1048576x1048576"), "{err}");
    }

    #[test]
    fn polygon_square_bbox_and_merge() {
        let rle = Rle::from_polygon(&[1.0, 1.0, 4.0, 1.0, 4.0, 4.0, 1.0, 4.0], 6, 6).unwrap();
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
        let u = Rle::merge(&[rle.clone(), other.clone()], false).unwrap();
        assert_eq!(u.area(), 9);
        let i = Rle::merge(&[rle.clone(), other], true).unwrap();
        assert_eq!(i.area(), 4);
        let parts = Rle::from_polygons(&[vec![1.0, 1.0, 4.0, 1.0, 4.0, 4.0, 1.0, 4.0]], 6, 6);
        assert_eq!(parts.unwrap(), rle);
        assert!(Rle::merge(&[], false).is_none());
    }
}
