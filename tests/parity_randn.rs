//! Parity of `TorchGenerator::randn` with real `torch.randn` on a CPU generator, against the
//! fixtures written by `models/tooling/ref_randn.py` (torch on x86, which dispatches the AVX2
//! Box–Muller kernel). Tolerance: 1e-6 absolute, though the emulation is expected to be
//! bit-exact; the test also prints how many values differ at all.
#![cfg(feature = "ssr")]

use std::path::PathBuf;

use easel::engine::npy;
use easel::engine::torch_rng::TorchGenerator;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/randn")
}

#[test]
fn randn_matches_torch_cpu_generator() {
    let dir = fixture_dir();
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("manifest.json"))
            .expect("run models/tooling/ref_randn.py first"),
    )
    .expect("manifest.json");
    let cases = manifest["cases"].as_array().expect("cases");
    assert!(!cases.is_empty());

    let (mut compared, mut differing, mut worst) = (0usize, 0usize, 0.0f32);
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let seed = case["seed"].as_u64().expect("seed");
        let (_, expected) =
            npy::read_f32(dir.join(case["file"].as_str().expect("file"))).expect("npy");

        let mut generator = TorchGenerator::new(seed);
        let mut actual = Vec::new();
        for draw in case["draws"].as_array().expect("draws") {
            let numel: usize = draw
                .as_array()
                .expect("shape")
                .iter()
                .map(|d| d.as_u64().expect("dim") as usize)
                .product();
            actual.extend(generator.randn(numel));
        }
        assert_eq!(actual.len(), expected.len(), "{name}: element count");
        for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
            let diff = (a - e).abs();
            assert!(diff <= 1e-6, "{name}[{i}]: ours {a:e}, torch {e:e}");
            worst = worst.max(diff);
            differing += usize::from(a.to_bits() != e.to_bits());
        }
        compared += expected.len();
    }
    println!(
        "randn parity: {compared} values over {} cases, {differing} not bit-identical, max |diff| {worst:e} (torch {}, {})",
        cases.len(),
        manifest["torch_version"],
        manifest["cpu_capability"],
    );
}
