//! The prompt box: the prompt textarea with A1111's Ctrl+Up / Ctrl+Down weight editing, the live
//! token counter under it (`42/75` and the chunk count, from the server's tokenizer in the
//! selected syntax), and the embeddings list, whose chips insert a name at the cursor.

use leptos::prelude::*;

use super::generate::FormValues;
use super::rpc::{count_prompt_tokens, list_embeddings};
use crate::api::PromptSyntax;

/// How much one Ctrl+Up / Ctrl+Down changes a weight (A1111's default precision).
pub const WEIGHT_STEP: f64 = 0.1;

/// Characters that end a word when the cursor selects one (A1111's delimiters and whitespace).
fn is_delimiter(c: char) -> bool {
    c.is_whitespace() || ".,\\/!?%^*;:{}=`~()[]<>|".contains(c)
}

/// A weight as A1111 writes it: at most two decimals, no trailing zeros (`1.1`, `0.9`, `2`).
fn format_weight(weight: f64) -> String {
    let text = format!("{:.2}", weight);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() || text == "-" {
        "0".into()
    } else {
        text.to_string()
    }
}

/// Changes the weight of the selection `start..end` (char indices) by `delta`, as A1111's
/// Ctrl+Up/Down does: no selection selects the `(...)` group around the cursor, else the word
/// under it; a selection already written `(text:w)` gets `w + delta` (and loses its brackets at
/// weight 1); anything else becomes `(text:1 ± delta)`. Returns the new text and the selection
/// (still the words, without brackets and weight).
pub fn adjust_weight(text: &str, start: usize, end: usize, delta: f64) -> (String, usize, usize) {
    let chars: Vec<char> = text.chars().collect();
    let (mut start, mut end) = (start.min(chars.len()), end.min(chars.len()));
    if start > end {
        std::mem::swap(&mut start, &mut end);
    }
    if start == end {
        match enclosing_group(&chars, start) {
            Some((open, close)) => {
                start = open + 1;
                end = chars[start..close].iter().rposition(|&c| c == ':').map_or(close, |colon| start + colon);
            }
            None => {
                while start > 0 && !is_delimiter(chars[start - 1]) {
                    start -= 1;
                }
                while end < chars.len() && !is_delimiter(chars[end]) {
                    end += 1;
                }
            }
        }
    }
    while start < end && chars[start].is_whitespace() {
        start += 1;
    }
    while end > start && chars[end - 1].is_whitespace() {
        end -= 1;
    }
    if start == end {
        return (text.to_string(), start, end);
    }
    let collect = |range: &[char]| range.iter().collect::<String>();
    // `(selection:weight)` already: change the weight.
    if start > 0 && chars[start - 1] == '(' && chars.get(end) == Some(&':') {
        if let Some(close) = chars[end..].iter().position(|&c| c == ')').map(|p| end + p) {
            if let Ok(weight) = collect(&chars[end + 1..close]).trim().parse::<f64>() {
                let weight = ((weight + delta) * 100.0).round() / 100.0;
                let inner = collect(&chars[start..end]);
                let (before, after) = (collect(&chars[..start - 1]), collect(&chars[close + 1..]));
                return if weight == 1.0 {
                    (format!("{before}{inner}{after}"), start - 1, end - 1)
                } else {
                    (format!("{before}({inner}:{}){after}", format_weight(weight)), start, end)
                };
            }
        }
    }
    let weight = format_weight(1.0 + delta);
    let (before, inner, after) = (collect(&chars[..start]), collect(&chars[start..end]), collect(&chars[end..]));
    (format!("{before}({inner}:{weight}){after}"), start + 1, end + 1)
}

/// The innermost `( … )` around `cursor`, as (open, close) char indices.
fn enclosing_group(chars: &[char], cursor: usize) -> Option<(usize, usize)> {
    let open = unmatched(chars, (0..cursor).rev(), '(', ')')?;
    let close = unmatched(chars, cursor..chars.len(), ')', '(')?;
    Some((open, close))
}

/// The first `wanted` among `indices` that a `nested` seen before it has not paired off.
fn unmatched(chars: &[char], indices: impl Iterator<Item = usize>, wanted: char, nested: char) -> Option<usize> {
    let mut depth = 0usize;
    for i in indices {
        if chars[i] == nested {
            depth += 1;
        } else if chars[i] == wanted {
            if depth == 0 {
                return Some(i);
            }
            depth -= 1;
        }
    }
    None
}

/// Inserts `insert` at char index `at`, with a separating space where words would run together.
pub fn insert_at(text: &str, at: usize, insert: &str) -> (String, usize) {
    let chars: Vec<char> = text.chars().collect();
    let at = at.min(chars.len());
    let before: String = chars[..at].iter().collect();
    let after: String = chars[at..].iter().collect();
    let lead = if before.is_empty() || before.ends_with([' ', ',', '(', '[', '\n']) { "" } else { " " };
    let trail = if after.is_empty() || after.starts_with([' ', ',', ')', ']']) { "" } else { " " };
    let cursor = at + lead.chars().count() + insert.chars().count();
    (format!("{before}{lead}{insert}{trail}{after}"), cursor)
}

#[component]
pub fn PromptBox(form: RwSignal<FormValues>) -> impl IntoView {
    let tokens = Resource::new(
        move || form.with(|f| (f.prompt.clone(), f.prompt_syntax.clone(), f.model.clone())),
        |(text, syntax, model)| async move { count_prompt_tokens(text, syntax, Some(model).filter(|m| !m.is_empty())).await },
    );
    let embeddings = Resource::new(|| (), |_| list_embeddings());
    let textarea = NodeRef::<leptos::html::Textarea>::new();

    let on_keydown = move |ev: leptos::ev::KeyboardEvent| {
        let delta = match ev.key().as_str() {
            "ArrowUp" => WEIGHT_STEP,
            "ArrowDown" => -WEIGHT_STEP,
            _ => return,
        };
        if !(ev.ctrl_key() || ev.meta_key()) || form.with_untracked(|f| f.prompt_syntax == PromptSyntax::Plain.name()) {
            return;
        }
        ev.prevent_default();
        edit_selection(textarea, form, |text, start, end| adjust_weight(text, start, end, delta));
    };
    let insert = move |name: String| {
        let insert = if form.with_untracked(|f| f.prompt_syntax == PromptSyntax::ComfyUi.name()) {
            format!("{}{name}", crate::api::prompt::COMFYUI_EMBEDDING_PREFIX)
        } else {
            name
        };
        edit_selection(textarea, form, move |text, _, end| {
            let (new, cursor) = insert_at(text, end, &insert);
            (new, cursor, cursor)
        });
    };

    let counter = move || {
        tokens.get().map(|result| match result {
            Ok(Ok(t)) => {
                let capacity = t.chunk_size * t.chunks.len().max(1);
                let mut text = format!("{}/{capacity}", t.token_count);
                if t.chunks.len() > 1 {
                    text.push_str(&format!(" · {} chunks", t.chunks.len()));
                }
                if t.truncated > 0 {
                    text.push_str(&format!(" · {} tokens past 75 are dropped (plain syntax)", t.truncated));
                }
                if !t.embeddings.is_empty() {
                    text.push_str(&format!(" · embeddings: {}", t.embeddings.join(", ")));
                }
                text
            }
            Ok(Err(message)) => message,
            Err(e) => format!("token count unavailable: {e}"),
        })
    };

    view! {
        <label for="prompt">"Prompt"</label>
        <textarea
            id="prompt"
            name="prompt"
            rows="3"
            node_ref=textarea
            placeholder="a watercolor painting of a lighthouse at dawn, (golden light:1.2)"
            aria-describedby="prompt-count"
            prop:value=move || form.with(|f| f.prompt.clone())
            on:input=move |ev| form.update(|f| f.prompt = event_target_value(&ev))
            on:keydown=on_keydown
        ></textarea>
        <p id="prompt-count" class="hint" aria-live="polite" title="Tokens / capacity of the chunks; Ctrl+Up/Down weights the selection">
            <Transition fallback=|| "…">{counter}</Transition>
        </p>
        <Transition fallback=|| ()>
            {move || {
                embeddings
                    .get()
                    .and_then(Result::ok)
                    .filter(|list| !list.is_empty())
                    .map(|list| {
                        let count = list.len();
                        view! {
                            <details class="embeddings">
                                <summary>{format!("Embeddings ({count})")}</summary>
                                <div class="presets" role="group" aria-label="Insert an embedding">
                                    {list
                                        .into_iter()
                                        .map(|e| {
                                            let name = e.name.clone();
                                            view! {
                                                <button type="button" class="chip" title=e.file on:click=move |_| insert(name.clone())>
                                                    {e.name}
                                                </button>
                                            }
                                        })
                                        .collect_view()}
                                </div>
                            </details>
                        }
                    })
            }}
        </Transition>
    }
}

/// Applies `edit` (text, selection start, end → text, start, end; char indices) to the prompt
/// and puts the new selection back in the textarea.
fn edit_selection(
    textarea: NodeRef<leptos::html::Textarea>,
    form: RwSignal<FormValues>,
    edit: impl FnOnce(&str, usize, usize) -> (String, usize, usize),
) {
    let Some(element) = textarea.get_untracked() else { return };
    let text = form.with_untracked(|f| f.prompt.clone());
    let to_chars = |utf16: u32| char_index(&text, utf16 as usize);
    let start = element.selection_start().ok().flatten().map_or(0, to_chars);
    let end = element.selection_end().ok().flatten().map_or(start, to_chars);
    let (new, new_start, new_end) = edit(&text, start, end);
    form.update(|f| f.prompt = new.clone());
    element.set_value(&new);
    let _ = element.set_selection_range(utf16_index(&new, new_start) as u32, utf16_index(&new, new_end) as u32);
}

/// The char index of a UTF-16 offset (what the browser's selection reports).
fn char_index(text: &str, utf16: usize) -> usize {
    let mut units = 0;
    for (i, c) in text.chars().enumerate() {
        if units >= utf16 {
            return i;
        }
        units += c.len_utf16();
    }
    text.chars().count()
}

fn utf16_index(text: &str, chars: usize) -> usize {
    text.chars().take(chars).map(char::len_utf16).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adjust(text: &str, start: usize, end: usize, delta: f64) -> (String, String) {
        let (new, s, e) = adjust_weight(text, start, end, delta);
        let selected: String = new.chars().skip(s).take(e - s).collect();
        (new, selected)
    }

    #[test]
    fn ctrl_up_wraps_then_steps_then_unwraps() {
        // Selection "lighthouse" in "a lighthouse at dawn".
        let (t, sel) = adjust("a lighthouse at dawn", 2, 12, 0.1);
        assert_eq!((t.as_str(), sel.as_str()), ("a (lighthouse:1.1) at dawn", "lighthouse"));
        let (t, sel) = adjust(&t, 3, 13, 0.1);
        assert_eq!((t.as_str(), sel.as_str()), ("a (lighthouse:1.2) at dawn", "lighthouse"));
        let (t, _) = adjust(&t, 3, 13, -0.1);
        let (t, sel) = adjust(&t, 3, 13, -0.1);
        assert_eq!((t.as_str(), sel.as_str()), ("a lighthouse at dawn", "lighthouse"));
    }

    #[test]
    fn no_selection_takes_the_word_or_the_group_under_the_cursor() {
        assert_eq!(adjust("red cat, blue", 5, 5, 0.1).0, "red (cat:1.1), blue");
        assert_eq!(adjust("a (big dog:1.5) x", 6, 6, -0.1).0, "a (big dog:1.4) x");
        assert_eq!(adjust("a cat", 1, 1, -0.1).0, "(a:0.9) cat");
        assert_eq!(adjust("", 0, 0, 0.1).0, "");
    }

    #[test]
    fn selections_count_utf16_units_in_the_browser() {
        let text = "🎨 cat";
        assert_eq!(char_index(text, 3), 2);
        assert_eq!(utf16_index(text, 2), 3);
    }

    #[test]
    fn inserting_an_embedding_separates_words() {
        assert_eq!(insert_at("a cat", 5, "easynegative"), ("a cat easynegative".to_string(), 18));
        assert_eq!(insert_at("a cat, ", 7, "x"), ("a cat, x".to_string(), 8));
        assert_eq!(insert_at("", 0, "x"), ("x".to_string(), 1));
    }
}
