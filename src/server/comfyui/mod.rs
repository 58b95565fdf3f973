//! Owns ComfyUI's HTTP and websocket API, served on its own port (`easel serve --comfyui-port
//! 8188`) so ComfyUI clients (API scripts, open-webui's ComfyUI engine, workflow runners) work
//! unchanged: `/prompt`, `/queue`, `/history`, `/view`, `/upload/image`, `/object_info`,
//! `/system_stats`, `/embeddings`, `/models`, `/interrupt`, `/free` and `/ws` (every route also
//! under `/api`). A thin door over the one service: each output node of a graph becomes an
//! ordinary Easel job in the comfyui mode ([`graph`]), and the job's events are replayed as
//! ComfyUI's `execution_start` / `executing` / `progress` / `executed` / `execution_success`
//! messages and binary preview frames. Prompts and their history live in [`ComfyDoor`], in
//! memory, as ComfyUI keeps them; the jobs and images are Easel's, durable.

use crate::api::comfy::{graph, nodes};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::AppState;
use crate::api::{GenerateRequest, ImageView, JobEventKind, JobStatus, OUTPUTS_URL_PREFIX};
use crate::model_files::FileKind;
use crate::service::{Easel, QueuePlace, ServiceError};
use crate::uploads::Derivation;

/// How many prompts `/history` keeps (ComfyUI's bound).
const MAX_HISTORY: usize = 10_000;
/// Largest `/prompt` or upload body.
const MAX_BODY_BYTES: usize = 32 << 20;

/// Where a prompt is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PromptState {
    Pending,
    Running,
    Success,
    Error,
    Interrupted,
}

/// One prompt: what was asked, its jobs, and what it produced.
struct Prompt {
    /// ComfyUI's queue number: its counter, minus it for `front`, or the client's `number`.
    number: Value,
    graph: Value,
    extra_data: Value,
    client_id: Option<String>,
    /// `(output node, job id)`, in run order.
    jobs: Vec<(String, String)>,
    outputs: Vec<graph::Output>,
    state: PromptState,
    /// `outputs` of the history entry: per output node, its UI dict.
    results: Map<String, Value>,
    messages: Vec<Value>,
}

impl Prompt {
    fn queue_item(&self, id: &str) -> Value {
        let outputs: Vec<&str> = self.outputs.iter().map(|o| o.node.as_str()).collect();
        json!([self.number, id, self.graph, self.extra_data, outputs])
    }
}

/// The door's state: prompts in submission order, the websocket clients, the output cache.
pub struct ComfyDoor {
    prompts: Mutex<(HashMap<String, Prompt>, VecDeque<String>)>,
    clients: Mutex<HashMap<String, mpsc::UnboundedSender<Message>>>,
    number: AtomicU64,
    /// Output nodes already run: the request as JSON -> its UI dict (ComfyUI re-uses the outputs
    /// of a graph it ran before instead of running it again).
    cache: Mutex<HashMap<String, Value>>,
}

impl Default for ComfyDoor {
    fn default() -> Self {
        Self {
            prompts: Mutex::new((HashMap::new(), VecDeque::new())),
            clients: Mutex::new(HashMap::new()),
            number: AtomicU64::new(0),
            cache: Mutex::new(HashMap::new()),
        }
    }
}

impl ComfyDoor {
    /// Where a prompt numbered `number` joins. ComfyUI's queue is a heap on the number: before
    /// the first job of the pending prompt with the smallest number above it, else the back. A
    /// `front` prompt numbered below every pending one goes ahead of every queued job (other
    /// doors' too): what its user asked for.
    fn place_for(&self, number: f64, front: bool) -> QueuePlace {
        let prompts = self.prompts.lock().expect("prompts lock");
        let pending: Vec<(f64, &String)> = prompts
            .0
            .values()
            .filter(|p| p.state == PromptState::Pending)
            .filter_map(|p| Some((p.number.as_f64()?, &p.jobs.first()?.1)))
            .collect();
        if front && pending.iter().all(|(n, _)| *n > number) {
            return QueuePlace::Front;
        }
        pending
            .into_iter()
            .filter(|(n, _)| *n > number)
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map_or(QueuePlace::Back, |(_, job)| QueuePlace::Before(job.clone()))
    }

    /// Sends a JSON event to one client, or (`None`) to every client.
    fn send(&self, to: Option<&str>, kind: &str, data: Value) {
        let text = json!({"type": kind, "data": data}).to_string();
        let clients = self.clients.lock().expect("clients lock");
        match to {
            Some(id) => {
                if let Some(tx) = clients.get(id) {
                    let _ = tx.send(Message::Text(text.into()));
                }
            }
            None => {
                for tx in clients.values() {
                    let _ = tx.send(Message::Text(text.clone().into()));
                }
            }
        }
    }

    fn send_bytes(&self, to: Option<&str>, bytes: Vec<u8>) {
        let clients = self.clients.lock().expect("clients lock");
        for (id, tx) in clients.iter() {
            if to.is_none_or(|t| t == id) {
                let _ = tx.send(Message::Binary(bytes.clone().into()));
            }
        }
    }

    fn queue_remaining(&self) -> usize {
        let prompts = self.prompts.lock().expect("prompts lock");
        prompts.0.values().filter(|p| matches!(p.state, PromptState::Pending | PromptState::Running)).count()
    }

    fn broadcast_status(&self) {
        self.send(None, "status", json!({"status": {"exec_info": {"queue_remaining": self.queue_remaining()}}}));
    }

    fn with_prompt<T>(&self, id: &str, f: impl FnOnce(&mut Prompt) -> T) -> Option<T> {
        self.prompts.lock().expect("prompts lock").0.get_mut(id).map(f)
    }
}

/// The ComfyUI API: every route at `/` and under `/api`.
pub fn router() -> Router<AppState> {
    let routes = Router::new()
        .route("/prompt", get(get_prompt).post(post_prompt))
        .route("/queue", get(get_queue).post(post_queue))
        .route("/history", get(get_history).post(post_history))
        .route("/history/{id}", get(get_history_entry))
        .route("/view", get(view))
        .route("/upload/image", post(upload_image))
        .route("/upload/mask", post(upload_mask))
        .route("/object_info", get(object_info_all))
        .route("/object_info/{class}", get(object_info_one))
        .route("/system_stats", get(system_stats))
        .route("/embeddings", get(embeddings))
        .route("/models", get(|| async { Json(json!(["checkpoints", "loras", "vae", "embeddings"])) }))
        .route("/models/{folder}", get(models_in))
        .route("/interrupt", post(interrupt))
        .route("/free", post(|| async { Json(json!({})) }))
        .route("/ws", get(websocket));
    Router::new().merge(routes.clone()).nest("/api", routes).layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// A service failure: 503 with Retry-After for a full queue, else 500.
fn internal(e: ServiceError) -> Response {
    crate::server::error::ApiError::from(e).into_response()
}

fn bad_request(error: Value, node_errors: Value) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": error, "node_errors": node_errors}))).into_response()
}

async fn get_prompt(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"exec_info": {"queue_remaining": state.comfyui.queue_remaining()}}))
}

/// The request of `output` with the pictures its image and mask nodes make ([`graph::Derived`])
/// stored as uploads, and its size where `ImageScaleBy` sets it; else the field and message to
/// report on a node.
async fn derive_pictures(easel: &Easel, output: &graph::Output) -> Result<GenerateRequest, (String, String)> {
    let mut request = output.request.clone();
    let derived = &output.derived;
    fn failed(field: &'static str) -> impl Fn(ServiceError) -> (String, String) {
        move |e| (field.to_string(), e.to_string())
    }
    if let Some(id) = request.init_image.clone() {
        if let Some(inversion) = derived.invert_init {
            let upload = easel.derive_upload(&id, Derivation::Invert(inversion)).await.map_err(failed("init_image"))?;
            request.init_image = Some(upload.id);
        }
        if let Some(factor) = derived.scale_by {
            let upload = easel.upload_view(request.init_image.as_deref().unwrap_or(&id)).await.map_err(failed("init_image"))?;
            // Python's round of the float64 product: halves to even.
            let side = |s: u32| (f64::from(s) * factor).round_ties_even().clamp(0.0, f64::from(u32::MAX)) as u32;
            (request.width, request.height) = (Some(side(upload.width)), Some(side(upload.height)));
        }
    }
    if let (Some(id), Some(channel)) = (request.mask.clone(), derived.mask_channel) {
        let upload = easel.derive_upload(&id, Derivation::Channel(channel)).await.map_err(failed("mask"))?;
        request.mask = Some(upload.id);
    }
    // ImagePadForOutpaint: the mask from the picture's size (before the pad), then the picture
    // padded; the request is the padded size.
    if let (Some(pad), Some(id)) = (derived.pad, request.init_image.clone()) {
        let mask = easel.derive_upload(&id, Derivation::PadMask(pad)).await.map_err(failed("mask"))?;
        let padded = easel.derive_upload(&id, Derivation::Pad(pad)).await.map_err(failed("init_image"))?;
        (request.width, request.height) = (Some(padded.width), Some(padded.height));
        (request.init_image, request.mask) = (Some(padded.id), Some(mask.id));
    }
    Ok(request)
}

/// An Easel refusal of a compiled request, as a node error on the node that set the field.
fn node_error_for(output: &graph::Output, nodes: &BTreeMap<String, graph::Node>, field: &str, message: &str) -> (String, Value) {
    let class_of = |class: &str| output.chain.iter().find(|id| nodes.get(*id).is_some_and(|n| n.class == class)).cloned();
    let node = match field {
        "model" => class_of("CheckpointLoaderSimple"),
        "loras" => class_of("LoraLoader").or_else(|| class_of("LoraLoaderModelOnly")),
        "vae" => class_of("VAELoader"),
        "init_image" => class_of("LoadImage"),
        "mask" | "mask_blur" => class_of("LoadImageMask").or_else(|| class_of("VAEEncodeForInpaint")),
        "masked_content" | "mask_grow" => class_of("VAEEncodeForInpaint"),
        f if f.starts_with("hires") => class_of("LatentUpscaleBy").or_else(|| class_of("LatentUpscale")),
        "width" | "height" => class_of("ImageScaleBy")
            .or_else(|| class_of("ImageScale"))
            .or_else(|| class_of("ImagePadForOutpaint"))
            .or_else(|| class_of("EmptyLatentImage")),
        "batch_size" => class_of("EmptyLatentImage").or_else(|| class_of("RepeatLatentBatch")),
        "batch_index" => class_of("LatentFromBatch"),
        "combined_prompts" => class_of("ConditioningCombine"),
        "conditioning" => class_of("ConditioningSetArea")
            .or_else(|| class_of("ConditioningAverage"))
            .or_else(|| class_of("ConditioningConcat"))
            .or_else(|| class_of("ConditioningCombine")),
        "prompt" | "negative_prompt" => class_of("CLIPTextEncode"),
        "clip_skip" => class_of("CLIPSetLastLayer"),
        _ => None,
    }
    .unwrap_or_else(|| output.sampler_node.clone());
    let class = nodes.get(&node).map(|n| n.class.clone()).unwrap_or_default();
    let message = if field == "init_image" { format!("Invalid image file: {message}") } else { message.to_string() };
    let error = json!({"type": "custom_validation_failed", "message": message, "details": format!("{field}: {message}"), "extra_info": {"input_name": field}});
    (node, json!({"errors": [error], "dependent_outputs": [output.node], "class_type": class}))
}

async fn post_prompt(State(state): State<AppState>, body: Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return bad_request(json!({"type": "invalid_json", "message": "The body is not JSON", "details": "", "extra_info": {}}), json!({}));
    };
    let Some(prompt) = body.get("prompt") else {
        return bad_request(
            json!({"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided", "extra_info": {}}),
            json!({}),
        );
    };
    let prompt_id = match body.get("prompt_id").and_then(Value::as_str) {
        Some(id) if uuid::Uuid::parse_str(id).is_ok_and(|u| u.hyphenated().to_string() == id) => id.to_string(),
        Some(_) => {
            return bad_request(
                json!({"type": "invalid_prompt_id", "message": "Invalid prompt_id", "details": "prompt_id must be a lower-case UUID", "extra_info": {}}),
                json!({}),
            )
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    let easel = &state.easel;
    let specs = match easel.comfy_lists().await {
        Ok(lists) => nodes::specs(&lists),
        Err(e) => return internal(e),
    };
    let nodes = match graph::parse(prompt) {
        Ok(n) => n,
        Err(r) => return bad_request(r.error, r.node_errors),
    };
    let compiled = match graph::compile(&nodes, &specs) {
        Ok(c) => c,
        Err(r) => return bad_request(r.error, r.node_errors),
    };
    let client_id = body.get("client_id").and_then(Value::as_str).map(str::to_string);
    let mut extra_data = body.get("extra_data").cloned().filter(Value::is_object).unwrap_or_else(|| json!({}));
    if let Some(id) = &client_id {
        extra_data["client_id"] = json!(id);
    }
    extra_data["create_time"] = json!(now_ms());
    let png_text = png_text(prompt, &extra_data);
    let door = state.comfyui.clone();
    // The place in the queue: the client's `number` (ComfyUI's prompts run in number order), else
    // `front` (before every queued prompt, numbered minus the counter), else the back.
    let (number, place) = match body.get("number") {
        Some(n) => match n.as_f64() {
            Some(n) => (json!(n), door.place_for(n, false)),
            None => {
                let message = format!("number must be a number, got {n}");
                return bad_request(json!({"type": "invalid_prompt", "message": message, "details": "", "extra_info": {}}), json!({}));
            }
        },
        None => {
            let counter = door.number.fetch_add(1, Ordering::SeqCst) as i64;
            let front = body.get("front").and_then(Value::as_bool) == Some(true);
            let number = if front { -counter } else { counter };
            (json!(number), door.place_for(number as f64, front))
        }
    };
    // Submit every output's job (or find it cached); an Easel refusal is that output's node error.
    let mut jobs: Vec<(String, String)> = Vec::new();
    let mut cached: Vec<(graph::Output, Value)> = Vec::new();
    let mut outputs = Vec::new();
    let mut node_errors = compiled.node_errors.as_object().cloned().unwrap_or_default();
    for mut output in compiled.outputs {
        match derive_pictures(easel, &output).await {
            Ok(request) => output.request = request,
            Err((field, message)) => {
                let (node, error) = node_error_for(&output, &nodes, &field, &message);
                node_errors.insert(node, error);
                continue;
            }
        }
        let key = serde_json::to_string(&output.request).unwrap_or_default();
        if let Some(ui) = door.cache.lock().expect("cache lock").get(&key).cloned() {
            cached.push((output.clone(), ui));
            outputs.push(output);
            continue;
        }
        // The images carry the graph and the client's extra_pnginfo, as ComfyUI's SaveImage writes them.
        let request = GenerateRequest { png_text: Some(png_text.clone()), ..output.request.clone() };
        // A prompt's jobs stay together: the first goes to the prompt's place, each other one
        // right after the one before.
        let at = match jobs.last() {
            Some((_, previous)) if place != QueuePlace::Back => QueuePlace::After(previous.clone()),
            _ => place.clone(),
        };
        match easel.submit_placed(request, None, at).await {
            Ok(submitted) => {
                jobs.push((output.node.clone(), submitted.job.id));
                outputs.push(output);
            }
            Err(ServiceError::Invalid(fields)) => {
                for f in fields {
                    let (node, error) = node_error_for(&output, &nodes, &f.field, &f.message);
                    node_errors.insert(node, error);
                }
            }
            Err(e) => return internal(e),
        }
    }
    if outputs.is_empty() {
        let details: Vec<String> = node_errors.values().filter_map(|e| e["errors"][0]["message"].as_str().map(str::to_string)).collect();
        return bad_request(
            json!({"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": details.join("\n"), "extra_info": {}}),
            Value::Object(node_errors),
        );
    }
    let entry = Prompt {
        number: number.clone(),
        graph: prompt.clone(),
        extra_data,
        client_id: client_id.clone(),
        jobs,
        outputs,
        state: PromptState::Pending,
        results: Map::new(),
        messages: Vec::new(),
    };
    {
        let mut prompts = door.prompts.lock().expect("prompts lock");
        prompts.0.insert(prompt_id.clone(), entry);
        prompts.1.push_back(prompt_id.clone());
        while prompts.1.len() > MAX_HISTORY {
            if let Some(old) = prompts.1.pop_front() {
                prompts.0.remove(&old);
            }
        }
    }
    door.broadcast_status();
    tokio::spawn(follow_prompt(door.clone(), easel.clone(), prompt_id.clone(), cached, key_of_outputs(&nodes)));
    Json(json!({"prompt_id": prompt_id, "number": number, "node_errors": node_errors})).into_response()
}

/// The PNG text chunks ComfyUI writes: `prompt` (the graph), then one per `extra_pnginfo` key
/// (`workflow`, the UI's graph), as JSON; those over Easel's chunk limits are left out.
fn png_text(prompt: &Value, extra_data: &Value) -> BTreeMap<String, String> {
    use crate::api::request::{MAX_PNG_TEXT_BYTES, MAX_PNG_TEXT_CHUNKS, RESERVED_PNG_TEXT};
    let mut chunks = BTreeMap::new();
    let mut total = 0;
    let extra = extra_data.get("extra_pnginfo").and_then(Value::as_object).into_iter().flatten();
    for (key, value) in std::iter::once(("prompt", prompt)).chain(extra.map(|(k, v)| (k.as_str(), v))) {
        let text = value.to_string();
        let fits = total + key.len() + text.len() <= MAX_PNG_TEXT_BYTES && chunks.len() < MAX_PNG_TEXT_CHUNKS;
        let valid = !key.is_empty() && key.len() <= 79 && key.bytes().all(|b| b.is_ascii_graphic()) && !RESERVED_PNG_TEXT.contains(&key);
        if fits && valid && !chunks.contains_key(key) {
            total += key.len() + text.len();
            chunks.insert(key.to_string(), text);
        } else {
            tracing::warn!(chunk = key, bytes = text.len(), "extra_pnginfo chunk not written into the images");
        }
    }
    chunks
}

/// Each node's class, for the messages that name it.
fn key_of_outputs(nodes: &BTreeMap<String, graph::Node>) -> HashMap<String, String> {
    nodes.iter().map(|(id, n)| (id.clone(), n.class.clone())).collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// ComfyUI's record of an image: its file name, the folder it is in, and `output` or `temp`.
fn image_record(image: &ImageView, kind: &str) -> Value {
    let relative = image.url.strip_prefix(OUTPUTS_URL_PREFIX).unwrap_or(&image.url).trim_start_matches('/');
    let (subfolder, filename) = relative.rsplit_once('/').unwrap_or(("", relative));
    json!({"filename": filename, "subfolder": subfolder, "type": kind})
}

/// Replays a prompt's jobs as ComfyUI's messages, and keeps its history entry.
async fn follow_prompt(
    door: Arc<ComfyDoor>,
    easel: Easel,
    prompt_id: String,
    cached: Vec<(graph::Output, Value)>,
    classes: HashMap<String, String>,
) {
    let Some((client, jobs, outputs)) = door.with_prompt(&prompt_id, |p| (p.client_id.clone(), p.jobs.clone(), p.outputs.clone())) else {
        return;
    };
    let to = client.as_deref();
    let record = |door: &ComfyDoor, kind: &str, data: Value| {
        door.with_prompt(&prompt_id, |p| p.messages.push(json!([kind, data])));
    };
    let mut started = false;
    let start = |door: &ComfyDoor| {
        door.with_prompt(&prompt_id, |p| p.state = PromptState::Running);
        let data = json!({"prompt_id": prompt_id, "timestamp": now_ms()});
        record(door, "execution_start", data.clone());
        door.send(to, "execution_start", data);
        let cached_nodes: Vec<String> = cached.iter().flat_map(|(o, _)| o.chain.clone()).collect();
        let data = json!({"nodes": cached_nodes, "prompt_id": prompt_id, "timestamp": now_ms()});
        record(door, "execution_cached", data.clone());
        door.send(to, "execution_cached", data);
    };
    let executing = |door: &ComfyDoor, node: &str| {
        door.send(to, "executing", json!({"node": node, "display_node": node, "prompt_id": prompt_id}));
    };
    let executed = |door: &ComfyDoor, node: &str, ui: &Value| {
        door.with_prompt(&prompt_id, |p| {
            p.results.insert(node.to_string(), ui.clone());
        });
        door.send(to, "executed", json!({"node": node, "display_node": node, "output": ui, "prompt_id": prompt_id}));
    };
    // Outputs whose graph ran before: their results at once.
    if jobs.is_empty() {
        start(&door);
        started = true;
    }
    for (output, ui) in &cached {
        executed(&door, &output.node, ui);
    }
    let mut failed: Option<(String, String)> = None;
    let mut interrupted: Option<String> = None;
    for (node, job_id) in &jobs {
        let output = outputs.iter().find(|o| &o.node == node).expect("each job has its output");
        let Ok((current, mut events)) = easel.watch(job_id).await else { continue };
        let mut kind = current.kind;
        loop {
            match &kind {
                JobEventKind::Started => {
                    if !started {
                        start(&door);
                        started = true;
                    }
                    for id in output.chain.iter().take_while(|id| **id != output.sampler_node) {
                        executing(&door, id);
                    }
                    executing(&door, &output.sampler_node);
                }
                JobEventKind::Progress { step, total, preview_png_base64, .. } => {
                    let data = json!({"value": step, "max": total, "prompt_id": prompt_id, "node": output.sampler_node});
                    door.send(to, "progress", data);
                    if let Some(png) = preview_png_base64.as_deref().and_then(crate::jobs::base64::base64_decode) {
                        // Binary frame: event 1 (preview image), format 2 (PNG), the image.
                        let mut frame = Vec::with_capacity(png.len() + 8);
                        frame.extend_from_slice(&1u32.to_be_bytes());
                        frame.extend_from_slice(&2u32.to_be_bytes());
                        frame.extend_from_slice(&png);
                        door.send_bytes(to, frame);
                    }
                }
                JobEventKind::Succeeded { images } => {
                    if !started {
                        start(&door);
                        started = true;
                    }
                    let after: Vec<&String> = output.chain.iter().skip_while(|id| **id != output.sampler_node).skip(1).collect();
                    for id in after {
                        executing(&door, id);
                    }
                    let mut sorted = images.clone();
                    sorted.sort_by_key(|i| i.batch_index);
                    // PreviewImage's pictures are ComfyUI's `temp` ones (Easel keeps them as any other).
                    let kind = if classes.get(&output.node).is_some_and(|c| c == "PreviewImage") { "temp" } else { "output" };
                    let ui = json!({"images": sorted.iter().map(|i| image_record(i, kind)).collect::<Vec<_>>()});
                    let key = serde_json::to_string(&output.request).unwrap_or_default();
                    door.cache.lock().expect("cache lock").insert(key, ui.clone());
                    executed(&door, &output.node, &ui);
                    break;
                }
                JobEventKind::Failed { error } => {
                    failed = Some((output.sampler_node.clone(), error.clone()));
                    break;
                }
                JobEventKind::Cancelled => {
                    interrupted = Some(output.sampler_node.clone());
                    break;
                }
                JobEventKind::Queued { .. } => {}
            }
            kind = loop {
                match events.recv().await {
                    Ok(event) if &event.job_id == job_id => break event.kind,
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => match easel.watch(job_id).await {
                        Ok((now, rx)) => {
                            events = rx;
                            break now.kind;
                        }
                        Err(_) => break JobEventKind::Failed { error: "the job is gone".into() },
                    },
                    Err(_) => break JobEventKind::Failed { error: "the job queue stopped".into() },
                }
            };
        }
        if failed.is_some() || interrupted.is_some() {
            // The prompt stops at its first failure, as ComfyUI's executor does.
            for (_, later) in jobs.iter().skip_while(|(_, j)| j != job_id).skip(1) {
                let _ = easel.cancel(later).await;
            }
            break;
        }
    }
    if !started {
        start(&door);
    }
    let class = |node: &str| classes.get(node).cloned().unwrap_or_default();
    let (state, last_kind, last) = if let Some((node, error)) = failed {
        let data = json!({
            "prompt_id": prompt_id, "node_id": node, "node_type": class(&node), "executed": [],
            "exception_message": error, "exception_type": "RuntimeError", "traceback": [],
            "current_inputs": {}, "current_outputs": [], "timestamp": now_ms(),
        });
        (PromptState::Error, "execution_error", data)
    } else if let Some(node) = interrupted {
        let data = json!({"prompt_id": prompt_id, "node_id": node, "node_type": class(&node), "executed": [], "timestamp": now_ms()});
        (PromptState::Interrupted, "execution_interrupted", data)
    } else {
        (PromptState::Success, "execution_success", json!({"prompt_id": prompt_id, "timestamp": now_ms()}))
    };
    // History first, then the completion signal clients wait for.
    door.with_prompt(&prompt_id, |p| {
        p.state = state;
        p.messages.push(json!([last_kind, last.clone()]));
    });
    let target = if last_kind == "execution_interrupted" { None } else { to };
    door.send(target, last_kind, last);
    door.send(to, "executing", json!({"node": Value::Null, "prompt_id": prompt_id}));
    door.broadcast_status();
}

fn history_entry(id: &str, p: &Prompt) -> Option<Value> {
    let (status_str, completed) = match p.state {
        PromptState::Pending | PromptState::Running => return None,
        PromptState::Success => ("success", true),
        PromptState::Error | PromptState::Interrupted => ("error", false),
    };
    let meta: Map<String, Value> = p
        .results
        .keys()
        .map(|node| (node.clone(), json!({"node_id": node, "display_node": node, "parent_node": Value::Null, "real_node_id": node})))
        .collect();
    Some(json!({
        "prompt": p.queue_item(id),
        "outputs": p.results,
        "status": {"status_str": status_str, "completed": completed, "messages": p.messages},
        "meta": meta,
    }))
}

#[derive(Deserialize)]
struct HistoryQuery {
    max_items: Option<usize>,
    offset: Option<usize>,
}

async fn get_history(State(state): State<AppState>, Query(q): Query<HistoryQuery>) -> Json<Value> {
    let prompts = state.comfyui.prompts.lock().expect("prompts lock");
    let finished: Vec<(&String, Value)> = prompts.1.iter().filter_map(|id| Some((id, history_entry(id, prompts.0.get(id)?)?))).collect();
    let start = match (q.offset, q.max_items) {
        (Some(offset), _) => offset.min(finished.len()),
        (None, Some(max)) => finished.len().saturating_sub(max),
        (None, None) => 0,
    };
    let take = q.max_items.unwrap_or(usize::MAX);
    let out: Map<String, Value> = finished.into_iter().skip(start).take(take).map(|(id, e)| (id.clone(), e)).collect();
    Json(Value::Object(out))
}

async fn get_history_entry(State(state): State<AppState>, Path(id): Path<String>) -> Json<Value> {
    let prompts = state.comfyui.prompts.lock().expect("prompts lock");
    match prompts.0.get(&id).and_then(|p| history_entry(&id, p)) {
        Some(entry) => Json(json!({ id: entry })),
        None => Json(json!({})),
    }
}

#[derive(Deserialize, Default)]
struct ClearOrDelete {
    #[serde(default)]
    clear: bool,
    #[serde(default)]
    delete: Vec<String>,
}

async fn post_history(State(state): State<AppState>, body: Bytes) -> StatusCode {
    let request: ClearOrDelete = serde_json::from_slice(&body).unwrap_or_default();
    let mut prompts = state.comfyui.prompts.lock().expect("prompts lock");
    let finished = |p: &Prompt| !matches!(p.state, PromptState::Pending | PromptState::Running);
    let (map, order) = &mut *prompts;
    let doomed: Vec<String> =
        order.iter().filter(|id| map.get(*id).is_some_and(&finished) && (request.clear || request.delete.contains(id))).cloned().collect();
    for id in doomed {
        map.remove(&id);
        order.retain(|o| o != &id);
    }
    StatusCode::OK
}

async fn get_queue(State(state): State<AppState>) -> Json<Value> {
    let prompts = state.comfyui.prompts.lock().expect("prompts lock");
    let mut running = Vec::new();
    let mut pending = Vec::new();
    for id in &prompts.1 {
        if let Some(p) = prompts.0.get(id) {
            match p.state {
                PromptState::Running => running.push(p.queue_item(id)),
                PromptState::Pending => pending.push(p.queue_item(id)),
                _ => {}
            }
        }
    }
    // In number order, as ComfyUI's queue runs them.
    pending.sort_by(|a, b| a[0].as_f64().unwrap_or(0.0).total_cmp(&b[0].as_f64().unwrap_or(0.0)));
    Json(json!({"queue_running": running, "queue_pending": pending}))
}

/// Cancels the jobs of prompts that have not started (`clear`: all of them).
async fn post_queue(State(state): State<AppState>, body: Bytes) -> StatusCode {
    let request: ClearOrDelete = serde_json::from_slice(&body).unwrap_or_default();
    let doomed: Vec<String> = {
        let prompts = state.comfyui.prompts.lock().expect("prompts lock");
        prompts
            .0
            .iter()
            .filter(|(id, p)| p.state == PromptState::Pending && (request.clear || request.delete.contains(id)))
            .flat_map(|(_, p)| p.jobs.iter().map(|(_, job)| job.clone()))
            .collect()
    };
    for job in doomed {
        let _ = state.easel.cancel(&job).await;
    }
    StatusCode::OK
}

/// `POST /interrupt`: stops what runs now (with `{"prompt_id"}`, only that prompt's jobs).
async fn interrupt(State(state): State<AppState>, body: Bytes) -> StatusCode {
    let only: Option<String> = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["prompt_id"].as_str().map(str::to_string));
    let jobs: Vec<String> = {
        let prompts = state.comfyui.prompts.lock().expect("prompts lock");
        prompts
            .0
            .iter()
            .filter(|(id, p)| p.state == PromptState::Running && only.as_ref().is_none_or(|o| o == *id))
            .flat_map(|(_, p)| p.jobs.iter().map(|(_, job)| job.clone()))
            .collect()
    };
    for job in jobs {
        if let Ok(view) = state.easel.job(&job).await {
            if view.status == JobStatus::Running {
                let _ = state.easel.cancel(&job).await;
            }
        }
    }
    StatusCode::OK
}

#[derive(Deserialize)]
struct ViewQuery {
    filename: String,
    #[serde(default)]
    subfolder: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// `GET /view`: an output image by its file name and folder, or an uploaded picture
/// (`type=input`). Names are checked before they touch a path.
async fn view(State(state): State<AppState>, Query(q): Query<ViewQuery>) -> Response {
    let (filename, kind) = match q.filename.rsplit_once(" [") {
        Some((name, tail)) if tail.ends_with(']') => (name.to_string(), Some(tail.trim_end_matches(']').to_string())),
        _ => (q.filename.clone(), q.kind.clone()),
    };
    let bytes = match stored_picture(&state.easel, &filename, kind.as_deref().unwrap_or("output"), &q.subfolder).await {
        Ok(bytes) => bytes,
        Err(refusal) => return refusal,
    };
    match bytes {
        Some(bytes) => {
            ([(header::CONTENT_TYPE, "image/png".to_string()), (header::CONTENT_DISPOSITION, format!("filename=\"{filename}\""))], bytes)
                .into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A picture ComfyUI names by file name, folder type (`input`: an upload; `output` or `temp`: a
/// generated image) and subfolder; `None` when there is none, a 400/403 for names that are not
/// plain file names.
async fn stored_picture(easel: &Easel, filename: &str, kind: &str, subfolder: &str) -> Result<Option<Vec<u8>>, Response> {
    let plain = |s: &str| !s.is_empty() && !s.contains(['/', '\\']) && s != "." && s != ".." && !s.starts_with('.');
    if !plain(filename) {
        return Err((StatusCode::BAD_REQUEST, "bad file name").into_response());
    }
    Ok(match kind {
        "input" => easel.upload_png(filename.strip_suffix(".png").unwrap_or(filename)).await.ok(),
        "output" | "temp" => {
            if !subfolder.is_empty() && !plain(subfolder) {
                return Err((StatusCode::FORBIDDEN, "bad subfolder").into_response());
            }
            let path = easel.settings().outputs_dir.join(subfolder).join(filename);
            tokio::fs::read(path).await.ok()
        }
        _ => None,
    })
}

/// `POST /upload/mask` (multipart `image`, the mask editor's painting, and `original_ref`, JSON
/// `{filename, subfolder, type}` naming the picture it masks): the picture with the painting's
/// alpha becomes a new upload, as ComfyUI stores it; LoadImage's MASK then reads that alpha.
async fn upload_mask(State(state): State<AppState>, mut form: Multipart) -> Response {
    let (mut mask, mut original_ref) = (None, None);
    while let Ok(Some(field)) = form.next_field().await {
        let name = field.name().map(str::to_string);
        match field.bytes().await {
            Ok(b) if name.as_deref() == Some("image") => mask = Some(b.to_vec()),
            Ok(b) if name.as_deref() == Some("original_ref") => original_ref = serde_json::from_slice::<Value>(&b).ok(),
            Ok(_) => {}
            Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        }
    }
    let (Some(mask), Some(original_ref)) = (mask, original_ref) else {
        return (StatusCode::BAD_REQUEST, "send the mask as image and the picture it masks as original_ref").into_response();
    };
    let text = |key: &str| original_ref.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    let kind = Some(text("type")).filter(|t| !t.is_empty()).unwrap_or_else(|| "output".into());
    let original = match stored_picture(&state.easel, &text("filename"), &kind, &text("subfolder")).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return (StatusCode::NOT_FOUND, "no such picture to mask").into_response(),
        Err(refusal) => return refusal,
    };
    match state.easel.upload_with_alpha(original, mask).await {
        Ok(upload) => Json(json!({"name": format!("{}.png", upload.id), "subfolder": "", "type": "input"})).into_response(),
        Err(ServiceError::Invalid(fields)) => {
            (StatusCode::BAD_REQUEST, fields.first().map(|f| f.message.clone()).unwrap_or_default()).into_response()
        }
        Err(e) => internal(e),
    }
}

/// `POST /upload/image` (multipart `image`): the picture becomes an Easel upload, named
/// `<upload id>.png` for `LoadImage`.
async fn upload_image(State(state): State<AppState>, mut form: Multipart) -> Response {
    let mut bytes = None;
    while let Ok(Some(field)) = form.next_field().await {
        if field.name() == Some("image") {
            match field.bytes().await {
                Ok(b) => bytes = Some(b.to_vec()),
                Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
            }
        }
    }
    let Some(bytes) = bytes else {
        return (StatusCode::BAD_REQUEST, "no image field").into_response();
    };
    match state.easel.upload(bytes).await {
        Ok(upload) => Json(json!({"name": format!("{}.png", upload.id), "subfolder": "", "type": "input"})).into_response(),
        Err(ServiceError::Invalid(fields)) => {
            (StatusCode::BAD_REQUEST, fields.first().map(|f| f.message.clone()).unwrap_or_default()).into_response()
        }
        Err(e) => internal(e),
    }
}

async fn object_info_all(State(state): State<AppState>) -> Response {
    match state.easel.comfy_lists().await {
        Ok(lists) => {
            let all: Map<String, Value> = nodes::specs(&lists).iter().map(|s| (s.class.to_string(), nodes::object_info(s))).collect();
            Json(Value::Object(all)).into_response()
        }
        Err(e) => internal(e),
    }
}

async fn object_info_one(State(state): State<AppState>, Path(class): Path<String>) -> Response {
    match state.easel.comfy_lists().await {
        Ok(lists) => {
            let found: Map<String, Value> =
                nodes::specs(&lists).iter().filter(|s| s.class == class).map(|s| (s.class.to_string(), nodes::object_info(s))).collect();
            Json(Value::Object(found)).into_response()
        }
        Err(e) => internal(e),
    }
}

async fn system_stats() -> Json<Value> {
    let total = crate::metrics::total_memory_bytes().unwrap_or(0);
    let used = crate::metrics::resident_memory_bytes().unwrap_or(0);
    Json(json!({
        "system": {
            "os": std::env::consts::OS,
            "ram_total": total,
            "ram_free": total.saturating_sub(used),
            "comfyui_version": format!("easel-{}", env!("CARGO_PKG_VERSION")),
            "python_version": Value::Null,
            "pytorch_version": Value::Null,
            "embedded_python": false,
            "argv": ["easel", "serve"],
        },
        "devices": [{"name": "cpu", "type": "cpu", "index": Value::Null, "vram_total": total, "vram_free": total.saturating_sub(used), "torch_vram_total": 0, "torch_vram_free": 0}],
    }))
}

async fn embeddings(State(state): State<AppState>) -> Response {
    match state.easel.embeddings().await {
        Ok(found) => Json(found.into_iter().map(|e| e.name).collect::<Vec<_>>()).into_response(),
        Err(e) => internal(e),
    }
}

async fn models_in(State(state): State<AppState>, Path(folder): Path<String>) -> Response {
    let easel = &state.easel;
    let names: Result<Vec<String>, ServiceError> = match folder.as_str() {
        "checkpoints" => easel.models().await.map(|m| m.into_iter().map(|m| m.name).collect()),
        "loras" => easel.weight_files(FileKind::Lora).await.map(|f| f.into_iter().map(|f| f.name).collect()),
        "vae" => easel.weight_files(FileKind::Vae).await.map(|f| f.into_iter().map(|f| f.name).collect()),
        "embeddings" => easel.embeddings().await.map(|e| e.into_iter().map(|e| e.file).collect()),
        _ => return (StatusCode::NOT_FOUND, Json(json!({"error": format!("no folder {folder}")}))).into_response(),
    };
    match names {
        Ok(names) => Json(names).into_response(),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
struct WsQuery {
    #[serde(rename = "clientId")]
    client_id: Option<String>,
}

/// `GET /ws?clientId=`: the socket a client's prompts report to.
async fn websocket(State(state): State<AppState>, Query(q): Query<WsQuery>, upgrade: WebSocketUpgrade) -> Response {
    let id = q.client_id.filter(|c| !c.is_empty() && c.len() <= 200).unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let door = state.comfyui.clone();
    let stopped = state.easel.stopped();
    upgrade.on_upgrade(move |socket| serve_socket(door, id, socket, stopped))
}

/// Forwards the door's messages for `id` until the client leaves or the server stops.
async fn serve_socket(door: Arc<ComfyDoor>, id: String, mut socket: WebSocket, stopped: impl std::future::Future<Output = ()>) {
    tokio::pin!(stopped);
    let (tx, mut rx) = mpsc::unbounded_channel();
    door.clients.lock().expect("clients lock").insert(id.clone(), tx.clone());
    let hello = json!({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": door.queue_remaining()}}, "sid": id}});
    if socket.send(Message::Text(hello.to_string().into())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            () = &mut stopped => {
                let _ = socket.send(Message::Close(None)).await;
                break;
            }
            outgoing = rx.recv() => match outgoing {
                Some(message) => if socket.send(message).await.is_err() { break },
                None => break,
            },
            incoming = socket.recv() => match incoming {
                // A client's feature flags get the server's (none beyond the defaults).
                Some(Ok(Message::Text(text))) if text.contains("feature_flags") => {
                    let flags = json!({"type": "feature_flags", "data": {"supports_preview_metadata": false}});
                    if socket.send(Message::Text(flags.to_string().into())).await.is_err() { break }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let mut clients = door.clients.lock().expect("clients lock");
    if clients.get(&id).is_some_and(|t| t.same_channel(&tx)) {
        clients.remove(&id);
    }
}
