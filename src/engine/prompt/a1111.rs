//! Owns AUTOMATIC1111's prompt syntax (webui 1.10): composable `AND` parts with `:weight`,
//! prompt editing `[from:to:when]` and alternation `[a|b]` (a schedule of plain texts over the
//! sampling steps), and emphasis `(x)`, `(x:1.3)`, `[x]`, escapes and `BREAK` (text runs with
//! weights). Pure text processing; the token chunks are built in `chunks.rs`.
//!
//! Matches A1111's behaviour, quirks included (checked against its own functions by
//! `tests/fixtures/prompts/parser_a1111.json`): a prompt the schedule grammar cannot parse (a `|`
//! outside brackets, a trailing `\`) is used as it is, without editing; `BREAK` inside brackets
//! is weighted like any text and so becomes the word "break"; a trailing `:number` is the weight
//! of an `AND` part even when there is no `AND`.

/// Emphasis of `(x)`: ×1.1; `[x]`: ÷1.1.
const ROUND_MULTIPLIER: f64 = 1.1;
const SQUARE_MULTIPLIER: f64 = 1.0 / 1.1;
/// The weight A1111 gives its `BREAK` marker (a marker multiplied by brackets is no longer one).
const BREAK_WEIGHT: f64 = -1.0;

/// One `AND` part of a prompt: its text and the weight of its guidance.
#[derive(Debug, Clone, PartialEq)]
pub struct AndPart {
    pub text: String,
    pub weight: f64,
}

/// Splits `prompt` on the word `AND` into parts, each with its trailing `:weight` (default 1).
/// Identical part texts are kept once (the first weight wins for the text; every occurrence
/// still counts, as A1111 keeps one entry per occurrence).
pub fn and_parts(prompt: &str) -> Vec<AndPart> {
    split_on_word(prompt, "AND").into_iter().map(|part| part_weight(&part)).collect()
}

/// Splits on `word` where it stands between word boundaries (regex `\bword\b`).
fn split_on_word(text: &str, word: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut search = 0;
    while let Some(found) = text[search..].find(word) {
        let at = search + found;
        let end = at + word.len();
        let before_ok = text[..at].chars().next_back().is_none_or(|c| !is_word_char(c));
        let after_ok = text[end..].chars().next().is_none_or(|c| !is_word_char(c));
        if before_ok && after_ok {
            parts.push(text[start..at].to_string());
            start = end;
        }
        search = at + word.len();
    }
    parts.push(text[start..].to_string());
    parts
}

/// Python's `\w` for `str` patterns: letters, digits (Unicode) and the underscore.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// A1111's `re_weight`: the text up to an optional `\s*:\s*number` at the very end (trailing
/// whitespace dropped); the number is `[-+]?(\d+\.?|\d*\.\d+)`.
fn part_weight(part: &str) -> AndPart {
    let trimmed = part.trim_end_matches(is_py_space);
    if let Some(colon) = trimmed.rfind(':') {
        let number = trimmed[colon + 1..].trim_start_matches(is_py_space);
        if is_and_weight(number) {
            if let Ok(weight) = number.parse::<f64>() {
                let text = trimmed[..colon].trim_end_matches(is_py_space);
                return AndPart { text: text.to_string(), weight };
            }
        }
    }
    AndPart { text: trimmed.to_string(), weight: 1.0 }
}

/// Python's `\s` for `str` patterns.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `[-+]?(?:\d+\.?|\d*\.\d+)` over the whole string (ASCII digits: A1111 calls `float` on it).
fn is_and_weight(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let digits = |t: &str| t.chars().all(|c| c.is_ascii_digit());
    match frac {
        None => !int.is_empty() && digits(int),
        Some(f) => digits(int) && digits(f) && !(int.is_empty() && f.is_empty()),
    }
}

/// The texts of one prompt over the sampling steps: `(end_at_step, text)` pairs in step order;
/// the text of a step `s` (counted from 0, one per model evaluation) is the first entry whose
/// `end_at_step >= s`. The last entry ends at `steps`.
pub type PromptSchedule = Vec<(usize, String)>;

/// A1111's `get_learned_conditioning_prompt_schedules` for one prompt (one `AND` part): resolves
/// prompt editing and alternation. `hires_steps` is given for the hires fix's second pass: then
/// `when` counts from the start of the first pass (`[a:b:1.5]` switches halfway through the
/// second pass; an integer `when` counts the first pass's steps first).
pub fn schedule(prompt: &str, steps: usize, hires_steps: Option<usize>) -> PromptSchedule {
    let (int_offset, flt_offset, steps) = match hires_steps {
        Some(h) => (steps as f64, 1.0, h),
        None => (0.0, 0.0, steps),
    };
    let Some(tree) = Parser::new(prompt).parse_start() else {
        return vec![(steps, prompt.to_string())];
    };
    let mut ends = vec![steps];
    collect_steps(&tree, steps, int_offset, flt_offset, &mut ends);
    ends.sort_unstable();
    ends.dedup();
    ends.into_iter()
        .map(|end| {
            let mut text = String::new();
            render(&tree, end, steps, int_offset, flt_offset, &mut text);
            (end, text)
        })
        .collect()
}

/// A node of the schedule grammar. Literal text (brackets kept) is `Text`.
#[derive(Debug, Clone)]
enum Node {
    Text(String),
    /// `[before:after:when]`; `before` is `None` in the `[after:when]` form.
    Scheduled {
        before: Option<Vec<Node>>,
        after: Vec<Node>,
        when: String,
    },
    Alternate(Vec<Vec<Node>>),
    /// An emphasis bracket: its opening text, inner nodes, optional `:` + second part, closing.
    Group(Vec<Node>),
}

/// The step a `[..:..:when]` switches at: a number with a `.` is a fraction of the steps.
fn switch_step(when: &str, steps: usize, int_offset: f64, flt_offset: f64) -> i64 {
    let v: f64 = when.parse().unwrap_or(0.0);
    let v = if when.contains('.') { (v - flt_offset) * steps as f64 } else { v - int_offset };
    // Python: min(steps, int(v)); int() truncates toward zero.
    (v.trunc() as i64).min(steps as i64)
}

fn collect_steps(nodes: &[Node], steps: usize, int_offset: f64, flt_offset: f64, ends: &mut Vec<usize>) {
    for node in nodes {
        match node {
            Node::Text(_) => {}
            Node::Scheduled { before, after, when } => {
                if let Some(before) = before {
                    collect_steps(before, steps, int_offset, flt_offset, ends);
                }
                collect_steps(after, steps, int_offset, flt_offset, ends);
                let at = switch_step(when, steps, int_offset, flt_offset);
                if at >= 1 {
                    ends.push(at as usize);
                }
            }
            Node::Alternate(options) => {
                for option in options {
                    collect_steps(option, steps, int_offset, flt_offset, ends);
                }
                ends.extend(1..=steps);
            }
            Node::Group(inner) => collect_steps(inner, steps, int_offset, flt_offset, ends),
        }
    }
}

fn render(nodes: &[Node], step: usize, steps: usize, int_offset: f64, flt_offset: f64, out: &mut String) {
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Scheduled { before, after, when } => {
                if step as i64 <= switch_step(when, steps, int_offset, flt_offset) {
                    if let Some(before) = before {
                        render(before, step, steps, int_offset, flt_offset, out);
                    }
                } else {
                    render(after, step, steps, int_offset, flt_offset, out);
                }
            }
            Node::Alternate(options) => {
                let option = &options[(step + options.len() - 1) % options.len()];
                render(option, step, steps, int_offset, flt_offset, out);
            }
            Node::Group(inner) => render(inner, step, steps, int_offset, flt_offset, out),
        }
    }
}

/// A recursive-descent reading of A1111's schedule grammar:
/// ```text
/// start:     (prompt | /[][():]/+)*
/// prompt:    (emphasized | scheduled | alternate | plain | WHITESPACE)*
/// emphasized: "(" prompt ")" | "(" prompt ":" prompt ")" | "[" prompt "]"
/// scheduled: "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
/// alternate: "[" prompt ("|" [prompt])+ "]"
/// plain:     /([^\\\[\]():|]|\\.)+/
/// ```
/// At the top level a bracket that opens no complete construct is literal text; inside a
/// construct it makes the construct fail. No parse at all (`|` outside brackets, a trailing
/// `\`) is `None`.
struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn new(text: &str) -> Self {
        Self { chars: text.chars().collect(), pos: 0 }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn parse_start(&mut self) -> Option<Vec<Node>> {
        let mut nodes = Vec::new();
        while let Some(c) = self.peek() {
            match c {
                '(' | '[' => {
                    let saved = self.pos;
                    match self.construct() {
                        Some(node) => nodes.push(node),
                        None => {
                            self.pos = saved + 1;
                            nodes.push(Node::Text(c.to_string()));
                        }
                    }
                }
                ']' | ')' | ':' => {
                    self.pos += 1;
                    nodes.push(Node::Text(c.to_string()));
                }
                '|' => return None,
                _ => nodes.push(Node::Text(self.plain()?)),
            }
        }
        Some(nodes)
    }

    /// A run of plain characters (escapes `\x` included); `None` on a trailing `\`.
    fn plain(&mut self) -> Option<String> {
        let mut text = String::new();
        while let Some(c) = self.peek() {
            match c {
                '\\' => {
                    // `\\.`: any character but a newline (Python's `.`).
                    let next = *self.chars.get(self.pos + 1).filter(|&&c| c != '\n')?;
                    text.push(c);
                    text.push(next);
                    self.pos += 2;
                }
                '[' | ']' | '(' | ')' | ':' | '|' => break,
                _ => {
                    text.push(c);
                    self.pos += 1;
                }
            }
        }
        Some(text)
    }

    /// `prompt`: stops before `:`, `)`, `]`, `|`, the end, or a bracket that opens nothing.
    fn prompt(&mut self) -> Vec<Node> {
        let mut nodes = Vec::new();
        while let Some(c) = self.peek() {
            match c {
                ':' | ')' | ']' | '|' => break,
                '(' | '[' => {
                    let saved = self.pos;
                    match self.construct() {
                        Some(node) => nodes.push(node),
                        None => {
                            self.pos = saved;
                            break;
                        }
                    }
                }
                _ => match self.plain() {
                    Some(text) => nodes.push(Node::Text(text)),
                    None => break,
                },
            }
        }
        nodes
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// An emphasized group, a scheduled part or an alternation, starting at `(` or `[`.
    fn construct(&mut self) -> Option<Node> {
        if self.eat('(') {
            let mut inner = vec![Node::Text("(".into())];
            inner.extend(self.prompt());
            if self.eat(':') {
                inner.push(Node::Text(":".into()));
                inner.extend(self.prompt());
            }
            self.eat(')').then_some(())?;
            inner.push(Node::Text(")".into()));
            return Some(Node::Group(inner));
        }
        self.eat('[').then_some(())?;
        let first = self.prompt();
        match self.peek()? {
            ']' => {
                self.pos += 1;
                let mut inner = vec![Node::Text("[".into())];
                inner.extend(first);
                inner.push(Node::Text("]".into()));
                Some(Node::Group(inner))
            }
            '|' => {
                let mut options = vec![first];
                while self.eat('|') {
                    options.push(self.prompt());
                }
                self.eat(']').then_some(())?;
                Some(Node::Alternate(options))
            }
            ':' => {
                self.pos += 1;
                let after_colon = self.pos;
                if let Some(when) = self.number_then_close() {
                    return Some(Node::Scheduled { before: None, after: first, when });
                }
                self.pos = after_colon;
                let second = self.prompt();
                self.eat(':').then_some(())?;
                let when = self.number_then_close()?;
                Some(Node::Scheduled { before: Some(first), after: second, when })
            }
            _ => None,
        }
    }

    /// `[WHITESPACE] NUMBER [WHITESPACE] "]"`: the number's text.
    fn number_then_close(&mut self) -> Option<String> {
        self.skip_whitespace();
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit() || matches!(c, '.' | '+' | '-' | 'e' | 'E')) {
            self.pos += 1;
        }
        let number: String = self.chars[start..self.pos].iter().collect();
        is_lark_signed_number(&number).then_some(())?;
        self.skip_whitespace();
        self.eat(']').then_some(number)
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(is_py_space) {
            self.pos += 1;
        }
    }
}

/// lark's `common.SIGNED_NUMBER`: `[+-]? (INT | DECIMAL) ([eE] [+-]? INT)?` with
/// `DECIMAL = INT "." INT? | "." INT`.
fn is_lark_signed_number(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(at) => (&s[..at], Some(&s[at + 1..])),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        None => digits(mantissa),
        Some((int, frac)) => (digits(int) && (frac.is_empty() || digits(frac))) || (int.is_empty() && digits(frac)),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

/// A run of prompt text with its emphasis, or the `BREAK` marker (`text == "BREAK"` and
/// `weight == -1`, exactly; a marker inside brackets has another weight and is text).
#[derive(Debug, Clone, PartialEq)]
pub struct Weighted {
    pub text: String,
    pub weight: f64,
}

impl Weighted {
    pub fn is_break(&self) -> bool {
        self.text == "BREAK" && self.weight == BREAK_WEIGHT
    }
}

/// A1111's `parse_prompt_attention`: text runs with their weights. `(x)` ×1.1, `(x:w)` ×w,
/// `[x]` ÷1.1, unclosed brackets apply to the end, `\(` `\)` `\[` `\]` `\\` are literal, a lone
/// `\` is dropped, `BREAK` between words becomes a marker; neighbours of equal weight merge.
/// Where A1111 would fail on a weight such as `(x:1.2.3)` (its `float()` raises), the
/// `:1.2.3` is kept as text and the `)` closes with ×1.1.
pub fn attention(text: &str) -> Vec<Weighted> {
    let mut res: Vec<Weighted> = Vec::new();
    let mut round: Vec<usize> = Vec::new();
    let mut square: Vec<usize> = Vec::new();
    let multiply = |res: &mut Vec<Weighted>, from: usize, by: f64| {
        for item in &mut res[from..] {
            item.weight *= by;
        }
    };
    let push_text = |res: &mut Vec<Weighted>, text: &str| {
        for (i, part) in split_break(text).into_iter().enumerate() {
            if i > 0 {
                res.push(Weighted { text: "BREAK".into(), weight: BREAK_WEIGHT });
            }
            res.push(Weighted { text: part, weight: 1.0 });
        }
    };
    for token in attention_tokens(text) {
        match token {
            AttentionToken::Escaped(s) => res.push(Weighted { text: s, weight: 1.0 }),
            AttentionToken::OpenRound => round.push(res.len()),
            AttentionToken::OpenSquare => square.push(res.len()),
            AttentionToken::CloseWeight { raw, number } => match (round.pop(), number.parse::<f64>()) {
                (Some(start), Ok(weight)) => multiply(&mut res, start, weight),
                (Some(start), Err(_)) => {
                    res.push(Weighted { text: raw[..raw.len() - 1].to_string(), weight: 1.0 });
                    multiply(&mut res, start, ROUND_MULTIPLIER);
                }
                (None, _) => push_text(&mut res, &raw),
            },
            AttentionToken::CloseRound => match round.pop() {
                Some(start) => multiply(&mut res, start, ROUND_MULTIPLIER),
                None => push_text(&mut res, ")"),
            },
            AttentionToken::CloseSquare => match square.pop() {
                Some(start) => multiply(&mut res, start, SQUARE_MULTIPLIER),
                None => push_text(&mut res, "]"),
            },
            AttentionToken::Text(s) => push_text(&mut res, &s),
        }
    }
    for start in round {
        multiply(&mut res, start, ROUND_MULTIPLIER);
    }
    for start in square {
        multiply(&mut res, start, SQUARE_MULTIPLIER);
    }
    if res.is_empty() {
        res.push(Weighted { text: String::new(), weight: 1.0 });
    }
    let mut merged: Vec<Weighted> = Vec::with_capacity(res.len());
    for item in res {
        match merged.last_mut() {
            Some(last) if last.weight == item.weight => last.text.push_str(&item.text),
            _ => merged.push(item),
        }
    }
    merged
}

enum AttentionToken {
    /// `\(`, `\)`, `\[`, `\]`, `\\` -> the character; a lone `\` -> empty.
    Escaped(String),
    OpenRound,
    OpenSquare,
    /// `:\s*([+-]?[.\d]+)\s*\)`: the whole match and the number.
    CloseWeight {
        raw: String,
        number: String,
    },
    CloseRound,
    CloseSquare,
    Text(String),
}

/// The tokens of A1111's `re_attention`, in its alternation order.
fn attention_tokens(text: &str) -> Vec<AttentionToken> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => match chars.get(i + 1) {
                Some(&n @ ('(' | ')' | '[' | ']' | '\\')) => {
                    tokens.push(AttentionToken::Escaped(n.to_string()));
                    i += 2;
                }
                _ => {
                    tokens.push(AttentionToken::Escaped(String::new()));
                    i += 1;
                }
            },
            '(' | '[' | ')' | ']' => {
                tokens.push(match c {
                    '(' => AttentionToken::OpenRound,
                    '[' => AttentionToken::OpenSquare,
                    ')' => AttentionToken::CloseRound,
                    _ => AttentionToken::CloseSquare,
                });
                i += 1;
            }
            ':' => match close_weight(&chars[i..]) {
                Some((len, number)) => {
                    tokens.push(AttentionToken::CloseWeight { raw: chars[i..i + len].iter().collect(), number });
                    i += len;
                }
                None => {
                    tokens.push(AttentionToken::Text(":".into()));
                    i += 1;
                }
            },
            _ => {
                let start = i;
                while i < chars.len() && !matches!(chars[i], '\\' | '(' | ')' | '[' | ']' | ':') {
                    i += 1;
                }
                tokens.push(AttentionToken::Text(chars[start..i].iter().collect()));
            }
        }
    }
    tokens
}

/// Matches `:\s*([+-]?[.\d]+)\s*\)` at the start of `chars`: (length, number text).
fn close_weight(chars: &[char]) -> Option<(usize, String)> {
    let mut i = 1;
    while chars.get(i).is_some_and(|&c| is_py_space(c)) {
        i += 1;
    }
    let start = i;
    if chars.get(i).is_some_and(|&c| c == '+' || c == '-') {
        i += 1;
    }
    let digits_start = i;
    // Python's \d is any Unicode decimal digit; `float()` accepts those too.
    while chars.get(i).is_some_and(|&c| c == '.' || unicode_digit_value(c).is_some()) {
        i += 1;
    }
    if i == digits_start {
        return None;
    }
    let number: String = chars[start..i].iter().map(|&c| unicode_digit_to_ascii(c)).collect();
    while chars.get(i).is_some_and(|&c| is_py_space(c)) {
        i += 1;
    }
    (chars.get(i) == Some(&')')).then_some((i + 1, number))
}

fn unicode_digit_value(c: char) -> Option<u32> {
    // Fullwidth and Arabic-Indic digits are what prompts typed on phones contain.
    const ZEROS: [u32; 4] = [0x0030, 0x0660, 0x06F0, 0xFF10];
    let code = c as u32;
    ZEROS.iter().find(|&&zero| (zero..zero + 10).contains(&code)).map(|&zero| code - zero)
}

fn unicode_digit_to_ascii(c: char) -> char {
    match unicode_digit_value(c) {
        Some(d) => char::from_digit(d, 10).unwrap_or(c),
        None => c,
    }
}

/// `re.split(r"\s*\bBREAK\b\s*", text)`.
fn split_break(text: &str) -> Vec<String> {
    let parts = split_on_word(text, "BREAK");
    if parts.len() == 1 {
        return parts;
    }
    let last = parts.len() - 1;
    parts
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let mut p = part.as_str();
            if i > 0 {
                p = p.trim_start_matches(is_py_space);
            }
            if i < last {
                p = p.trim_end_matches(is_py_space);
            }
            p.to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(text: &str) -> Vec<(String, f64)> {
        attention(text).into_iter().map(|w| (w.text, w.weight)).collect()
    }

    #[test]
    fn attention_docstring_example() {
        let got = runs("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).");
        let want = [
            ("a ", 1.0),
            ("house", 1.573),
            (" ", 1.1),
            ("on", 1.0),
            (" a ", 1.1),
            ("hill", 0.55),
            (", sun, ", 1.1),
            ("sky", 1.4641),
            (".", 1.1),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for ((t, w), (wt, ww)) in got.iter().zip(want) {
            assert_eq!(t, wt);
            assert!((w - ww).abs() < 1e-9, "{t}: {w} vs {ww}");
        }
    }

    #[test]
    fn schedule_docstring_examples() {
        let g = |p: &str| schedule(p, 10, None);
        let s = |v: &[(usize, &str)]| v.iter().map(|(a, b)| (*a, b.to_string())).collect::<Vec<_>>();
        assert_eq!(g("a [b:3]"), s(&[(3, "a "), (10, "a b")]));
        assert_eq!(g("a [b : c : 1] d"), s(&[(1, "a b  d"), (10, "a  c  d")]));
        assert_eq!(g("a[b:[c:d:2]:1]e"), s(&[(1, "abe"), (2, "ace"), (10, "ade")]));
        assert_eq!(g("a [unbalanced"), s(&[(10, "a [unbalanced")]));
        assert_eq!(g("((a][:b:c [d:3]"), s(&[(3, "((a][:b:c "), (10, "((a][:b:c d")]));
        assert_eq!(g("[fe|||]male")[..4], s(&[(1, "female"), (2, "male"), (3, "male"), (4, "male")]));
        assert_eq!(schedule("a [b:1.5] c", 10, Some(10)), s(&[(5, "a  c"), (10, "a b c")]));
    }

    #[test]
    fn and_parts_take_trailing_weights() {
        let parts = and_parts("a red cat AND a blue dog :0.6");
        assert_eq!(parts, vec![AndPart { text: "a red cat".into(), weight: 1.0 }, AndPart { text: " a blue dog".into(), weight: 0.6 }]);
        assert_eq!(and_parts("ANDROID")[0].text, "ANDROID");
    }
}
