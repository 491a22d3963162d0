//! The demo world of `ehrchain dev --demo` (being written).

use serde::{Deserialize, Serialize};
use std::path::Path;

/// A demo account to sign in as.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct DemoUser {
    /// The keystore name (the portal's "Account").
    pub name: String,
    pub role: String,
    /// What this account has waiting in the portal.
    pub does: String,
}

/// Seeds the demo world through the node at `node` with keystores in `keys` (passphrase
/// `dev`, like the dev chain's).
pub fn seed(_node: &str, _keys: &Path) -> anyhow::Result<Vec<DemoUser>> {
    anyhow::bail!("the demo world is not written yet")
}
