//! The hires fix's latent resizes against torch's own `interpolate` and ComfyUI's own `bislerp`
//! (`tests/fixtures/latent_resize`, recorded by `models/tooling/ref_latent_resize.py`): every
//! mode A1111's and ComfyUI's latent upscales call, antialiased or not, to a larger and a smaller size, within 1e-6 of the largest
//! value (float32 rounding of the same sums: up to 6 ulp for the four-tap bicubics).
#![cfg(feature = "ssr")]

use std::path::PathBuf;

use easel::api::Upscaler;
use easel::engine::imageops::resize_latents;
use easel::engine::npy;

#[test]
fn latent_resizes_equal_torchs_interpolate() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/latent_resize");
    let index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let (shape, source) = npy::read_f32(dir.join("source.npy")).unwrap();
    let shape: [usize; 4] = shape.try_into().unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    for case in index["files"].as_array().unwrap().iter().filter(|f| f["mode"].is_string()) {
        let upscaler = match (case["mode"].as_str().unwrap(), case["antialias"].as_bool().unwrap()) {
            ("bilinear", false) => Upscaler::Latent,
            ("bilinear", true) => Upscaler::LatentAntialiased,
            ("bicubic", false) => Upscaler::LatentBicubic,
            ("bicubic", true) => Upscaler::LatentBicubicAntialiased,
            ("nearest", false) => Upscaler::LatentNearest,
            ("nearest-exact", false) => Upscaler::LatentNearestExact,
            ("area", false) => Upscaler::LatentArea,
            ("bislerp", false) => Upscaler::LatentBislerp,
            other => panic!("no upscaler for {other:?}"),
        };
        let file = case["file"].as_str().unwrap();
        let (want_shape, want) = npy::read_f32(dir.join(file)).unwrap();
        let (h, w) = (want_shape[2], want_shape[3]);
        let got = resize_latents(upscaler, &source, shape, h, w).unwrap();
        let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let largest = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        eprintln!("{file} ({upscaler}): max diff {diff:e} (largest {largest})");
        if got.len() != want.len() || diff > 1e-6 * largest {
            failures.push(format!("{file}: {} values, max diff {diff:e}", got.len()));
        }
        checked += 1;
    }
    assert_eq!(checked, 16, "every recorded resize is checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
