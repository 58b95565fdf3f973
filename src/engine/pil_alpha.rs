//! Owns Pillow's 8-bit alpha arithmetic that A1111's inpainting goes through, bit for bit, on
//! interleaved 4-channel pictures: pasting through an `L` mask (`Paste.c`: each channel
//! `DIV255(out·(255 − m) + in·m)`), premultiplied `RGBa` back to `RGBA` (`Convert.c`: alpha 0 or
//! 255 copies the colour, else `CLIP8(255·c / a)` in integers), `alpha_composite`
//! (`AlphaComposite.c`: 7 extra bits of precision, divisions by 255 rounded by shifts), and
//! A1111's `masking.fill`, which blurs the picture's kept part into the masked part with them.

use super::imageops;

/// Pillow's `DIV255`: `a / 255` rounded, for `a` up to 255·255 + 255·255.
fn div255(a: u32) -> u32 {
    let tmp = a + 128;
    ((tmp >> 8) + tmp) >> 8
}

/// `Image.paste(src, mask=mask)` of two 4-channel pictures of the same size through an 8-bit mask.
pub fn paste_through(dst: &mut [u8], src: &[u8], mask: &[u8]) {
    assert!(dst.len() == src.len() && dst.len() == mask.len() * 4, "picture and mask sizes");
    for ((out, inp), &m) in dst.chunks_exact_mut(4).zip(src.chunks_exact(4)).zip(mask) {
        let m = u32::from(m);
        for (o, &i) in out.iter_mut().zip(inp) {
            *o = div255(u32::from(*o) * (255 - m) + u32::from(i) * m) as u8;
        }
    }
}

/// `RGB` to `RGBA` or `RGBa` (the same for an opaque picture): alpha 255.
pub fn opaque(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect()
}

/// `convert("RGB")` of a 4-channel picture: the alpha dropped.
pub fn drop_alpha(rgba: &[u8]) -> Vec<u8> {
    rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect()
}

/// `convert("RGBA")` of a premultiplied `RGBa` picture.
pub fn unpremultiply(rgba: &mut [u8]) {
    for p in rgba.chunks_exact_mut(4) {
        let a = u32::from(p[3]);
        if a != 0 && a != 255 {
            for c in &mut p[..3] {
                *c = (255 * u32::from(*c) / a).min(255) as u8;
            }
        }
    }
}

/// `dst.alpha_composite(src)` of two `RGBA` pictures of the same size.
pub fn alpha_composite(dst: &mut [u8], src: &[u8]) {
    const PRECISION_BITS: u32 = 7;
    let shift_div255 = |a: u32| ((a >> 8) + a) >> 8;
    assert_eq!(dst.len(), src.len(), "picture sizes");
    for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
        let sa = u32::from(s[3]);
        if sa == 0 {
            continue;
        }
        let blend = u32::from(d[3]) * (255 - sa);
        let outa255 = sa * 255 + blend;
        let coef1 = sa * 255 * 255 * (1 << PRECISION_BITS) / outa255;
        let coef2 = 255 * (1 << PRECISION_BITS) - coef1;
        for c in 0..3 {
            let tmp = u32::from(s[c]) * coef1 + u32::from(d[c]) * coef2;
            d[c] = (shift_div255(tmp + (0x80 << PRECISION_BITS)) >> PRECISION_BITS) as u8;
        }
        d[3] = shift_div255(outa255 + 0x80) as u8;
    }
}

/// Pillow's `GaussianBlur(radius)` of a 4-channel picture (each channel on its own).
pub fn gaussian_blur_rgba(rgba: &[u8], width: usize, height: usize, radius: f32) -> Vec<u8> {
    let planes: Vec<Vec<u8>> = (0..4)
        .map(|c| {
            let plane: Vec<u8> = rgba.iter().skip(c).step_by(4).copied().collect();
            imageops::gaussian_blur(&plane, width, height, radius)
        })
        .collect();
    (0..width * height).flat_map(|i| planes.iter().map(move |p| p[i])).collect()
}

/// The kept part of `rgb`: an empty `RGBa` picture with `rgb` pasted through the inverted mask
/// (`255 − mask`, the repainted part left out).
pub fn kept_part(rgb: &[u8], mask: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; mask.len() * 4];
    let inverted: Vec<u8> = mask.iter().map(|m| 255 - m).collect();
    paste_through(&mut out, &opaque(rgb), &inverted);
    out
}

/// A1111's `masking.fill(image, mask)`: the kept part blurred at radii 256, 64, 16, 4, 2 and 0,
/// each composited over the last (1, 1, 2, 4, 2 and 1 times), onto an empty picture; `RGB` out.
pub fn fill(rgb: &[u8], mask: &[u8], width: usize, height: usize) -> Vec<u8> {
    let kept = kept_part(rgb, mask);
    let mut out = vec![0u8; width * height * 4];
    for (radius, repeats) in [(256.0, 1), (64.0, 1), (16.0, 2), (4.0, 4), (2.0, 2), (0.0, 1)] {
        let mut blurred = gaussian_blur_rgba(&kept, width, height, radius);
        unpremultiply(&mut blurred);
        for _ in 0..repeats {
            alpha_composite(&mut out, &blurred);
        }
    }
    drop_alpha(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn div255_rounds() {
        assert_eq!(div255(255 * 255), 255);
        assert_eq!(div255(127), 0);
        assert_eq!(div255(128), 1);
        for a in (0..255 * 255).step_by(97) {
            assert_eq!(div255(a), (f64::from(a) / 255.0).round() as u32, "{a}");
        }
    }

    #[test]
    fn opaque_over_anything_is_the_source_and_clear_changes_nothing() {
        let mut dst = vec![10, 20, 30, 40, 50, 60, 70, 80];
        alpha_composite(&mut dst, &[1, 2, 3, 255, 9, 9, 9, 0]);
        assert_eq!(dst, [1, 2, 3, 255, 50, 60, 70, 80]);
    }

    #[test]
    fn a_picture_with_nothing_masked_fills_to_itself() {
        let rgb: Vec<u8> = (0..6 * 5 * 3).map(|i| (i * 37 % 256) as u8).collect();
        assert_eq!(fill(&rgb, &[0; 30], 6, 5), rgb);
    }
}
