//! A cheap live preview: latents mapped to RGB by a fixed linear 4 -> 3 projection, no VAE.
//! The coefficients approximate what SD 1.x's VAE decoder does to a flat latent (a least-squares
//! fit that several UIs use for their "cheap" previews); good enough to watch composition emerge.

/// Rows: latent channels; columns: R, G, B contribution.
const LATENT_TO_RGB: [[f32; 3]; 4] = [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]];

/// RGB8 pixels (`height/8 × width/8`) for image `index` of latents shaped `[batch, 4, h, w]`.
pub fn latents_to_rgb(latents: &[f32], shape: [usize; 4], index: usize) -> Vec<u8> {
    let [_, channels, h, w] = shape;
    let plane = h * w;
    let image = &latents[index * channels * plane..(index + 1) * channels * plane];
    let mut rgb = Vec::with_capacity(plane * 3);
    for p in 0..plane {
        for c in 0..3 {
            let v: f32 = LATENT_TO_RGB.iter().enumerate().map(|(k, row)| image[k * plane + p] * row[c]).sum();
            rgb.push(((v + 1.0) * 127.5).clamp(0.0, 255.0) as u8);
        }
    }
    rgb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_latents_are_mid_grey_and_shape_is_latent_size() {
        let rgb = latents_to_rgb(&vec![0.0; 2 * 4 * 3 * 5], [2, 4, 3, 5], 1);
        assert_eq!(rgb.len(), 3 * 5 * 3);
        assert!(rgb.iter().all(|&v| v == 127));
    }
}
