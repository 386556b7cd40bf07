//! The form's settings kept across reloads: every training and data field (model and data URLs,
//! task, adapter, `r`, `lora_alpha`, targets, precision, epochs, steps, batch, max length, lr,
//! row limits, sweep ranks, own-data split and task type) is saved in `localStorage` when it
//! changes and put back when the page opens. Files picked from disk are not kept (browsers do
//! not allow it); URLs fetched are, with their bytes in the browser's store ([`super::cache`]).

use std::collections::BTreeMap;

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

use super::dom::{el, input, set_input};

const STORAGE_KEY: &str = "lorabert.form.v1";

/// The fields kept, by element id.
pub const FIELDS: [&str; 21] = [
    "model-url",
    "data-url",
    "task",
    "adapter",
    "rank",
    "alpha",
    "targets",
    "precision",
    "epochs",
    "max-steps",
    "batch",
    "max-len",
    "lr",
    "eval-steps",
    "patience",
    "loraplus",
    "max-train",
    "max-dev",
    "sweep-ranks",
    "own-split",
    "own-type",
];

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

fn saved_map() -> BTreeMap<String, String> {
    storage()
        .and_then(|s| s.get_item(STORAGE_KEY).ok().flatten())
        .and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default()
}

/// Whether the user's saved settings hold field `id` (the page then keeps their choice instead
/// of a default it would pick, such as f16 where the device has it).
pub fn saved(id: &str) -> bool {
    saved_map().contains_key(id)
}

/// Saves the current value of every kept field.
pub fn save() {
    let map: BTreeMap<&str, String> = FIELDS.iter().map(|id| (*id, input(id))).collect();
    if let (Some(s), Ok(json)) = (storage(), serde_json::to_string(&map)) {
        let _ = s.set_item(STORAGE_KEY, &json);
    }
}

/// Puts the saved values back into the form.
pub fn restore() {
    for (id, v) in saved_map() {
        if FIELDS.contains(&id.as_str()) {
            set_input(&id, &v);
        }
    }
}

/// Saves the settings whenever a kept field changes.
pub fn wire() {
    for id in FIELDS {
        let Some(e) = el(id) else { continue };
        for ev in ["change", "input"] {
            let c = Closure::<dyn Fn()>::new(save);
            let _ = e.add_event_listener_with_callback(ev, c.as_ref().unchecked_ref());
            c.forget();
        }
    }
}
