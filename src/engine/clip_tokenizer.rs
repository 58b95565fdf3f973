//! CLIP tokenization for Stable Diffusion 1.x: prompt text -> exactly 77 token ids.
//!
//! Uses the model's own `tokenizer/tokenizer.json` through the `tokenizers` crate, or, when a model
//! ships only `vocab.json` + `merges.txt` (older diffusers exports), builds the same pipeline that
//! transformers' `CLIPTokenizerFast` converter builds. Like diffusers (`padding="max_length",
//! truncation=True`), ids are `<|startoftext|>`, at most 75 prompt tokens, `<|endoftext|>`, then
//! padding with the model's pad token (`<|endoftext|>` for SD 1.5).
//!
//! Known difference: diffusers' default *slow* tokenizer runs ftfy and HTML unescaping first, so
//! prompts with HTML entities, curly quotes, ligatures, fullwidth letters or mojibake can tokenize
//! differently. Ordinary prompts give identical ids.

use std::path::Path;

use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Lowercase, Replace, Sequence as NormSequence, NFC};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{Model, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use super::prompt::chunks::Vocabulary;
use super::EngineError;

/// CLIP's context length.
pub const CLIP_TOKENS: usize = 77;
const BOS: &str = "<|startoftext|>";
const EOS: &str = "<|endoftext|>";
/// The word-splitting pattern of CLIP's BPE (as in its reference tokenizer).
const CLIP_SPLIT: &str = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

pub struct ClipTokenizer {
    inner: Tokenizer,
    bos_id: u32,
    eos_id: u32,
    pad_id: u32,
}

fn tokenizer_error(dir: &Path, message: impl ToString) -> EngineError {
    EngineError::Tokenizer { path: dir.to_path_buf(), message: message.to_string() }
}

/// The pad token a model declares in `special_tokens_map.json` or `tokenizer_config.json`
/// (a string, or an object with `content`), if any.
fn declared_pad_token(dir: &Path) -> Option<String> {
    ["special_tokens_map.json", "tokenizer_config.json"].iter().find_map(|file| {
        let text = std::fs::read_to_string(dir.join(file)).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        match &json["pad_token"] {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
            _ => None,
        }
    })
}

impl ClipTokenizer {
    /// Loads the tokenizer in a model's `tokenizer/` folder.
    pub fn load(dir: &Path) -> Result<Self, EngineError> {
        let json = dir.join("tokenizer.json");
        let inner = if json.is_file() {
            Tokenizer::from_file(&json).map_err(|e| tokenizer_error(dir, e))?
        } else {
            Self::from_vocab_and_merges(dir)?
        };
        Self::finish(inner, dir, declared_pad_token(dir))
    }

    /// A tokenizer from `tokenizer.json` bytes (SD 1.x's, compiled in for checkpoints); `label`
    /// names it in messages. Pads with `<|endoftext|>`, as SD 1.x's tokenizer does.
    pub fn from_json_bytes(bytes: &[u8], label: &Path) -> Result<Self, EngineError> {
        let inner = Tokenizer::from_bytes(bytes).map_err(|e| tokenizer_error(label, e))?;
        Self::finish(inner, label, None)
    }

    fn finish(mut inner: Tokenizer, dir: &Path, pad_token: Option<String>) -> Result<Self, EngineError> {
        // Long prompts are chunked by the caller: a tokenizer.json that truncates or pads
        // (some exports set max_length 77) would hide tokens from it.
        inner.with_truncation(None).map_err(|e| tokenizer_error(dir, e))?;
        inner.with_padding(None);
        let id = |token: &str| inner.token_to_id(token).ok_or_else(|| tokenizer_error(dir, format!("no {token} token")));
        let bos_id = id(BOS)?;
        let eos_id = id(EOS)?;
        let pad_id = match pad_token {
            Some(token) => id(&token)?,
            None => eos_id,
        };
        Ok(Self { inner, bos_id, eos_id, pad_id })
    }

    /// transformers' CLIP fast-tokenizer pipeline over `vocab.json` + `merges.txt`.
    fn from_vocab_and_merges(dir: &Path) -> Result<Tokenizer, EngineError> {
        let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
        let bpe = BPE::from_file(&vocab.to_string_lossy(), &merges.to_string_lossy())
            .continuing_subword_prefix(String::new())
            .end_of_word_suffix("</w>".to_string())
            .fuse_unk(false)
            .unk_token(EOS.to_string())
            .build()
            .map_err(|e| tokenizer_error(dir, e))?;
        let mut tokenizer = Tokenizer::new(bpe);
        let whitespace = Replace::new(tokenizers::normalizers::replace::ReplacePattern::Regex(r"\s+".into()), " ")
            .map_err(|e| tokenizer_error(dir, e))?;
        tokenizer
            .with_normalizer(Some(NormalizerWrapper::Sequence(NormSequence::new(vec![
                NormalizerWrapper::NFC(NFC),
                NormalizerWrapper::Replace(whitespace),
                NormalizerWrapper::Lowercase(Lowercase),
            ]))))
            .map_err(|e| tokenizer_error(dir, e))?;
        let split = Split::new(SplitPattern::Regex(CLIP_SPLIT.into()), SplitDelimiterBehavior::Removed, true)
            .map_err(|e| tokenizer_error(dir, e))?;
        tokenizer.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(PreSequence::new(vec![
            PreTokenizerWrapper::Split(split),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, false)),
        ]))));
        let model = tokenizer.get_model();
        let (bos, eos) = (
            model.token_to_id(BOS).ok_or_else(|| tokenizer_error(dir, "vocab.json has no <|startoftext|>"))?,
            model.token_to_id(EOS).ok_or_else(|| tokenizer_error(dir, "vocab.json has no <|endoftext|>"))?,
        );
        tokenizer.with_post_processor(Some(
            RobertaProcessing::new((EOS.to_string(), eos), (BOS.to_string(), bos)).trim_offsets(false).add_prefix_space(false),
        ));
        Ok(tokenizer)
    }

    /// Exactly [`CLIP_TOKENS`] ids for `text`: BOS, up to 75 tokens, EOS, padding.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        let encoding =
            self.inner.encode(text, false).map_err(|e| EngineError::InvalidRequest(format!("cannot tokenize the prompt: {e}")))?;
        let mut ids = Vec::with_capacity(CLIP_TOKENS);
        ids.push(self.bos_id);
        ids.extend(encoding.get_ids().iter().take(CLIP_TOKENS - 2));
        ids.push(self.eos_id);
        ids.resize(CLIP_TOKENS, self.pad_id);
        Ok(ids)
    }

    /// How many prompt tokens `text` has (without BOS/EOS), to warn about truncation.
    pub fn count_tokens(&self, text: &str) -> usize {
        self.inner.encode(text, false).map(|e| e.get_ids().len()).unwrap_or(0)
    }

    /// The vocabulary entry of an id (`cat</w>`), for token views.
    pub fn token_text(&self, id: u32) -> String {
        self.inner.id_to_token(id).unwrap_or_else(|| format!("<{id}>"))
    }
}

impl Vocabulary for ClipTokenizer {
    fn ids(&self, text: &str) -> Vec<u32> {
        self.inner.encode(text, false).map(|e| e.get_ids().to_vec()).unwrap_or_default()
    }

    fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    fn start_id(&self) -> u32 {
        self.bos_id
    }

    fn end_id(&self) -> u32 {
        self.eos_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn tiny_tokenizer_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/tiny-sd/tokenizer")
    }

    #[test]
    fn known_prompt_gives_clip_ids() {
        let tok = ClipTokenizer::load(&tiny_tokenizer_dir()).unwrap();
        let ids = tok.encode("a photo of a cat").unwrap();
        // CLIP ids for this prompt, as listed by transformers' CLIPTokenizerFast.
        assert_eq!(&ids[..7], &[49406, 320, 1125, 539, 320, 2368, 49407]);
        assert!(ids[7..].iter().all(|&i| i == 49407));
        assert_eq!(ids.len(), CLIP_TOKENS);
    }

    #[test]
    fn long_prompt_keeps_bos_and_eos() {
        let tok = ClipTokenizer::load(&tiny_tokenizer_dir()).unwrap();
        let long = "red ".repeat(100);
        let ids = tok.encode(&long).unwrap();
        assert_eq!(ids.len(), CLIP_TOKENS);
        assert_eq!(ids[0], 49406);
        assert_eq!(ids[76], 49407);
        assert!(ids[1..76].iter().all(|&i| i != 49407));
        assert_eq!(tok.count_tokens(&long), 100);
    }

    #[test]
    fn vocab_and_merges_build_the_same_tokenizer_as_tokenizer_json() {
        let dir = tiny_tokenizer_dir();
        let from_json = ClipTokenizer::load(&dir).unwrap();
        let built = ClipTokenizer::from_vocab_and_merges(&dir).unwrap();
        for prompt in ["a photo of a cat", "Don't STOP   me\tnow!!", "café naïve 日本語 🎨", "x1.5 (masterpiece:1.2), 4k"] {
            let want = from_json.inner.encode(prompt, false).unwrap().get_ids().to_vec();
            let got = built.encode(prompt, false).unwrap().get_ids().to_vec();
            assert_eq!(got, want, "{prompt}");
        }
    }
}
