//! Owns how ComfyUI weighs one entry of a conditioning list over the latents
//! (`get_area_and_mult`: the entry's strength, over its area with feathered edges) and how a
//! side's predictions are averaged with those weights (`calc_cond_batch`: `Σ out·w / Σ w` per
//! latent pixel; a pixel no entry covers comes out 0).

use crate::engine::prompt::regions::Region;

/// The part of the latents an entry's UNet run sees: rows `y..y + h`, columns `x..x + w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crop {
    pub y: usize,
    pub x: usize,
    pub h: usize,
    pub w: usize,
}

impl Crop {
    /// An area `(height, width, y, x)` cut at the edge of `latent_h` x `latent_w` latents
    /// (ComfyUI narrows it so); `None` when it starts outside them.
    pub fn of(area: [usize; 4], latent_h: usize, latent_w: usize) -> Option<Crop> {
        let [h, w, y, x] = area;
        let crop = Crop { y, x, h: h.min(latent_h.saturating_sub(y)), w: w.min(latent_w.saturating_sub(x)) };
        (crop.h > 0 && crop.w > 0).then_some(crop)
    }

    /// `planes` (each `latent_h` x `latent_w`, one after another) cut to this crop.
    pub fn cut(&self, planes: &[f32], latent_w: usize, plane: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(planes.len() / plane.max(1) * self.h * self.w);
        for p in planes.chunks(plane) {
            for row in self.y..self.y + self.h {
                out.extend_from_slice(&p[row * latent_w + self.x..row * latent_w + self.x + self.w]);
            }
        }
        out
    }

    /// Cropped planes put back at their place in zero planes of `latent_h` x `latent_w`.
    pub fn paste(&self, cropped: &[f32], latent_h: usize, latent_w: usize) -> Vec<f32> {
        let planes = cropped.len() / (self.h * self.w).max(1);
        let mut out = vec![0.0; planes * latent_h * latent_w];
        for (p, src) in out.chunks_mut(latent_h * latent_w).zip(cropped.chunks(self.h * self.w)) {
            for (r, row) in src.chunks(self.w).enumerate() {
                let at = (self.y + r) * latent_w + self.x;
                p[at..at + self.w].copy_from_slice(row);
            }
        }
        out
    }
}

/// An entry's weight at each pixel of its crop: the strength, the first and last `rr` rows and
/// columns scaled by `(t + 1)/rr` where the crop does not reach the latents' edge, `rr` =
/// min(8, side/4) (float32, in ComfyUI's order: rows from the top, from the bottom, then columns).
pub fn crop_weights(strength: f32, crop: Crop, latent_h: usize, latent_w: usize) -> Vec<f32> {
    let mut mult = vec![strength; crop.h * crop.w];
    for (offset, size, full, along_rows) in [(crop.y, crop.h, latent_h, true), (crop.x, crop.w, latent_w, false)] {
        let rr = 8.min(size / 4);
        let mut scale = |line: usize, factor: f32| {
            if along_rows {
                mult[line * crop.w..(line + 1) * crop.w].iter_mut().for_each(|m| *m *= factor);
            } else {
                mult.iter_mut().skip(line).step_by(crop.w).for_each(|m| *m *= factor);
            }
        };
        let factor = |t: usize| ((1.0 / rr as f64) * (t + 1) as f64) as f32;
        if offset != 0 {
            (0..rr).for_each(|t| scale(t, factor(t)));
        }
        if size + offset < full {
            (0..rr).for_each(|t| scale(size - 1 - t, factor(t)));
        }
    }
    mult
}

/// How one branch weighs in its side: the whole picture at a strength, or a crop's weights.
pub enum Weighting {
    Whole(f32),
    Crop(Crop, Vec<f32>),
}

impl Weighting {
    pub fn of(region: &Region, latent_h: usize, latent_w: usize) -> Option<Weighting> {
        Some(match region.area {
            None => Weighting::Whole(region.strength),
            Some(area) => {
                let crop = Crop::of(area, latent_h, latent_w)?;
                Weighting::Crop(crop, crop_weights(region.strength, crop, latent_h, latent_w))
            }
        })
    }
}

/// One side's average of `outputs` (each `[batch, channels, latent_h, latent_w]`, zero outside
/// its crop): per element `Σ out·w / (1e−37 + Σ w)`, as `calc_cond_batch` accumulates it.
pub fn side_average(outputs: &[(&[f32], &Weighting)], latent_h: usize, latent_w: usize) -> Vec<f32> {
    let plane = latent_h * latent_w;
    let len = outputs.first().map_or(0, |(o, _)| o.len());
    let mut sum = vec![0.0f32; len];
    let mut count = vec![1e-37f32; plane];
    for (out, weighting) in outputs {
        match weighting {
            Weighting::Whole(s) => {
                for (acc, &o) in sum.iter_mut().zip(out.iter()) {
                    *acc += o * s;
                }
                count.iter_mut().for_each(|c| *c += s);
            }
            Weighting::Crop(crop, mult) => {
                for (acc_plane, out_plane) in sum.chunks_mut(plane).zip(out.chunks(plane)) {
                    for (r, row_mult) in mult.chunks(crop.w).enumerate() {
                        let at = (crop.y + r) * latent_w + crop.x;
                        for ((acc, &o), &m) in acc_plane[at..at + crop.w].iter_mut().zip(&out_plane[at..at + crop.w]).zip(row_mult) {
                            *acc += o * m;
                        }
                    }
                }
                for (r, row_mult) in mult.chunks(crop.w).enumerate() {
                    let at = (crop.y + r) * latent_w + crop.x;
                    count[at..at + crop.w].iter_mut().zip(row_mult).for_each(|(c, &m)| *c += m);
                }
            }
        }
    }
    for acc_plane in sum.chunks_mut(plane) {
        acc_plane.iter_mut().zip(&count).for_each(|(a, &c)| *a /= c);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_are_cut_at_the_latents_edge() {
        assert_eq!(Crop::of([16, 16, 4, 8], 12, 12), Some(Crop { y: 4, x: 8, h: 8, w: 4 }));
        assert_eq!(Crop::of([8, 8, 12, 0], 12, 12), None);
        let crop = Crop { y: 1, x: 1, h: 1, w: 2 };
        let planes: Vec<f32> = (0..18).map(|v| v as f32).collect();
        assert_eq!(crop.cut(&planes, 3, 9), vec![4.0, 5.0, 13.0, 14.0]);
        let back = crop.paste(&[4.0, 5.0, 13.0, 14.0], 3, 3);
        assert_eq!(back, vec![0., 0., 0., 0., 4., 5., 0., 0., 0., 0., 0., 0., 0., 13., 14., 0., 0., 0.]);
    }

    #[test]
    fn edges_inside_the_picture_are_feathered_as_comfyui_does() {
        // A 12-row, 20-column crop at row 4, column 0 of 32 x 20 latents: rr = 3 along the rows
        // (12 / 4), both edges inside; rr = 5 along the columns but both edges on the border.
        let crop = Crop { y: 4, x: 0, h: 12, w: 20 };
        let w = crop_weights(0.5, crop, 32, 20);
        let row = |r: usize| w[r * 20];
        let third = (1.0f64 / 3.0) as f32;
        assert_eq!(row(0), 0.5 * third);
        assert_eq!(row(1), 0.5 * ((1.0f64 / 3.0) * 2.0) as f32);
        assert_eq!(row(2), 0.5 * 1.0);
        assert_eq!(row(5), 0.5);
        assert_eq!(row(11), 0.5 * third);
        assert!(w[..20].iter().all(|&v| v == row(0)), "columns untouched");
        // At the top-left corner of a crop away from both borders: both factors, rows first.
        let inner = crop_weights(1.0, Crop { y: 8, x: 8, h: 8, w: 8 }, 32, 32);
        assert_eq!(inner[0], (1.0f32 * 0.5) * 0.5);
        assert_eq!(inner[9], (1.0f32 * 1.0) * 1.0);
    }

    #[test]
    fn the_side_average_weighs_each_pixel_and_leaves_uncovered_ones_zero() {
        // 1 x 1 x 2 x 2 latents: a whole entry of 4 and an area entry of 10 over the top row.
        let whole = vec![4.0f32; 4];
        let crop = Crop { y: 0, x: 0, h: 1, w: 2 };
        let area = crop.paste(&[10.0, 10.0], 2, 2);
        let weights = (Weighting::Whole(1.0), Weighting::Crop(crop, vec![3.0, 1.0]));
        let avg = side_average(&[(&whole, &weights.0), (&area, &weights.1)], 2, 2);
        assert_eq!(avg, vec![(4.0 + 30.0) / 4.0, (4.0 + 10.0) / 2.0, 4.0, 4.0]);
        let alone = side_average(&[(&area, &weights.1)], 2, 2);
        assert_eq!(alone, vec![10.0, 10.0, 0.0, 0.0]);
    }
}
