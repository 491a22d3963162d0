//! Decision support, run on this machine: the symptoms never leave it (no node endpoint
//! receives them). A suggestion for a clinician to confirm, never a diagnosis or an order.

use crate::{Error, Result};
pub use ehrchain_ml::{Model, NOTICE, Prediction, data::Knowledge};

/// What decision support suggests for a report's symptoms.
pub type Suggestion = Prediction;

/// Ranks the `top` diseases for `symptoms` with `model` (the built-in one if `None`).
pub fn predict(model: Option<&Model>, symptoms: &[String], top: usize) -> Result<Prediction> {
    model
        .unwrap_or_else(|| Model::builtin())
        .predict(symptoms, top)
        .map_err(|e| Error::Invalid(e.to_string()))
}

/// A model file from `ehrchain ml train`.
pub fn load_model(bytes: &[u8]) -> Result<Model> {
    Model::from_bytes(bytes).map_err(|e| Error::Invalid(e.to_string()))
}

/// The built-in model's suggestion for the symptoms it knows, and the ones it does not.
pub fn suggest(symptoms: &[String], top: usize) -> (Option<Prediction>, Vec<String>) {
    let model = Model::builtin();
    let (known, unknown): (Vec<String>, Vec<String>) = symptoms
        .iter()
        .cloned()
        .partition(|x| model.symptoms.contains(&ehrchain_ml::normalise(x)));
    let p = (!known.is_empty())
        .then(|| model.predict(&known, top).ok())
        .flatten();
    (p, unknown)
}

/// The symptoms the built-in knowledge table names.
pub fn known_symptoms() -> Vec<String> {
    Knowledge::embedded()
        .symptoms
        .iter()
        .map(|s| s.id.clone())
        .collect()
}
