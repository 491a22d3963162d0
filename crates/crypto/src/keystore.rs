//! Keystore files: a signing key encrypted under a passphrase (Argon2id + XChaCha20-Poly1305).

use crate::Keypair;
use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};
use ehrchain_types::{AccountId, PublicKey};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Argon2id cost used for new keystores: 19 MiB, 2 passes, 1 lane (the OWASP baseline).
pub const DEFAULT_KDF: KdfParams = KdfParams {
    m_cost_kib: 19 * 1024,
    t_cost: 2,
    p_cost: 1,
};

/// Why a keystore could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("no key named {name:?} in {dir} (see `ehrchain key list`)")]
    NotFound { name: String, dir: PathBuf },
    #[error("a key named {0:?} already exists")]
    Exists(String),
    #[error("invalid key name {0:?}: use 1-64 letters, digits, '-' or '_'")]
    BadName(String),
    #[error("wrong passphrase for key {0:?}")]
    WrongPassphrase(String),
    #[error("keystore file {path} is malformed: {detail}")]
    Malformed { path: PathBuf, detail: String },
    #[error("keystore io on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Argon2id cost parameters, stored in the file so they can be raised later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

/// The on-disk format (JSON).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeystoreFile {
    pub version: u32,
    pub account: AccountId,
    pub public_key: PublicKey,
    pub kdf: String,
    pub kdf_params: KdfParams,
    pub salt: String,
    pub cipher: String,
    pub nonce: String,
    pub ciphertext: String,
}

fn derive_key(passphrase: &[u8], salt: &[u8], p: KdfParams) -> Zeroizing<[u8; 32]> {
    let params = Params::new(p.m_cost_kib, p.t_cost, p.p_cost, Some(32))
        .expect("keystore KDF parameters are in range");
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase, salt, key.as_mut())
        .expect("argon2 output length is valid");
    key
}

fn aad(account: &AccountId, pk: &PublicKey) -> Vec<u8> {
    let mut v = b"ehrchain/keystore/v1".to_vec();
    v.extend_from_slice(&account.0);
    v.extend_from_slice(&pk.0);
    v
}

impl KeystoreFile {
    /// Encrypts a key under a passphrase.
    pub fn seal(key: &Keypair, passphrase: &str, kdf: KdfParams) -> KeystoreFile {
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut salt).expect("OS random source");
        getrandom::fill(&mut nonce).expect("OS random source");
        let k = derive_key(passphrase.as_bytes(), &salt, kdf);
        let cipher = XChaCha20Poly1305::new(&chacha20poly1305::Key::from(*k));
        let seed = key.seed();
        let ct = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: seed.as_ref(),
                    aad: &aad(&key.account(), &key.public_key()),
                },
            )
            .expect("encryption of 32 bytes cannot fail");
        KeystoreFile {
            version: 1,
            account: key.account(),
            public_key: key.public_key(),
            kdf: "argon2id".into(),
            kdf_params: kdf,
            salt: hex::encode(salt),
            cipher: "xchacha20poly1305".into(),
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ct),
        }
    }

    /// Decrypts the key; `name` is only used in the error message.
    pub fn open(&self, name: &str, passphrase: &str) -> Result<Keypair, KeystoreError> {
        let malformed = |detail: &str| KeystoreError::Malformed {
            path: PathBuf::from(name),
            detail: detail.to_string(),
        };
        if self.version != 1 || self.kdf != "argon2id" || self.cipher != "xchacha20poly1305" {
            return Err(malformed("unsupported version, kdf or cipher"));
        }
        let salt = hex::decode(&self.salt).map_err(|_| malformed("salt is not hex"))?;
        let nonce: [u8; 24] = hex::decode(&self.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| malformed("nonce is not 24 hex bytes"))?;
        let ct = hex::decode(&self.ciphertext).map_err(|_| malformed("ciphertext is not hex"))?;
        let p = self.kdf_params;
        if p.m_cost_kib > 4 * 1024 * 1024 || p.t_cost > 64 || p.p_cost > 16 || salt.len() < 8 {
            return Err(malformed("KDF parameters out of the accepted range"));
        }
        let k = derive_key(passphrase.as_bytes(), &salt, p);
        let cipher = XChaCha20Poly1305::new(&chacha20poly1305::Key::from(*k));
        let seed = Zeroizing::new(
            cipher
                .decrypt(
                    &XNonce::from(nonce),
                    Payload {
                        msg: &ct,
                        aad: &aad(&self.account, &self.public_key),
                    },
                )
                .map_err(|_| KeystoreError::WrongPassphrase(name.to_string()))?,
        );
        let seed: [u8; 32] = seed
            .as_slice()
            .try_into()
            .map_err(|_| malformed("secret has the wrong length"))?;
        let key = Keypair::from_seed(&seed);
        if key.public_key() != self.public_key {
            return Err(malformed("secret does not match the public key"));
        }
        Ok(key)
    }
}

/// A directory of named keystore files (`NAME.json`).
#[derive(Clone, Debug)]
pub struct Keystore {
    dir: PathBuf,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Keystore {
    pub fn new(dir: impl Into<PathBuf>) -> Keystore {
        Keystore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> Result<PathBuf, KeystoreError> {
        if !valid_name(name) {
            return Err(KeystoreError::BadName(name.to_string()));
        }
        Ok(self.dir.join(format!("{name}.json")))
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeystoreError + '_ {
        move |source| KeystoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Writes a new keystore; never overwrites an existing one.
    pub fn create(
        &self,
        name: &str,
        key: &Keypair,
        passphrase: &str,
        kdf: KdfParams,
    ) -> Result<KeystoreFile, KeystoreError> {
        let path = self.path(name)?;
        std::fs::create_dir_all(&self.dir).map_err(Self::io(&self.dir))?;
        let file = KeystoreFile::seal(key, passphrase, kdf);
        let json = serde_json::to_vec_pretty(&file).expect("keystore serializes");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = match opts.open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(KeystoreError::Exists(name.to_string()));
            }
            Err(e) => return Err(Self::io(&path)(e)),
        };
        use std::io::Write;
        f.write_all(&json).map_err(Self::io(&path))?;
        f.sync_all().map_err(Self::io(&path))?;
        Ok(file)
    }

    /// Reads a keystore file without decrypting it.
    pub fn read(&self, name: &str) -> Result<KeystoreFile, KeystoreError> {
        let path = self.path(name)?;
        let bytes = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                KeystoreError::NotFound {
                    name: name.to_string(),
                    dir: self.dir.clone(),
                }
            } else {
                Self::io(&path)(e)
            }
        })?;
        serde_json::from_slice(&bytes).map_err(|e| KeystoreError::Malformed {
            path,
            detail: e.to_string(),
        })
    }

    /// Reads and decrypts a key.
    pub fn unlock(&self, name: &str, passphrase: &str) -> Result<Keypair, KeystoreError> {
        self.read(name)?.open(name, passphrase)
    }

    /// Lists the names and accounts of all keystores, sorted by name.
    pub fn list(&self) -> Result<Vec<(String, KeystoreFile)>, KeystoreError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Self::io(&self.dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(Self::io(&self.dir))?;
            let fname = entry.file_name().to_string_lossy().to_string();
            if let Some(name) = fname.strip_suffix(".json")
                && valid_name(name)
            {
                out.push((name.to_string(), self.read(name)?));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };

    #[test]
    fn round_trip_and_wrong_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::new(dir.path());
        let key = Keypair::generate();
        ks.create("alice", &key, "correct horse", FAST).unwrap();
        let back = ks.unlock("alice", "correct horse").unwrap();
        assert_eq!(back.public_key(), key.public_key());
        assert!(matches!(
            ks.unlock("alice", "wrong"),
            Err(KeystoreError::WrongPassphrase(_))
        ));
        assert!(matches!(
            ks.create("alice", &key, "x", FAST),
            Err(KeystoreError::Exists(_))
        ));
        assert!(matches!(
            ks.unlock("bob", "x"),
            Err(KeystoreError::NotFound { .. })
        ));
        assert!(matches!(
            ks.unlock("../etc", "x"),
            Err(KeystoreError::BadName(_))
        ));
        let names: Vec<_> = ks.list().unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["alice"]);
        let raw = std::fs::read_to_string(dir.path().join("alice.json")).unwrap();
        assert!(
            !raw.contains(&hex::encode(key.seed().as_ref())),
            "secret stored in clear"
        );
    }

    #[test]
    fn swapped_public_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::new(dir.path());
        let key = Keypair::generate();
        let mut file = ks.create("a", &key, "pw", FAST).unwrap();
        file.public_key = Keypair::generate().public_key();
        assert!(file.open("a", "pw").is_err());
    }
}
