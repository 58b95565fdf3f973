//! Proves ONNX Runtime is provisioned: loads the real library the way `easel` does and runs a
//! one-node model (`tests/fixtures/linear.onnx`, written by `make_linear_onnx.py`). No mocks.
#![cfg(feature = "ssr")]

use std::path::Path;

use ort::session::Session;
use ort::value::TensorRef;

#[test]
fn linear_model_runs_on_the_provisioned_library() {
    let rt = easel::engine::runtime::runtime().expect("ONNX Runtime must be installed: run scripts/setup-onnxruntime.sh");
    assert!(rt.version.starts_with("1."), "version {}", rt.version);
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/linear.onnx");
    let mut session = Session::builder(&rt.environment).unwrap().with_intra_threads(1).unwrap().commit_from_file(&model).unwrap();
    let x = ndarray::array![[1.0f32, 0.0, 0.0], [0.5, -2.0, 3.0], [0.0, 0.0, 0.0]];
    let y = {
        let outputs = session.run(ort::inputs!["x" => TensorRef::from_array_view(&x).unwrap()]).unwrap();
        outputs["y"].try_extract_array::<f32>().unwrap().to_owned()
    };
    // x·W + b with W = [[1,2],[3,4],[5,6]], b = [0.5,-1], worked by hand.
    let expected = [[1.5f32, 1.0], [10.0, 10.0], [0.5, -1.0]];
    assert_eq!(y.shape(), &[3, 2]);
    for (row, want) in y.outer_iter().zip(expected) {
        assert_eq!(row.iter().copied().collect::<Vec<f32>>(), want.to_vec());
    }
}

#[test]
fn runtime_is_shared_within_a_process() {
    let a = easel::engine::runtime::runtime().unwrap() as *const _;
    let b = easel::engine::runtime::runtime().unwrap() as *const _;
    assert_eq!(a, b, "one ONNX Runtime environment per process");
}
