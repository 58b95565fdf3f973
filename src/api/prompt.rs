//! How a prompt's text is read: the [`PromptSyntax`] a request names (A1111's, ComfyUI's, or
//! plain text as diffusers reads it), CLIP skip and their limits, and the token-count view the
//! prompt box shows. Each syntax owns its wire name and its description.

use serde::{Deserialize, Serialize};

/// How prompt text is parsed, weighted, chunked and encoded. Serialized as its name (`"a1111"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PromptSyntax {
    /// AUTOMATIC1111's: `(x:1.2)`, `[x]`, `BREAK`, `[a:b:0.5]`, `[a|b]`, `AND`, embeddings by
    /// file name; 75-token chunks, any length.
    #[serde(rename = "a1111")]
    A1111,
    /// ComfyUI's: `(x:1.2)` (weights interpolate against the empty prompt), `embedding:name`;
    /// its own word-keeping windows, any length.
    #[serde(rename = "comfyui")]
    ComfyUi,
    /// Literal text, cut at 77 tokens, as diffusers' pipelines read it.
    #[serde(rename = "plain")]
    Plain,
}

impl PromptSyntax {
    pub const ALL: [PromptSyntax; 3] = [PromptSyntax::A1111, PromptSyntax::ComfyUi, PromptSyntax::Plain];
    /// What a new request gets when it names none: prompts are shared in A1111's syntax.
    pub const DEFAULT: PromptSyntax = PromptSyntax::A1111;
    /// What a job recorded before prompt syntaxes existed ran with.
    pub const RECORDED_BEFORE_SYNTAXES: PromptSyntax = PromptSyntax::Plain;

    pub fn name(self) -> &'static str {
        match self {
            PromptSyntax::A1111 => "a1111",
            PromptSyntax::ComfyUi => "comfyui",
            PromptSyntax::Plain => "plain",
        }
    }

    /// What the form's list shows.
    pub fn label(self) -> &'static str {
        match self {
            PromptSyntax::A1111 => "AUTOMATIC1111",
            PromptSyntax::ComfyUi => "ComfyUI",
            PromptSyntax::Plain => "Plain (77 tokens)",
        }
    }

    /// One line for help texts and the form.
    pub fn description(self) -> &'static str {
        match self {
            PromptSyntax::A1111 => "AUTOMATIC1111: (word:1.2), [word], BREAK, [a:b:0.5], [a|b], AND; any length",
            PromptSyntax::ComfyUi => "ComfyUI: (word:1.2), embedding:name; any length",
            PromptSyntax::Plain => "plain text, cut at 77 tokens (diffusers)",
        }
    }

    pub fn parse(name: &str) -> Option<PromptSyntax> {
        Self::ALL.into_iter().find(|s| s.name().eq_ignore_ascii_case(name.trim()))
    }

    /// `a1111, comfyui, plain`, for messages.
    pub fn names() -> String {
        Self::ALL.map(PromptSyntax::name).join(", ")
    }
}

impl std::fmt::Display for PromptSyntax {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Serde default of recorded settings (see [`PromptSyntax::RECORDED_BEFORE_SYNTAXES`]).
pub fn recorded_prompt_syntax() -> PromptSyntax {
    PromptSyntax::RECORDED_BEFORE_SYNTAXES
}

/// How a ComfyUI prompt names a textual-inversion embedding: `embedding:easynegative`.
pub const COMFYUI_EMBEDDING_PREFIX: &str = "embedding:";

/// CLIP skip as A1111 counts it: 1 is the last layer.
pub const DEFAULT_CLIP_SKIP: u32 = 1;
/// The largest CLIP skip accepted (SD 1.x's text encoder has 12 layers).
pub const MAX_CLIP_SKIP: u32 = 12;

pub fn default_clip_skip() -> u32 {
    DEFAULT_CLIP_SKIP
}

/// One token of a prompt as the prompt box shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenView {
    /// The vocabulary entry (`cat</w>`), or `<name:row>` for an embedding vector.
    pub text: String,
    pub weight: f64,
}

/// One 75-token chunk (A1111) or 77-token window (ComfyUI, plain) of a prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkView {
    /// The prompt's tokens in this chunk, without `<start>`, `<end>` and padding.
    pub tokens: Vec<TokenView>,
}

/// `GET /api/v1/prompt/tokens`: how a prompt is cut into chunks, for the token counter under the
/// prompt box (`42/75`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptTokens {
    pub syntax: PromptSyntax,
    /// Tokens counted as A1111 counts them (75 per full chunk plus the last chunk's).
    pub token_count: usize,
    /// Tokens one chunk holds (75).
    pub chunk_size: usize,
    pub chunks: Vec<ChunkView>,
    /// Tokens dropped (only the plain syntax truncates).
    pub truncated: usize,
    /// Embeddings the prompt uses, by name.
    pub embeddings: Vec<String>,
}

/// A textual-inversion embedding file in the models dir's `embeddings/` folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingView {
    /// What a prompt calls it (the file stem): `easynegative`, or `embedding:easynegative` in
    /// the comfyui syntax.
    pub name: String,
    pub file: String,
    pub bytes: u64,
    /// The 12-digit hash A1111 writes in `TI hashes` (sha256 of the file).
    #[serde(default)]
    pub hash: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for s in PromptSyntax::ALL {
            assert_eq!(PromptSyntax::parse(s.name()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.name()));
        }
        assert_eq!(PromptSyntax::parse("ComfyUI"), Some(PromptSyntax::ComfyUi));
        assert_eq!(PromptSyntax::parse("auto"), None);
    }
}
