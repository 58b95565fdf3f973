//! The Generate page's LoRA and VAE pickers: the VAE that replaces the model's own, and the LoRAs
//! applied, each with its weight (a slider and an exact number). The lists come from the server's
//! `loras/` and `vae/` folders (and extra models dirs).

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::generate::{field_error, FormValues};
use super::rpc::list_weight_files;
use crate::api::networks::{LoraRef, WeightsKind, MAX_LORAS, MAX_LORA_WEIGHT};
use crate::api::FieldError;

/// One chosen LoRA as the form holds it: the weight as typed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoraField {
    pub name: String,
    pub weight: String,
    /// Kept from settings that had one (set by the API or a prompt tag); the form has no field.
    pub text_encoder_weight: Option<f32>,
}

impl Default for LoraField {
    fn default() -> Self {
        Self { name: String::new(), weight: "1".into(), text_encoder_weight: None }
    }
}

impl LoraField {
    pub fn from_ref(lora: &LoraRef) -> Self {
        Self { name: lora.name.clone(), weight: lora.weight.to_string(), text_encoder_weight: lora.text_encoder_weight }
    }

    /// The request's entry, or the message when the weight is not a number.
    pub fn to_ref(&self) -> Result<LoraRef, FieldError> {
        match self.weight.trim().parse::<f32>() {
            Ok(weight) => Ok(LoraRef { name: self.name.clone(), weight, text_encoder_weight: self.text_encoder_weight }),
            Err(_) => Err(FieldError::new("loras", format!("LoRA {} weight must be a number, got {:?}", self.name, self.weight))),
        }
    }
}

/// A file's name as LoRA lists show it: without `.safetensors`.
fn lora_name(file: &str) -> String {
    file.strip_suffix(".safetensors").unwrap_or(file).to_string()
}

#[component]
pub fn NetworkFields(form: RwSignal<FormValues>, errors: RwSignal<Vec<FieldError>>) -> impl IntoView {
    let loras = Resource::new(|| (), |_| list_weight_files(WeightsKind::Lora));
    let vaes = Resource::new(|| (), |_| list_weight_files(WeightsKind::Vae));
    let weight_of = move |i: usize| move || form.with(|f| f.loras.get(i).map(|l| l.weight.clone()).unwrap_or_default());
    let set_weight = move |i: usize| {
        move |ev: leptos::ev::Event| {
            let value = event_target_value(&ev);
            form.update(|f| {
                if let Some(l) = f.loras.get_mut(i) {
                    l.weight = value;
                }
            })
        }
    };
    // One weight control of LoRA `i`: the slider (the useful range) or the number (the whole limit).
    let weight_input = move |i: usize, kind: &'static str, (min, max): (String, String), label: String| {
        view! {
            <input type=kind class=format!("lora-{kind}") min=min max=max step="0.05" aria-label=label prop:value=weight_of(i) on:input=set_weight(i) />
        }
    };
    let max = MAX_LORA_WEIGHT.to_string();
    view! {
        <fieldset class="networks">
            <legend>"LoRAs and VAE"</legend>
            <ul class="lora-list">
                <For
                    each=move || form.with(|f| f.loras.iter().enumerate().map(|(i, l)| (i, l.name.clone())).collect::<Vec<_>>())
                    key=|entry| entry.clone()
                    children=move |(i, name)| {
                        let max = max.clone();
                        view! {
                            <li class="lora" data-lora=name.clone()>
                                <span class="lora-name">{name.clone()}</span>
                                {weight_input(i, "range", ("-2".into(), "2".into()), format!("{name} weight slider"))}
                                {weight_input(i, "number", (format!("-{max}"), max), format!("{name} weight"))}
                                <button
                                    type="button"
                                    class="remove-lora"
                                    aria-label=format!("Remove {name}")
                                    on:click=move |_| form.update(|f| {
                                        if i < f.loras.len() {
                                            f.loras.remove(i);
                                        }
                                    })
                                >
                                    "×"
                                </button>
                            </li>
                        }
                    }
                />
            </ul>
            <label for="add-lora">"Add a LoRA"</label>
            <select
                id="add-lora"
                // Back to "Choose…" whenever the form changes (after each choice).
                prop:value=move || form.with(|_| String::new())
                prop:disabled=move || form.with(|f| f.loras.len() >= MAX_LORAS)
                on:change=move |ev| {
                    let name = event_target_value(&ev);
                    if !name.is_empty() {
                        form.update(|f| f.loras.push(LoraField { name, ..LoraField::default() }));
                    }
                }
            >
                <option value="">"Choose…"</option>
                <Suspense>
                    {move || Suspend::new(async move {
                        loras
                            .await
                            .unwrap_or_default()
                            .into_iter()
                            .map(|l| {
                                let name = lora_name(&l.name);
                                view! { <option value=name.clone()>{name.clone()}</option> }
                            })
                            .collect_view()
                    })}
                </Suspense>
            </select>
            {field_error(errors, "loras")}
            <label for="vae">"VAE"</label>
            <select
                id="vae"
                prop:value=move || form.with(|f| f.vae.clone())
                on:change=move |ev| form.update(|f| f.vae = event_target_value(&ev))
            >
                <option value="">"The model's own"</option>
                <Suspense>
                    {move || Suspend::new(async move {
                        vaes.await
                            .unwrap_or_default()
                            .into_iter()
                            .map(|v| view! { <option value=v.name.clone()>{v.name.clone()}</option> })
                            .collect_view()
                    })}
                </Suspense>
            </select>
            {field_error(errors, "vae")}
        </fieldset>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_round_trip_and_bad_weights_are_field_errors() {
        let lora = LoraRef { name: "style/ink".into(), weight: 0.8, text_encoder_weight: Some(0.5) };
        assert_eq!(LoraField::from_ref(&lora).to_ref().unwrap(), lora);
        let bad = LoraField { name: "ink".into(), weight: "lots".into(), text_encoder_weight: None };
        assert_eq!(bad.to_ref().unwrap_err().field, "loras");
        assert_eq!(lora_name("style/ink.safetensors"), "style/ink");
    }
}
