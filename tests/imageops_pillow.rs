//! Easel's picture operations against Pillow's own output: `tests/fixtures/imageops` (made by
//! `models/sdtool reference imageops`, Pillow's `resize(LANCZOS)`, `GaussianBlur` and
//! `convert("L")` on 8-bit pictures). Exact bytes: diffusers and A1111 prepare init images and
//! masks with these functions, so any difference would change the image the pipeline sees.
#![cfg(feature = "ssr")]

use std::path::PathBuf;

use easel::engine::imageops::{gaussian_blur, resize_lanczos, to_gray};

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
                let got = resize_lanczos(src.as_raw(), 3, src.width() as usize, src.height() as usize, w as usize, h as usize);
                (got, want.to_rgb8().into_raw(), w, h)
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
