//! Owns running the text encoder on 77-token windows ([`Chunk`]s): vocabulary ids through the
//! model's own session, or, when a request uses embedding vectors or CLIP skip, through the
//! edited session ([`SdModel::edited_text_encoder`]) with the vectors fed as extra rows of the
//! token table. A window that several texts share (the empty chunk, the unchanged chunks of a
//! prompt-editing schedule) is encoded once.

use std::collections::HashMap;
use std::sync::Arc;

use super::chunks::{Chunk, Token};
use super::embeddings::EmbeddingSet;
use crate::engine::cancel::CancelToken;
use crate::engine::model::{EncoderEdit, SdModel, SlotGuard};
use crate::engine::onnx_edit::EXTRA_EMBEDDINGS_INPUT;
use crate::engine::onnx_model::{spec, InputData};
use crate::engine::pipeline::stages::check_cancel;
use crate::engine::EngineError;

/// The hidden states of one window: `[77, dim]`.
pub type WindowStates = Arc<Vec<f32>>;

pub struct WindowEncoder<'a> {
    /// The model until the first window is encoded; then the session, kept for every later
    /// window of the request (in low-memory mode a session is created once per request, not
    /// once per window).
    model: Option<&'a mut SdModel>,
    session: Option<(SlotGuard<'a>, Option<EncoderEdit>)>,
    clip_skip: usize,
    /// Whether the edited session runs (CLIP skip > 1 or embeddings in play).
    edited: bool,
    /// The first extra row of each embedding of the set, and all their rows.
    offsets: Vec<usize>,
    extra_rows: Vec<f32>,
    cache: HashMap<Vec<Token>, WindowStates>,
    dim: Option<usize>,
    /// Embeddings whose vectors were encoded, in first-use order (indices into the set).
    used: Vec<usize>,
}

impl<'a> WindowEncoder<'a> {
    pub fn new(model: &'a mut SdModel, embeddings: &EmbeddingSet, clip_skip: usize) -> Self {
        let mut offsets = Vec::with_capacity(embeddings.embeddings.len());
        let mut extra_rows = Vec::new();
        for e in &embeddings.embeddings {
            offsets.push(extra_rows.len() / e.vectors.dim.max(1));
            extra_rows.extend_from_slice(&e.vectors.data);
        }
        let edited = clip_skip > 1 || !embeddings.embeddings.is_empty();
        Self {
            model: Some(model),
            session: None,
            clip_skip,
            edited,
            offsets,
            extra_rows,
            cache: HashMap::new(),
            dim: None,
            used: Vec::new(),
        }
    }

    /// The embeddings whose vectors went into an encoded window, in first-use order.
    pub fn used_embeddings(&self) -> &[usize] {
        &self.used
    }

    /// The encoder's hidden size, known after the first window.
    pub fn dim(&self) -> Option<usize> {
        self.dim
    }

    /// The hidden states of `chunk` (the last layer's, or the CLIP-skip layer's through the
    /// final layer norm).
    pub fn encode(&mut self, chunk: &Chunk, cancel: &CancelToken) -> Result<WindowStates, EngineError> {
        for token in &chunk.tokens {
            if let Token::Vector { embedding, .. } = *token {
                if !self.used.contains(&embedding) {
                    self.used.push(embedding);
                }
            }
        }
        if let Some(hit) = self.cache.get(&chunk.tokens) {
            return Ok(hit.clone());
        }
        check_cancel(cancel)?;
        let (shape, hidden) = if self.edited { self.run_edited(&chunk.tokens)? } else { self.run_plain(&chunk.tokens)? };
        let dim = match shape.as_slice() {
            [1, tokens, dim] if *tokens == chunk.tokens.len() => *dim,
            other => {
                return Err(EngineError::UnexpectedModelIo {
                    model: "text_encoder",
                    message: format!("last_hidden_state has shape {other:?}, expected [1, {}, dim]", chunk.tokens.len()),
                })
            }
        };
        self.dim = Some(dim);
        let states = Arc::new(hidden);
        self.cache.insert(chunk.tokens.clone(), states.clone());
        Ok(states)
    }

    /// The text encoder's session (the edited one when `edited`), opened at the first use.
    fn session(&mut self) -> Result<&mut (SlotGuard<'a>, Option<EncoderEdit>), EngineError> {
        if self.session.is_none() {
            let model = self.model.take().expect("the model is held until the session is opened");
            self.session = Some(if self.edited {
                let (guard, edit) = model.edited_text_encoder(self.clip_skip)?;
                (guard, Some(edit))
            } else {
                (model.text_encoder()?, None)
            });
        }
        Ok(self.session.as_mut().expect("opened above"))
    }

    fn run_plain(&mut self, tokens: &[Token]) -> Result<(Vec<usize>, Vec<f32>), EngineError> {
        let ids: Vec<i64> = tokens
            .iter()
            .map(|t| match t {
                Token::Id(id) => Ok(i64::from(*id)),
                Token::Vector { .. } => Err(EngineError::InvalidRequest("an embedding vector needs the edited text encoder".into())),
            })
            .collect::<Result<_, _>>()?;
        let (encoder, _) = self.session()?;
        let input = spec(encoder, "input_ids", 0)?;
        encoder.run(vec![(&input, InputData::Int { shape: vec![1, ids.len()], data: &ids })], "last_hidden_state")
    }

    fn run_edited(&mut self, tokens: &[Token]) -> Result<(Vec<usize>, Vec<f32>), EngineError> {
        let clip_skip = self.clip_skip;
        let (vocab_rows, hidden) = match self.session()? {
            (_, Some(edit)) => (edit.vocab_rows, edit.hidden),
            (_, None) => unreachable!("the edited session was opened for clip skip {clip_skip}"),
        };
        let ids: Vec<i64> = tokens
            .iter()
            .map(|t| match *t {
                Token::Id(id) => id as i64,
                Token::Vector { embedding, row } => (vocab_rows + self.offsets[embedding] + row) as i64,
            })
            .collect();
        // The extra rows input needs at least one row; a zero row nobody reads when there are none.
        let zero_row = vec![0.0f32; hidden];
        let rows: &[f32] = if self.extra_rows.is_empty() { &zero_row } else { &self.extra_rows };
        if !rows.len().is_multiple_of(hidden) {
            return Err(EngineError::InvalidRequest(format!(
                "embedding vectors of {} values do not divide into rows of the text encoder's width {}",
                rows.len(),
                hidden
            )));
        }
        let rows = rows.to_vec();
        let (encoder, _) = self.session()?;
        let ids_in = spec(encoder, "input_ids", 0)?;
        let rows_in = spec(encoder, EXTRA_EMBEDDINGS_INPUT, 1)?;
        encoder.run(
            vec![
                (&ids_in, InputData::Int { shape: vec![1, ids.len()], data: &ids }),
                (&rows_in, InputData::Float { shape: vec![rows.len() / hidden, hidden], data: &rows }),
            ],
            "last_hidden_state",
        )
    }
}
