//! Dataset and prediction files written atomically (through [`crate::atomic_file`]): label PNGs,
//! COCO panoptic PNGs, images and JSON. A stopped or failed write leaves the earlier file (or
//! none), never a partial one.

use std::path::Path;

use image::RgbImage;

use super::{id_to_rgb, DataError, LabelMap, Panoptic};

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    crate::atomic_file::write_atomic(path, bytes).map_err(io_err(path))
}

/// Encodes an 8-bit image as PNG and writes it atomically.
fn write_png(
    path: &Path,
    width: usize,
    height: usize,
    color: png::ColorType,
    data: &[u8],
) -> Result<(), DataError> {
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, width as u32, height as u32);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        let bad = |e: png::EncodingError| DataError::record(path, "PNG", e.to_string());
        let mut w = enc.write_header().map_err(bad)?;
        w.write_image_data(data).map_err(bad)?;
    }
    write_bytes(path, &bytes)
}

/// Writes a panoptic segmentation as a COCO panoptic PNG (`id = R + 256 G + 256² B`).
pub fn write_panoptic_png(path: &Path, pan: &Panoptic) -> Result<(), DataError> {
    let rgb: Vec<u8> = pan.ids.iter().flat_map(|&id| id_to_rgb(id)).collect();
    write_png(path, pan.width, pan.height, png::ColorType::Rgb, &rgb)
}

/// Writes a label map as an 8-bit grey PNG.
pub fn write_label_png(path: &Path, map: &LabelMap) -> Result<(), DataError> {
    write_png(
        path,
        map.width,
        map.height,
        png::ColorType::Grayscale,
        &map.labels,
    )
}

/// Writes an RGB image in the format its extension names (PNG, JPEG, ...).
pub fn write_image(path: &Path, img: &RgbImage) -> Result<(), DataError> {
    let format = image::ImageFormat::from_path(path).map_err(|source| DataError::Image {
        path: path.to_path_buf(),
        source,
    })?;
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, format)
        .map_err(|source| DataError::Image {
            path: path.to_path_buf(),
            source,
        })?;
    write_bytes(path, bytes.get_ref())
}

/// Writes `value` as JSON.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), DataError> {
    let bytes = serde_json::to_vec(value).map_err(|source| DataError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    write_bytes(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_trip_and_leave_no_temporary() {
        let dir = std::env::temp_dir().join(format!("m2f-data-write-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let map = LabelMap {
            height: 2,
            width: 3,
            labels: vec![0, 1, 2, 3, 4, 255],
        };
        write_label_png(&dir.join("l.png"), &map).unwrap();
        let back = image::open(dir.join("l.png")).unwrap().to_luma8();
        assert_eq!(back.into_raw(), map.labels);
        let img = RgbImage::from_fn(3, 2, |x, y| image::Rgb([x as u8, y as u8, 7]));
        write_image(&dir.join("i.png"), &img).unwrap();
        assert_eq!(image::open(dir.join("i.png")).unwrap().to_rgb8(), img);
        write_json(&dir.join("a.json"), &serde_json::json!({"a": 1})).unwrap();
        assert_eq!(std::fs::read(dir.join("a.json")).unwrap(), br#"{"a":1}"#);
        // An unknown extension is named, and nothing is left behind.
        let err = write_image(&dir.join("i.unknown"), &img).unwrap_err();
        assert!(err.to_string().contains("i.unknown"), "{err}");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["a.json", "i.png", "l.png"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
