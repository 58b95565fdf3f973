//! Tiled VAE decoding and encoding against diffusers' own `AutoencoderKL.enable_tiling()` on the
//! tiny model (`tests/fixtures/vae_tiling`, made by `models/sdtool reference vae_tiling`): the
//! tiled outputs equal diffusers' tiled outputs, the untiled ones its whole decode and encode,
//! and the two differ (the tiles really were run separately).
#![cfg(feature = "ssr")]

use std::path::PathBuf;

use easel::api::VaeTiling;
use easel::engine::model::{Residency, SdModel};
use easel::engine::npy;
use easel::engine::pipeline::stages::{decode_latents, encode_pixels_mode, vae_tiles_for};
use easel::engine::runtime::runtime;
use easel::engine::CancelToken;

/// The VAE's ONNX-versus-torch difference on the tiny model is ~1e-6; the blends add nothing.
const FLOAT_TOL: f32 = 1e-4;
const TINY_SCALING_FACTOR: f32 = 0.18215;

fn fixture(name: &str) -> (Vec<usize>, Vec<f32>) {
    npy::read_f32(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vae_tiling").join(format!("{name}.npy"))).unwrap()
}

fn tiny() -> SdModel {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/tiny-sd");
    SdModel::load(&dir, runtime().unwrap(), 1, Residency::Warm).unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// diffusers' postprocess of decoder output to 8 bits: `(x / 2 + 0.5).clamp(0, 1)`, ×255, rounded.
fn to_rgb8(chw: &[f32], height: usize, width: usize) -> Vec<u8> {
    let plane = height * width;
    (0..plane).flat_map(|i| (0..3).map(move |c| ((chw[c * plane + i] / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0).round() as u8)).collect()
}

#[test]
fn the_tiny_vae_tiles_as_diffusers_derives_from_its_config() {
    let model = tiny();
    // sample_size 64 over four blocks: 8 latents; larger pictures tile when asked, and `auto`
    // leaves everything up to 512x512 whole.
    assert_eq!(vae_tiles_for(&model, VaeTiling::On, 128, 160), Some(8));
    assert_eq!(vae_tiles_for(&model, VaeTiling::On, 64, 64), None);
    assert_eq!(vae_tiles_for(&model, VaeTiling::Off, 1024, 1024), None);
    assert_eq!(vae_tiles_for(&model, VaeTiling::Auto, 512, 512), None);
    assert_eq!(vae_tiles_for(&model, VaeTiling::Auto, 512, 520), Some(8));
}

#[test]
fn tiled_decode_equals_diffusers_tiled_decode() {
    let mut model = tiny();
    let (shape, z) = fixture("decode_input");
    let [_, c, h, w] = shape[..] else { panic!("{shape:?}") };
    // The stage divides by the VAE scaling factor first; hand it latents that give `z`.
    let latents: Vec<f32> = z.iter().map(|x| x * TINY_SCALING_FACTOR).collect();
    let cancel = CancelToken::new();
    let mut results = Vec::new();
    for (tiling, reference) in [(VaeTiling::On, "decode_tiled"), (VaeTiling::Off, "decode_whole"), (VaeTiling::Auto, "decode_whole")] {
        let images = decode_latents(&mut model, &latents, [1, c, h, w], tiling, &cancel).unwrap();
        let (want_shape, want) = fixture(reference);
        assert_eq!(want_shape, vec![1, 3, h * 8, w * 8]);
        let want = to_rgb8(&want, h * 8, w * 8);
        let got = &images[0].rgb;
        let worst = got.iter().zip(&want).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        let off = got.iter().zip(&want).filter(|(a, b)| a.abs_diff(**b) > 1).count();
        assert!(worst <= 2 && off * 1000 <= want.len(), "{tiling:?} against {reference}: max {worst}/255, {off} values off by >1");
        results.push(got.clone());
    }
    // The tiled picture is not the whole one: the seams were blended, not avoided.
    let changed = results[0].iter().zip(&results[1]).filter(|(a, b)| a.abs_diff(**b) > 2).count();
    assert!(changed > 100, "tiling changed only {changed} values");
}

#[test]
fn tiled_encode_equals_diffusers_tiled_encode() {
    let mut model = tiny();
    let (shape, x) = fixture("encode_input");
    let [_, 3, h, w] = shape[..] else { panic!("{shape:?}") };
    let cancel = CancelToken::new();
    let mut means = Vec::new();
    for (tiling, reference) in [(VaeTiling::On, "encode_tiled"), (VaeTiling::Off, "encode_whole")] {
        // The stage returns the posterior's mean times the scaling factor (ComfyUI's mode).
        let got = encode_pixels_mode(&mut model, &x, w, h, tiling, &cancel).unwrap();
        let (want_shape, parameters) = fixture(reference);
        assert_eq!(want_shape, vec![1, 8, h / 8, w / 8]);
        let want: Vec<f32> = parameters[..parameters.len() / 2].iter().map(|m| m * TINY_SCALING_FACTOR).collect();
        let d = max_abs_diff(&got, &want);
        assert!(d <= FLOAT_TOL, "{tiling:?} against {reference}: max diff {d:e}");
        means.push(got);
    }
    let d = max_abs_diff(&means[0], &means[1]);
    assert!(d > 1e-3, "tiled and whole encodes agree to {d:e}: the tiles were not run separately");
}
