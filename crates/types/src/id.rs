//! Identifiers: hashes, public keys, account ids and roles.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::{fmt, str::FromStr};

/// Why an identifier could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("expected {expected} hex characters{prefix_hint}, got {got:?}")]
    BadHex {
        expected: usize,
        prefix_hint: &'static str,
        got: String,
    },
    #[error("{id} is {got}, not {expected}")]
    WrongKind {
        id: String,
        got: String,
        expected: String,
    },
    #[error("unknown role {0:?} (expected one of: {roles})", roles = Role::NAMES.join(", "))]
    UnknownRole(String),
}

pub(crate) fn parse_hex<const N: usize>(
    s: &str,
    prefix: &str,
    hint: &'static str,
) -> Result<[u8; N], IdError> {
    let body = s.strip_prefix(prefix).unwrap_or(s);
    let mut out = [0u8; N];
    hex::decode_to_slice(body, &mut out).map_err(|_| IdError::BadHex {
        expected: N * 2,
        prefix_hint: hint,
        got: s.chars().take(80).collect(),
    })?;
    Ok(out)
}

macro_rules! bytes_newtype {
    ($(#[$m:meta])* $name:ident, $n:expr, $prefix:expr, $hint:expr) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
        pub struct $name(pub [u8; $n]);

        impl $name {
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $n] {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, hex::encode(self.0))
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                $crate::id::parse_hex::<$n>(s.trim(), $prefix, $hint).map(Self)
            }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

pub(crate) use bytes_newtype;

bytes_newtype!(
    /// An ed25519 signature.
    Signature, 64, "", ""
);
bytes_newtype!(
    /// A SHA-256 digest (block ids, transaction ids, roots).
    Hash, 32, "", ""
);
bytes_newtype!(
    /// An ed25519 public key, as carried in transactions.
    PublicKey, 32, "", ""
);
bytes_newtype!(
    /// A ledger account: the first 20 bytes of a domain-tagged hash of its ed25519 public key.
    /// Written as `ehr` followed by 40 hex characters.
    AccountId, 20, "ehr", " after the \"ehr\" prefix"
);

impl Hash {
    /// The all-zero hash, used as the parent of the genesis block.
    pub const ZERO: Hash = Hash([0; 32]);
}

impl AccountId {
    /// Derives the account id of a public key.
    pub fn from_public_key(pk: &PublicKey) -> AccountId {
        let h = crate::domain::tagged_hash(crate::domain::ACCOUNT_ID, &[&pk.0]);
        let mut out = [0u8; 20];
        out.copy_from_slice(&h.0[..20]);
        AccountId(out)
    }
}

/// What an account may do. Professional roles need an approval by the consortium admin before
/// any action that needs the role.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub enum Role {
    Patient,
    Doctor,
    Pharmacist,
    Organisation,
    Insurer,
    Regulator,
    Researcher,
    Guardian,
    /// The consortium admin; exists only from genesis, never by registration.
    Admin,
    /// A consortium auditor (an inspector, an external audit firm): once the admin approves
    /// the account (or the genesis names it), it reads every block and transaction body
    /// through the API. It reads no record.
    Auditor,
}

impl Role {
    /// Every role's name, as written in the CLI and the API.
    pub const NAMES: [&'static str; 10] = [
        "patient",
        "doctor",
        "pharmacist",
        "organisation",
        "insurer",
        "regulator",
        "researcher",
        "guardian",
        "admin",
        "auditor",
    ];
    const ALL: [Role; 10] = [
        Role::Patient,
        Role::Doctor,
        Role::Pharmacist,
        Role::Organisation,
        Role::Insurer,
        Role::Regulator,
        Role::Researcher,
        Role::Guardian,
        Role::Admin,
        Role::Auditor,
    ];

    /// The role's name.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// Whether an authority must approve the account before it may act in this role.
    /// Patients and guardians act for themselves; everyone else is a professional or an
    /// institution whose credentials the consortium checks.
    pub fn needs_approval(self) -> bool {
        !matches!(self, Role::Patient | Role::Guardian | Role::Admin)
    }

    /// Whether registering in this role requires naming an organisation.
    pub fn needs_organisation(self) -> bool {
        matches!(self, Role::Doctor | Role::Pharmacist)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let lower = s.trim().to_ascii_lowercase();
        let lower = match lower.as_str() {
            "organization" => "organisation",
            other => other,
        };
        Self::NAMES
            .iter()
            .position(|n| *n == lower)
            .map(|i| Self::ALL[i])
            .ok_or_else(|| IdError::UnknownRole(s.to_string()))
    }
}

impl Serialize for Role {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
