//! Owns ComfyUI's conditioning lists on the text side: which entries each side holds (the
//! request's [`Conditioning`], or the prompt with its combined prompts), the entries ComfyUI adds
//! so every area has one of the same area on the other side (`create_cond_with_same_area_if_none`),
//! and each entry's encoding computed from its expression (`ConditioningConcat` and
//! `ConditioningAverage` on the prompts' encodings).

use std::collections::HashMap;
use std::sync::Arc;

use super::Encoding;
use crate::api::conditioning::{Conditioning, TextExpr};
use crate::engine::EngineError;

/// How one entry weighs in its side's average: its strength and its area, `(height, width, y,
/// x)` in latent pixels as the request gave it (cut to the latents when the UNet runs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    pub strength: f32,
    pub area: Option<[usize; 4]>,
}

impl Region {
    pub const WHOLE: Region = Region { strength: 1.0, area: None };
}

/// One entry of a side: its expression and its region.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub expr: &'a TextExpr,
    pub region: Region,
}

/// Both sides' entries, ComfyUI's same-area entries added.
#[derive(Debug, Clone)]
pub struct Lists<'a> {
    pub positive: Vec<Entry<'a>>,
    pub negative: Vec<Entry<'a>>,
}

/// The entries of a request that has a conditioning (or combined prompts, each a whole-picture
/// entry after the prompt); `prompts` holds the expressions of the prompt, the combined prompts
/// and the negative prompt that the entries borrow.
pub fn lists<'a>(conditioning: Option<&'a Conditioning>, prompts: &'a [TextExpr]) -> Lists<'a> {
    let entry = |e: &'a crate::api::conditioning::ConditioningEntry| Entry {
        expr: &e.encoding,
        region: Region { strength: e.strength, area: e.area.map(|a| a.latent()) },
    };
    let whole = |expr: &'a TextExpr| Entry { expr, region: Region::WHOLE };
    let (negative_prompt, positive_prompts) = prompts.split_last().expect("the negative prompt is last");
    let positive: Vec<Entry<'a>> = match conditioning {
        Some(c) => c.positive.iter().map(entry).collect(),
        None => positive_prompts.iter().map(whole).collect(),
    };
    let negative: Vec<Entry<'a>> = match conditioning.filter(|c| !c.negative.is_empty()) {
        Some(c) => c.negative.iter().map(entry).collect(),
        None => vec![whole(negative_prompt)],
    };
    let mut lists = Lists { positive, negative };
    pair_areas(&mut lists);
    lists
}

/// ComfyUI's `process_conds` step "make sure each cond area has an opposite one with the same
/// area": for each positive entry with an area, then each negative one (those just added too),
/// the other side gains a copy of it holding the encoding of its smallest entry containing that
/// area (or of its first whole-picture entry), unless that entry has the very same area.
fn pair_areas(lists: &mut Lists<'_>) {
    for i in 0..lists.positive.len() {
        let c = lists.positive[i].clone();
        add_same_area(&mut lists.negative, &c);
    }
    for i in 0..lists.negative.len() {
        let c = lists.negative[i].clone();
        add_same_area(&mut lists.positive, &c);
    }
}

fn add_same_area<'a>(side: &mut Vec<Entry<'a>>, c: &Entry<'a>) {
    let Some(area) = c.region.area else { return };
    // (h, w, y, x): `inner` lies inside `outer`.
    let inside = |inner: [usize; 4], outer: [usize; 4]| {
        inner[2] >= outer[2]
            && inner[3] >= outer[3]
            && inner[0] + inner[2] <= outer[0] + outer[2]
            && inner[1] + inner[3] <= outer[1] + outer[3]
    };
    let mut smallest: Option<usize> = None;
    for (i, x) in side.iter().enumerate() {
        match x.region.area {
            Some(a) if inside(area, a) => match smallest.and_then(|s| side[s].region.area) {
                None => smallest = Some(i),
                Some(s) if s[0] * s[1] > a[0] * a[1] => smallest = Some(i),
                Some(_) => {}
            },
            Some(_) => {}
            None if smallest.is_none() => smallest = Some(i),
            None => {}
        }
    }
    let Some(s) = smallest else { return };
    if side[s].region.area == Some(area) {
        return;
    }
    side.push(Entry { expr: side[s].expr, region: c.region });
}

/// The encoding of `expr`: prompts through `encode` (each text once), then ComfyUI's operations
/// over `[tokens, dim]` float32 states.
pub fn evaluate(
    expr: &TextExpr,
    cache: &mut HashMap<String, Encoding>,
    encode: &mut dyn FnMut(&str) -> Result<Encoding, EngineError>,
) -> Result<Encoding, EngineError> {
    Ok(match expr {
        TextExpr::Text(text) => match cache.get(text) {
            Some(e) => Arc::clone(e),
            None => {
                let e = encode(text)?;
                cache.insert(text.clone(), Arc::clone(&e));
                e
            }
        },
        TextExpr::Concat { to, from } => {
            let mut out = evaluate(to, cache, encode)?.to_vec();
            out.extend_from_slice(&evaluate(from, cache, encode)?);
            Arc::new(out)
        }
        TextExpr::Average { to, from, to_strength } => {
            Arc::new(average(&evaluate(to, cache, encode)?, &evaluate(from, cache, encode)?, *to_strength))
        }
    })
}

/// `ConditioningAverage` over `to`'s tokens: `to·s + from·(1 − s)`, `from` cut to `to`'s length or
/// filled with zeros (each factor a Python float rounded to float32, `1 − s` taken in float64
/// first, as torch multiplies a float32 tensor by a Python number).
fn average(to: &[f32], from: &[f32], s: f64) -> Vec<f32> {
    let (keep, rest) = (s as f32, (1.0 - s) as f32);
    to.iter().enumerate().map(|(i, &t)| t * keep + from.get(i).copied().unwrap_or(0.0) * rest).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditioning::{Area, ConditioningEntry};

    fn text(t: &str) -> TextExpr {
        TextExpr::Text(t.into())
    }

    fn entry(t: &str, area: Option<Area>, strength: f32) -> ConditioningEntry {
        ConditioningEntry { encoding: text(t), strength, area }
    }

    fn described(side: &[Entry<'_>]) -> Vec<(String, Option<[usize; 4]>, f32)> {
        side.iter().map(|e| (e.expr.texts().join("+"), e.region.area, e.region.strength)).collect()
    }

    #[test]
    fn an_area_gets_an_opposite_entry_from_the_smallest_one_around_it() {
        let left = Area { x: 0, y: 0, width: 64, height: 128 };
        let big = Area { x: 0, y: 0, width: 128, height: 128 };
        let conditioning = Conditioning {
            positive: vec![entry("whole", None, 1.0), entry("left", Some(left), 0.5)],
            negative: vec![entry("neg whole", None, 1.0), entry("neg big", Some(big), 1.0)],
        };
        let prompts = [text("caption"), text("unused")];
        let lists = lists(Some(&conditioning), &prompts);
        // The left area sits inside the negative's big area: its copy takes "neg big", with the
        // positive entry's area and strength. The big negative area then needs a positive one:
        // no positive area holds it, so the first whole-picture entry's text.
        assert_eq!(
            described(&lists.negative),
            vec![
                ("neg whole".into(), None, 1.0),
                ("neg big".into(), Some([16, 16, 0, 0]), 1.0),
                ("neg big".into(), Some([16, 8, 0, 0]), 0.5)
            ]
        );
        assert_eq!(
            described(&lists.positive),
            vec![("whole".into(), None, 1.0), ("left".into(), Some([16, 8, 0, 0]), 0.5), ("whole".into(), Some([16, 16, 0, 0]), 1.0)]
        );
    }

    #[test]
    fn combined_prompts_are_whole_picture_entries() {
        let prompts = [text("a"), text("b"), text("neg")];
        let lists = lists(None, &prompts);
        assert_eq!(described(&lists.positive), vec![("a".into(), None, 1.0), ("b".into(), None, 1.0)]);
        assert_eq!(described(&lists.negative), vec![("neg".into(), None, 1.0)]);
    }

    #[test]
    fn concat_and_average_follow_comfyui() {
        let mut calls = Vec::new();
        let mut encode = |t: &str| -> Result<Encoding, EngineError> {
            calls.push(t.to_string());
            // Two tokens of dim 2 for "a", four for "b".
            Ok(Arc::new(if t == "a" { vec![1.0, 2.0, 3.0, 4.0] } else { vec![10.0; 8] }))
        };
        let mut cache = HashMap::new();
        let concat = TextExpr::Concat { to: Box::new(text("a")), from: Box::new(text("b")) };
        assert_eq!(evaluate(&concat, &mut cache, &mut encode).unwrap().len(), 12);
        // from longer than to: cut to to's two tokens.
        let avg = TextExpr::Average { to: Box::new(text("a")), from: Box::new(text("b")), to_strength: 0.25 };
        assert_eq!(*evaluate(&avg, &mut cache, &mut encode).unwrap(), vec![7.75, 8.0, 8.25, 8.5]);
        // from shorter than to: filled with zeros.
        let avg = TextExpr::Average { to: Box::new(text("b")), from: Box::new(text("a")), to_strength: 0.5 };
        assert_eq!(*evaluate(&avg, &mut cache, &mut encode).unwrap(), vec![5.5, 6.0, 6.5, 7.0, 5.0, 5.0, 5.0, 5.0]);
        assert_eq!(calls, vec!["a", "b"], "each prompt encoded once");
    }
}
