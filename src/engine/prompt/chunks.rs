//! Owns cutting weighted prompt text into CLIP's 77-token windows, the way each tool does:
//! A1111's 75-token chunks (`BREAK`, the backtrack to the last comma, embeddings kept whole) and
//! ComfyUI's batches (words kept whole unless 8 tokens or longer). Every window is
//! `<start>` + 75 tokens + `<end>`, each token with its weight.

use super::a1111::Weighted;
use super::embeddings::EmbeddingSet;

/// Prompt tokens per window (77 minus `<start>` and `<end>`).
pub const CHUNK_TOKENS: usize = 75;
/// The window the text encoder reads.
pub const WINDOW: usize = CHUNK_TOKENS + 2;
/// A1111's `comma_padding_backtrack` default: a chunk that fills up moves the words after its
/// last comma to the next chunk when that comma is at most this many tokens back.
pub const COMMA_BACKTRACK: usize = 20;
/// ComfyUI's `max_word_length`: a word of fewer tokens is never split across windows.
pub const COMFY_MAX_WORD_TOKENS: usize = 8;

/// One position of a window: a vocabulary token, or a row of a textual-inversion embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Token {
    Id(u32),
    Vector { embedding: usize, row: usize },
}

/// One 77-token window with a weight per token.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub tokens: Vec<Token>,
    pub weights: Vec<f64>,
}

/// What chunking needs from the tokenizer.
pub trait Vocabulary {
    /// The ids of `text` without `<start>`/`<end>`, never truncated.
    fn ids(&self, text: &str) -> Vec<u32>;
    /// The id of one vocabulary entry (e.g. `"cat</w>"`).
    fn token_id(&self, token: &str) -> Option<u32>;
    fn start_id(&self) -> u32;
    fn end_id(&self) -> u32;
}

/// A chunk being filled: up to 75 tokens with their weights.
#[derive(Default)]
struct Open {
    tokens: Vec<Token>,
    weights: Vec<f64>,
}

/// A1111's `tokenize_line`: the chunks of one prompt text (already parsed into weighted runs)
/// and its token count as A1111 reports it (75 per full chunk, the tokens of the last).
pub fn a1111_chunks(runs: &[Weighted], vocab: &dyn Vocabulary, embeddings: &EmbeddingSet) -> (Vec<Chunk>, usize) {
    let comma = vocab.token_id(",</w>");
    let mut chunks = Vec::new();
    let mut open = Open::default();
    let mut token_count = 0;
    let mut last_comma: Option<usize> = None;
    let mut close = |open: &mut Open, chunks: &mut Vec<Chunk>, last_comma: &mut Option<usize>, is_last: bool| {
        token_count += if is_last { open.tokens.len() } else { CHUNK_TOKENS };
        chunks.push(window(std::mem::take(open), vocab));
        *last_comma = None;
    };
    for run in runs {
        if run.is_break() {
            close(&mut open, &mut chunks, &mut last_comma, false);
            continue;
        }
        let ids = vocab.ids(&run.text);
        let mut position = 0;
        while position < ids.len() {
            let id = ids[position];
            if Some(id) == comma {
                last_comma = Some(open.tokens.len());
            } else if let Some(at) = last_comma.filter(|&at| open.tokens.len() == CHUNK_TOKENS && CHUNK_TOKENS - at <= COMMA_BACKTRACK) {
                let tokens = open.tokens.split_off(at + 1);
                let weights = open.weights.split_off(at + 1);
                close(&mut open, &mut chunks, &mut last_comma, false);
                open = Open { tokens, weights };
            }
            if open.tokens.len() == CHUNK_TOKENS {
                close(&mut open, &mut chunks, &mut last_comma, false);
            }
            match embeddings.match_at(&ids, position) {
                None => {
                    open.tokens.push(Token::Id(id));
                    open.weights.push(run.weight);
                    position += 1;
                }
                Some((embedding, name_len)) => {
                    let rows = embeddings.rows(embedding);
                    if open.tokens.len() + rows > CHUNK_TOKENS {
                        close(&mut open, &mut chunks, &mut last_comma, false);
                    }
                    for row in 0..rows {
                        open.tokens.push(Token::Vector { embedding, row });
                        open.weights.push(run.weight);
                    }
                    position += name_len;
                }
            }
        }
    }
    if !open.tokens.is_empty() || chunks.is_empty() {
        close(&mut open, &mut chunks, &mut last_comma, true);
    }
    (chunks, token_count)
}

/// `<start>` + 76 × `<end>`: A1111's empty chunk (what a text with fewer chunks gets at the
/// missing positions) and ComfyUI's empty prompt.
pub fn empty_window(vocab: &dyn Vocabulary) -> Chunk {
    window(Open::default(), vocab)
}

/// Pads an open chunk to 75 with `<end>` (weight 1) and wraps it in `<start>` … `<end>`.
fn window(open: Open, vocab: &dyn Vocabulary) -> Chunk {
    let mut tokens = Vec::with_capacity(WINDOW);
    let mut weights = Vec::with_capacity(WINDOW);
    tokens.push(Token::Id(vocab.start_id()));
    weights.push(1.0);
    let len = open.tokens.len();
    tokens.extend(open.tokens);
    weights.extend(open.weights);
    for _ in len..CHUNK_TOKENS {
        tokens.push(Token::Id(vocab.end_id()));
        weights.push(1.0);
    }
    tokens.push(Token::Id(vocab.end_id()));
    weights.push(1.0);
    Chunk { tokens, weights }
}

/// ComfyUI's batching (`SDTokenizer.tokenize_with_weights`): `words` are token groups with
/// their weights; a group that does not fit in the current window starts the next one (the
/// window padded with `<end>`, as SD 1.x pads), unless it has [`COMFY_MAX_WORD_TOKENS`] or more
/// tokens, which are split at the window's end.
pub fn comfy_windows(words: &[Vec<(Token, f64)>], vocab: &dyn Vocabulary) -> Vec<Chunk> {
    let start = (Token::Id(vocab.start_id()), 1.0);
    let end = (Token::Id(vocab.end_id()), 1.0);
    let pad = end;
    let mut windows: Vec<Vec<(Token, f64)>> = Vec::new();
    let mut batch = vec![start];
    for word in words {
        let is_large = word.len() >= COMFY_MAX_WORD_TOKENS;
        let mut rest: &[(Token, f64)] = word;
        while !rest.is_empty() {
            if rest.len() + batch.len() > WINDOW - 1 {
                let remaining = WINDOW - batch.len() - 1;
                if is_large {
                    batch.extend_from_slice(&rest[..remaining]);
                    batch.push(end);
                    rest = &rest[remaining..];
                } else {
                    batch.push(end);
                    batch.extend(std::iter::repeat_n(pad, remaining));
                }
                windows.push(std::mem::replace(&mut batch, vec![start]));
            } else {
                batch.extend_from_slice(rest);
                rest = &[];
            }
        }
    }
    batch.push(end);
    let fill = WINDOW.saturating_sub(batch.len());
    batch.extend(std::iter::repeat_n(pad, fill));
    windows.push(batch);
    windows.into_iter().map(|w| Chunk { tokens: w.iter().map(|t| t.0).collect(), weights: w.iter().map(|t| t.1).collect() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words are their own ids: `w<n>` is n, `,` is 1000.
    struct Numbers;

    impl Vocabulary for Numbers {
        fn ids(&self, text: &str) -> Vec<u32> {
            text.split_whitespace().map(|w| if w == "," { 1000 } else { w.trim_start_matches('w').parse().unwrap() }).collect()
        }
        fn token_id(&self, token: &str) -> Option<u32> {
            (token == ",</w>").then_some(1000)
        }
        fn start_id(&self) -> u32 {
            49406
        }
        fn end_id(&self) -> u32 {
            49407
        }
    }

    fn run(text: &str) -> Vec<Weighted> {
        vec![Weighted { text: text.into(), weight: 1.0 }]
    }

    fn words(range: std::ops::Range<u32>) -> String {
        range.map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn a_full_chunk_moves_the_words_after_a_near_comma_to_the_next() {
        // 70 words, a comma (position 70), 10 more: the 76th token finds the comma 5 back.
        let text = format!("{} , {}", words(0..70), words(70..80));
        let (chunks, count) = a1111_chunks(&run(&text), &Numbers, &EmbeddingSet::default());
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].tokens[71], Token::Id(1000), "the comma ends the first chunk");
        assert_eq!(chunks[0].tokens[72], Token::Id(49407));
        assert_eq!(chunks[1].tokens[1], Token::Id(70));
        assert_eq!(count, 75 + 10);
        // A comma more than 20 tokens back is not used.
        let text = format!("{} , {}", words(0..40), words(40..100));
        let (chunks, _) = a1111_chunks(&run(&text), &Numbers, &EmbeddingSet::default());
        assert_eq!(chunks[1].tokens[1], Token::Id(74));
        assert!(chunks.iter().all(|c| c.tokens.len() == WINDOW && c.weights.len() == WINDOW));
    }

    #[test]
    fn comfy_keeps_short_words_whole_and_splits_long_ones() {
        let word = |n: usize, base: u32| (0..n as u32).map(|i| (Token::Id(base + i), 1.0)).collect::<Vec<_>>();
        // 74 single tokens, then a 3-token word: it does not fit (74 + 3 > 75) and moves on.
        let mut words: Vec<Vec<(Token, f64)>> = (0..74).map(|i| word(1, i)).collect();
        words.push(word(3, 500));
        let windows = comfy_windows(&words, &Numbers);
        assert_eq!(windows.len(), 2);
        assert_eq!(windows[0].tokens[75], Token::Id(49407));
        assert_eq!(windows[1].tokens[1..4], [Token::Id(500), Token::Id(501), Token::Id(502)]);
        // A 10-token word is split at the window's end.
        let mut words: Vec<Vec<(Token, f64)>> = (0..74).map(|i| word(1, i)).collect();
        words.push(word(10, 500));
        let windows = comfy_windows(&words, &Numbers);
        assert_eq!(windows[0].tokens[75], Token::Id(500));
        assert_eq!(windows[1].tokens[1], Token::Id(501));
    }
}
