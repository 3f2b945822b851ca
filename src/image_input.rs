//! Reading input images as a viewer shows them, or failing with a reason that names the file.
//!
//! * The format comes from the file's content, not its extension (a PNG named `.jpg` works).
//! * The EXIF orientation is applied (a phone photo stored sideways comes out upright).
//! * A truncated JPEG is an error: the `image` crate's JPEG decoder fills the missing rows with
//!   grey and reports success, so we check that the end-of-image marker follows the scan data.
//!   With `allow_truncated` the image is used and a warning is returned instead.
//! * An image whose decoded pixels would exceed [`MAX_DECODED_BYTES`] is refused with its size.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};
use thiserror::Error;

/// Largest decoded image accepted (the `image` crate's default allocation limit).
pub const MAX_DECODED_BYTES: u64 = 512 << 20;

#[derive(Debug, Error)]
pub enum ImageInputError {
    #[error("cannot read image {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not an image format we read (PNG or JPEG, recognised by content)")]
    UnknownFormat { path: PathBuf },
    #[error("cannot decode image {path}: {source}")]
    Decode {
        path: PathBuf,
        source: image::ImageError,
    },
    #[error(
        "{path}: the image is {width}x{height} ({mib} MiB decoded), above the decode limit of \
         {limit_mib} MiB; downscale it first"
    )]
    TooLarge {
        path: PathBuf,
        width: u32,
        height: u32,
        mib: u64,
        limit_mib: u64,
    },
    #[error(
        "{path}: truncated JPEG (no end-of-image marker after the scan data; the decoder would \
         fill the missing part with grey); pass --allow-truncated to use it anyway"
    )]
    Truncated { path: PathBuf },
}

/// A decoded image and what was noticed while reading it.
pub struct LoadedImage {
    pub image: DynamicImage,
    pub format: ImageFormat,
    /// Problems tolerated because the caller allowed them (each names the file).
    pub warnings: Vec<String>,
}

#[cfg(not(target_arch = "wasm32"))]
/// Reads and decodes `path` (see the module docs for what is checked).
pub fn load_image(path: &Path, allow_truncated: bool) -> Result<LoadedImage, ImageInputError> {
    let bytes = std::fs::read(path).map_err(|source| ImageInputError::Read {
        path: path.into(),
        source,
    })?;
    decode_image(path, &bytes, allow_truncated)
}

/// [`load_image`] on bytes already read; `path` is used in messages only.
pub fn decode_image(
    path: &Path,
    bytes: &[u8],
    allow_truncated: bool,
) -> Result<LoadedImage, ImageInputError> {
    let decode_err = |source| ImageInputError::Decode {
        path: path.into(),
        source,
    };
    let format = image::guess_format(bytes)
        .map_err(|_| ImageInputError::UnknownFormat { path: path.into() })?;
    let mut warnings = Vec::new();
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        if !allow_truncated {
            return Err(ImageInputError::Truncated { path: path.into() });
        }
        warnings.push(format!(
            "{}: truncated JPEG, the missing part is decoded as grey",
            path.display()
        ));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.no_limits();
    let mut decoder = reader.into_decoder().map_err(decode_err)?;
    let (width, height) = decoder.dimensions();
    if decoder.total_bytes() > MAX_DECODED_BYTES {
        return Err(ImageInputError::TooLarge {
            path: path.into(),
            width,
            height,
            mib: decoder.total_bytes().div_ceil(1 << 20),
            limit_mib: MAX_DECODED_BYTES >> 20,
        });
    }
    let orientation = decoder.orientation().map_err(decode_err)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    image.apply_orientation(orientation);
    Ok(LoadedImage {
        image,
        format,
        warnings,
    })
}

/// Whether a JPEG stream has its end-of-image marker (FF D9) after the first start-of-scan
/// (FF DA). Inside entropy-coded data an FF byte is always followed by 00 or a restart marker
/// (D0–D7), so FF D9 there can only be the real end.
pub fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let Some(sos) = bytes.windows(2).position(|w| w == [0xFF, 0xDA]) else {
        return false;
    };
    bytes[sos..].windows(2).any(|w| w == [0xFF, 0xD9])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coffee() -> Vec<u8> {
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/coffee.jpg")).unwrap()
    }

    #[test]
    fn a_truncated_jpeg_is_an_error_or_a_named_warning() {
        let full = coffee();
        assert!(jpeg_is_complete(&full));
        let p = Path::new("half.jpg");
        assert!(decode_image(p, &full, false).unwrap().warnings.is_empty());
        let half = &full[..full.len() / 2];
        let e = decode_image(p, half, false).err().unwrap().to_string();
        assert!(e.contains("half.jpg") && e.contains("truncated"), "{e}");
        let ok = decode_image(p, half, true).unwrap();
        assert!(ok.warnings[0].contains("half.jpg"), "{:?}", ok.warnings);
    }

    #[test]
    fn format_comes_from_the_content_and_exif_orientation_is_applied() {
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_fn(3, 2, |x, y| {
            image::Rgb([x as u8 * 80, y as u8 * 80, 7])
        }));
        let mut png = Vec::new();
        img.write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        let got = decode_image(Path::new("really-a-png.jpg"), &png, false).unwrap();
        assert_eq!(got.format, ImageFormat::Png);
        assert_eq!(got.image.to_rgb8(), img.to_rgb8());

        // The same PNG with an eXIf chunk saying "rotate 90° clockwise" (orientation 6).
        let exif: Vec<u8> = [
            b"MM\0\x2a\0\0\0\x08\0\x01".as_slice(),
            &[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0],
            &[0, 0, 0, 0],
        ]
        .concat();
        let mut chunk = (exif.len() as u32).to_be_bytes().to_vec();
        let body = [b"eXIf".as_slice(), &exif].concat();
        chunk.extend_from_slice(&body);
        chunk.extend_from_slice(&crc32(&body).to_be_bytes());
        let ihdr_end = 8 + 8 + 13 + 4;
        let rotated = [&png[..ihdr_end], &chunk, &png[ihdr_end..]].concat();
        let got = decode_image(Path::new("r.png"), &rotated, false).unwrap();
        let want = img.rotate90();
        assert_eq!(got.image.to_rgb8(), want.to_rgb8());
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    #[test]
    fn unknown_formats_and_huge_images_are_named() {
        let e = decode_image(Path::new("notes.png"), b"hello world", false)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("notes.png") && e.contains("PNG or JPEG"), "{e}");
        // A PNG header claiming 20000x15000 pixels: refused before decoding, with its size.
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend_from_slice(&20000u32.to_be_bytes());
        ihdr.extend_from_slice(&15000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend_from_slice(&13u32.to_be_bytes());
        png.extend_from_slice(&ihdr);
        png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
        png.extend_from_slice(&0u32.to_be_bytes());
        png.extend_from_slice(b"IDAT");
        png.extend_from_slice(&crc32(b"IDAT").to_be_bytes());
        let e = decode_image(Path::new("big.png"), &png, false)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("20000x15000") && e.contains("512 MiB"), "{e}");
    }
}
