//! Tiled VAE decoding and encoding: a large picture is run through the VAE in overlapping tiles
//! of the size the VAE was trained at, and the tiles are cross-faded where they overlap, so the
//! memory a decode needs stays that of one tile whatever the picture's size.
//!
//! The tiling is diffusers' `AutoencoderKL` with `enable_tiling()` (`tiled_decode`,
//! `_tiled_encode`): tiles of `sample_size` pixels (`sample_size / 8` latents), started every
//! three quarters of a tile, each tile blended in place with the already blended tile above it
//! and then with the one to its left over a quarter of a tile (linear weights `y / extent`), and
//! the first `tile − extent` rows and columns of each kept. Tiled output is not equal to a whole
//! decode (the VAE's mid-block attention sees one tile, not the picture); it equals diffusers'
//! tiled output, which the tests check against arrays diffusers itself computed.

use super::super::EngineError;

/// The latent side of one tile when the VAE's config does not say (SD 1.x/2.x: 512 pixels).
pub const DEFAULT_TILE_LATENT: usize = 64;
/// Pixels per latent along each side (SD's VAE downsamples three times).
pub const VAE_FACTOR: usize = 8;
/// `auto` tiling decodes (and encodes) whole up to this many pixels, and in tiles above it: a
/// 512x512 picture decodes as before, and nothing larger needs more memory than it.
pub const AUTO_TILE_ABOVE_PIXELS: u64 = 512 * 512;

/// How one direction of the VAE is tiled: sizes on the input side (`tile`, `stride`) and on the
/// output side (`blend`, `keep`), as diffusers derives them from the tile size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileGrid {
    /// Input tile side.
    pub tile: usize,
    /// Distance between tile starts on the input side.
    pub stride: usize,
    /// Output rows (columns) cross-faded with the tile above (to the left).
    pub blend: usize,
    /// Output rows (columns) of each tile kept.
    pub keep: usize,
}

impl TileGrid {
    /// Decoding latents in tiles of `tile_latent` latents (diffusers: `tile_latent_min_size`,
    /// overlap factor 0.25).
    pub fn decode(tile_latent: usize) -> Self {
        let sample = tile_latent * VAE_FACTOR;
        let blend = sample / 4;
        Self { tile: tile_latent, stride: tile_latent * 3 / 4, blend, keep: sample - blend }
    }

    /// Encoding pixels in tiles of `tile_latent · 8` pixels.
    pub fn encode(tile_latent: usize) -> Self {
        let sample = tile_latent * VAE_FACTOR;
        let blend = tile_latent / 4;
        Self { tile: sample, stride: sample * 3 / 4, blend, keep: tile_latent - blend }
    }

    /// Whether an input of `height` x `width` is larger than one tile (diffusers tiles only then).
    pub fn needs_tiles(&self, height: usize, width: usize) -> bool {
        height > self.tile || width > self.tile
    }
}

/// One planar tensor `[channels, height, width]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Planes {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

impl Planes {
    fn crop(&self, top: usize, left: usize, height: usize, width: usize) -> Planes {
        let mut data = Vec::with_capacity(self.channels * height * width);
        for c in 0..self.channels {
            for y in top..top + height {
                let row = (c * self.height + y) * self.width;
                data.extend_from_slice(&self.data[row + left..row + left + width]);
            }
        }
        Planes { channels: self.channels, height, width, data }
    }
}

/// Runs `run` over `input` tile by tile as `grid` says and assembles the blended result. `run`
/// maps one input tile to its output (any channel count; sides scaled by the same factor for
/// every tile). Only the previous row of output tiles is held, so memory stays that of two rows
/// of tiles plus the result.
pub fn run_tiled(
    input: &Planes,
    grid: TileGrid,
    run: &mut dyn FnMut(&Planes) -> Result<Planes, EngineError>,
) -> Result<Planes, EngineError> {
    let starts = |len: usize| (0..len).step_by(grid.stride.max(1)).collect::<Vec<_>>();
    let (rows, cols) = (starts(input.height), starts(input.width));
    let mut above: Vec<Planes> = Vec::new();
    let mut out: Option<Planes> = None;
    let mut out_top = 0;
    for &top in &rows {
        let mut current: Vec<Planes> = Vec::with_capacity(cols.len());
        let mut out_left = 0;
        let mut kept_height = 0;
        for (j, &left) in cols.iter().enumerate() {
            let tile = input.crop(top, left, grid.tile.min(input.height - top), grid.tile.min(input.width - left));
            let mut decoded = run(&tile)?;
            if let Some(up) = above.get(j) {
                blend_rows(up, &mut decoded, grid.blend);
            }
            if let Some(previous) = current.last() {
                blend_columns(previous, &mut decoded, grid.blend);
            }
            let (keep_h, keep_w) = (decoded.height.min(grid.keep), decoded.width.min(grid.keep));
            let result = out.get_or_insert_with(|| {
                // The output's size is the sum of what each row and column keeps.
                let scale = decoded.height as f64 / tile.height as f64;
                let side = |len: usize| (len as f64 * scale).round() as usize;
                let (h, w) = (side(input.height), side(input.width));
                Planes { channels: decoded.channels, height: h, width: w, data: vec![0.0; decoded.channels * h * w] }
            });
            paste(result, &decoded, out_top, out_left, keep_h, keep_w)?;
            out_left += keep_w;
            kept_height = keep_h;
            current.push(decoded);
        }
        out_top += kept_height;
        above = current;
    }
    out.ok_or_else(|| EngineError::InvalidRequest("an empty picture cannot be tiled".into()))
}

/// diffusers' `blend_v`: the first `extent` rows of `below` fade in from the last rows of `above`.
fn blend_rows(above: &Planes, below: &mut Planes, extent: usize) {
    let extent = extent.min(above.height).min(below.height);
    for c in 0..below.channels {
        for y in 0..extent {
            let (w_above, w_below) = weights(y, extent);
            let from = (c * above.height + above.height - extent + y) * above.width;
            let to = (c * below.height + y) * below.width;
            for x in 0..below.width.min(above.width) {
                below.data[to + x] = above.data[from + x] * w_above + below.data[to + x] * w_below;
            }
        }
    }
}

/// diffusers' `blend_h`: the first `extent` columns of `right` fade in from the last of `left`.
fn blend_columns(left: &Planes, right: &mut Planes, extent: usize) {
    let extent = extent.min(left.width).min(right.width);
    for c in 0..right.channels {
        for y in 0..right.height.min(left.height) {
            let from = (c * left.height + y) * left.width + left.width - extent;
            let to = (c * right.height + y) * right.width;
            for x in 0..extent {
                let (w_left, w_right) = weights(x, extent);
                right.data[to + x] = left.data[from + x] * w_left + right.data[to + x] * w_right;
            }
        }
    }
}

/// The weights of the earlier and the later tile at offset `i` of an `extent`-wide cross-fade.
fn weights(i: usize, extent: usize) -> (f32, f32) {
    let t = i as f64 / extent as f64;
    ((1.0 - t) as f32, t as f32)
}

/// Copies the top-left `height` x `width` of `tile` into `out` at (`top`, `left`).
fn paste(out: &mut Planes, tile: &Planes, top: usize, left: usize, height: usize, width: usize) -> Result<(), EngineError> {
    if tile.channels != out.channels || top + height > out.height || left + width > out.width {
        return Err(EngineError::UnexpectedModelIo {
            model: "vae",
            message: format!(
                "a {}x{}x{} tile does not fit the {}x{}x{} picture at ({top}, {left})",
                tile.channels, tile.height, tile.width, out.channels, out.height, out.width
            ),
        });
    }
    for c in 0..out.channels {
        for y in 0..height {
            let from = (c * tile.height + y) * tile.width;
            let to = (c * out.height + top + y) * out.width + left;
            out.data[to..to + width].copy_from_slice(&tile.data[from..from + width]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(channels: usize, height: usize, width: usize) -> Planes {
        let data = (0..channels * height * width).map(|i| (i as f32 * 0.37).sin()).collect();
        Planes { channels, height, width, data }
    }

    /// A stand-in "VAE" that upsamples by 8 with nearest neighbours and scales: position-wise, so
    /// tiling it must give back the whole result wherever tiles agree.
    fn upsample(tile: &Planes) -> Result<Planes, EngineError> {
        let (h, w) = (tile.height * 8, tile.width * 8);
        let mut data = Vec::with_capacity(3 * h * w);
        for c in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    data.push(2.0 * tile.data[(c * tile.height + y / 8) * tile.width + x / 8]);
                }
            }
        }
        Ok(Planes { channels: 3, height: h, width: w, data })
    }

    #[test]
    fn sd_grid_sizes_are_diffusers() {
        // SD 1.5: sample_size 512, so 64 latents; overlap factor 0.25.
        assert_eq!(TileGrid::decode(64), TileGrid { tile: 64, stride: 48, blend: 128, keep: 384 });
        assert_eq!(TileGrid::encode(64), TileGrid { tile: 512, stride: 384, blend: 16, keep: 48 });
        assert!(!TileGrid::decode(64).needs_tiles(64, 64) && TileGrid::decode(64).needs_tiles(64, 65));
    }

    #[test]
    fn a_position_wise_model_tiles_to_the_whole_result() {
        // Every tile of a position-wise model agrees with its neighbours, so the cross-fades are
        // of equal values and the assembled picture equals the untiled one, for sizes that are
        // and are not multiples of the stride.
        for (h, w) in [(16, 16), (13, 21), (8, 30), (9, 9)] {
            let input = ramp(4, h, w);
            let whole = upsample(&input).unwrap();
            let mut calls = 0;
            let tiled = run_tiled(&input, TileGrid::decode(8), &mut |t| {
                calls += 1;
                assert!(t.height <= 8 && t.width <= 8);
                upsample(t)
            })
            .unwrap();
            assert_eq!((tiled.height, tiled.width), (h * 8, w * 8));
            let worst = whole.data.iter().zip(&tiled.data).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst < 1e-5, "{h}x{w}: {worst}");
            assert_eq!(calls, h.div_ceil(6) * w.div_ceil(6));
        }
    }

    #[test]
    fn seams_fade_linearly_from_the_earlier_tile() {
        // Two tiles side by side whose "decoder" returns a constant per tile: across the seam the
        // values go from the left tile's to the right tile's in `blend` equal steps.
        let input = Planes { channels: 1, height: 6, width: 14, data: vec![0.0; 6 * 14] };
        let mut n = 0.0;
        let out = run_tiled(&input, TileGrid::decode(8), &mut |t| {
            n += 1.0;
            Ok(Planes { channels: 1, height: t.height * 8, width: t.width * 8, data: vec![n; t.height * t.width * 64] })
        })
        .unwrap();
        // Tiles start at latents 0, 6 and 12 (pixels 0, 48, 96); each fades in over 16 pixels.
        let row: Vec<f32> = out.data[..out.width].to_vec();
        assert_eq!((n, out.width), (3.0, 112));
        assert!(row[..48].iter().all(|&v| v == 1.0));
        assert!(row[64..96].iter().all(|&v| v == 2.0));
        for x in 0..16 {
            let t = x as f32 / 16.0;
            assert!((row[48 + x] - (1.0 - t + 2.0 * t)).abs() < 1e-6, "{x}: {}", row[48 + x]);
            assert!((row[96 + x] - (2.0 * (1.0 - t) + 3.0 * t)).abs() < 1e-6, "{x}: {}", row[96 + x]);
        }
    }

    #[test]
    fn encode_grid_assembles_the_latent_size() {
        let input = ramp(3, 200, 136);
        let out = run_tiled(&input, TileGrid::encode(8), &mut |t| {
            Ok(Planes { channels: 8, height: t.height / 8, width: t.width / 8, data: vec![0.5; 8 * (t.height / 8) * (t.width / 8)] })
        })
        .unwrap();
        assert_eq!((out.channels, out.height, out.width), (8, 25, 17));
        assert!(out.data.iter().all(|&v| (v - 0.5).abs() < 1e-6));
    }
}
