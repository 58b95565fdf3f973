//! The ComfyUI graph (API format) that redoes a generation, written into each PNG's `prompt`
//! chunk so ComfyUI opens an Easel image as a workflow (as it opens its own PNGs).
//!
//! Text-to-image and image-to-image are written as ComfyUI's default graph (loader, LoRA loaders,
//! CLIP skip, two prompts, an empty or encoded latent, KSampler, decoder, SaveImage), the comfyui
//! mode's inpainting with `SetLatentNoiseMask` or `VAEEncodeForInpaint`, its KSamplerAdvanced
//! window and chain, and its hires fix as the two-pass graph (`LatentUpscale` between two
//! KSamplers); the other modes' hires fix and
//! inpainting, outpainting, and samplers or schedules ComfyUI lacks, get no graph. The picture
//! is ComfyUI's own for images made in the comfyui mode; in the other modes the settings are the
//! same but ComfyUI's noise differs.

use serde_json::{json, Map, Value};

use crate::api::conditioning::{ConditioningEntry, TextExpr};
use crate::api::image_modes::MaskedContent;
use crate::api::networks::extra_network_tags;
use crate::api::request::GenerationSettings;
use crate::api::{Compat, PromptSyntax, Stage};

/// The graph for `settings` on `model_name`, or `None` where ComfyUI's basic nodes cannot say it.
pub fn comfy_prompt(settings: &GenerationSettings, model_name: &str) -> Option<Value> {
    // Masks are written in the comfyui mode only (its latent noise mask; A1111's and diffusers'
    // inpainting are not ComfyUI's).
    let comfy_mask = settings.mask.is_some() && settings.noise.compat == Compat::ComfyUi;
    // The hires fix is ComfyUI's two-pass graph in the comfyui mode (latent upscalers only).
    let comfy_hires = settings.noise.compat == Compat::ComfyUi && settings.hires.is_some_and(|h| h.upscaler.comfyui_method().is_some());
    if (settings.hires.is_some() && !comfy_hires) || (settings.mask.is_some() && !comfy_mask) || settings.outpaint.is_some() {
        return None;
    }
    let sampler = settings.sampler.comfyui_name()?;
    let scheduler = super::infotext::effective_schedule(settings);
    let scheduler = match (settings.noise.compat, scheduler) {
        // A1111's Automatic over the model's own timesteps is ComfyUI's `normal`.
        (Compat::A1111, crate::api::Schedule::Default) => "normal",
        _ => scheduler.comfyui_name()?,
    };
    let (prompt, loras) = match settings.prompt_syntax {
        PromptSyntax::A1111 => {
            let (text, _, _) = extra_network_tags(&settings.prompt);
            (text, settings.all_loras())
        }
        _ => (settings.prompt.clone(), settings.loras.clone()),
    };
    let mut graph = Map::new();
    let mut add = |id: &str, class: &str, inputs: Value| {
        graph.insert(id.to_string(), json!({"class_type": class, "inputs": inputs}));
    };
    add("4", "CheckpointLoaderSimple", json!({"ckpt_name": model_name}));
    // LoRA loaders chain from node 20 on: each takes the model and CLIP of the one before.
    let (mut model, mut clip) = (json!(["4", 0]), json!(["4", 1]));
    for (i, lora) in loras.iter().enumerate() {
        let id = (20 + i).to_string();
        add(
            &id,
            "LoraLoader",
            json!({"model": model, "clip": clip, "lora_name": lora.name, "strength_model": lora.weight,
                   "strength_clip": lora.text_encoder_weight.unwrap_or(lora.weight)}),
        );
        (model, clip) = (json!([id, 0]), json!([id, 1]));
    }
    if settings.clip_skip > 1 {
        add("10", "CLIPSetLastLayer", json!({"clip": clip, "stop_at_clip_layer": -(settings.clip_skip as i64)}));
        clip = json!(["10", 0]);
    }
    let vae = match &settings.vae {
        Some(name) => {
            add("11", "VAELoader", json!({"vae_name": name}));
            json!(["11", 0])
        }
        None => json!(["4", 2]),
    };
    // A request's conditioning lists: their nodes from id 60 on (an entry's strength without an
    // area has no node among ComfyUI's basic ones).
    let conditioning = settings.conditioning.as_ref();
    if conditioning.is_some_and(|c| c.positive.iter().chain(&c.negative).any(|e| e.area.is_none() && e.strength != 1.0)) {
        return None;
    }
    let mut next_id = 60;
    let mut positive = match conditioning {
        Some(c) => write_list(&mut graph, &mut next_id, &c.positive, &clip),
        None => {
            graph.insert("6".into(), json!({"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": clip}}));
            json!(["6", 0])
        }
    };
    let negative = match conditioning.filter(|c| !c.negative.is_empty()) {
        Some(c) => write_list(&mut graph, &mut next_id, &c.negative, &clip),
        None => {
            let inputs = json!({"text": settings.negative_prompt, "clip": clip});
            graph.insert("7".into(), json!({"class_type": "CLIPTextEncode", "inputs": inputs}));
            json!(["7", 0])
        }
    };
    let mut add = |id: &str, class: &str, inputs: Value| {
        graph.insert(id.to_string(), json!({"class_type": class, "inputs": inputs}));
    };
    // Combined prompts: a ConditioningCombine of each with what came before.
    for (i, text) in settings.combined_prompts.iter().enumerate() {
        let (text_id, combine_id) = ((40 + i).to_string(), (50 + i).to_string());
        add(&text_id, "CLIPTextEncode", json!({"text": text, "clip": clip}));
        add(&combine_id, "ConditioningCombine", json!({"conditioning_1": positive, "conditioning_2": [text_id, 0]}));
        positive = json!([combine_id, 0]);
    }
    let (latent, denoise) = match (&settings.init_image, settings.strength) {
        (Some(upload), Some(strength)) => {
            add("12", "LoadImage", json!({"image": format!("{upload}.png")}));
            let mut latent = json!(["13", 0]);
            match &settings.mask {
                // Easel's mask is a grey picture: any of its colour channels.
                Some(mask) => {
                    add("15", "LoadImageMask", json!({"image": format!("{mask}.png"), "channel": "red"}));
                    if settings.masked_content == MaskedContent::Grey {
                        add(
                            "13",
                            "VAEEncodeForInpaint",
                            json!({"pixels": ["12", 0], "vae": vae, "mask": ["15", 0], "grow_mask_by": settings.mask_grow}),
                        );
                    } else {
                        add("13", "VAEEncode", json!({"pixels": ["12", 0], "vae": vae}));
                        add("16", "SetLatentNoiseMask", json!({"samples": ["13", 0], "mask": ["15", 0]}));
                        latent = json!(["16", 0]);
                    }
                }
                None => add("13", "VAEEncode", json!({"pixels": ["12", 0], "vae": vae})),
            }
            if settings.batch_size > 1 {
                add("14", "RepeatLatentBatch", json!({"samples": latent, "amount": settings.batch_size}));
                latent = json!(["14", 0]);
            }
            (latent, strength)
        }
        _ => {
            let first = settings.batch_index.unwrap_or(0);
            let batch = first + settings.batch_size;
            add("5", "EmptyLatentImage", json!({"width": settings.width, "height": settings.height, "batch_size": batch}));
            if first > 0 {
                add("17", "LatentFromBatch", json!({"samples": ["5", 0], "batch_index": first, "length": settings.batch_size}));
                (json!(["17", 0]), 1.0)
            } else {
                (json!(["5", 0]), 1.0)
            }
        }
    };
    match settings.sampling_range {
        Some(sampling_range) => {
            let first = Stage {
                seed: settings.seed,
                steps: settings.steps,
                cfg_scale: settings.cfg_scale,
                sampler: settings.sampler,
                schedule: settings.schedule,
                sampling_range,
                prompt: None,
                negative_prompt: None,
            };
            add("3", "KSamplerAdvanced", advanced_inputs(&first, (sampler, scheduler), [&model, &positive, &negative, &latent]))
        }
        None => add(
            "3",
            "KSampler",
            json!({"seed": settings.seed, "steps": settings.steps, "cfg": settings.cfg_scale, "sampler_name": sampler,
                   "scheduler": scheduler, "denoise": denoise, "model": model, "positive": positive, "negative": negative,
                   "latent_image": latent}),
        ),
    }
    let mut samples = json!(["3", 0]);
    // A KSamplerAdvanced chain: each stage over the LATENT of the one before.
    for (i, stage) in settings.stages.iter().enumerate() {
        let own = GenerationSettings { sampler: stage.sampler, schedule: stage.schedule, ..settings.clone() };
        let names = (stage.sampler.comfyui_name()?, super::infotext::effective_schedule(&own).comfyui_name()?);
        let id = (60 + i).to_string();
        // A stage's own prompts: their CLIPTextEncode nodes.
        let mut prompt_node = |text: &Option<String>, id: usize, side: &Value| match text {
            Some(text) => {
                add(&id.to_string(), "CLIPTextEncode", json!({"text": text, "clip": clip}));
                json!([id.to_string(), 0])
            }
            None => side.clone(),
        };
        let stage_positive = prompt_node(&stage.prompt, 70 + 2 * i, &positive);
        let stage_negative = prompt_node(&stage.negative_prompt, 71 + 2 * i, &negative);
        add(&id, "KSamplerAdvanced", advanced_inputs(stage, names, [&model, &stage_positive, &stage_negative, &samples]));
        samples = json!([id, 0]);
    }
    if let Some(h) = settings.hires.filter(|_| comfy_hires) {
        let (width, height) = h.target_size(settings.width, settings.height);
        let method = h.upscaler.comfyui_method().unwrap_or("bilinear");
        add(
            "30",
            "LatentUpscale",
            json!({"samples": samples, "upscale_method": method, "width": width, "height": height, "crop": "disabled"}),
        );
        add(
            "31",
            "KSampler",
            json!({"seed": h.seed.unwrap_or(settings.seed), "steps": h.steps_or(settings.steps), "cfg": settings.cfg_scale,
                   "sampler_name": sampler, "scheduler": scheduler, "denoise": h.strength, "model": model, "positive": positive,
                   "negative": negative, "latent_image": ["30", 0]}),
        );
        samples = json!(["31", 0]);
    }
    add("8", "VAEDecode", json!({"samples": samples, "vae": vae}));
    add("9", "SaveImage", json!({"filename_prefix": "Easel", "images": ["8", 0]}));
    Some(Value::Object(graph))
}

/// A `KSamplerAdvanced` node's inputs for one sampler of a chain (the request's own window is
/// its first): its settings, its sampler and scheduler names, and the model, positive,
/// negative and latent links.
fn advanced_inputs(stage: &Stage, (sampler, scheduler): (&str, &str), [model, positive, negative, latent]: [&Value; 4]) -> Value {
    let enable = |on: bool| if on { "enable" } else { "disable" };
    let range = &stage.sampling_range;
    json!({"add_noise": enable(range.add_noise), "noise_seed": stage.seed, "steps": stage.steps, "cfg": stage.cfg_scale,
           "sampler_name": sampler, "scheduler": scheduler, "model": model, "positive": positive, "negative": negative,
           "latent_image": latent, "start_at_step": range.start_at_step, "end_at_step": range.end_at_step,
           "return_with_leftover_noise": enable(range.return_with_leftover_noise)})
}

/// Writes a conditioning list as nodes numbered from `next_id` (its expressions, their areas,
/// the entries combined in order); the link to the list.
fn write_list(graph: &mut Map<String, Value>, next_id: &mut u32, entries: &[ConditioningEntry], clip: &Value) -> Value {
    let mut writer = NodeWriter { graph, next_id, clip };
    let mut list: Option<Value> = None;
    for entry in entries {
        let mut link = writer.expr(&entry.encoding);
        if let Some(a) = entry.area {
            let inputs =
                json!({"conditioning": link, "width": a.width, "height": a.height, "x": a.x, "y": a.y, "strength": entry.strength});
            link = writer.node("ConditioningSetArea", inputs);
        }
        list = Some(match list {
            None => link,
            Some(before) => writer.node("ConditioningCombine", json!({"conditioning_1": before, "conditioning_2": link})),
        });
    }
    list.expect("a conditioning list has entries")
}

/// Adds nodes to a graph under fresh ids.
struct NodeWriter<'a> {
    graph: &'a mut Map<String, Value>,
    next_id: &'a mut u32,
    clip: &'a Value,
}

impl NodeWriter<'_> {
    fn node(&mut self, class: &str, inputs: Value) -> Value {
        let id = self.next_id.to_string();
        *self.next_id += 1;
        self.graph.insert(id.clone(), json!({"class_type": class, "inputs": inputs}));
        json!([id, 0])
    }

    fn expr(&mut self, e: &TextExpr) -> Value {
        match e {
            TextExpr::Text(text) => {
                let clip = self.clip.clone();
                self.node("CLIPTextEncode", json!({"text": text, "clip": clip}))
            }
            TextExpr::Concat { to, from } => {
                let (to, from) = (self.expr(to), self.expr(from));
                self.node("ConditioningConcat", json!({"conditioning_to": to, "conditioning_from": from}))
            }
            TextExpr::Average { to, from, to_strength } => {
                let (to, from) = (self.expr(to), self.expr(from));
                self.node(
                    "ConditioningAverage",
                    json!({"conditioning_to": to, "conditioning_from": from, "conditioning_to_strength": to_strength}),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::request::GenerateRequest;

    fn settings(json: Value) -> GenerationSettings {
        serde_json::from_value::<GenerateRequest>(json).unwrap().resolve(|| 1).unwrap()
    }

    #[test]
    fn txt2img_is_comfyuis_default_graph_with_the_settings() {
        let s = settings(json!({"prompt": "a fox <lora:style:0.5>", "negative_prompt": "blurry", "seed": 7, "steps": 6,
                                "width": 64, "height": 64, "batch_size": 2, "sampler": "euler_a", "schedule": "karras",
                                "compat": "comfyui", "prompt_syntax": "a1111", "clip_skip": 2, "vae": "tiny-vae"}));
        let g = comfy_prompt(&s, "tiny-sd").unwrap();
        assert_eq!(g["4"]["inputs"]["ckpt_name"], "tiny-sd");
        assert_eq!(g["3"]["inputs"]["sampler_name"], "euler_ancestral");
        assert_eq!(g["3"]["inputs"]["scheduler"], "karras");
        assert_eq!(g["3"]["inputs"]["seed"], 7);
        assert_eq!(g["3"]["inputs"]["model"], json!(["20", 0]));
        assert_eq!(g["20"]["inputs"]["lora_name"], "style");
        assert_eq!(g["20"]["inputs"]["strength_model"], 0.5);
        assert_eq!(g["10"]["inputs"]["stop_at_clip_layer"], -2);
        assert_eq!(g["6"]["inputs"]["text"], "a fox ");
        assert_eq!(g["6"]["inputs"]["clip"], json!(["10", 0]));
        assert_eq!(g["5"]["inputs"]["batch_size"], 2);
        assert_eq!(g["8"]["inputs"]["vae"], json!(["11", 0]));
        assert_eq!(g["9"]["class_type"], "SaveImage");
    }

    #[test]
    fn a_sampling_range_is_written_as_ksampler_advanced_and_reads_back() {
        use crate::api::comfy::{graph, nodes};
        let s = settings(json!({"prompt": "x", "width": 64, "height": 64, "steps": 6, "compat": "comfyui", "sampler": "euler",
                                "sampling_range": {"end_at_step": 4, "return_with_leftover_noise": true}}));
        let g = comfy_prompt(&s, "m").unwrap();
        assert_eq!(g["3"]["class_type"], "KSamplerAdvanced");
        assert_eq!(g["3"]["inputs"]["return_with_leftover_noise"], "enable");
        let specs = nodes::specs(&nodes::Lists { checkpoints: vec!["m".into()], ..Default::default() });
        let compiled = graph::compile(&graph::parse(&g).unwrap(), &specs).unwrap();
        let again = compiled.outputs[0].request.resolve(|| 0).unwrap();
        assert_eq!((again.sampling_range, again.seed, again.steps), (s.sampling_range, s.seed, s.steps));
    }

    #[test]
    fn a_chain_is_written_as_ksampler_advanced_nodes_and_reads_back() {
        use crate::api::comfy::{graph, nodes};
        let s = settings(json!({"prompt": "x", "width": 64, "height": 64, "steps": 6, "compat": "comfyui", "sampler": "euler",
                                "sampling_range": {"end_at_step": 3, "return_with_leftover_noise": true},
                                "stages": [{"sampling_range": {"start_at_step": 3, "add_noise": false}, "seed": 9, "cfg_scale": 5.0,
                                            "sampler": "euler_a", "schedule": "karras", "prompt": "y"}]}));
        let g = comfy_prompt(&s, "m").unwrap();
        assert_eq!((&g["60"]["class_type"], &g["60"]["inputs"]["latent_image"]), (&json!("KSamplerAdvanced"), &json!(["3", 0])));
        assert_eq!((&g["60"]["inputs"]["sampler_name"], &g["8"]["inputs"]["samples"]), (&json!("euler_ancestral"), &json!(["60", 0])));
        assert_eq!((&g["70"]["inputs"]["text"], &g["60"]["inputs"]["negative"]), (&json!("y"), &json!(["7", 0])));
        let specs = nodes::specs(&nodes::Lists { checkpoints: vec!["m".into()], ..Default::default() });
        let compiled = graph::compile(&graph::parse(&g).unwrap(), &specs).unwrap();
        let again = compiled.outputs[0].request.resolve(|| 0).unwrap();
        assert_eq!((again.stages, again.sampling_range), (s.stages, s.sampling_range));
    }

    #[test]
    fn img2img_loads_the_init_picture_and_modes_comfyui_lacks_get_none() {
        let s = settings(json!({"prompt": "x", "init_image": "abc", "strength": 0.6, "width": 64, "height": 64,
                                "compat": "comfyui", "sampler": "euler", "schedule": "normal"}));
        let g = comfy_prompt(&s, "m").unwrap();
        assert_eq!(g["12"]["inputs"]["image"], "abc.png");
        assert_eq!(g["3"]["inputs"]["denoise"], 0.6);
        assert_eq!(g["3"]["inputs"]["latent_image"], json!(["13", 0]));
        assert!(g.get("5").is_none());
        let hires = settings(json!({"prompt": "x", "width": 64, "height": 64, "hires": {"scale": 2.0}}));
        assert!(comfy_prompt(&hires, "m").is_none());
        let pndm = settings(json!({"prompt": "x", "width": 64, "height": 64, "sampler": "pndm"}));
        assert!(comfy_prompt(&pndm, "m").is_none());
        let diffusers_inpaint = settings(json!({"prompt": "x", "init_image": "abc", "mask": "def", "width": 64, "height": 64}));
        assert!(comfy_prompt(&diffusers_inpaint, "m").is_none());
    }

    #[test]
    fn a_comfyui_hires_fix_is_written_as_the_two_pass_graph_and_reads_back() {
        use crate::api::comfy::{graph, nodes};
        let specs = nodes::specs(&nodes::Lists { checkpoints: vec!["m".into()], ..Default::default() });
        let s = settings(json!({"prompt": "x", "width": 64, "height": 64, "steps": 6, "compat": "comfyui", "sampler": "euler",
                                "hires": {"scale": 1.5, "strength": 0.5, "steps": 4, "upscaler": "latent-nearest-exact", "seed": 9}}));
        let g = comfy_prompt(&s, "m").unwrap();
        assert_eq!((&g["30"]["inputs"]["width"], &g["30"]["inputs"]["upscale_method"]), (&json!(96), &json!("nearest-exact")));
        assert_eq!((&g["31"]["inputs"]["seed"], &g["31"]["inputs"]["steps"]), (&json!(9), &json!(4)));
        let compiled = graph::compile(&graph::parse(&g).unwrap(), &specs).unwrap();
        let again = compiled.outputs[0].request.resolve(|| 0).unwrap();
        assert_eq!((again.hires, again.seed, again.steps, again.width), (s.hires, s.seed, s.steps, s.width));
        let diffusers = settings(json!({"prompt": "x", "width": 64, "height": 64, "hires": {"scale": 1.5}}));
        assert!(comfy_prompt(&diffusers, "m").is_none());
    }

    #[test]
    fn a_batch_index_is_written_as_latent_from_batch_and_reads_back() {
        use crate::api::comfy::{graph, nodes};
        let specs = nodes::specs(&nodes::Lists { checkpoints: vec!["m".into()], ..Default::default() });
        let s = settings(json!({"prompt": "x", "width": 64, "height": 64, "compat": "comfyui", "batch_size": 2, "batch_index": 3}));
        let g = comfy_prompt(&s, "m").unwrap();
        assert_eq!((&g["5"]["inputs"]["batch_size"], &g["17"]["inputs"]["batch_index"]), (&json!(5), &json!(3)));
        let compiled = graph::compile(&graph::parse(&g).unwrap(), &specs).unwrap();
        let again = compiled.outputs[0].request.resolve(|| 0).unwrap();
        assert_eq!((again.batch_index, again.batch_size), (Some(3), 2));
    }

    #[test]
    fn combined_prompts_are_written_as_conditioning_combine_and_read_back() {
        use crate::api::comfy::{graph, nodes};
        let specs = nodes::specs(&nodes::Lists { checkpoints: vec!["m".into()], ..Default::default() });
        let s = settings(json!({"prompt": "a fox", "width": 64, "height": 64, "compat": "comfyui", "prompt_syntax": "comfyui",
                                "combined_prompts": ["snow", "oil painting"]}));
        let g = comfy_prompt(&s, "m").unwrap();
        assert_eq!(g["3"]["inputs"]["positive"], json!(["51", 0]));
        assert_eq!(g["51"]["inputs"]["conditioning_1"], json!(["50", 0]));
        let compiled = graph::compile(&graph::parse(&g).unwrap(), &specs).unwrap();
        let again = compiled.outputs[0].request.resolve(|| 0).unwrap();
        assert_eq!((&again.prompt, &again.combined_prompts), (&s.prompt, &s.combined_prompts));
    }

    #[test]
    fn conditioning_lists_are_written_as_their_nodes_and_read_back() {
        use crate::api::comfy::{graph, nodes};
        let specs = nodes::specs(&nodes::Lists { checkpoints: vec!["m".into()], ..Default::default() });
        let conditioning = json!({
            "positive": [
                {"encoding": {"text": "a lake"}},
                {"encoding": {"concat": {"to": {"text": "a red boat"}, "from": {"text": "sunset"}}},
                 "area": {"x": 0, "y": 32, "width": 64, "height": 64}, "strength": 0.8},
                {"encoding": {"average": {"to": {"text": "pines"}, "from": {"text": "birches"}, "to_strength": 0.25}}}
            ],
            "negative": [{"encoding": {"text": "blurry"}}, {"encoding": {"text": "text"}, "area": {"x": 64, "y": 0, "width": 64, "height": 128}}]
        });
        let s = settings(json!({"prompt": "a lake", "negative_prompt": "blurry", "width": 128, "height": 128, "compat": "comfyui",
                                "prompt_syntax": "comfyui", "conditioning": conditioning}));
        let g = comfy_prompt(&s, "m").unwrap();
        assert!(g.get("6").is_none() && g.get("7").is_none(), "the lists replace the two prompts");
        let classes: Vec<&str> = g.as_object().unwrap().values().map(|n| n["class_type"].as_str().unwrap()).collect();
        for class in ["ConditioningConcat", "ConditioningAverage", "ConditioningSetArea", "ConditioningCombine"] {
            assert!(classes.contains(&class), "{class} in {classes:?}");
        }
        let compiled = graph::compile(&graph::parse(&g).unwrap(), &specs).unwrap();
        let again = compiled.outputs[0].request.resolve(|| 0).unwrap();
        assert_eq!(again.conditioning, s.conditioning);
        assert_eq!((again.prompt.as_str(), again.negative_prompt.as_str()), ("a lake", "blurry"));
        // With the two-pass hires fix both KSamplers take the lists.
        let mut two_pass = s.clone();
        two_pass.hires =
            Some(crate::api::Hires { scale: 2.0, strength: 0.5, steps: 0, upscaler: crate::api::Upscaler::Latent, seed: None });
        let g = comfy_prompt(&two_pass, "m").unwrap();
        assert_eq!(g["31"]["inputs"]["negative"], g["3"]["inputs"]["negative"]);
        let again = graph::compile(&graph::parse(&g).unwrap(), &specs).unwrap().outputs[0].request.resolve(|| 0).unwrap();
        assert_eq!((again.conditioning, again.hires.map(|h| h.scale)), (s.conditioning.clone(), Some(2.0)));
        // A strength without an area has no basic ComfyUI node: no graph.
        let mut odd = s.clone();
        odd.conditioning.as_mut().unwrap().positive[0].strength = 0.5;
        assert!(comfy_prompt(&odd, "m").is_none());
    }

    #[test]
    fn comfyui_masks_are_written_as_their_nodes_and_read_back() {
        use crate::api::comfy::{graph, nodes};
        let specs = nodes::specs(&nodes::Lists { checkpoints: vec!["m".into()], ..Default::default() });
        for (extra, encoder) in [
            (json!({}), "VAEEncode"),
            (json!({"masked_content": "grey", "mask_grow": 6, "strength": 1.0}), "VAEEncodeForInpaint"),
            (json!({"masked_content": "grey", "batch_size": 2}), "VAEEncodeForInpaint"),
        ] {
            let mut request = json!({"prompt": "x", "init_image": "up_a", "mask": "up_b", "strength": 0.8, "width": 64, "height": 64,
                                     "compat": "comfyui", "sampler": "euler", "schedule": "normal"});
            request.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            let s = settings(request);
            let g = comfy_prompt(&s, "m").unwrap();
            assert_eq!(g["13"]["class_type"], encoder);
            assert_eq!(g["15"]["inputs"]["image"], "up_b.png");
            let compiled = graph::compile(&graph::parse(&g).unwrap(), &specs).unwrap();
            let again = compiled.outputs[0].request.resolve(|| 0).unwrap();
            assert_eq!(
                (&again.mask, again.masked_content, again.mask_grow, again.strength, again.batch_size),
                (&s.mask, s.masked_content, s.mask_grow, s.strength, s.batch_size)
            );
        }
    }
}
