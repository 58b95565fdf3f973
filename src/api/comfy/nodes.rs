//! Owns the ComfyUI node classes Easel runs: each class's inputs (types, defaults, ranges, the
//! allowed values of its lists), outputs and whether it is an output node, as ComfyUI's
//! `/object_info` describes them and as validation checks a graph against them. The lists of
//! models, LoRAs and VAEs come from Easel's registry; sampler and scheduler names from
//! [`crate::api::Sampler`] and [`crate::api::Schedule`].

use serde_json::{json, Map, Value};

use crate::api::conditioning::{MAX_AREA_PIXELS, MAX_AREA_STRENGTH, MIN_AREA_SIDE};
use crate::api::image_modes::MAX_MASK_GROW;
use crate::api::sampling_range::MAX_RANGE_STEP;
use crate::api::{Compat, Sampler, Schedule};

/// What one input takes.
#[derive(Debug, Clone, PartialEq)]
pub enum InputKind {
    /// An output of another node, of this type (`MODEL`, `CLIP`, `LATENT`, ...).
    Link(&'static str),
    Int {
        default: i64,
        min: i64,
        max: u64,
    },
    Float {
        default: f64,
        min: f64,
        max: f64,
        step: f64,
    },
    Text {
        default: &'static str,
        multiline: bool,
    },
    /// One of these values (ComfyUI's combo).
    Choice(Vec<String>),
    /// The name of a picture sent to `/upload/image` (checked when the job is submitted).
    Upload,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub name: &'static str,
    pub kind: InputKind,
}

/// A node class.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    pub class: &'static str,
    pub display_name: &'static str,
    pub category: &'static str,
    pub required: Vec<InputSpec>,
    /// `(type, name)` of each output, in slot order.
    pub outputs: &'static [(&'static str, &'static str)],
    /// Whether a graph's run is for this node (SaveImage, PreviewImage).
    pub output_node: bool,
    pub description: &'static str,
}

/// The files a graph can name, as ComfyUI names them (paths inside their folder).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lists {
    pub checkpoints: Vec<String>,
    pub loras: Vec<String>,
    pub vaes: Vec<String>,
}

/// ComfyUI's names of the samplers Easel runs in the comfyui mode (each SDE sampler also with
/// ComfyUI's `_gpu` spelling, the same run on a CPU).
pub fn sampler_names() -> Vec<String> {
    let mut names = Vec::new();
    for sampler in Sampler::ALL.into_iter().filter(|s| s.runs_in(Compat::ComfyUi)) {
        if let Some(name) = sampler.comfyui_name() {
            names.push(name.to_string());
            if matches!(sampler, Sampler::DpmppSde | Sampler::Dpmpp2mSde | Sampler::Dpmpp2mSdeHeun | Sampler::Dpmpp3mSde) {
                names.push(format!("{name}_gpu"));
            }
        }
    }
    names
}

/// The Easel sampler a ComfyUI `sampler_name` picks.
pub fn sampler_named(name: &str) -> Option<Sampler> {
    let plain = name.strip_suffix("_gpu").unwrap_or(name);
    Sampler::ALL.into_iter().find(|s| s.runs_in(Compat::ComfyUi) && s.comfyui_name() == Some(plain))
}

/// ComfyUI's scheduler names Easel runs.
pub fn scheduler_names() -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in Schedule::ALL.into_iter().filter_map(Schedule::comfyui_name) {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    names
}

/// The Easel schedule a ComfyUI `scheduler` picks.
pub fn scheduler_named(name: &str) -> Option<Schedule> {
    Schedule::ALL.into_iter().find(|s| *s != Schedule::Default && s.comfyui_name() == Some(name))
}

fn link(name: &'static str, kind: &'static str) -> InputSpec {
    InputSpec { name, kind: InputKind::Link(kind) }
}

fn int(name: &'static str, default: i64, min: i64, max: u64) -> InputSpec {
    InputSpec { name, kind: InputKind::Int { default, min, max } }
}

fn float(name: &'static str, default: f64, min: f64, max: f64, step: f64) -> InputSpec {
    InputSpec { name, kind: InputKind::Float { default, min, max, step } }
}

fn choice(name: &'static str, values: &[String]) -> InputSpec {
    InputSpec { name, kind: InputKind::Choice(values.to_vec()) }
}

/// The inputs KSampler and KSamplerAdvanced share, in their order (the seed named `seed`).
fn sampling_inputs(seed: &'static str) -> Vec<InputSpec> {
    vec![
        int(seed, 0, 0, u64::MAX),
        int("steps", 20, 1, 10000),
        float("cfg", 8.0, 0.0, 100.0, 0.1),
        choice("sampler_name", &sampler_names()),
        choice("scheduler", &scheduler_names()),
        link("positive", "CONDITIONING"),
        link("negative", "CONDITIONING"),
        link("latent_image", "LATENT"),
    ]
}

/// Every node class Easel runs.
pub fn specs(lists: &Lists) -> Vec<NodeSpec> {
    vec![
        NodeSpec {
            class: "CheckpointLoaderSimple",
            display_name: "Load Checkpoint",
            category: "loaders",
            required: vec![choice("ckpt_name", &lists.checkpoints)],
            outputs: &[("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")],
            output_node: false,
            description: "Loads a diffusion model checkpoint.",
        },
        NodeSpec {
            class: "VAELoader",
            display_name: "Load VAE",
            category: "loaders",
            required: vec![choice("vae_name", &lists.vaes)],
            outputs: &[("VAE", "VAE")],
            output_node: false,
            description: "Loads a VAE.",
        },
        NodeSpec {
            class: "LoraLoader",
            display_name: "Load LoRA",
            category: "loaders",
            required: vec![
                link("model", "MODEL"),
                link("clip", "CLIP"),
                choice("lora_name", &lists.loras),
                float("strength_model", 1.0, -100.0, 100.0, 0.01),
                float("strength_clip", 1.0, -100.0, 100.0, 0.01),
            ],
            outputs: &[("MODEL", "MODEL"), ("CLIP", "CLIP")],
            output_node: false,
            description: "Applies a LoRA to the diffusion model and the CLIP model.",
        },
        NodeSpec {
            class: "LoraLoaderModelOnly",
            display_name: "LoraLoaderModelOnly",
            category: "loaders",
            required: vec![link("model", "MODEL"), choice("lora_name", &lists.loras), float("strength_model", 1.0, -100.0, 100.0, 0.01)],
            outputs: &[("MODEL", "MODEL")],
            output_node: false,
            description: "Applies a LoRA to the diffusion model only.",
        },
        NodeSpec {
            class: "CLIPTextEncode",
            display_name: "CLIP Text Encode (Prompt)",
            category: "conditioning",
            required: vec![InputSpec { name: "text", kind: InputKind::Text { default: "", multiline: true } }, link("clip", "CLIP")],
            outputs: &[("CONDITIONING", "CONDITIONING")],
            output_node: false,
            description: "Encodes a text prompt.",
        },
        NodeSpec {
            class: "CLIPSetLastLayer",
            display_name: "CLIP Set Last Layer",
            category: "conditioning",
            required: vec![link("clip", "CLIP"), int("stop_at_clip_layer", -1, -24, 0)],
            outputs: &[("CLIP", "CLIP")],
            output_node: false,
            description: "Stops the CLIP model at an earlier layer (CLIP skip).",
        },
        NodeSpec {
            class: "EmptyLatentImage",
            display_name: "Empty Latent Image",
            category: "latent",
            required: vec![int("width", 512, 16, 16384), int("height", 512, 16, 16384), int("batch_size", 1, 1, 4096)],
            outputs: &[("LATENT", "LATENT")],
            output_node: false,
            description: "An empty latent image of a size.",
        },
        NodeSpec {
            class: "RepeatLatentBatch",
            display_name: "Repeat Latent Batch",
            category: "latent/batch",
            required: vec![link("samples", "LATENT"), int("amount", 1, 1, 64)],
            outputs: &[("LATENT", "LATENT")],
            output_node: false,
            description: "Repeats a latent image over a batch.",
        },
        NodeSpec {
            class: "KSampler",
            display_name: "KSampler",
            category: "sampling",
            required: [vec![link("model", "MODEL")], sampling_inputs("seed"), vec![float("denoise", 1.0, 0.0, 1.0, 0.01)]].concat(),
            outputs: &[("LATENT", "LATENT")],
            output_node: false,
            description: "Denoises a latent image.",
        },
        NodeSpec {
            class: "KSamplerAdvanced",
            display_name: "KSampler (Advanced)",
            category: "sampling",
            required: [
                vec![link("model", "MODEL"), choice("add_noise", &["enable".to_string(), "disable".to_string()])],
                sampling_inputs("noise_seed"),
                vec![
                    int("start_at_step", 0, 0, u64::from(MAX_RANGE_STEP)),
                    int("end_at_step", i64::from(MAX_RANGE_STEP), 0, u64::from(MAX_RANGE_STEP)),
                    choice("return_with_leftover_noise", &["disable".to_string(), "enable".to_string()]),
                ],
            ]
            .concat(),
            outputs: &[("LATENT", "LATENT")],
            output_node: false,
            description: "Denoises a latent image over a window of the steps, with or without fresh noise.",
        },
        NodeSpec {
            class: "VAEDecode",
            display_name: "VAE Decode",
            category: "latent",
            required: vec![link("samples", "LATENT"), link("vae", "VAE")],
            outputs: &[("IMAGE", "IMAGE")],
            output_node: false,
            description: "Decodes latent images into pixels.",
        },
        NodeSpec {
            class: "VAEEncode",
            display_name: "VAE Encode",
            category: "latent",
            required: vec![link("pixels", "IMAGE"), link("vae", "VAE")],
            outputs: &[("LATENT", "LATENT")],
            output_node: false,
            description: "Encodes pixels into latent images.",
        },
        NodeSpec {
            class: "ImageScale",
            display_name: "Upscale Image",
            category: "image/upscaling",
            required: vec![
                link("image", "IMAGE"),
                choice("upscale_method", &["nearest-exact", "bilinear", "area", "bicubic", "lanczos"].map(String::from)),
                int("width", 512, 0, 16384),
                int("height", 512, 0, 16384),
                choice("crop", &["disabled", "center"].map(String::from)),
            ],
            outputs: &[("IMAGE", "IMAGE")],
            output_node: false,
            description: "Scales a picture (Easel runs lanczos without crop, before VAEEncode).",
        },
        NodeSpec {
            class: "ImageScaleBy",
            display_name: "Upscale Image By",
            category: "image/upscaling",
            required: vec![
                link("image", "IMAGE"),
                choice("upscale_method", &["nearest-exact", "bilinear", "area", "bicubic", "lanczos"].map(String::from)),
                float("scale_by", 1.0, 0.01, 8.0, 0.01),
            ],
            outputs: &[("IMAGE", "IMAGE")],
            output_node: false,
            description: "Scales a picture by a factor (Easel runs lanczos, before VAEEncode, to a size in multiples of 8).",
        },
        NodeSpec {
            class: "ConditioningCombine",
            display_name: "Conditioning (Combine)",
            category: "conditioning",
            required: vec![link("conditioning_1", "CONDITIONING"), link("conditioning_2", "CONDITIONING")],
            outputs: &[("CONDITIONING", "CONDITIONING")],
            output_node: false,
            description: "Combines conditionings into one list: each entry runs through the model and the predictions are averaged.",
        },
        NodeSpec {
            class: "ConditioningConcat",
            display_name: "Conditioning (Concat)",
            category: "conditioning",
            required: vec![link("conditioning_to", "CONDITIONING"), link("conditioning_from", "CONDITIONING")],
            outputs: &[("CONDITIONING", "CONDITIONING")],
            output_node: false,
            description: "Appends the tokens of conditioning_from's first entry to each entry of conditioning_to.",
        },
        NodeSpec {
            class: "ConditioningAverage",
            display_name: "Conditioning (Average)",
            category: "conditioning",
            required: vec![
                link("conditioning_to", "CONDITIONING"),
                link("conditioning_from", "CONDITIONING"),
                float("conditioning_to_strength", 1.0, 0.0, 1.0, 0.01),
            ],
            outputs: &[("CONDITIONING", "CONDITIONING")],
            output_node: false,
            description: "Weighs each entry of conditioning_to with conditioning_from's first entry, token by token.",
        },
        NodeSpec {
            class: "ConditioningSetArea",
            display_name: "Conditioning (Set Area)",
            category: "conditioning",
            required: vec![
                link("conditioning", "CONDITIONING"),
                int("width", 64, i64::from(MIN_AREA_SIDE), u64::from(MAX_AREA_PIXELS)),
                int("height", 64, i64::from(MIN_AREA_SIDE), u64::from(MAX_AREA_PIXELS)),
                int("x", 0, 0, u64::from(MAX_AREA_PIXELS)),
                int("y", 0, 0, u64::from(MAX_AREA_PIXELS)),
                float("strength", 1.0, 0.0, f64::from(MAX_AREA_STRENGTH), 0.01),
            ],
            outputs: &[("CONDITIONING", "CONDITIONING")],
            output_node: false,
            description: "Limits each entry to an area of the picture (in pixels) with a strength.",
        },
        NodeSpec {
            class: "LatentFromBatch",
            display_name: "Latent From Batch",
            category: "latent/batch",
            required: vec![
                link("samples", "LATENT"),
                int("batch_index", 0, 0, u64::from(crate::api::request::MAX_BATCH_INDEX)),
                int("length", 1, 1, 64),
            ],
            outputs: &[("LATENT", "LATENT")],
            output_node: false,
            description: "Picks images of a latent batch (Easel: of an EmptyLatentImage, with their start noise).",
        },
        NodeSpec {
            class: "LatentUpscale",
            display_name: "Upscale Latent",
            category: "latent",
            required: vec![
                link("samples", "LATENT"),
                choice("upscale_method", &["nearest-exact", "bilinear", "area", "bicubic", "bislerp"].map(String::from)),
                int("width", 512, 0, 16384),
                int("height", 512, 0, 16384),
                choice("crop", &["disabled", "center"].map(String::from)),
            ],
            outputs: &[("LATENT", "LATENT")],
            output_node: false,
            description: "Scales latents (Easel: between two KSamplers, the hires fix).",
        },
        NodeSpec {
            class: "LatentUpscaleBy",
            display_name: "Upscale Latent By",
            category: "latent",
            required: vec![
                link("samples", "LATENT"),
                choice("upscale_method", &["nearest-exact", "bilinear", "area", "bicubic", "bislerp"].map(String::from)),
                float("scale_by", 1.5, 0.01, 8.0, 0.01),
            ],
            outputs: &[("LATENT", "LATENT")],
            output_node: false,
            description: "Scales latents by a factor (Easel: between two KSamplers, the hires fix).",
        },
        NodeSpec {
            class: "ImagePadForOutpaint",
            display_name: "Pad Image for Outpainting",
            category: "image",
            required: vec![
                link("image", "IMAGE"),
                int("left", 0, 0, 16384),
                int("top", 0, 0, 16384),
                int("right", 0, 0, 16384),
                int("bottom", 0, 0, 16384),
                int("feathering", 40, 0, 16384),
            ],
            outputs: &[("IMAGE", "IMAGE"), ("MASK", "MASK")],
            output_node: false,
            description: "Pads a picture for outpainting, with a mask of the new area feathered into the picture (Easel: \
                          into VAEEncodeForInpaint with this node's own mask).",
        },
        NodeSpec {
            class: "ImageInvert",
            display_name: "Invert Image",
            category: "image",
            required: vec![link("image", "IMAGE")],
            outputs: &[("IMAGE", "IMAGE")],
            output_node: false,
            description: "Inverts a picture's colours (Easel: a loaded picture before it is scaled or encoded).",
        },
        NodeSpec {
            class: "VAEEncodeForInpaint",
            display_name: "VAE Encode (for Inpainting)",
            category: "latent/inpaint",
            required: vec![
                link("pixels", "IMAGE"),
                link("vae", "VAE"),
                link("mask", "MASK"),
                int("grow_mask_by", 6, 0, u64::from(MAX_MASK_GROW)),
            ],
            outputs: &[("LATENT", "LATENT")],
            output_node: false,
            description: "Encodes a picture grey under the mask, with the mask grown by a few pixels as its noise mask.",
        },
        NodeSpec {
            class: "LoadImageMask",
            display_name: "Load Image (as Mask)",
            category: "mask",
            required: vec![
                InputSpec { name: "image", kind: InputKind::Upload },
                choice("channel", &["alpha", "red", "green", "blue"].map(String::from)),
            ],
            outputs: &[("MASK", "MASK")],
            output_node: false,
            description: "Loads one channel of an uploaded picture as a mask.",
        },
        NodeSpec {
            class: "SetLatentNoiseMask",
            display_name: "Set Latent Noise Mask",
            category: "latent/inpaint",
            required: vec![link("samples", "LATENT"), link("mask", "MASK")],
            outputs: &[("LATENT", "LATENT")],
            output_node: false,
            description: "Repaints latents only where the mask is set (inpainting with any model).",
        },
        NodeSpec {
            class: "LoadImage",
            display_name: "Load Image",
            category: "image",
            required: vec![InputSpec { name: "image", kind: InputKind::Upload }],
            outputs: &[("IMAGE", "IMAGE"), ("MASK", "MASK")],
            output_node: false,
            description: "Loads an uploaded picture.",
        },
        NodeSpec {
            class: "SaveImage",
            display_name: "Save Image",
            category: "image",
            required: vec![
                link("images", "IMAGE"),
                InputSpec { name: "filename_prefix", kind: InputKind::Text { default: "ComfyUI", multiline: false } },
            ],
            outputs: &[],
            output_node: true,
            description: "Saves the images (into Easel's outputs and gallery).",
        },
        NodeSpec {
            class: "PreviewImage",
            display_name: "Preview Image",
            category: "image",
            required: vec![link("images", "IMAGE")],
            outputs: &[],
            output_node: true,
            description: "Shows the images (kept in Easel's outputs and gallery).",
        },
    ]
}

/// One class as `/object_info` shows it (combo lists in ComfyUI's legacy form, the list itself
/// as the type, which clients read as `input.required.<name>[0]`).
pub fn object_info(spec: &NodeSpec) -> Value {
    let mut required = Map::new();
    for input in &spec.required {
        let described = match &input.kind {
            InputKind::Link(kind) => json!([kind]),
            InputKind::Int { default, min, max } => json!(["INT", {"default": default, "min": min, "max": max}]),
            InputKind::Float { default, min, max, step } => json!(["FLOAT", {"default": default, "min": min, "max": max, "step": step}]),
            InputKind::Text { default, multiline } => json!(["STRING", {"default": default, "multiline": multiline}]),
            InputKind::Choice(values) => json!([values, {}]),
            InputKind::Upload => json!([[], {"image_upload": true}]),
        };
        required.insert(input.name.to_string(), described);
    }
    let order: Vec<&str> = spec.required.iter().map(|i| i.name).collect();
    json!({
        "input": {"required": required},
        "input_order": {"required": order},
        "is_input_list": false,
        "output": spec.outputs.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        "output_is_list": spec.outputs.iter().map(|_| false).collect::<Vec<_>>(),
        "output_name": spec.outputs.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        "name": spec.class,
        "display_name": spec.display_name,
        "description": spec.description,
        "python_module": "nodes",
        "category": spec.category,
        "output_node": spec.output_node,
    })
}
