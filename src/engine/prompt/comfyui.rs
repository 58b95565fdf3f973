//! Owns ComfyUI's prompt syntax (`comfy/sd1_clip.py`): only round brackets carry weight, `(x)`
//! multiplies by 1.1 per level and `(x:w)` *sets* the weight to `w`; `\(` and `\)` are literal;
//! square brackets are text; words are split on spaces and `embedding:name` inserts a
//! textual-inversion embedding (an unknown one is dropped, as ComfyUI does).

use super::chunks::{Token, Vocabulary};
use super::embeddings::EmbeddingSet;

use crate::api::prompt::COMFYUI_EMBEDDING_PREFIX as EMBEDDING_PREFIX;
/// Placeholders for escaped brackets while the brackets are parsed (ComfyUI's choice).
const ESCAPED_CLOSE: &str = "\0\u{1}";
const ESCAPED_OPEN: &str = "\0\u{2}";

/// The text runs of `prompt` with their weights (escapes resolved).
pub fn token_weights(prompt: &str) -> Vec<(String, f64)> {
    let escaped = prompt.replace("\\)", ESCAPED_CLOSE).replace("\\(", ESCAPED_OPEN);
    weigh(&escaped, 1.0).into_iter().map(|(text, w)| (text.replace(ESCAPED_CLOSE, ")").replace(ESCAPED_OPEN, "("), w)).collect()
}

/// Splits at top-level round brackets: plain runs and whole `(...)` groups (unbalanced input
/// follows ComfyUI's counter, which may go negative).
fn top_level_groups(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut depth: i64 = 0;
    for c in text.chars() {
        match c {
            '(' => {
                if depth == 0 {
                    if !current.is_empty() {
                        out.push(std::mem::take(&mut current));
                    }
                    current = "(".into();
                } else {
                    current.push(c);
                }
                depth += 1;
            }
            ')' => {
                depth -= 1;
                if depth == 0 {
                    current.push(')');
                    out.push(std::mem::take(&mut current));
                } else {
                    current.push(c);
                }
            }
            _ => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn weigh(text: &str, weight: f64) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for group in top_level_groups(text) {
        let inner = group.strip_prefix('(').and_then(|g| g.strip_suffix(')')).filter(|_| group.chars().count() >= 2);
        match inner {
            Some(inner) => {
                let mut inner = inner;
                let mut w = weight * 1.1;
                if let Some(colon) = inner.rfind(':').filter(|&c| c > 0) {
                    if let Some(explicit) = python_float(&inner[colon + 1..]) {
                        w = explicit;
                        inner = &inner[..colon];
                    }
                }
                out.extend(weigh(inner, w));
            }
            None => out.push((group, weight)),
        }
    }
    out
}

/// Python's `float(str)`: surrounding whitespace, `_` between digits, `inf`/`nan` accepted.
pub fn python_float(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let chars: Vec<char> = s.chars().collect();
    let mut cleaned = String::with_capacity(s.len());
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' {
            let around = |j: Option<&char>| j.is_some_and(|c| c.is_ascii_digit());
            if !(i > 0 && around(chars.get(i - 1)) && around(chars.get(i + 1))) {
                return None;
            }
            continue;
        }
        cleaned.push(c);
    }
    let lower = cleaned.to_ascii_lowercase();
    let body = lower.trim_start_matches(['+', '-']);
    if matches!(body, "inf" | "infinity" | "nan") {
        return lower.parse().ok();
    }
    if !body.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | '+' | '-')) {
        return None;
    }
    cleaned.parse().ok()
}

/// ComfyUI's words: each run split on spaces (newlines are spaces); a word that names an
/// embedding becomes its rows; every other word its tokens (the word itself when it is one
/// vocabulary entry). Empty words vanish.
pub fn words(runs: &[(String, f64)], vocab: &dyn Vocabulary, embeddings: &EmbeddingSet) -> Vec<Vec<(Token, f64)>> {
    let mut out = Vec::new();
    for (text, weight) in runs {
        for word in text.replace('\n', " ").split(' ').filter(|w| !w.is_empty()) {
            let mut word = word.to_string();
            if let Some(name) = word.strip_prefix(EMBEDDING_PREFIX) {
                let (found, leftover) = match embeddings.find_by_name(name) {
                    Some(e) => (Some(e), String::new()),
                    None => {
                        let stripped = name.trim_matches(',');
                        if stripped.len() < name.len() {
                            // ComfyUI's leftover is `name[len(stripped):]`, counted from the start
                            // even when commas were stripped there.
                            (embeddings.find_by_name(stripped), name.chars().skip(stripped.chars().count()).collect())
                        } else {
                            (None, String::new())
                        }
                    }
                };
                if let Some(embedding) = found {
                    out.push((0..embeddings.rows(embedding)).map(|row| (Token::Vector { embedding, row }, *weight)).collect());
                }
                if leftover.is_empty() {
                    continue;
                }
                word = leftover;
            }
            let ids = match vocab.token_id(&format!("{word}</w>")) {
                Some(id) => vec![id],
                None => vocab.ids(&word),
            };
            out.push(ids.into_iter().map(|id| (Token::Id(id), *weight)).collect());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_weight_replaces_the_nesting() {
        let got = token_weights("a ((b:1.5) c) \\(d\\)");
        assert_eq!(got[0], ("a ".to_string(), 1.0));
        assert_eq!(got[1], ("b".to_string(), 1.5));
        assert_eq!(got[2].0, " c");
        assert!((got[2].1 - 1.1).abs() < 1e-12);
        assert_eq!(got[3], (" (d)".to_string(), 1.0));
    }

    #[test]
    fn python_float_rules() {
        assert_eq!(python_float(" 1.5 "), Some(1.5));
        assert_eq!(python_float("1_0"), Some(10.0));
        assert_eq!(python_float("abc"), None);
        assert_eq!(python_float("1.2.3"), None);
        assert_eq!(python_float("-inf"), Some(f64::NEG_INFINITY));
    }
}
