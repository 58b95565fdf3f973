//! Owns ComfyUI's conditioning as a request says it (`conditioning`, compat and prompt syntax
//! comfyui): the positive and negative lists its Conditioning nodes build — each entry a text
//! expression (a prompt, a token concatenation, a weighted average) with an optional area and a
//! strength — their limits and their field-level checks.
//!
//! What each entry means at sampling time (ComfyUI's `calc_cond_batch`): every entry runs through
//! the UNet (an entry with an area on that crop of the latents), and each side's predictions are
//! averaged per latent pixel with weights `strength × the area's feathered edge`; guidance then
//! combines the two averages.

use serde::{Deserialize, Serialize};

use super::request::{FieldError, MAX_PROMPT_CHARS};

/// Most entries on one side (positive or negative).
pub const MAX_CONDITIONING_ENTRIES: usize = 8;
/// Most prompt texts in the whole conditioning (each is one text-encoder run).
pub const MAX_CONDITIONING_TEXTS: usize = 16;
/// ComfyUI's `MAX_RESOLUTION`: the largest area side and offset `ConditioningSetArea` takes.
pub const MAX_AREA_PIXELS: u32 = 16384;
/// `ConditioningSetArea`'s smallest width and height.
pub const MIN_AREA_SIDE: u32 = 64;
/// `ConditioningSetArea`'s largest strength.
pub const MAX_AREA_STRENGTH: f32 = 10.0;

/// The positive and negative conditioning lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditioning {
    /// What the sampler's `positive` input receives, in ComfyUI's list order.
    pub positive: Vec<ConditioningEntry>,
    /// What its `negative` input receives; empty for the request's `negative_prompt` alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub negative: Vec<ConditioningEntry>,
}

/// One entry of a conditioning list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditioningEntry {
    pub encoding: TextExpr,
    /// The weight of this entry's prediction in its side's average (`ConditioningSetArea`'s
    /// strength) [default: 1].
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub strength: f32,
    /// The part of the picture this entry conditions, in pixels (`ConditioningSetArea`); none for
    /// the whole picture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<Area>,
}

fn one() -> f32 {
    1.0
}

fn is_one(x: &f32) -> bool {
    *x == 1.0
}

/// A rectangle in pixels; ComfyUI keeps it in latent pixels (each number divided by 8, rounded
/// down), so it covers the same latents in a larger second pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Area {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Area {
    /// `(height, width, y, x)` in latent pixels, ComfyUI's order.
    pub fn latent(&self) -> [usize; 4] {
        [self.height / 8, self.width / 8, self.y / 8, self.x / 8].map(|v| v as usize)
    }
}

/// The text conditioning of an entry: a prompt's encoding, or ComfyUI's operations on encodings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TextExpr {
    /// `CLIPTextEncode` of a prompt (ComfyUI's prompt syntax).
    Text(String),
    /// `ConditioningConcat`: `from`'s tokens after `to`'s.
    Concat { to: Box<TextExpr>, from: Box<TextExpr> },
    /// `ConditioningAverage`: `to·to_strength + from·(1 − to_strength)`, token by token over
    /// `to`'s length (`from` cut there or filled with zeros).
    /// (`to_strength` as sent: Python's float, which ComfyUI uses for `1 − s`.)
    Average { to: Box<TextExpr>, from: Box<TextExpr>, to_strength: f64 },
}

impl TextExpr {
    /// The prompt texts, left to right.
    pub fn texts(&self) -> Vec<&str> {
        match self {
            TextExpr::Text(t) => vec![t.as_str()],
            TextExpr::Concat { to, from } | TextExpr::Average { to, from, .. } => {
                let mut all = to.texts();
                all.extend(from.texts());
                all
            }
        }
    }

    /// Whether this is a prompt alone.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            TextExpr::Text(t) => Some(t),
            _ => None,
        }
    }
}

impl Conditioning {
    /// Every prompt text, positive side first.
    pub fn texts(&self) -> Vec<&str> {
        self.positive.iter().chain(&self.negative).flat_map(|e| e.encoding.texts()).collect()
    }

    /// The field errors of this conditioning for a first pass of `width` x `height` pixels.
    pub fn problems(&self, width: u32, height: u32) -> Vec<FieldError> {
        let field = "conditioning";
        let mut errors = Vec::new();
        if self.positive.is_empty() {
            errors.push(FieldError::new(
                field,
                "conditioning.positive needs at least one entry, such as {\"encoding\": {\"text\": \"a cat\"}}",
            ));
        }
        for (side, entries) in [("positive", &self.positive), ("negative", &self.negative)] {
            if entries.len() > MAX_CONDITIONING_ENTRIES {
                errors.push(FieldError::new(
                    field,
                    format!("conditioning.{side} has {} entries; at most {MAX_CONDITIONING_ENTRIES}", entries.len()),
                ));
            }
            for (i, entry) in entries.iter().enumerate() {
                let at = format!("conditioning.{side}[{i}]");
                if !(0.0..=MAX_AREA_STRENGTH).contains(&entry.strength) {
                    errors.push(FieldError::new(field, format!("{at}.strength {} is outside 0..{MAX_AREA_STRENGTH}", entry.strength)));
                }
                if let Some(area) = &entry.area {
                    errors.extend(area_problems(area, &at, width, height).into_iter().map(|m| FieldError::new(field, m)));
                }
                expr_problems(&entry.encoding, &format!("{at}.encoding"), &mut errors);
            }
        }
        let texts = self.texts();
        if texts.len() > MAX_CONDITIONING_TEXTS {
            errors.push(FieldError::new(field, format!("conditioning holds {} prompts; at most {MAX_CONDITIONING_TEXTS}", texts.len())));
        }
        if texts.iter().any(|t| t.chars().count() > MAX_PROMPT_CHARS) {
            errors.push(FieldError::new(field, format!("a conditioning prompt is longer than {MAX_PROMPT_CHARS} characters")));
        }
        errors
    }
}

fn area_problems(area: &Area, at: &str, width: u32, height: u32) -> Vec<String> {
    let mut out = Vec::new();
    for (name, side) in [("width", area.width), ("height", area.height)] {
        if !(MIN_AREA_SIDE..=MAX_AREA_PIXELS).contains(&side) {
            out.push(format!("{at}.area.{name} {side} is outside {MIN_AREA_SIDE}..{MAX_AREA_PIXELS}"));
        }
    }
    // ComfyUI fails on an area that starts past the latents' edge; one that runs over is cut.
    for (name, offset, side) in [("x", area.x, width), ("y", area.y, height)] {
        if offset / 8 >= side / 8 {
            out.push(format!("{at}.area.{name} {offset} starts outside the {width}x{height} picture"));
        }
    }
    out
}

fn expr_problems(expr: &TextExpr, at: &str, errors: &mut Vec<FieldError>) {
    match expr {
        TextExpr::Text(_) => {}
        TextExpr::Concat { to, from } => {
            expr_problems(to, &format!("{at}.concat.to"), errors);
            expr_problems(from, &format!("{at}.concat.from"), errors);
        }
        TextExpr::Average { to, from, to_strength } => {
            if !(0.0..=1.0).contains(to_strength) {
                errors.push(FieldError::new("conditioning", format!("{at}.average.to_strength {to_strength} is outside 0..1")));
            }
            expr_problems(to, &format!("{at}.average.to"), errors);
            expr_problems(from, &format!("{at}.average.from"), errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str) -> TextExpr {
        TextExpr::Text(t.into())
    }

    #[test]
    fn reads_the_documented_json_shape() {
        let c: Conditioning = serde_json::from_value(serde_json::json!({
            "positive": [
                {"encoding": {"concat": {"to": {"text": "a"}, "from": {"average": {"to": {"text": "b"}, "from": {"text": "c"}, "to_strength": 0.25}}}}},
                {"encoding": {"text": "d"}, "area": {"x": 0, "y": 64, "width": 128, "height": 64}, "strength": 0.5}
            ]
        }))
        .unwrap();
        assert_eq!(c.texts(), vec!["a", "b", "c", "d"]);
        assert_eq!(c.positive[0].strength, 1.0);
        assert_eq!(c.positive[1].area.unwrap().latent(), [8, 16, 8, 0]);
        assert!(c.problems(256, 256).is_empty());
        let back = serde_json::to_value(&c).unwrap();
        assert_eq!(serde_json::from_value::<Conditioning>(back).unwrap(), c);
    }

    #[test]
    fn names_each_bad_value() {
        let entry = |encoding, area| ConditioningEntry { encoding, strength: 11.0, area };
        let c = Conditioning {
            positive: vec![entry(
                TextExpr::Average { to: Box::new(text("a")), from: Box::new(text("b")), to_strength: 1.5 },
                Some(Area { x: 512, y: 0, width: 32, height: 64 }),
            )],
            negative: vec![],
        };
        let messages: Vec<String> = c.problems(512, 512).into_iter().map(|e| e.message).collect();
        assert_eq!(
            messages,
            vec![
                "conditioning.positive[0].strength 11 is outside 0..10",
                "conditioning.positive[0].area.width 32 is outside 64..16384",
                "conditioning.positive[0].area.x 512 starts outside the 512x512 picture",
                "conditioning.positive[0].encoding.average.to_strength 1.5 is outside 0..1",
            ]
        );
        let empty = Conditioning { positive: vec![], negative: vec![] };
        assert_eq!(empty.problems(64, 64).len(), 1);
        let many = Conditioning {
            positive: (0..9).map(|_| ConditioningEntry { encoding: text("x"), strength: 1.0, area: None }).collect(),
            negative: vec![],
        };
        assert_eq!(many.problems(64, 64)[0].message, "conditioning.positive has 9 entries; at most 8");
    }
}
