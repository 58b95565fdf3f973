//! Parity of `TorchGenerator::randn` with real `torch.randn` on a CPU generator, against the
//! fixtures written by `models/tooling/ref_randn.py` (torch on x86, which dispatches the AVX2
//! Box–Muller kernel). Bit-exact, as the CHANGELOG claims: every value must have the same f32
//! bit pattern as torch's; a failure reports how many differ and by how many ULPs at most.
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
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).expect("run models/tooling/ref_randn.py first"))
            .expect("manifest.json");
    let cases = manifest["cases"].as_array().expect("cases");
    assert!(!cases.is_empty());

    let (mut compared, mut mismatches) = (0usize, Vec::new());
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let seed = case["seed"].as_u64().expect("seed");
        let (_, expected) = npy::read_f32(dir.join(case["file"].as_str().expect("file"))).expect("npy");

        let mut generator = TorchGenerator::new(seed);
        let mut actual = Vec::new();
        for draw in case["draws"].as_array().expect("draws") {
            let numel: usize = draw.as_array().expect("shape").iter().map(|d| d.as_u64().expect("dim") as usize).product();
            actual.extend(generator.randn(numel));
        }
        assert_eq!(actual.len(), expected.len(), "{name}: element count");
        for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
            if a.to_bits() != e.to_bits() {
                mismatches.push((format!("{name}[{i}]: ours {a:e}, torch {e:e}"), ulp_distance(*a, *e)));
            }
        }
        compared += expected.len();
    }
    let worst_ulp = mismatches.iter().map(|(_, ulp)| *ulp).max().unwrap_or(0);
    assert!(
        mismatches.is_empty(),
        "{} of {compared} values are not bit-identical to torch {} ({}); at most {worst_ulp} ULP apart; first: {:#?}",
        mismatches.len(),
        manifest["torch_version"],
        manifest["cpu_capability"],
        &mismatches[..mismatches.len().min(10)],
    );
    println!("randn parity: {compared} values over {} cases, all bit-identical", cases.len());
}

/// How many representable f32 values lie between `a` and `b` (0 when their bits are equal).
fn ulp_distance(a: f32, b: f32) -> u64 {
    // Maps the float's bits to an integer that increases with the float, -0.0 and 0.0 both to 0.
    let ordered = |x: f32| {
        let bits = i64::from(x.to_bits() as i32);
        if bits < 0 {
            i64::from(i32::MIN) - bits
        } else {
            bits
        }
    };
    ordered(a).abs_diff(ordered(b))
}
