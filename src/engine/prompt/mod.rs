//! Owns turning a request's prompt and negative prompt into the UNet's text conditioning, call by
//! call, in the [`PromptSyntax`] the request names:
//!
//! - `a1111` ([`a1111`], [`chunks::a1111_chunks`]): `AND` parts, each a schedule of texts over
//!   the steps (prompt editing, alternation); each text cut into 75-token chunks with weights.
//!   The texts of one part's schedule (repeats included) are encoded as one batch per chunk
//!   index, as A1111 calls its encoder once per part: a text with fewer chunks gets the empty
//!   chunk there, so every text has the batch's chunk count, and "Original" emphasis multiplies
//!   by the weights and restores the mean taken over the whole batch.
//! - `comfyui` ([`comfyui`], [`chunks::comfy_windows`]): words kept whole across 77-token
//!   windows; a weight `w ≠ 1` moves a token's state away from the empty prompt's, `(z − e)·w + e`.
//! - `plain`: the text cut at 77 tokens, as diffusers encodes it.
//!
//! The negative prompt is read in the same syntax but has no `AND` parts. Textual-inversion
//! embeddings come from [`embeddings`]; the text encoder runs in [`encode`].

pub mod a1111;
pub mod chunks;
pub mod comfyui;
pub mod embeddings;
mod encode;
pub mod regions;

use std::collections::HashMap;
use std::sync::Arc;

use self::chunks::{empty_window, Chunk, Token, Vocabulary, CHUNK_TOKENS};
use self::embeddings::{EmbeddingFile, EmbeddingSet};
use self::encode::WindowEncoder;
use crate::api::conditioning::{Conditioning, TextExpr};
use crate::api::prompt::{ChunkView, PromptTokens, TokenView};
use crate::api::PromptSyntax;
use crate::engine::cancel::CancelToken;
use crate::engine::clip_tokenizer::ClipTokenizer;
use crate::engine::model::SdModel;
use crate::engine::EngineError;

/// One encoded text: `[77·k, dim]` hidden states.
pub type Encoding = Arc<Vec<f32>>;

/// A conditioning over the UNet calls of a pass: `(last call, encoding)` pairs in call order
/// (A1111's `end_at_step`); call `c` (from 0) uses the first entry whose last call is `>= c`.
#[derive(Debug, Clone)]
pub struct Scheduled {
    entries: Vec<(usize, Encoding)>,
}

impl Scheduled {
    fn constant(encoding: Encoding) -> Self {
        Self { entries: vec![(usize::MAX, encoding)] }
    }

    /// The encoding for call `call` of the pass (counted from 0).
    pub fn at(&self, call: usize) -> &Encoding {
        let entry = self.entries.iter().find(|(end, _)| call <= *end).or(self.entries.last());
        &entry.expect("a schedule has at least one entry").1
    }

    /// Whether the conditioning changes during the pass.
    pub fn changes(&self) -> bool {
        self.entries.len() > 1
    }
}

/// What the prompt stage needs to know about the request.
pub struct PromptRequest<'a> {
    pub prompt: &'a str,
    pub negative_prompt: &'a str,
    pub syntax: PromptSyntax,
    /// A1111's count: 1 = the last layer.
    pub clip_skip: usize,
    /// The pass's steps (what `[a:b:0.5]` is a fraction of).
    pub steps: usize,
    /// For the hires fix's second pass: its steps (`[a:b:1.5]` then counts both passes).
    pub hires_steps: Option<usize>,
    /// Whether the negative prompt is needed (classifier-free guidance).
    pub guided: bool,
    /// ComfyUI's `ConditioningCombine`: more positive prompts, each its own whole-picture entry
    /// of the positive list after the prompt's (see [`Regions`]).
    pub combined: &'a [String],
    /// ComfyUI's conditioning lists, which the UNet sees instead of the two prompts.
    pub conditioning: Option<&'a Conditioning>,
}

/// ComfyUI's conditioning lists as guidance runs them: [`PromptConditioning::uncond`] is the
/// negative side's first entry and [`PromptConditioning::parts`] the positive side's entries;
/// each side's predictions are averaged per latent pixel with the entries' regions.
#[derive(Debug, Clone)]
pub struct Regions {
    /// The negative side's entries after the first (encoded only with guidance).
    pub more_negatives: Vec<Scheduled>,
    /// One per negative entry (the first is `uncond`'s).
    pub negative: Vec<regions::Region>,
    /// One per positive entry (`parts`, in order).
    pub positive: Vec<regions::Region>,
}

/// The text conditioning of a request.
#[derive(Debug, Clone)]
pub struct PromptConditioning {
    /// The text encoder's hidden size.
    pub dim: usize,
    /// The negative prompt's (with guidance).
    pub uncond: Option<Scheduled>,
    /// One per `AND` part (one without `AND`): the weight of its guidance and its conditioning.
    pub parts: Vec<(f32, Scheduled)>,
    /// Things the user should know (an embedding that could not be used, truncation).
    pub notes: Vec<String>,
    /// Embeddings whose vectors the prompts use, in first-use order.
    pub embeddings_used: Vec<EmbeddingUse>,
    /// ComfyUI's conditioning lists, with combined prompts or a request's `conditioning`.
    pub regions: Option<Regions>,
}

/// An embedding a generation used: its name and A1111's short hash of its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingUse {
    pub name: String,
    pub short_hash: String,
}

/// A1111's `TI hashes` infotext value (`name: hash, …`; names lose `:` and `,`), or `None`
/// when no embedding was used.
pub fn ti_hashes(used: &[EmbeddingUse]) -> Option<String> {
    let hashes: Vec<String> =
        used.iter().filter(|e| !e.short_hash.is_empty()).map(|e| format!("{}: {}", e.name.replace([':', ','], ""), e.short_hash)).collect();
    (!hashes.is_empty()).then(|| hashes.join(", "))
}

/// The embedding files a model can use: its `embeddings/` folders and files named on the
/// command line. Listed again for every request, so new files need no restart.
#[derive(Debug, Clone, Default)]
pub struct EmbeddingSources {
    pub dirs: Vec<std::path::PathBuf>,
    pub files: Vec<EmbeddingFile>,
}

impl EmbeddingSources {
    /// Every embedding file, by name; a file named on the command line wins over a folder's.
    pub fn list(&self) -> Vec<EmbeddingFile> {
        let mut all = self.files.clone();
        for dir in &self.dirs {
            for file in embeddings::scan_dir(dir) {
                if !all.iter().any(|f| f.name == file.name) {
                    all.push(file);
                }
            }
        }
        all
    }
}

/// Encodes the request's prompts (see the module docs).
pub fn encode(model: &mut SdModel, request: &PromptRequest<'_>, cancel: &CancelToken) -> Result<PromptConditioning, EngineError> {
    let files = model.embedding_sources.list();
    let dim = model.text_hidden_size();
    let mut texts: Vec<&str> = if request.guided { vec![request.prompt, request.negative_prompt] } else { vec![request.prompt] };
    texts.extend(request.combined.iter().map(String::as_str));
    texts.extend(request.conditioning.map(Conditioning::texts).unwrap_or_default());
    let embeddings = match request.syntax {
        PromptSyntax::Plain => EmbeddingSet::default(),
        _ => EmbeddingSet::for_texts(&files, &texts, dim, &*model.tokenizer),
    };
    let mut notes = embeddings.skipped.clone();
    let tokenizer = Arc::clone(&model.tokenizer);
    let mut encoder = WindowEncoder::new(model, &embeddings, request.clip_skip);
    let mut regions = None;
    let (parts, uncond) = match request.syntax {
        PromptSyntax::Plain => {
            let mut plain = |text: &str, notes: &mut Vec<String>| -> Result<Scheduled, EngineError> {
                let chunk = plain_window(&tokenizer, text, notes)?;
                Ok(Scheduled::constant(encoder.encode(&chunk, cancel)?))
            };
            let cond = plain(request.prompt, &mut notes)?;
            let uncond = if request.guided { Some(plain(request.negative_prompt, &mut notes)?) } else { None };
            (vec![(1.0, cond)], uncond)
        }
        PromptSyntax::A1111 => {
            // One encoder call per AND part (and one for the negative prompt), as A1111 makes.
            let mut scheduled = |text: &str| -> Result<Scheduled, EngineError> {
                let schedule = a1111::schedule(text, request.steps, request.hires_steps);
                let texts: Vec<&str> = schedule.iter().map(|(_, t)| t.as_str()).collect();
                let encoded = a1111_batch(&mut encoder, &*tokenizer, &embeddings, &texts, cancel)?;
                Ok(Scheduled { entries: schedule.iter().map(|(end, _)| *end).zip(encoded).collect() })
            };
            // Extra-network tags (`<lora:…>`) are applied to the model, not encoded.
            let (prompt, _, _) = crate::api::networks::extra_network_tags(request.prompt);
            let conds = a1111::and_parts(&prompt)
                .iter()
                .map(|p| Ok((p.weight as f32, scheduled(&p.text)?)))
                .collect::<Result<Vec<_>, EngineError>>()?;
            let uncond = if request.guided { Some(scheduled(request.negative_prompt)?) } else { None };
            (conds, uncond)
        }
        PromptSyntax::ComfyUi if request.conditioning.is_some() || !request.combined.is_empty() => {
            let prompts: Vec<TextExpr> = std::iter::once(request.prompt)
                .chain(request.combined.iter().map(String::as_str))
                .chain([request.negative_prompt])
                .map(|t| TextExpr::Text(t.to_string()))
                .collect();
            let lists = regions::lists(request.conditioning, &prompts);
            let mut cache = HashMap::new();
            let mut encode_text = |text: &str| comfy_encode(&mut encoder, &*tokenizer, &embeddings, text, cancel);
            let mut encoded = |entries: &[regions::Entry<'_>]| -> Result<Vec<Scheduled>, EngineError> {
                entries.iter().map(|e| Ok(Scheduled::constant(regions::evaluate(e.expr, &mut cache, &mut encode_text)?))).collect()
            };
            let parts = encoded(&lists.positive)?.into_iter().map(|s| (1.0, s)).collect();
            let mut negatives = if request.guided { encoded(&lists.negative)? } else { Vec::new() };
            let uncond = (!negatives.is_empty()).then(|| negatives.remove(0));
            regions = Some(Regions {
                more_negatives: negatives,
                negative: lists.negative.iter().map(|e| e.region).collect(),
                positive: lists.positive.iter().map(|e| e.region).collect(),
            });
            (parts, uncond)
        }
        PromptSyntax::ComfyUi => {
            let cond = Scheduled::constant(comfy_encode(&mut encoder, &*tokenizer, &embeddings, request.prompt, cancel)?);
            let uncond = if request.guided {
                Some(Scheduled::constant(comfy_encode(&mut encoder, &*tokenizer, &embeddings, request.negative_prompt, cancel)?))
            } else {
                None
            };
            (vec![(1.0, cond)], uncond)
        }
    };
    let dim = encoder.dim().unwrap_or(dim);
    notes.dedup();
    let embeddings_used = encoder
        .used_embeddings()
        .iter()
        .map(|&i| &embeddings.embeddings[i])
        .map(|e| EmbeddingUse { name: e.name.clone(), short_hash: e.short_hash.clone() })
        .collect();
    Ok(PromptConditioning { dim, uncond, parts, notes, embeddings_used, regions })
}

/// The plain syntax's one window: the text's first 75 tokens, as diffusers truncates.
fn plain_window(tokenizer: &ClipTokenizer, text: &str, notes: &mut Vec<String>) -> Result<Chunk, EngineError> {
    let ids = tokenizer.encode(text)?;
    let dropped = tokenizer.count_tokens(text).saturating_sub(CHUNK_TOKENS);
    if dropped > 0 {
        notes.push(format!(
            "the plain prompt syntax keeps CLIP's first {CHUNK_TOKENS} tokens; {dropped} were dropped (the a1111 and comfyui syntaxes take any length)"
        ));
    }
    Ok(Chunk { weights: vec![1.0; ids.len()], tokens: ids.into_iter().map(Token::Id).collect() })
}

/// A1111's encoding of one call's texts (`FrozenCLIPEmbedderWithCustomWords.forward` on the
/// texts of one prompt's schedule, repeats included): every text chunked; per chunk index the
/// batch encoded (a text with fewer chunks gets the empty chunk), weighted and its mean restored.
/// One encoding per text, in order, each with the batch's chunk count.
fn a1111_batch(
    encoder: &mut WindowEncoder<'_>,
    vocab: &dyn Vocabulary,
    embeddings: &EmbeddingSet,
    texts: &[&str],
    cancel: &CancelToken,
) -> Result<Vec<Encoding>, EngineError> {
    let chunked: Vec<Vec<Chunk>> = texts.iter().map(|t| chunks::a1111_chunks(&a1111::attention(t), vocab, embeddings).0).collect();
    let count = chunked.iter().map(Vec::len).max().unwrap_or(1);
    let empty = empty_window(vocab);
    let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
    for index in 0..count {
        let batch: Vec<&Chunk> = chunked.iter().map(|c| c.get(index).unwrap_or(&empty)).collect();
        let states = batch.iter().map(|chunk| encoder.encode(chunk, cancel)).collect::<Result<Vec<_>, _>>()?;
        let weighted = original_emphasis(&batch, &states);
        for (text_out, z) in out.iter_mut().zip(weighted) {
            text_out.extend(z);
        }
    }
    Ok(out.into_iter().map(Arc::new).collect())
}

/// A1111's "Original" emphasis over one chunk index of a batch: `z · weight` per token, then
/// the whole batch rescaled so its mean is what it was (means in double, factors in float32 as
/// torch computes them on float32 tensors).
fn original_emphasis(batch: &[&Chunk], states: &[Arc<Vec<f32>>]) -> Vec<Vec<f32>> {
    let mean = |zs: &[&[f32]]| {
        let n: usize = zs.iter().map(|z| z.len()).sum();
        (zs.iter().flat_map(|z| z.iter()).map(|&x| f64::from(x)).sum::<f64>() / n.max(1) as f64) as f32
    };
    let before = mean(&states.iter().map(|s| s.as_slice()).collect::<Vec<_>>());
    let weighted: Vec<Vec<f32>> = batch
        .iter()
        .zip(states)
        .map(|(chunk, z)| {
            let dim = z.len() / chunk.weights.len().max(1);
            z.chunks(dim.max(1)).zip(&chunk.weights).flat_map(|(row, &w)| row.iter().map(move |&x| x * w as f32)).collect()
        })
        .collect();
    let after = mean(&weighted.iter().map(Vec::as_slice).collect::<Vec<_>>());
    let factor = before / after;
    weighted.into_iter().map(|z| z.into_iter().map(|x| x * factor).collect()).collect()
}

/// ComfyUI's encoding of one prompt (`SDClipModel.encode_token_weights`): its windows encoded;
/// when any token is weighted, each weighted token's state is `(z − e)·w + e` with `e` the empty
/// prompt's state at the same position.
fn comfy_encode(
    encoder: &mut WindowEncoder<'_>,
    vocab: &dyn Vocabulary,
    embeddings: &EmbeddingSet,
    text: &str,
    cancel: &CancelToken,
) -> Result<Encoding, EngineError> {
    let windows = comfy_windows_of(text, vocab, embeddings);
    let weighted = windows.iter().any(|w| w.weights.iter().any(|&x| x != 1.0));
    let empty = if weighted { Some(encoder.encode(&empty_window(vocab), cancel)?) } else { None };
    let mut out = Vec::new();
    for window in &windows {
        let z = encoder.encode(window, cancel)?;
        let dim = z.len() / window.tokens.len();
        match &empty {
            Some(e) => {
                for ((row, empty_row), &w) in z.chunks(dim).zip(e.chunks(dim)).zip(&window.weights) {
                    if w == 1.0 {
                        out.extend_from_slice(row);
                    } else {
                        let w = w as f32;
                        out.extend(row.iter().zip(empty_row).map(|(&x, &e)| (x - e) * w + e));
                    }
                }
            }
            None => out.extend_from_slice(&z),
        }
    }
    Ok(Arc::new(out))
}

fn comfy_windows_of(text: &str, vocab: &dyn Vocabulary, embeddings: &EmbeddingSet) -> Vec<Chunk> {
    chunks::comfy_windows(&comfyui::words(&comfyui::token_weights(text), vocab, embeddings), vocab)
}

/// How `text` is cut into chunks in `syntax`, for the prompt box's token counter. For `a1111`
/// the text is read at the first step (prompt editing shows its first form) and `AND` parts are
/// counted together.
pub fn tokens_view(
    tokenizer: &ClipTokenizer,
    embedding_files: &[EmbeddingFile],
    dim: usize,
    text: &str,
    syntax: PromptSyntax,
) -> Result<PromptTokens, EngineError> {
    let embeddings = match syntax {
        PromptSyntax::Plain => EmbeddingSet::default(),
        _ => EmbeddingSet::for_texts(embedding_files, &[text], dim, tokenizer),
    };
    let token_text = |t: &Token| match *t {
        Token::Id(id) => tokenizer.token_text(id),
        Token::Vector { embedding, row } => format!("<{}:{row}>", embeddings.embeddings[embedding].name),
    };
    let (start, end) = (tokenizer.start_id(), tokenizer.end_id());
    // The prompt's own tokens of a window: without <start>, and from the last <end> back.
    let view = |chunk: &Chunk| {
        let body = &chunk.tokens[1..];
        let keep = body.iter().rposition(|t| *t != Token::Id(end) && *t != Token::Id(start)).map_or(0, |i| i + 1);
        ChunkView {
            tokens: body[..keep].iter().zip(&chunk.weights[1..]).map(|(t, &w)| TokenView { text: token_text(t), weight: w }).collect(),
        }
    };
    let (chunk_list, token_count, truncated) = match syntax {
        PromptSyntax::Plain => {
            let mut notes = Vec::new();
            let chunk = plain_window(tokenizer, text, &mut notes)?;
            let all = tokenizer.count_tokens(text);
            (vec![chunk], all.min(CHUNK_TOKENS), all.saturating_sub(CHUNK_TOKENS))
        }
        PromptSyntax::A1111 => {
            let mut chunk_list = Vec::new();
            let mut count = 0;
            let (text, _, _) = crate::api::networks::extra_network_tags(text);
            for part in a1111::and_parts(&text) {
                let first = a1111::schedule(&part.text, crate::api::request::DEFAULT_STEPS as usize, None)
                    .into_iter()
                    .next()
                    .map(|(_, t)| t)
                    .unwrap_or_default();
                let (c, n) = chunks::a1111_chunks(&a1111::attention(&first), tokenizer, &embeddings);
                chunk_list.extend(c);
                count += n;
            }
            (chunk_list, count, 0)
        }
        PromptSyntax::ComfyUi => {
            let windows = comfy_windows_of(text, tokenizer, &embeddings);
            let count = windows.iter().map(|w| view(w).tokens.len()).sum();
            (windows, count, 0)
        }
    };
    Ok(PromptTokens {
        syntax,
        token_count,
        chunk_size: CHUNK_TOKENS,
        chunks: chunk_list.iter().map(view).collect(),
        truncated,
        embeddings: embeddings.embeddings.iter().map(|e| e.name.clone()).collect(),
    })
}
