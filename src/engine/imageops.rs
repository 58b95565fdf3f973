//! Owns the pixel and latent operations the image-to-image modes share, each reproducing the
//! exact arithmetic of the library diffusers (and A1111) call for it, so inputs prepared here are
//! the bytes the reference pipelines see:
//!
//! - [`resize_lanczos`]: Pillow's `Image.resize(size, Image.LANCZOS)` on 8-bit images (separable,
//!   horizontal pass first, coefficients in double precision, then 22-bit fixed point).
//! - [`gaussian_blur`]: Pillow's `ImageFilter.GaussianBlur(radius)` on 8-bit images (three
//!   extended box blurs per axis, 24-bit fixed point).
//! - [`to_gray`]: Pillow's `convert("L")` (ITU-R 601-2 luma in 16-bit fixed point).
//! - [`resize_latents_bilinear`]: torch's `interpolate(mode="bilinear", align_corners=False)`
//!   to a given size, float32.
//!
//! Images are row-major, interleaved 8-bit channels; latents `[batch, channels, h, w]` float32.

use std::f64::consts::PI;

/// Fixed-point precision of Pillow's 8-bit resampling: 32 bits less 8 for the value and 2 for
/// overshoot of the filter's negative lobes.
const PRECISION_BITS: u32 = 32 - 8 - 2;
const LANCZOS_SUPPORT: f64 = 3.0;

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * PI;
        x.sin() / x
    }
}

fn lanczos(x: f64) -> f64 {
    if (-LANCZOS_SUPPORT..LANCZOS_SUPPORT).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// Pillow's resampling filters that Easel reproduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `Image.LANCZOS` (support 3).
    Lanczos,
    /// `Image.BICUBIC` (Keys' cubic with a = −0.5, support 2): `resize`'s default for RGB and L.
    Bicubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Lanczos => LANCZOS_SUPPORT,
            Filter::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Filter::Lanczos => lanczos(x),
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// The fixed-point taps of one axis: for each output position, the first input index and the
/// integer weights.
struct Taps {
    first: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

/// Pillow's `precompute_coeffs` for `out_size` samples of the input span `[in0, in1)` (the
/// resize box, floats as Pillow holds them), normalised, then in 22-bit fixed point.
fn taps(filter: Filter, in_size: usize, (in0, in1): (f32, f32), out_size: usize) -> Taps {
    let scale = f64::from(in1 - in0) / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter.support() * filter_scale;
    let inv_filter_scale = 1.0 / filter_scale;
    let mut first = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = f64::from(in0) + (xx as f64 + 0.5) * scale;
        // C's (int) cast truncates toward zero; negative starts are clamped to 0 anyway.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64).max(0) as usize;
        let raw: Vec<f64> = (xmin..xmax.max(xmin)).map(|x| filter.weight((x as f64 - center + 0.5) * inv_filter_scale)).collect();
        let total: f64 = raw.iter().sum();
        let fixed = raw
            .iter()
            .map(|&w| {
                let w = if total != 0.0 { w / total } else { w };
                let scaled = w * f64::from(1u32 << PRECISION_BITS);
                (if w < 0.0 { -0.5 + scaled } else { 0.5 + scaled }) as i32
            })
            .collect();
        first.push(xmin);
        weights.push(fixed);
    }
    Taps { first, weights }
}

fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resamples along one axis: `in_stride` / `out_stride` step between the samples of a line,
/// `line_in` / `line_out` between lines (rows: samples are pixels of a row; columns: samples are
/// rows, lines are the pixels of a row).
#[allow(clippy::too_many_arguments)]
fn resample_axis(
    src: &[u8],
    dst: &mut [u8],
    channels: usize,
    lines: usize,
    taps: &Taps,
    in_stride: usize,
    line_in: usize,
    out_stride: usize,
    line_out: usize,
) {
    for line in 0..lines {
        for (xx, (first, weights)) in taps.first.iter().zip(&taps.weights).enumerate() {
            for c in 0..channels {
                let mut acc: i32 = 1 << (PRECISION_BITS - 1);
                for (k, &w) in weights.iter().enumerate() {
                    let v = src[line * line_in + (first + k) * in_stride + c];
                    acc = acc.wrapping_add(i32::from(v).wrapping_mul(w));
                }
                dst[line * line_out + xx * out_stride + c] = clip8(acc);
            }
        }
    }
}

/// Resamples the rows of an image to `new_width` (from the columns `span` of the box).
fn resize_rows(
    pixels: &[u8],
    channels: usize,
    (width, height): (usize, usize),
    new_width: usize,
    filter: Filter,
    span: (f32, f32),
) -> Vec<u8> {
    let taps = taps(filter, width, span, new_width);
    let mut out = vec![0u8; new_width * height * channels];
    resample_axis(pixels, &mut out, channels, height, &taps, channels, width * channels, channels, new_width * channels);
    out
}

/// Resamples the columns of an image to `new_height` (from the rows `span` of the box).
fn resize_columns(
    pixels: &[u8],
    channels: usize,
    (width, height): (usize, usize),
    new_height: usize,
    filter: Filter,
    span: (f32, f32),
) -> Vec<u8> {
    let taps = taps(filter, height, span, new_height);
    let mut out = vec![0u8; width * new_height * channels];
    let row = width * channels;
    resample_axis(pixels, &mut out, channels, width, &taps, row, channels, row, channels);
    out
}

/// Pillow's Lanczos resize of an 8-bit image with `channels` interleaved channels.
pub fn resize_lanczos(pixels: &[u8], channels: usize, width: usize, height: usize, new_width: usize, new_height: usize) -> Vec<u8> {
    resize(pixels, channels, (width, height), (new_width, new_height), Filter::Lanczos, None)
}

/// Pillow's `Image.resize((new_width, new_height), filter, box)` of an 8-bit image with
/// `channels` interleaved channels; `box` `[x0, y0, x1, y1]` is the source region (default the
/// whole picture, may be empty along an axis: every output then samples around its edge). Each
/// axis is resampled only when its size or span changes. Pillow 13 resamples the rows first,
/// except when the width grows while the height shrinks: then the columns first (the rounding
/// to 8 bits between the passes makes the order visible).
pub fn resize(
    pixels: &[u8],
    channels: usize,
    (width, height): (usize, usize),
    (new_width, new_height): (usize, usize),
    filter: Filter,
    region: Option<[f32; 4]>,
) -> Vec<u8> {
    assert_eq!(pixels.len(), width * height * channels, "image buffer size");
    let [x0, y0, x1, y1] = region.unwrap_or([0.0, 0.0, width as f32, height as f32]);
    let rows = new_width != width || x0 != 0.0 || x1 != new_width as f32;
    let columns = new_height != height || y0 != 0.0 || y1 != new_height as f32;
    let rows_first = !(new_width > width && new_height < height);
    let mut current = pixels.to_vec();
    if rows_first {
        if rows {
            current = resize_rows(&current, channels, (width, height), new_width, filter, (x0, x1));
        }
        if columns {
            current = resize_columns(&current, channels, (new_width, height), new_height, filter, (y0, y1));
        }
    } else {
        current = resize_columns(&current, channels, (width, height), new_height, filter, (y0, y1));
        current = resize_rows(&current, channels, (width, new_height), new_width, filter, (x0, x1));
    }
    current
}

/// Pillow's box-blur radius for one of `passes` box blurs approximating a Gaussian of standard
/// deviation `radius` (the "extended box" of Gwosdek et al.), in float32 as Pillow computes it.
fn box_radius(radius: f32, passes: u32) -> f32 {
    let sigma2 = radius * radius / passes as f32;
    let big_l = (12.0 * f64::from(sigma2) + 1.0).sqrt() as f32;
    let l = ((f64::from(big_l) - 1.0) / 2.0).floor() as f32;
    let mut a = (2.0 * l + 1.0) * (l * (l + 1.0) - 3.0 * sigma2);
    a /= 6.0 * (sigma2 - (l + 1.0) * (l + 1.0));
    l + a
}

/// One horizontal extended-box-blur pass over a line, Pillow's integer arithmetic (wrapping
/// u32 accumulators, 24-bit weights).
fn box_blur_line(line: &[u8], out: &mut [u8], radius: usize, ww: u32, fw: u32) {
    let n = line.len();
    let last = n - 1;
    let edge_a = (radius + 1).min(n);
    let edge_b = n.saturating_sub(radius + 1);
    let px = |i: usize| u32::from(line[i]);
    let mut acc: u32 = px(0).wrapping_mul(radius as u32 + 1);
    for x in 0..edge_a.saturating_sub(1) {
        acc = acc.wrapping_add(px(x));
    }
    acc = acc.wrapping_add(px(last).wrapping_mul((radius + 1 - edge_a) as u32));
    let mut step = |x: usize, sub: usize, add: usize, far_left: usize, far_right: usize, acc: &mut u32| {
        *acc = acc.wrapping_add(px(add)).wrapping_sub(px(sub));
        let bulk = acc.wrapping_mul(ww).wrapping_add((px(far_left) + px(far_right)).wrapping_mul(fw));
        out[x] = (bulk.wrapping_add(1 << 23) >> 24) as u8;
    };
    if edge_a <= edge_b {
        for x in 0..edge_a {
            step(x, 0, x + radius, 0, x + radius + 1, &mut acc);
        }
        for x in edge_a..edge_b {
            step(x, x - radius - 1, x + radius, x - radius - 1, x + radius + 1, &mut acc);
        }
        for x in edge_b..=last {
            step(x, x - radius - 1, last, x - radius - 1, last, &mut acc);
        }
    } else {
        for x in 0..edge_b {
            step(x, 0, x + radius, 0, x + radius + 1, &mut acc);
        }
        for x in edge_b..edge_a {
            step(x, 0, last, 0, last, &mut acc);
        }
        for x in edge_a..=last {
            step(x, x - radius - 1, last, x - radius - 1, last, &mut acc);
        }
    }
}

/// Blurs every row of a single-channel image `passes` times with a box of fractional `radius`.
fn box_blur_rows(pixels: &mut [u8], width: usize, radius: f32, passes: u32) {
    let whole = radius as usize;
    let ww = (16_777_216.0f32 / (radius * 2.0 + 1.0)) as u32;
    let fw = (16_777_216u32 - (whole as u32 * 2 + 1) * ww) / 2;
    let mut out = vec![0u8; width];
    for row in pixels.chunks_mut(width) {
        for _ in 0..passes {
            box_blur_line(row, &mut out, whole, ww, fw);
            row.copy_from_slice(&out);
        }
    }
}

fn transpose(pixels: &[u8], width: usize, height: usize) -> Vec<u8> {
    let mut out = vec![0u8; pixels.len()];
    for y in 0..height {
        for x in 0..width {
            out[x * height + y] = pixels[y * width + x];
        }
    }
    out
}

/// Pillow's `GaussianBlur(radius)` on a single-channel 8-bit image (3 passes per axis).
pub fn gaussian_blur(gray: &[u8], width: usize, height: usize, radius: f32) -> Vec<u8> {
    assert_eq!(gray.len(), width * height, "image buffer size");
    if radius == 0.0 || width == 0 || height == 0 {
        return gray.to_vec();
    }
    const PASSES: u32 = 3;
    let r = box_radius(radius, PASSES);
    let mut pixels = gray.to_vec();
    if r != 0.0 {
        box_blur_rows(&mut pixels, width, r, PASSES);
        let mut columns = transpose(&pixels, width, height);
        box_blur_rows(&mut columns, height, r, PASSES);
        pixels = transpose(&columns, height, width);
    }
    pixels
}

/// Pillow's `convert("L")` of interleaved RGB8.
pub fn to_gray(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3)
        .map(|p| ((u32::from(p[0]) * 19595 + u32::from(p[1]) * 38470 + u32::from(p[2]) * 7471 + 0x8000) >> 16) as u8)
        .collect()
}

/// Source index and weights of one output position of torch's bilinear interpolation
/// (`align_corners=False`, scale taken as `in / out` in float32).
fn linear_taps(in_size: usize, out_size: usize) -> Vec<(usize, usize, f32, f32)> {
    let scale = in_size as f32 / out_size as f32;
    (0..out_size)
        .map(|i| {
            let real = (scale * (i as f32 + 0.5) - 0.5).max(0.0);
            let index = (real.floor() as usize).min(in_size - 1);
            let lambda = (real - index as f32).clamp(0.0, 1.0);
            let next = if index < in_size - 1 { index + 1 } else { index };
            (index, next, 1.0 - lambda, lambda)
        })
        .collect()
}

/// torch's `interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=False)` of
/// `[batch, channels, h, w]` latents.
pub fn resize_latents_bilinear(latents: &[f32], shape: [usize; 4], out_h: usize, out_w: usize) -> Vec<f32> {
    let [b, c, h, w] = shape;
    assert_eq!(latents.len(), b * c * h * w, "latent buffer size");
    let rows = linear_taps(h, out_h);
    let cols = linear_taps(w, out_w);
    let mut out = Vec::with_capacity(b * c * out_h * out_w);
    for plane in latents.chunks_exact(h * w) {
        for &(y0, y1, hy0, hy1) in &rows {
            for &(x0, x1, wx0, wx1) in &cols {
                let top = plane[y0 * w + x0] * wx0 + plane[y0 * w + x1] * wx1;
                let bottom = plane[y1 * w + x0] * wx0 + plane[y1 * w + x1] * wx1;
                out.push(top * hy0 + bottom * hy1);
            }
        }
    }
    out
}

/// torch's `interpolate(x, size=(out_h, out_w), mode="nearest-exact")` of `[batch, channels, h, w]`
/// latents: output index `i` reads `min(⌊(i + 0.5) · in/out⌋, in − 1)`, the scale in float32 as
/// ATen computes it.
pub fn resize_latents_nearest_exact(latents: &[f32], shape: [usize; 4], out_h: usize, out_w: usize) -> Vec<f32> {
    let [b, c, h, w] = shape;
    assert_eq!(latents.len(), b * c * h * w, "latent buffer size");
    let taps = |input: usize, output: usize| -> Vec<usize> {
        let scale = input as f32 / output as f32;
        (0..output).map(|i| (((i as f32 + 0.5) * scale).floor() as usize).min(input - 1)).collect()
    };
    gather(latents, shape, &taps(h, out_h), &taps(w, out_w))
}

/// The latents of a hires fix resized by a latent upscaler, or `None` for a picture upscaler.
pub fn resize_latents(upscaler: crate::api::Upscaler, latents: &[f32], shape: [usize; 4], out_h: usize, out_w: usize) -> Option<Vec<f32>> {
    use crate::api::Upscaler;
    use crate::engine::latent_resize_aa as aa;
    Some(match upscaler {
        Upscaler::Latent => resize_latents_bilinear(latents, shape, out_h, out_w),
        Upscaler::LatentNearestExact => resize_latents_nearest_exact(latents, shape, out_h, out_w),
        Upscaler::LatentBicubic => resize_latents_bicubic(latents, shape, out_h, out_w),
        Upscaler::LatentNearest => resize_latents_nearest(latents, shape, out_h, out_w),
        Upscaler::LatentArea => resize_latents_area(latents, shape, out_h, out_w),
        Upscaler::LatentAntialiased => aa::resize_latents_aa(aa::AaFilter::Bilinear, latents, shape, out_h, out_w),
        Upscaler::LatentBicubicAntialiased => aa::resize_latents_aa(aa::AaFilter::Bicubic, latents, shape, out_h, out_w),
        Upscaler::LatentBislerp => crate::engine::latent_bislerp::resize_latents_bislerp(latents, shape, out_h, out_w),
        Upscaler::Lanczos => return None,
    })
}

/// torch's `interpolate(x, size=(out_h, out_w), mode="bicubic", align_corners=False)` of `[batch,
/// channels, h, w]` latents: output index `i` samples `(i + 0.5)·in/out − 0.5` with Keys' cubic
/// (A = −0.75) over the four nearest inputs (indices clamped at the edges), columns then rows,
/// in float32 as ATen computes it.
pub fn resize_latents_bicubic(latents: &[f32], shape: [usize; 4], out_h: usize, out_w: usize) -> Vec<f32> {
    let [b, c, h, w] = shape;
    assert_eq!(latents.len(), b * c * h * w, "latent buffer size");
    const A: f32 = -0.75;
    let near = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    // Per output index: the four input indices and their weights.
    let taps = |input: usize, output: usize| -> Vec<([usize; 4], [f32; 4])> {
        let scale = input as f32 / output as f32;
        (0..output)
            .map(|i| {
                let real = scale * (i as f32 + 0.5) - 0.5;
                let first = real.floor();
                let t = real - first;
                let at = |k: i64| (first as i64 + k).clamp(0, input as i64 - 1) as usize;
                let rest = 1.0 - t;
                ([at(-1), at(0), at(1), at(2)], [far(t + 1.0), near(t), near(rest), far(rest + 1.0)])
            })
            .collect()
    };
    let (rows, cols) = (taps(h, out_h), taps(w, out_w));
    let mut out = Vec::with_capacity(b * c * out_h * out_w);
    for plane in latents.chunks_exact(h * w) {
        for (ys, wy) in &rows {
            for (xs, wx) in &cols {
                let row = |y: usize| {
                    let r = &plane[y * w..(y + 1) * w];
                    r[xs[0]] * wx[0] + r[xs[1]] * wx[1] + r[xs[2]] * wx[2] + r[xs[3]] * wx[3]
                };
                out.push(row(ys[0]) * wy[0] + row(ys[1]) * wy[1] + row(ys[2]) * wy[2] + row(ys[3]) * wy[3]);
            }
        }
    }
    out
}

/// Each output pixel the input pixel at (`rows[y]`, `cols[x]`), plane by plane.
fn gather(latents: &[f32], [b, c, h, w]: [usize; 4], rows: &[usize], cols: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(b * c * rows.len() * cols.len());
    for plane in latents.chunks_exact(h * w) {
        for &y in rows {
            out.extend(cols.iter().map(|&x| plane[y * w + x]));
        }
    }
    out
}

/// torch's legacy `interpolate(x, size=(out_h, out_w), mode="nearest")`: output index `i` reads
/// `min(⌊i · in/out⌋, in − 1)` (the scale in float32), `i / 2` exactly when doubling.
pub fn resize_latents_nearest(latents: &[f32], shape: [usize; 4], out_h: usize, out_w: usize) -> Vec<f32> {
    let [b, c, h, w] = shape;
    assert_eq!(latents.len(), b * c * h * w, "latent buffer size");
    let taps = |input: usize, output: usize| -> Vec<usize> {
        let scale = input as f32 / output as f32;
        (0..output)
            .map(|i| match () {
                _ if output == input => i,
                _ if output == 2 * input => i >> 1,
                _ => ((i as f32 * scale).floor() as usize).min(input - 1),
            })
            .collect()
    };
    gather(latents, shape, &taps(h, out_h), &taps(w, out_w))
}

/// torch's `interpolate(x, size=(out_h, out_w), mode="area")`, i.e. adaptive average pooling:
/// output index `i` averages inputs `⌊i · in/out⌋ .. ⌈(i + 1) · in/out⌉` in both directions.
pub fn resize_latents_area(latents: &[f32], shape: [usize; 4], out_h: usize, out_w: usize) -> Vec<f32> {
    let [b, c, h, w] = shape;
    assert_eq!(latents.len(), b * c * h * w, "latent buffer size");
    let spans = |input: usize, output: usize| -> Vec<(usize, usize)> {
        (0..output).map(|i| ((i * input) / output, ((i + 1) * input).div_ceil(output))).collect()
    };
    let (rows, cols) = (spans(h, out_h), spans(w, out_w));
    let mut out = Vec::with_capacity(b * c * out_h * out_w);
    for plane in latents.chunks_exact(h * w) {
        for &(y0, y1) in &rows {
            for &(x0, x1) in &cols {
                let mut sum = 0.0f32;
                for y in y0..y1 {
                    for x in x0..x1 {
                        sum += plane[y * w + x];
                    }
                }
                out.push(sum / (y1 - y0) as f32 / (x1 - x0) as f32);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_exact_reads_the_pixel_under_each_centre() {
        // 2 -> 4: centres 0.25, 0.75, 1.25, 1.75 of the input; 3 -> 2: centres 0.75, 2.25.
        let out = resize_latents_nearest_exact(&[0.0, 1.0, 2.0, 3.0], [1, 1, 2, 2], 4, 4);
        assert_eq!(&out[..4], &[0.0, 0.0, 1.0, 1.0]);
        assert_eq!(&out[8..12], &[2.0, 2.0, 3.0, 3.0]);
        let row: Vec<f32> = (0..3).map(|v| v as f32).collect();
        assert_eq!(resize_latents_nearest_exact(&row, [1, 1, 1, 3], 1, 2), vec![0.0, 2.0]);
    }

    #[test]
    fn same_size_resize_is_the_identity_and_flat_stays_flat() {
        let img: Vec<u8> = (0..6 * 4 * 3).map(|i| (i * 7 % 256) as u8).collect();
        assert_eq!(resize_lanczos(&img, 3, 6, 4, 6, 4), img);
        let flat = vec![77u8; 10 * 10];
        assert!(resize_lanczos(&flat, 1, 10, 10, 17, 6).iter().all(|&v| v == 77));
    }

    #[test]
    fn blur_keeps_flat_images_and_spreads_an_edge() {
        let flat = vec![200u8; 12 * 9];
        assert_eq!(gaussian_blur(&flat, 12, 9, 4.0), flat);
        let mut edge = vec![0u8; 16 * 4];
        for row in edge.chunks_mut(16) {
            row[8..].fill(255);
        }
        let blurred = gaussian_blur(&edge, 16, 4, 2.0);
        assert!(blurred[7] > 0 && blurred[7] < 128 && blurred[8] >= 128 && blurred[8] < 255, "{:?}", &blurred[..16]);
    }

    #[test]
    fn bilinear_doubling_matches_hand_computed_values() {
        // One 2x2 plane [[0, 1], [2, 3]] to 4x4: source index (i + 0.5) / 2 - 0.5, clamped at 0.
        let out = resize_latents_bilinear(&[0.0, 1.0, 2.0, 3.0], [1, 1, 2, 2], 4, 4);
        assert_eq!(&out[..4], &[0.0, 0.25, 0.75, 1.0]);
        assert_eq!(&out[12..], &[2.0, 2.25, 2.75, 3.0]);
    }

    #[test]
    fn gray_uses_pillows_weights() {
        assert_eq!(to_gray(&[255, 255, 255, 0, 0, 0, 255, 0, 0, 0, 255, 0]), vec![255, 0, 76, 150]);
    }
}
