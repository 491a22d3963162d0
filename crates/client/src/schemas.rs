//! The plaintext content schemas: what clients put inside encrypted records. The node and the
//! ledger never see these; they are a contract between clients.

use crate::{Error, Result, invalid};
use ehrchain_types::{AccountId, Role};
use serde::{Deserialize, Serialize};

/// Metadata encrypted with each record, padded to one length (`envelope::seal_meta`).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    pub title: Option<String>,
    pub file_name: Option<String>,
    /// The true content size: the ledger's `size` is that of the padded ciphertext, which
    /// shows only the content's Padmé bucket.
    pub plaintext_size: u64,
}

impl Meta {
    /// The bytes sealed into the record's `meta`.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("metadata serializes")
    }
}

/// The fields a profile of `role` must have (the papers' registration forms).
pub fn profile_fields(role: Role) -> &'static [&'static str] {
    match role {
        Role::Patient => &["name", "date_of_birth", "address", "mobile", "insurance"],
        Role::Doctor => &[
            "name",
            "date_of_birth",
            "address",
            "email",
            "phone",
            "licence",
            "organisation",
        ],
        _ => &["name"],
    }
}

/// Checks a profile (JSON text) has the fields `role` needs; returns its canonical bytes,
/// which become the encrypted profile record.
pub fn check_profile(role: Role, text: &str) -> Result<Vec<u8>> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::Invalid(format!("the profile is not valid JSON ({e})")))?;
    let Some(obj) = v.as_object() else {
        invalid!("the profile must be a JSON object");
    };
    let required = profile_fields(role);
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|f| {
            obj.get(*f)
                .is_none_or(|v| v.is_null() || v.as_str() == Some(""))
        })
        .collect();
    if !missing.is_empty() {
        invalid!(
            "the {role} profile is missing: {} (a {role} profile has {})",
            missing.join(", "),
            required.join(", ")
        );
    }
    Ok(serde_json::to_vec_pretty(&v).expect("a JSON value serializes"))
}

/// The content of a symptom report record.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SymptomReport {
    pub symptoms: Vec<String>,
    pub note: Option<String>,
    pub reported_ms: u64,
}

/// The content of a prescription record.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RxContent {
    pub drug: String,
    pub dose: String,
    pub days: u32,
    pub quantity: u32,
    pub note: Option<String>,
    pub prescriber: AccountId,
    pub written_ms: u64,
}

/// Normalises a comma-separated symptom list: trimmed, lower case, spaces as underscores.
pub fn parse_symptoms(list: &str) -> Vec<String> {
    list.split(',')
        .map(|x| x.trim().to_lowercase().replace(' ', "_"))
        .filter(|x| !x.is_empty())
        .collect()
}
