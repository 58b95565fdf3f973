//! Writing images as PNG with their settings inside: the A1111 `parameters` text chunk (tEXt when
//! the text is Latin-1, iTXt otherwise, as PIL does) and Easel's own `easel` iTXt chunk holding the
//! JSON needed to reproduce the image exactly.

use super::EngineError;

/// Encodes RGB8 pixels as a PNG with the two metadata chunks, then `extra` text chunks
/// (keyword, text), e.g. ComfyUI's `prompt` and `workflow`.
pub fn encode_png(
    rgb: &[u8],
    width: u32,
    height: u32,
    parameters: &str,
    easel_json: &str,
    extra: &[(&str, &str)],
) -> Result<Vec<u8>, EngineError> {
    let err = |e: png::EncodingError| EngineError::Png(e.to_string());
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        if parameters.chars().all(|c| (c as u32) < 256) {
            encoder.add_text_chunk("parameters".into(), parameters.into()).map_err(err)?;
        } else {
            encoder.add_itxt_chunk("parameters".into(), parameters.into()).map_err(err)?;
        }
        encoder.add_itxt_chunk("easel".into(), easel_json.into()).map_err(err)?;
        for (keyword, text) in extra {
            // As PIL writes them (ComfyUI's SaveImage): tEXt when Latin-1, iTXt otherwise.
            if text.chars().all(|c| (c as u32) < 256) {
                encoder.add_text_chunk((*keyword).into(), (*text).into()).map_err(err)?;
            } else {
                encoder.add_itxt_chunk((*keyword).into(), (*text).into()).map_err(err)?;
            }
        }
        let mut writer = encoder.write_header().map_err(err)?;
        writer.write_image_data(rgb).map_err(err)?;
        writer.finish().map_err(err)?;
    }
    Ok(out)
}

/// The text chunks of a PNG, keyword -> text (tEXt, zTXt and iTXt), for reading settings back.
pub fn read_text_chunks(png_bytes: &[u8]) -> Result<Vec<(String, String)>, EngineError> {
    let reader = png::Decoder::new(std::io::Cursor::new(png_bytes)).read_info().map_err(|e| EngineError::Png(e.to_string()))?;
    let info = reader.info();
    let mut chunks: Vec<(String, String)> = info.uncompressed_latin1_text.iter().map(|t| (t.keyword.clone(), t.text.clone())).collect();
    for t in &info.compressed_latin1_text {
        if let Ok(text) = t.get_text() {
            chunks.push((t.keyword.clone(), text));
        }
    }
    for t in &info.utf8_text {
        if let Ok(text) = t.get_text() {
            chunks.push((t.keyword.clone(), text));
        }
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_and_pixels_round_trip() {
        let rgb: Vec<u8> = (0..4 * 2 * 3).map(|i| (i * 10) as u8).collect();
        for params in ["a cat\nSteps: 20, Seed: 1", "日本語の猫\nSteps: 20, Seed: 1"] {
            let bytes = encode_png(&rgb, 4, 2, params, r#"{"seed":1}"#, &[("workflow", "{\"nodes\": []}")]).unwrap();
            let chunks = read_text_chunks(&bytes).unwrap();
            assert!(chunks.contains(&("parameters".to_string(), params.to_string())), "{chunks:?}");
            assert!(chunks.contains(&("easel".to_string(), r#"{"seed":1}"#.to_string())));
            assert!(chunks.contains(&("workflow".to_string(), "{\"nodes\": []}".to_string())));
            let decoded = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap().to_rgb8();
            assert_eq!(decoded.as_raw(), &rgb);
        }
    }
}

/// The settings an `easel` chunk records (what [`image_png`] wrote), or `None` when the text is
/// not such a record.
pub fn recorded_settings(easel_json: &str) -> Option<crate::api::request::GenerationSettings> {
    #[derive(serde::Deserialize)]
    struct Recorded {
        settings: crate::api::request::GenerationSettings,
    }
    serde_json::from_str::<Recorded>(easel_json).ok().map(|r| r.settings)
}

/// Everything needed to reproduce one image, stored as JSON in the `easel` chunk.
#[derive(serde::Serialize)]
struct Provenance<'a> {
    easel_version: &'static str,
    settings: &'a crate::api::request::GenerationSettings,
    batch_index: usize,
    model_name: &'a str,
    model_hash: &'a str,
    rng: &'static str,
    onnxruntime: &'a str,
    /// Where the models ran and at what precision (`cpu`, `fp32`): a picture made at another
    /// precision or on another device differs slightly, so regenerating it needs the same.
    device: String,
    precision: crate::api::Precision,
}

/// The PNG for image `image` of a generation, with `parameters` (the A1111 infotext, computed
/// once by the caller, which also records it), Easel's provenance JSON, and the request's
/// `png_text` chunks, or else a ComfyUI `prompt` graph of the settings where ComfyUI can run them.
pub fn image_png(
    settings: &crate::api::request::GenerationSettings,
    model: &super::model::SdModel,
    image: &super::pipeline::DecodedImage,
    parameters: &str,
) -> Result<Vec<u8>, EngineError> {
    let onnxruntime = super::runtime::runtime().map(|r| r.version.clone()).unwrap_or_default();
    let device = super::runtime::runtime().map(|r| r.execution().0.to_string()).unwrap_or_default();
    let own_graph;
    let extra: Vec<(&str, &str)> = if settings.png_text.is_empty() {
        own_graph = super::comfy_prompt::comfy_prompt(settings, &model.name).map(|g| g.to_string());
        own_graph.iter().map(|g| ("prompt", g.as_str())).collect()
    } else {
        settings.png_text.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    };
    // The chunks are not repeated inside the provenance.
    let bare;
    let recorded = if settings.png_text.is_empty() {
        settings
    } else {
        bare = crate::api::request::GenerationSettings { png_text: Default::default(), ..settings.clone() };
        &bare
    };
    let provenance = Provenance {
        easel_version: env!("CARGO_PKG_VERSION"),
        settings: recorded,
        batch_index: image.index,
        model_name: &model.name,
        model_hash: &model.short_hash,
        rng: "torch.Generator(\"cpu\").manual_seed(seed), one randn over the batch",
        onnxruntime: &onnxruntime,
        device,
        precision: model.precision,
    };
    let json = serde_json::to_string(&provenance).map_err(|e| EngineError::Png(e.to_string()))?;
    encode_png(&image.rgb, image.width, image.height, parameters, &json, &extra)
}
