//! Owns pictures that come from outside: decoding untrusted bytes (PNG, JPEG, WebP) within
//! bounds — encoded size, pixel size checked from the header before decoding, and the decoder's
//! own allocation limits, so a decompression bomb is refused rather than decoded — and the
//! uploads folder (`<data dir>/uploads/`) where accepted pictures are kept, re-encoded as PNG and
//! named by their content hash (`up_<hex>`), so the same picture uploaded twice is one file and
//! a queued job's input cannot change under it.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, GenericImageView, GrayImage, ImageFormat, ImageReader, RgbImage};
use sha2::{Digest, Sha256};

use crate::api::comfy::graph::{Inversion, MaskChannel, Pad};
use crate::api::image_modes::{is_image_id, MAX_IMAGE_SIDE, MAX_UPLOAD_BYTES};
use crate::atomic_file::write_atomically;
use crate::engine::imageops;

/// Every upload id starts with this.
pub const UPLOAD_ID_PREFIX: &str = "up_";
/// The decoder may allocate at most this much for one image (a 4096² RGBA image with room to spare).
const MAX_DECODE_ALLOC: u64 = 512 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ImageInputError {
    #[error("the file is {bytes} bytes; the limit is {limit} bytes ({} MB)", limit >> 20)]
    TooLarge { bytes: usize, limit: usize },
    #[error("the image is {width}x{height} pixels; the limit is {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE}; scale it down first")]
    TooBig { width: u32, height: u32 },
    #[error("not an image Easel can read (PNG, JPEG or WebP): {0}")]
    Unreadable(String),
    #[error("no uploaded image {0:?}; upload it with POST /api/v1/uploads")]
    Unknown(String),
    #[error("cannot store the image in {path}: {message}")]
    Io { path: PathBuf, message: String },
}

/// Decodes `bytes` as PNG, JPEG or WebP, refusing anything over [`MAX_UPLOAD_BYTES`] encoded or
/// [`MAX_IMAGE_SIDE`] on a side.
pub fn decode(bytes: &[u8]) -> Result<DynamicImage, ImageInputError> {
    if bytes.len() > MAX_UPLOAD_BYTES {
        return Err(ImageInputError::TooLarge { bytes: bytes.len(), limit: MAX_UPLOAD_BYTES });
    }
    let unreadable = |e: &dyn std::fmt::Display| ImageInputError::Unreadable(e.to_string());
    let reader = || ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| unreadable(&e));
    match reader()?.format() {
        Some(ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP) => {}
        Some(other) => return Err(ImageInputError::Unreadable(format!("{other:?} is not accepted"))),
        None => return Err(ImageInputError::Unreadable("the bytes are not a known image format".into())),
    }
    let (width, height) = reader()?.into_dimensions().map_err(|e| unreadable(&e))?;
    if width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE {
        return Err(ImageInputError::TooBig { width, height });
    }
    if width == 0 || height == 0 {
        return Err(ImageInputError::Unreadable(format!("the image is {width}x{height} pixels")));
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    let mut reader = reader()?;
    reader.limits(limits);
    reader.decode().map_err(|e| unreadable(&e))
}

/// The picture as RGB (any alpha dropped).
pub fn to_rgb(image: &DynamicImage) -> RgbImage {
    image.to_rgb8()
}

/// The picture as an inpainting mask (white = repaint), A1111's rule: an image with a
/// transparent part is masked by its alpha channel; any other is converted to grey as Pillow's
/// `convert("L")` does.
pub fn to_mask(image: &DynamicImage) -> GrayImage {
    if image.color().has_alpha() {
        let rgba = image.to_rgba8();
        if rgba.pixels().any(|p| p.0[3] != 255) {
            let alpha = rgba.pixels().map(|p| p.0[3]).collect();
            return GrayImage::from_raw(rgba.width(), rgba.height(), alpha).expect("one value per pixel");
        }
    }
    if let DynamicImage::ImageLuma8(gray) = image {
        return gray.clone();
    }
    let rgb = image.to_rgb8();
    GrayImage::from_raw(rgb.width(), rgb.height(), imageops::to_gray(rgb.as_raw())).expect("one value per pixel")
}

/// A picture made from an upload (ComfyUI's image and mask nodes before the encoder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Derivation {
    /// The colours inverted (RGB; any alpha dropped).
    Invert(Inversion),
    /// One channel as a grey mask, as ComfyUI's `LoadImageMask` reads it: the picture as RGBA
    /// (grey gives R = G = B, no alpha gives 255), the alpha inverted.
    Channel(MaskChannel),
    /// ComfyUI's `ImagePadForOutpaint` picture: RGB on a canvas grown by the pad, the new area
    /// 128 (ComfyUI's 0.5 is not an 8-bit value; `VAEEncodeForInpaint` greys it anyway).
    Pad(Pad),
    /// ComfyUI's `ImagePadForOutpaint` mask for a picture of this size: 255 on the new area,
    /// `((feathering − d) / feathering)²` (to 8 bits, rounded) within `feathering` of a padded
    /// edge, 0 elsewhere. Rounding to 8 bits keeps which side of one half each value lies, which
    /// is all `VAEEncodeForInpaint` reads.
    PadMask(Pad),
}

/// `image` derived as `how` says.
pub fn derive(image: &DynamicImage, how: Derivation) -> DynamicImage {
    match how {
        Derivation::Invert(inversion) => {
            let mut rgb = image.to_rgb8();
            let table: Vec<u8> = (0..=255u8)
                .map(|v| match inversion {
                    Inversion::Exact => 255 - v,
                    // float32 as torch and numpy compute it, then numpy's astype(uint8).
                    Inversion::Truncated => (255.0f32 * (1.0f32 - f32::from(v) / 255.0)).clamp(0.0, 255.0) as u8,
                })
                .collect();
            rgb.iter_mut().for_each(|v| *v = table[usize::from(*v)]);
            DynamicImage::ImageRgb8(rgb)
        }
        Derivation::Channel(channel) => {
            let rgba = image.to_rgba8();
            let values = rgba
                .pixels()
                .map(|p| match channel {
                    MaskChannel::Red => p.0[0],
                    MaskChannel::Green => p.0[1],
                    MaskChannel::Blue => p.0[2],
                    MaskChannel::Alpha => 255 - p.0[3],
                })
                .collect();
            DynamicImage::ImageLuma8(GrayImage::from_raw(rgba.width(), rgba.height(), values).expect("one value per pixel"))
        }
        Derivation::Pad(pad) => {
            let rgb = image.to_rgb8();
            let mut canvas =
                RgbImage::from_pixel(rgb.width() + pad.left + pad.right, rgb.height() + pad.top + pad.bottom, image::Rgb([128; 3]));
            image::imageops::replace(&mut canvas, &rgb, i64::from(pad.left), i64::from(pad.top));
            DynamicImage::ImageRgb8(canvas)
        }
        Derivation::PadMask(pad) => {
            let (w, h) = (image.width(), image.height());
            let mut mask = GrayImage::from_pixel(w + pad.left + pad.right, h + pad.top + pad.bottom, image::Luma([255]));
            let f = pad.feathering;
            let feathered = f > 0 && f * 2 < h && f * 2 < w;
            for y in 0..h {
                for x in 0..w {
                    // Distance to each padded edge (a side without padding counts as far).
                    let d = [
                        if pad.top != 0 { y } else { h },
                        if pad.bottom != 0 { h - y } else { h },
                        if pad.left != 0 { x } else { w },
                        if pad.right != 0 { w - x } else { w },
                    ]
                    .into_iter()
                    .min()
                    .unwrap_or(0);
                    let value = if feathered && d < f {
                        let v = f64::from(f - d) / f64::from(f);
                        (v * v * 255.0).round() as u8
                    } else {
                        0
                    };
                    mask.put_pixel(x + pad.left, y + pad.top, image::Luma([value]));
                }
            }
            DynamicImage::ImageLuma8(mask)
        }
    }
}

/// `original` with `mask`'s alpha as its own (ComfyUI's mask editor upload, `/upload/mask`: the
/// painted mask is transparent where it repaints); the two must be the same size.
pub fn with_alpha_of(original: &DynamicImage, mask: &DynamicImage) -> Result<DynamicImage, ImageInputError> {
    if original.dimensions() != mask.dimensions() {
        let ((w, h), (mw, mh)) = (original.dimensions(), mask.dimensions());
        return Err(ImageInputError::Unreadable(format!("the mask is {mw}x{mh} pixels but the picture it masks is {w}x{h}")));
    }
    let mut rgba = original.to_rgba8();
    for (pixel, alpha) in rgba.pixels_mut().zip(mask.to_rgba8().pixels()) {
        pixel.0[3] = alpha.0[3];
    }
    Ok(DynamicImage::ImageRgba8(rgba))
}

/// A short content id for `bytes` (16 bytes of sha256 in hex) after `prefix`.
pub fn content_id(prefix: &str, bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    format!("{prefix}{}", digest[..16].iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// An accepted upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: String,
    pub width: u32,
    pub height: u32,
}

/// The uploads folder.
#[derive(Debug, Clone)]
pub struct Uploads {
    dir: PathBuf,
}

impl Uploads {
    pub fn new(data_dir: &Path) -> Self {
        Self { dir: data_dir.join("uploads") }
    }

    fn path(&self, id: &str) -> Option<PathBuf> {
        (id.starts_with(UPLOAD_ID_PREFIX) && is_image_id(id)).then(|| self.dir.join(format!("{id}.png")))
    }

    /// Decodes `bytes`, keeps the picture as PNG and returns its id (the same id for the same
    /// picture).
    pub fn store(&self, bytes: &[u8]) -> Result<Upload, ImageInputError> {
        let image = decode(bytes)?;
        let normalized = match image.color().has_alpha() {
            true => DynamicImage::ImageRgba8(image.to_rgba8()),
            false if matches!(image, DynamicImage::ImageLuma8(_)) => image,
            false => DynamicImage::ImageRgb8(image.to_rgb8()),
        };
        let mut png = Vec::new();
        normalized.write_to(&mut Cursor::new(&mut png), ImageFormat::Png).map_err(|e| ImageInputError::Unreadable(e.to_string()))?;
        let id = content_id(UPLOAD_ID_PREFIX, &png);
        let path = self.path(&id).expect("a content id is a valid upload id");
        if !path.is_file() {
            write_atomically(&path, &png).map_err(|e| ImageInputError::Io { path: path.clone(), message: e.to_string() })?;
        }
        Ok(Upload { id, width: normalized.width(), height: normalized.height() })
    }

    /// Stores the picture `how` derives from upload `id`; the new upload's id.
    pub fn derive(&self, id: &str, how: Derivation) -> Result<Upload, ImageInputError> {
        // A padded canvas is held to the upload limit before it is allocated.
        if let Derivation::Pad(pad) | Derivation::PadMask(pad) = how {
            let (w, h) = self.size(id)?;
            let (width, height) =
                (w.saturating_add(pad.left).saturating_add(pad.right), h.saturating_add(pad.top).saturating_add(pad.bottom));
            if width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE {
                return Err(ImageInputError::TooBig { width, height });
            }
        }
        let derived = derive(&self.load(id)?, how);
        let mut png = Vec::new();
        derived.write_to(&mut Cursor::new(&mut png), ImageFormat::Png).map_err(|e| ImageInputError::Unreadable(e.to_string()))?;
        self.store(&png)
    }

    /// Stores `original` (encoded) with the alpha of `mask` (encoded), both read within the
    /// upload bounds.
    pub fn store_with_alpha_of(&self, original: &[u8], mask: &[u8]) -> Result<Upload, ImageInputError> {
        let combined = with_alpha_of(&decode(original)?, &decode(mask)?)?;
        let mut png = Vec::new();
        combined.write_to(&mut Cursor::new(&mut png), ImageFormat::Png).map_err(|e| ImageInputError::Unreadable(e.to_string()))?;
        self.store(&png)
    }

    /// Reads an upload back.
    pub fn load(&self, id: &str) -> Result<DynamicImage, ImageInputError> {
        let path = self.path(id).ok_or_else(|| ImageInputError::Unknown(id.to_string()))?;
        let bytes = std::fs::read(&path).map_err(|_| ImageInputError::Unknown(id.to_string()))?;
        decode(&bytes)
    }

    /// The stored PNG of an upload, as it is on disk.
    pub fn png(&self, id: &str) -> Result<Vec<u8>, ImageInputError> {
        let path = self.path(id).ok_or_else(|| ImageInputError::Unknown(id.to_string()))?;
        std::fs::read(&path).map_err(|_| ImageInputError::Unknown(id.to_string()))
    }

    /// The size of an upload, from its header.
    pub fn size(&self, id: &str) -> Result<(u32, u32), ImageInputError> {
        let path = self.path(id).ok_or_else(|| ImageInputError::Unknown(id.to_string()))?;
        image::image_dimensions(&path).map_err(|_| ImageInputError::Unknown(id.to_string()))
    }

    /// Whether `id` names a stored upload.
    pub fn contains(&self, id: &str) -> bool {
        self.path(id).is_some_and(|p| p.is_file())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        RgbImage::from_pixel(width, height, image::Rgb([1, 2, 3])).write_to(&mut Cursor::new(&mut out), ImageFormat::Png).unwrap();
        out
    }

    #[test]
    fn refuses_what_is_not_an_image_or_too_big() {
        assert!(matches!(decode(b"hello"), Err(ImageInputError::Unreadable(_))));
        assert!(matches!(decode(&png(MAX_IMAGE_SIDE + 1, 8)), Err(ImageInputError::TooBig { width: 4097, height: 8 })));
        assert!(matches!(decode(&vec![0u8; MAX_UPLOAD_BYTES + 1]), Err(ImageInputError::TooLarge { .. })));
        assert_eq!(decode(&png(8, 4)).unwrap().width(), 8);
    }

    #[test]
    fn uploads_are_content_addressed_and_ids_never_become_other_paths() {
        let dir = std::env::temp_dir().join(format!("easel-uploads-{}", std::process::id()));
        let uploads = Uploads::new(&dir);
        let a = uploads.store(&png(8, 8)).unwrap();
        let b = uploads.store(&png(8, 8)).unwrap();
        assert_eq!(a, b);
        assert!(a.id.starts_with(UPLOAD_ID_PREFIX) && uploads.contains(&a.id));
        assert_eq!(uploads.size(&a.id).unwrap(), (8, 8));
        assert_eq!(uploads.load(&a.id).unwrap().to_rgb8().get_pixel(0, 0).0, [1, 2, 3]);
        for bad in ["../easel.db", "up_../../x", "x_123"] {
            assert!(matches!(uploads.load(bad), Err(ImageInputError::Unknown(_))), "{bad}");
        }
        // A pad past the upload limit is refused before a canvas is allocated.
        let huge = Pad { left: 16384, top: 0, right: 16384, bottom: 0, feathering: 0 };
        assert!(matches!(uploads.derive(&a.id, Derivation::Pad(huge)), Err(ImageInputError::TooBig { width: 32776, height: 8 })));
        assert_eq!(uploads.derive(&a.id, Derivation::Pad(Pad { left: 8, ..Pad::default() })).unwrap().width, 16);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn derived_pictures_follow_comfyuis_nodes() {
        let rgba = image::RgbaImage::from_raw(2, 1, vec![10, 20, 30, 0, 1, 65, 255, 200]).unwrap();
        let image = DynamicImage::ImageRgba8(rgba);
        let channel = |c| derive(&image, Derivation::Channel(c)).to_luma8().into_raw();
        assert_eq!(channel(MaskChannel::Red), vec![10, 1]);
        assert_eq!(channel(MaskChannel::Blue), vec![30, 255]);
        // Transparent is repainted: 1 − alpha.
        assert_eq!(channel(MaskChannel::Alpha), vec![255, 55]);
        // No alpha channel: nothing is masked.
        let grey = DynamicImage::ImageLuma8(GrayImage::from_raw(1, 1, vec![77]).unwrap());
        assert_eq!(derive(&grey, Derivation::Channel(MaskChannel::Alpha)).to_luma8().into_raw(), vec![0]);
        assert_eq!(derive(&grey, Derivation::Channel(MaskChannel::Green)).to_luma8().into_raw(), vec![77]);
        let inverted = |i| derive(&image, Derivation::Invert(i)).to_rgb8().into_raw();
        assert_eq!(inverted(Inversion::Exact), vec![245, 235, 225, 254, 190, 0]);
        // 255 · (1 − 65/255) is 189.99998 in float32: truncated to 189 (numpy's astype(uint8)).
        assert_eq!(inverted(Inversion::Truncated), vec![245, 235, 225, 254, 189, 0]);
    }

    #[test]
    fn a_painted_mask_becomes_the_pictures_alpha() {
        let picture = DynamicImage::ImageRgb8(RgbImage::from_pixel(2, 1, image::Rgb([5, 6, 7])));
        let mut painted = image::RgbaImage::from_pixel(2, 1, image::Rgba([0, 0, 0, 255]));
        painted.put_pixel(1, 0, image::Rgba([0, 0, 0, 0]));
        let combined = with_alpha_of(&picture, &DynamicImage::ImageRgba8(painted)).unwrap().to_rgba8();
        assert_eq!(combined.into_raw(), vec![5, 6, 7, 255, 5, 6, 7, 0]);
        let small = DynamicImage::ImageRgb8(RgbImage::new(1, 1));
        assert!(with_alpha_of(&picture, &small).unwrap_err().to_string().contains("1x1 pixels but the picture it masks is 2x1"));
    }

    #[test]
    fn outpainting_pads_follow_comfyuis_node() {
        let picture = DynamicImage::ImageRgb8(RgbImage::from_pixel(10, 8, image::Rgb([9, 9, 9])));
        let pad = Pad { left: 8, top: 0, right: 0, bottom: 8, feathering: 3 };
        let padded = derive(&picture, Derivation::Pad(pad)).to_rgb8();
        assert_eq!(padded.dimensions(), (18, 16));
        assert_eq!((padded.get_pixel(7, 0).0, padded.get_pixel(8, 0).0, padded.get_pixel(8, 8).0), ([128; 3], [9; 3], [128; 3]));
        let mask = derive(&picture, Derivation::PadMask(pad)).to_luma8();
        assert_eq!(mask.dimensions(), (18, 16));
        // The new area is 255; the picture fades in over 3 pixels from its padded (left and
        // bottom) edges: d = 0, 1, 2 give (3/3)², (2/3)², (1/3)².
        let row: Vec<u8> = (7..13).map(|x| mask.get_pixel(x, 2).0[0]).collect();
        assert_eq!(row, vec![255, 255, 113, 28, 0, 0]);
        let column: Vec<u8> = (4..9).map(|y| mask.get_pixel(15, y).0[0]).collect();
        assert_eq!(column, vec![0, 0, 28, 113, 255], "bottom edge: d = 8 − y");
        // Feathering of half a side or more is none (ComfyUI's rule).
        let wide = derive(&picture, Derivation::PadMask(Pad { feathering: 4, ..pad })).to_luma8();
        assert_eq!(wide.get_pixel(8, 2).0[0], 0);
    }

    #[test]
    fn masks_use_alpha_when_transparent_else_grey() {
        let mut rgba = image::RgbaImage::from_pixel(2, 1, image::Rgba([0, 0, 0, 0]));
        rgba.put_pixel(1, 0, image::Rgba([0, 0, 0, 255]));
        assert_eq!(to_mask(&DynamicImage::ImageRgba8(rgba)).as_raw(), &vec![0, 255]);
        let rgb = RgbImage::from_pixel(1, 1, image::Rgb([255, 0, 0]));
        assert_eq!(to_mask(&DynamicImage::ImageRgb8(rgb)).as_raw(), &vec![76]);
    }
}
