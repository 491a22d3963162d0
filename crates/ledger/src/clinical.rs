//! The state of the clinical workflow: appointment slots, symptom reports, prescriptions,
//! invoices, insurance policies and claims. The item types are public values of
//! `ehrchain_types::items`, re-exported here.

pub use ehrchain_types::items::*;
