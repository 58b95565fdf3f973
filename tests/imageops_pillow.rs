//! Easel's picture operations against Pillow's own output: `tests/fixtures/imageops` (made by
//! `models/sdtool reference imageops`, Pillow's `resize(LANCZOS)`, `GaussianBlur` and
//! `convert("L")` on 8-bit pictures; for A1111's inpainting also the bicubic resize with and
//! without a box, OpenCV's mask blur, and Pillow's alpha paste, blur and composite). Exact bytes:
//! diffusers and A1111 prepare init images and masks with these functions, so any difference
//! would change the image the pipeline sees.
#![cfg(feature = "ssr")]

use std::path::PathBuf;

use easel::engine::cv_blur::a1111_mask_blur;
use easel::engine::imageops::{gaussian_blur, resize, resize_lanczos, to_gray, Filter};
use easel::engine::pil_alpha;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/imageops")
}

#[test]
fn every_operation_equals_pillow_byte_for_byte() {
    let index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join("cases.json")).unwrap()).unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    for case in index["files"].as_array().unwrap() {
        let op = case["op"].as_str().unwrap();
        if op == "source" {
            continue;
        }
        let file = case["file"].as_str().unwrap();
        let input = image::open(fixtures().join(case["input"].as_str().unwrap())).unwrap();
        let want = image::open(fixtures().join(file)).unwrap();
        let (got, want, w, h): (Vec<u8>, Vec<u8>, u32, u32) = match op {
            "resize" => {
                let (w, h) = (case["width"].as_u64().unwrap() as u32, case["height"].as_u64().unwrap() as u32);
                let src = input.to_rgb8();
                let filter = if case["filter"] == "BICUBIC" { Filter::Bicubic } else { Filter::Lanczos };
                let region = case["box"].as_array().map(|b| {
                    let v: Vec<f32> = b.iter().map(|x| x.as_f64().unwrap() as f32).collect();
                    [v[0], v[1], v[2], v[3]]
                });
                let size = (src.width() as usize, src.height() as usize);
                let got = match (filter, region) {
                    (Filter::Lanczos, None) => resize_lanczos(src.as_raw(), 3, size.0, size.1, w as usize, h as usize),
                    _ => resize(src.as_raw(), 3, size, (w as usize, h as usize), filter, region),
                };
                (got, want.to_rgb8().into_raw(), w, h)
            }
            "cv_blur" => {
                let src = input.to_luma8();
                let sigma = case["sigma"].as_u64().unwrap() as u32;
                let (w, h) = src.dimensions();
                (a1111_mask_blur(src.as_raw(), w as usize, h as usize, (sigma, sigma)), want.to_luma8().into_raw(), w, h)
            }
            "kept_part" | "kept_blur" | "alpha_composite" => {
                let src = input.to_rgb8();
                let (w, h) = src.dimensions();
                let holes = image::open(fixtures().join(case["mask"].as_str().unwrap_or("mask_cut.png"))).unwrap().to_luma8();
                let kept = pil_alpha::kept_part(src.as_raw(), holes.as_raw());
                let as_rgba = |mut premultiplied: Vec<u8>| {
                    pil_alpha::unpremultiply(&mut premultiplied);
                    premultiplied
                };
                let got = match op {
                    "kept_part" => as_rgba(kept),
                    "kept_blur" => {
                        let r = case["radius"].as_f64().unwrap() as f32;
                        as_rgba(pil_alpha::gaussian_blur_rgba(&kept, w as usize, h as usize, r))
                    }
                    _ => {
                        let mut under = as_rgba(pil_alpha::gaussian_blur_rgba(&kept, w as usize, h as usize, 4.0));
                        pil_alpha::alpha_composite(&mut under, &as_rgba(kept));
                        under
                    }
                };
                (got, want.to_rgba8().into_raw(), w, h)
            }
            "gaussian_blur" => {
                let src = input.to_luma8();
                let r = case["radius"].as_f64().unwrap() as f32;
                (
                    gaussian_blur(src.as_raw(), src.width() as usize, src.height() as usize, r),
                    want.to_luma8().into_raw(),
                    src.width(),
                    src.height(),
                )
            }
            "convert_l" => {
                let src = input.to_rgb8();
                (to_gray(src.as_raw()), want.to_luma8().into_raw(), src.width(), src.height())
            }
            other => panic!("unknown op {other} in cases.json"),
        };
        checked += 1;
        let differing = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        if got.len() != want.len() || differing > 0 {
            let max = got.iter().zip(&want).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0);
            failures.push(format!("{file} ({w}x{h}): {differing} of {} values differ, by up to {max}", want.len()));
        }
    }
    assert!(checked >= 9, "only {checked} operations in the fixture index");
    assert!(failures.is_empty(), "differs from Pillow:\n{}", failures.join("\n"));
}
