//! QR codes: an account's id and profile fingerprint, and checking a scanned one against the
//! ledger.

use crate::{Node, Result, invalid};
use ehrchain_api::{AccountView, StatusView};
use ehrchain_types::{AccountId, Role};
use serde::Serialize;

/// The QR payload of an account: chain, account and profile fingerprint.
pub fn payload(chain_id: &str, account: &AccountView) -> Result<String> {
    let Some(fp) = account.profile_fingerprint.clone() else {
        invalid!(
            "account {} has no profile on the ledger (register with a profile first)",
            account.id
        );
    };
    Ok(format!("ehrchain:1:{chain_id}:{}:{fp}", account.id))
}

/// The QR payload of `id` as the node's ledger has it.
pub fn payload_of(node: &Node, id: &AccountId) -> Result<String> {
    let status: StatusView = node.get("/api/v1/status")?;
    let a: AccountView = node.get(&format!("/api/v1/accounts/{id}"))?;
    payload(&status.chain_id, &a)
}

/// What a scanned QR payload says, checked against the ledger.
#[derive(Serialize, Debug, Clone)]
pub struct QrCheck {
    pub account: AccountId,
    pub role: Option<Role>,
    pub status: String,
    pub profile_matches: bool,
}

/// Checks a scanned payload against the ledger: right chain, known account, and the
/// profile fingerprint the ledger has now (a stale or forged code fails).
pub fn check(node: &Node, payload: &str) -> Result<QrCheck> {
    let parts: Vec<&str> = payload.trim().split(':').collect();
    let [tag, version, chain, account, fp] = parts.as_slice() else {
        invalid!("not an ehrchain QR payload (expected ehrchain:1:CHAIN:ACCOUNT:FINGERPRINT)");
    };
    if *tag != "ehrchain" || *version != "1" {
        invalid!("not an ehrchain v1 QR payload");
    }
    let status: StatusView = node.get("/api/v1/status")?;
    if *chain != status.chain_id {
        invalid!(
            "the QR code is for chain {chain:?}; this node serves {:?}",
            status.chain_id
        );
    }
    let id: AccountId = match account.parse() {
        Ok(id) => id,
        Err(e) => invalid!("{e}"),
    };
    let a: AccountView = node.get(&format!("/api/v1/accounts/{id}"))?;
    if !a.exists {
        invalid!("account {id} is not on the ledger");
    }
    if a.profile_fingerprint.as_deref() != Some(*fp) {
        invalid!(
            "the QR code's profile fingerprint does not match the ledger's for {id} (stale or forged)"
        );
    }
    Ok(QrCheck {
        account: id,
        role: a.account.role,
        status: a.account.status.name().to_string(),
        profile_matches: true,
    })
}

/// Renders a payload as an SVG QR code.
pub fn svg(payload: &str) -> Result<String> {
    let code = match qrcode::QrCode::new(payload.as_bytes()) {
        Ok(c) => c,
        Err(e) => invalid!("QR code: {e}"),
    };
    Ok(code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(256, 256)
        .build())
}
