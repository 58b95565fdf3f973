//! Unit tests of the A1111 door's pure parts.

use serde_json::json;

use super::info::*;
use super::options::*;
use super::plan::*;
use super::tables::*;
use super::wire::*;
use crate::api::Compat;

fn options() -> EffectiveOptions {
    EffectiveOptions::new(&A1111Options::default(), None, None)
}

#[test]
fn absent_fields_take_a1111_defaults_and_unknown_keys_are_ignored() {
    let t: Txt2ImgRequest = parse_body(&json!({"prompt": "a cat", "not_a_field": 1})).unwrap();
    assert_eq!((t.common.steps, t.common.seed, t.denoising_strength), (Some(50), Some(-1), None));
    assert_eq!(t.common.sampler_index.as_deref(), Some("Euler"));
    let i: Img2ImgRequest = parse_body(&json!({"init_images": ["x"]})).unwrap();
    assert_eq!((i.denoising_strength, i.inpaint_full_res, i.inpainting_fill), (Some(0.75), Some(true), Some(0)));
    let echo = serde_json::to_value(i.echo()).unwrap();
    assert!(echo["init_images"].is_null() && echo["steps"] == json!(50) && echo.get("not_a_field").is_none());
}

#[test]
fn values_are_coerced_like_pydantic_and_bad_ones_located() {
    let t: Txt2ImgRequest = parse_body(&json!({"steps": "20", "width": 512.0, "cfg_scale": 7, "enable_hr": "true"})).unwrap();
    assert_eq!((t.common.steps, t.common.width, t.common.cfg_scale, t.enable_hr), (Some(20), Some(512), Some(7.0), Some(true)));
    let err = parse_body::<Txt2ImgRequest>(&json!({"steps": "many", "prompt": "ok"})).unwrap_err();
    assert_eq!(err.detail.len(), 1);
    assert_eq!(err.detail[0].loc, vec![json!("body"), json!("steps")]);
    assert_eq!(err.detail[0].kind, "type_error.integer");
}

#[test]
fn legacy_sampler_names_split_off_their_scheduler() {
    let c = resolve_sampler(Some("DPM++ 2M Karras"), None, None);
    assert_eq!((c.sampler.name, c.easel_schedule(), c.schedule_label()), ("DPM++ 2M", None, Some("Karras")));
    let c = resolve_sampler(Some("Euler a"), Some("Euler"), Some("karras"));
    assert_eq!((c.sampler.name, c.easel_schedule()), ("Euler a", Some("karras")));
    let c = resolve_sampler(None, Some("Euler"), None);
    assert_eq!((c.sampler.name, c.schedule_label()), ("Euler", None));
    let c = resolve_sampler(Some("no such sampler"), None, None);
    assert_eq!((c.sampler.name, c.known), ("DPM++ 2M", false));
}

#[test]
fn batches_continue_a1111s_seed_numbering() {
    let req: Txt2ImgRequest = parse_body(&json!({"seed": 10, "batch_size": 2, "n_iter": 3, "sampler_name": "Euler a"})).unwrap();
    let plan = plan_txt2img(&req, &options(), || 0).unwrap();
    assert_eq!(plan.compat, Compat::A1111);
    assert_eq!(plan.all_seeds(), vec![10, 11, 12, 13, 14, 15]);
    assert_eq!(plan.batch(2).seed, Some(14));
    assert_eq!(plan.request.randn_source.as_deref(), Some("GPU"));
    // The hires fix runs in A1111's own mode, any sampler, with a latent upscaler or Lanczos; an
    // upscaler Easel does not have is named.
    let hires: Txt2ImgRequest = parse_body(&json!({"enable_hr": true, "sampler_name": "DPM++ SDE"})).unwrap();
    assert_eq!(plan_txt2img(&hires, &options(), || 0).unwrap().compat, Compat::A1111);
    let lanczos: Txt2ImgRequest = parse_body(&json!({"enable_hr": true, "hr_upscaler": "Lanczos", "sampler_name": "DPM++ SDE"})).unwrap();
    assert_eq!(plan_txt2img(&lanczos, &options(), || 0).unwrap().compat, Compat::A1111);
    let esrgan: Txt2ImgRequest = parse_body(&json!({"enable_hr": true, "hr_upscaler": "R-ESRGAN 4x+"})).unwrap();
    let fields: Vec<String> = plan_txt2img(&esrgan, &options(), || 0).unwrap_err().into_iter().map(|e| e.field).collect();
    assert_eq!(fields, ["hr_upscaler"]);
}

#[test]
fn info_is_written_as_python_writes_json() {
    assert_eq!(to_python_json(&json!({"a": [1, "é"], "b": null})), r#"{"a": [1, "\u00e9"], "b": null}"#);
    assert_eq!(f32_as_f64(0.3), 0.3);
    assert_eq!(job_timestamp_utc(951_782_400_000), "20000229000000");
}

#[test]
fn infotexts_parse_as_a1111_reads_them() {
    let text = "a cat, soft\nNegative prompt: blurry\nSteps: 20, Sampler: DPM++ 2M, Size: 512x768, Lora hashes: \"ink: 0123456789ab\"";
    let (prompt, negative, pairs) = parse_infotext(text);
    assert_eq!((prompt.as_str(), negative.as_str()), ("a cat, soft", "blurry"));
    assert_eq!(pairs.last().unwrap(), &("Lora hashes".to_string(), "ink: 0123456789ab".to_string()));
    let p = png_info_parameters(text);
    assert_eq!((&p["Size-1"], &p["Size-2"], &p["Clip skip"]), (&json!("512"), &json!("768"), &json!("1")));
    assert_eq!(parse_infotext("just a prompt: with colon").2.len(), 0);
}

#[test]
fn images_arrive_as_base64_or_data_urls() {
    assert_eq!(decode_image_data("data:image/png;base64,aGk=").unwrap(), b"hi");
    assert_eq!(decode_image_data("aGk").unwrap(), b"hi");
    assert_eq!(decode_image_data("https://example.com/a.png"), Err(ImageDataError::RequestsNotAllowed));
    assert_eq!(decode_image_data("!!"), Err(ImageDataError::Invalid));
}

#[test]
fn the_sampler_table_agrees_with_easels_samplers_and_their_automatic_schedules() {
    use crate::api::{Sampler, Schedule};
    use crate::engine::kdiffusion::KSampler;
    for entry in &A1111_SAMPLERS {
        let Some(sampler) = entry.easel else { continue };
        assert_eq!(sampler.a1111_name(), entry.name, "one name per sampler");
        if !entry.kdiffusion {
            // A1111's timestep samplers: no scheduler; Easel runs them over timesteps too.
            assert!(entry.default_scheduler().is_none(), "{}", entry.name);
            assert_eq!(sampler.a1111_timesteps(), sampler.runs_in(Compat::A1111), "{}", entry.name);
        } else if sampler.runs_in(Compat::A1111) {
            let automatic = KSampler::for_sampler(sampler).unwrap().a1111_automatic();
            let listed = entry.default_scheduler().map(|name| find_scheduler(name).unwrap().easel);
            let want = (automatic != Schedule::Uniform).then_some(automatic);
            assert_eq!(listed, want, "{}: the engine's Automatic", entry.name);
        }
    }
    for sampler in Sampler::ALL.into_iter().filter(|s| s.runs_in(Compat::A1111)) {
        assert!(A1111_SAMPLERS.iter().any(|e| e.easel == Some(sampler)), "{sampler:?} runs in the a1111 mode but is not listed");
    }
}
