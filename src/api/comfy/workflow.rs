//! Converts a workflow in ComfyUI's UI format (what its frontend saves and writes into a PNG's
//! `workflow` chunk: `nodes` with `inputs`, `widgets_values` and `mode`, and `links` as
//! `[id, from, from_slot, to, to_slot, type]` or as objects) into the API format the graph
//! executor runs. UI-only nodes are dropped (Note, MarkdownNote, Reroute, PrimitiveNode: a
//! reroute's link is followed to its source, a primitive's value becomes the input's value);
//! muted and bypassed nodes are left out. Widget values are matched to the node's widget inputs
//! in their order, skipping the frontend's `control_after_generate` value after a seed. Node
//! classes Easel does not run are kept (with their links) and named, so the graph check can say
//! which are missing.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};

use super::nodes::{InputKind, NodeSpec};

/// Node types that only arrange the canvas.
const UI_ONLY: [&str; 5] = ["Note", "MarkdownNote", "Reroute", "PrimitiveNode", "PrimitiveString"];
/// Values the frontend stores after a seed widget (its "control after generate" setting).
const SEED_CONTROLS: [&str; 4] = ["fixed", "increment", "decrement", "randomize"];
/// Most nodes and links a workflow may have (a large real one has a few hundred).
const MAX_NODES: usize = 5_000;
const MAX_LINKS: usize = 20_000;

/// A converted workflow: the API-format graph and the node classes Easel does not run.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    pub graph: Value,
    pub unknown_classes: Vec<String>,
}

/// Whether `value` looks like a UI-format workflow (rather than an API-format graph).
pub fn is_ui_format(value: &Value) -> bool {
    value.get("nodes").is_some_and(Value::is_array) && value.get("links").is_some_and(Value::is_array)
}

/// One link: where it comes from.
struct Link {
    from: i64,
    slot: u64,
}

/// `workflow` in the API format; an error says what is malformed.
pub fn to_api_format(workflow: &Value, specs: &[NodeSpec]) -> Result<Converted, String> {
    let nodes = workflow.get("nodes").and_then(Value::as_array).ok_or("the workflow has no nodes list")?;
    let links = workflow.get("links").and_then(Value::as_array).ok_or("the workflow has no links list")?;
    if nodes.len() > MAX_NODES || links.len() > MAX_LINKS {
        return Err(format!("the workflow has {} nodes and {} links; at most {MAX_NODES} and {MAX_LINKS}", nodes.len(), links.len()));
    }
    let mut by_link: HashMap<i64, Link> = HashMap::new();
    for link in links {
        let (id, from, slot) = match link {
            Value::Array(a) => (a.first().and_then(Value::as_i64), a.get(1).and_then(Value::as_i64), a.get(2).and_then(Value::as_u64)),
            Value::Object(o) => (
                o.get("id").and_then(Value::as_i64),
                o.get("origin_id").and_then(Value::as_i64),
                o.get("origin_slot").and_then(Value::as_u64),
            ),
            _ => (None, None, None),
        };
        let (Some(id), Some(from), Some(slot)) = (id, from, slot) else { return Err(format!("a link is malformed: {link}")) };
        by_link.insert(id, Link { from, slot });
    }
    let mut by_id: BTreeMap<i64, &Map<String, Value>> = BTreeMap::new();
    for node in nodes {
        let node = node.as_object().ok_or("a node is not an object")?;
        let id = node.get("id").and_then(Value::as_i64).ok_or("a node has no numeric id")?;
        by_id.insert(id, node);
    }
    let class_of = |n: &Map<String, Value>| n.get("type").and_then(Value::as_str).unwrap_or("").to_string();
    // Follows a link through reroutes to a real node's output, or a primitive's value.
    let source = |mut link_id: i64| -> Result<Value, String> {
        for _ in 0..64 {
            let link = by_link.get(&link_id).ok_or(format!("link {link_id} is not in the links list"))?;
            let from = by_id.get(&link.from).ok_or(format!("link {link_id} comes from node {}, which is missing", link.from))?;
            match class_of(from).as_str() {
                "Reroute" => {
                    link_id = input_link(from, 0).ok_or(format!("reroute {} has no input", link.from))?;
                }
                "PrimitiveNode" | "PrimitiveString" => {
                    return from
                        .get("widgets_values")
                        .and_then(|w| w.get(0))
                        .cloned()
                        .ok_or(format!("primitive node {} has no value", link.from));
                }
                _ => return Ok(json!([link.from.to_string(), link.slot])),
            }
        }
        Err("a chain of reroutes loops".to_string())
    };
    let mut graph = Map::new();
    let mut unknown = Vec::new();
    for (id, node) in &by_id {
        let class = class_of(node);
        // 2: muted ("never"), 4: bypassed.
        let mode = node.get("mode").and_then(Value::as_i64).unwrap_or(0);
        if UI_ONLY.contains(&class.as_str()) || mode == 2 || mode == 4 || class.is_empty() {
            continue;
        }
        let mut inputs = Map::new();
        let linked: Vec<(String, Option<i64>)> = node
            .get("inputs")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter().filter_map(|i| Some((i.get("name")?.as_str()?.to_string(), i.get("link").and_then(Value::as_i64)))).collect()
            })
            .unwrap_or_default();
        let widgets: Vec<Value> = node.get("widgets_values").and_then(Value::as_array).cloned().unwrap_or_default();
        match specs.iter().find(|s| s.class == class) {
            Some(spec) => {
                let mut values = widgets.into_iter().peekable();
                for input in &spec.required {
                    let link = linked.iter().find(|(name, _)| name == input.name).and_then(|(_, l)| *l);
                    if matches!(input.kind, InputKind::Link(_)) {
                        if let Some(link) = link {
                            inputs.insert(input.name.to_string(), source(link)?);
                        }
                        continue;
                    }
                    // A widget: its stored value, unless a link (a primitive, usually) feeds it.
                    let stored = values.next();
                    if input.name == "seed" || input.name == "noise_seed" {
                        values.next_if(|v| v.as_str().is_some_and(|s| SEED_CONTROLS.contains(&s)));
                    }
                    match (link, stored) {
                        (Some(link), _) => {
                            inputs.insert(input.name.to_string(), source(link)?);
                        }
                        (None, Some(value)) => {
                            inputs.insert(input.name.to_string(), value);
                        }
                        (None, None) => {}
                    }
                }
            }
            None => {
                unknown.push(class.clone());
                for (name, link) in linked {
                    if let Some(link) = link {
                        inputs.insert(name, source(link)?);
                    }
                }
            }
        }
        graph.insert(id.to_string(), json!({"class_type": class, "inputs": inputs}));
    }
    unknown.sort();
    unknown.dedup();
    Ok(Converted { graph: Value::Object(graph), unknown_classes: unknown })
}

/// The id of the link into input `index` of a node.
fn input_link(node: &Map<String, Value>, index: usize) -> Option<i64> {
    node.get("inputs")?.as_array()?.get(index)?.get("link")?.as_i64()
}

#[cfg(test)]
mod tests {
    use super::super::nodes::{specs, Lists};
    use super::*;

    /// ComfyUI's default workflow as its frontend saves it, plus a note, a reroute on the model
    /// and a primitive feeding the seed.
    fn default_workflow() -> Value {
        json!({
            "last_node_id": 12, "last_link_id": 12, "version": 0.4,
            "nodes": [
                {"id": 3, "type": "KSampler", "mode": 0, "widgets_values": [156680208700286u64, "randomize", 20, 8, "euler", "normal", 1],
                 "inputs": [{"name": "model", "type": "MODEL", "link": 11}, {"name": "positive", "type": "CONDITIONING", "link": 4},
                            {"name": "negative", "type": "CONDITIONING", "link": 6}, {"name": "latent_image", "type": "LATENT", "link": 2},
                            {"name": "seed", "type": "INT", "link": 12, "widget": {"name": "seed"}}]},
                {"id": 4, "type": "CheckpointLoaderSimple", "mode": 0, "widgets_values": ["v1-5-pruned-emaonly.safetensors"], "inputs": []},
                {"id": 5, "type": "EmptyLatentImage", "mode": 0, "widgets_values": [512, 512, 1], "inputs": []},
                {"id": 6, "type": "CLIPTextEncode", "mode": 0, "widgets_values": ["beautiful scenery"], "inputs": [{"name": "clip", "type": "CLIP", "link": 3}]},
                {"id": 7, "type": "CLIPTextEncode", "mode": 0, "widgets_values": ["text, watermark"], "inputs": [{"name": "clip", "type": "CLIP", "link": 5}]},
                {"id": 8, "type": "VAEDecode", "mode": 0, "inputs": [{"name": "samples", "type": "LATENT", "link": 7}, {"name": "vae", "type": "VAE", "link": 8}]},
                {"id": 9, "type": "SaveImage", "mode": 0, "widgets_values": ["ComfyUI"], "inputs": [{"name": "images", "type": "IMAGE", "link": 9}]},
                {"id": 10, "type": "Note", "mode": 0, "widgets_values": ["a note"]},
                {"id": 11, "type": "Reroute", "mode": 0, "inputs": [{"name": "", "type": "*", "link": 10}]},
                {"id": 12, "type": "PrimitiveNode", "mode": 0, "widgets_values": [42, "fixed"], "outputs": [{"links": [12]}]},
                {"id": 13, "type": "UpscaleModelLoader", "mode": 4, "widgets_values": ["x4.pth"]},
            ],
            "links": [[2, 5, 0, 3, 3, "LATENT"], [3, 4, 1, 6, 0, "CLIP"], [4, 6, 0, 3, 1, "CONDITIONING"], [5, 4, 1, 7, 0, "CLIP"],
                      [6, 7, 0, 3, 2, "CONDITIONING"], [7, 3, 0, 8, 0, "LATENT"], [8, 4, 2, 8, 1, "VAE"], [9, 8, 0, 9, 0, "IMAGE"],
                      [10, 4, 0, 11, 0, "MODEL"], [11, 11, 0, 3, 0, "*"],
                      {"id": 12, "origin_id": 12, "origin_slot": 0, "target_id": 3, "target_slot": 4, "type": "INT"}],
        })
    }

    #[test]
    fn the_default_workflow_converts_to_comfyuis_api_format() {
        let specs = specs(&Lists::default());
        let converted = to_api_format(&default_workflow(), &specs).unwrap();
        let g = &converted.graph;
        assert_eq!(converted.unknown_classes, Vec::<String>::new());
        assert_eq!(g.as_object().unwrap().keys().collect::<Vec<_>>(), ["3", "4", "5", "6", "7", "8", "9"]);
        let k = &g["3"]["inputs"];
        assert_eq!(k["seed"], 42, "the primitive's value");
        assert_eq!((k["steps"].clone(), k["cfg"].clone(), k["sampler_name"].clone()), (json!(20), json!(8), json!("euler")));
        assert_eq!((k["scheduler"].clone(), k["denoise"].clone()), (json!("normal"), json!(1)));
        assert_eq!(k["model"], json!(["4", 0]), "through the reroute");
        assert_eq!(k["latent_image"], json!(["5", 0]));
        assert_eq!(g["5"]["inputs"], json!({"width": 512, "height": 512, "batch_size": 1}));
        assert_eq!(g["6"]["inputs"], json!({"text": "beautiful scenery", "clip": ["4", 1]}));
        assert_eq!(g["8"]["inputs"], json!({"samples": ["3", 0], "vae": ["4", 2]}));
        assert_eq!(g["9"]["inputs"], json!({"filename_prefix": "ComfyUI", "images": ["8", 0]}));
        assert!(is_ui_format(&default_workflow()) && !is_ui_format(g));
    }

    #[test]
    fn unknown_classes_are_named_and_malformed_workflows_refused() {
        let specs = specs(&Lists::default());
        let mut w = default_workflow();
        w["nodes"][10]["mode"] = json!(0);
        let converted = to_api_format(&w, &specs).unwrap();
        assert_eq!(converted.unknown_classes, ["UpscaleModelLoader"]);
        assert_eq!(converted.graph["13"]["class_type"], "UpscaleModelLoader");
        let mut broken = default_workflow();
        broken["links"][0] = json!([2, 99, 0, 3, 3, "LATENT"]);
        assert!(to_api_format(&broken, &specs).unwrap_err().contains("node 99, which is missing"));
        assert!(to_api_format(&json!({"nodes": 3}), &specs).is_err());
    }
}
