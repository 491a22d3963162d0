//! The client side of records, consent, audit and QR codes. Everything is encrypted and
//! decrypted here, on the user's machine: the node only sees ciphertext, sealed keys and
//! signed requests.

use crate::client::Client;
use anyhow::{Context as _, anyhow, bail};
use ehrchain_crypto::{
    CategoryKey, DataKey, Keypair,
    envelope::{self, Encrypted},
};
use ehrchain_ledger::{AccessRequest, Record, RecordStatus};
use ehrchain_node::{
    api::{AccountView, StatusView, SubmitRequest, SubmitResponse, TxView},
    blobs::cid_string,
    records_api::{EventView, GrantView, KeysView, RecordView},
};
use ehrchain_types::{
    AccountId, Category, Decision, EncryptionKey, Grantee, Hash, HexBytes, KeyWrap, RecordDraft,
    RecordId, RecordKey, RequestId, Role, Rotation, Transaction, TxOutcome, TxPayload,
};
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    io::{BufReader, BufWriter},
    path::Path,
    time::Duration,
};

use ehrchain_node::api::now_ms;

/// An account that receives sealed keys: id, encryption key, and (for organisation members)
/// role, which limits the categories it may hold.
type Recipient = (AccountId, EncryptionKey, Option<Role>);

/// The recipients whose role may hold `category`.
fn allowed(recipients: &[Recipient], category: Category) -> Vec<Recipient> {
    recipients
        .iter()
        .filter(|(_, _, role)| {
            role.is_none_or(|r| ehrchain_ledger::access::role_allows(r, category, false).is_ok())
        })
        .cloned()
        .collect()
}

/// An unlocked key talking to a node.
pub struct Session {
    pub client: Client,
    pub key: Keypair,
    pub me: AccountId,
    pub chain_id: String,
}

impl Session {
    pub fn new(client: Client, key: Keypair) -> anyhow::Result<Session> {
        let status: StatusView = client.get("/api/v1/status")?;
        Ok(Session {
            me: key.account(),
            client,
            key,
            chain_id: status.chain_id,
        })
    }

    /// Waits for a transaction to be finalized, asking as this account (a party of it).
    pub fn wait_final(&self, id: &Hash) -> anyhow::Result<TxView> {
        self.client
            .wait_final(id, Duration::from_secs(60), &|path| self.auth("GET", path))
    }

    pub fn auth(&self, method: &str, path: &str) -> String {
        self.key
            .sign_request(&self.chain_id, method, path, now_ms())
            .header_value()
    }

    /// A signed GET.
    pub fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.client.get_signed(path, &self.auth("GET", path))
    }

    pub fn account(&self, id: &AccountId) -> anyhow::Result<AccountView> {
        self.client.get(&format!("/api/v1/accounts/{id}"))
    }

    pub fn encryption_key(&self, id: &AccountId) -> anyhow::Result<EncryptionKey> {
        let a = self.account(id)?;
        a.account.encryption_key.ok_or_else(|| {
            anyhow!("account {id} has no encryption key on the ledger (it must register with `ehrchain register` first)")
        })
    }

    /// Signs a payload with `nonce` and submits it; returns the transaction id.
    pub fn post(&self, payload: TxPayload, nonce: u64) -> anyhow::Result<Hash> {
        let stx = self.key.sign_tx(Transaction {
            chain_id: self.chain_id.clone(),
            signer: self.key.public_key(),
            nonce,
            payload,
        });
        let resp: SubmitResponse = self.client.post(
            "/api/v1/transactions",
            &SubmitRequest {
                tx: hex::encode(ehrchain_types::encode(&stx)),
            },
        )?;
        Ok(resp.id)
    }

    /// The nonce this account's next new transaction should carry.
    pub fn next_nonce(&self) -> anyhow::Result<u64> {
        Ok(self.account(&self.me)?.next_nonce)
    }

    /// Signs and submits payloads with consecutive nonces, waits for all to be finalized and
    /// fails on the first rejected one.
    pub fn submit(&self, payloads: Vec<TxPayload>) -> anyhow::Result<Vec<TxView>> {
        let next = self.next_nonce()?;
        let ids = payloads
            .into_iter()
            .enumerate()
            .map(|(i, p)| self.post(p, next + i as u64))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut out = Vec::new();
        for id in ids {
            let t = self.wait_final(&id)?;
            if let Some(TxOutcome::Rejected { reason }) = t.receipt.as_ref().map(|r| &r.outcome) {
                bail!("transaction rejected: {reason}");
            }
            out.push(t);
        }
        Ok(out)
    }

    /// This account's own sealed category keys, by category.
    fn own_keys(&self) -> anyhow::Result<BTreeMap<Category, Vec<ehrchain_types::SealedKey>>> {
        let k: KeysView = self.get(&format!("/api/v1/keys?patient={}", self.me))?;
        Ok(k.own.into_iter().map(|o| (o.category, o.epochs)).collect())
    }

    /// The sender's current key of `category`, creating epoch 0 first (with a rotation
    /// transaction) when there is none yet. Returns (epoch, key).
    pub(crate) fn current_category_key(
        &self,
        category: Category,
    ) -> anyhow::Result<(u32, CategoryKey)> {
        let own = self.own_keys()?;
        let enc = self.key.encryption();
        match own.get(&category).filter(|e| !e.is_empty()) {
            Some(epochs) if self.expired_holder(category, epochs.len() as u32 - 1)? => {
                // Someone whose grant expired still holds the current key: new records go
                // under a new epoch they never receive.
                let ck = CategoryKey::generate();
                let epoch = epochs.len() as u32;
                let rotation = self.rotation(category, epoch, &ck, None)?;
                self.submit(vec![TxPayload::RotateKey { rotation }])?;
                Ok((epoch, ck))
            }
            Some(epochs) => {
                let epoch = epochs.len() as u32 - 1;
                let ck = enc
                    .open_category_key(&epochs[epoch as usize], &self.me, category, epoch)
                    .context("cannot open your own category key (wrong keystore?)")?;
                Ok((epoch, ck))
            }
            None => {
                let ck = CategoryKey::generate();
                let rotation = self.rotation(category, 0, &ck, None)?;
                self.submit(vec![TxPayload::RotateKey { rotation }])?;
                Ok((0, ck))
            }
        }
    }

    /// Whether an expired grant holds the `epoch` key of `category`.
    fn expired_holder(&self, category: Category, epoch: u32) -> anyhow::Result<bool> {
        let grants: Vec<GrantView> = self.get(&format!("/api/v1/grants?patient={}", self.me))?;
        Ok(grants.iter().any(|g| {
            g.expired
                && g.grant
                    .wraps
                    .iter()
                    .any(|w| w.category == category && w.epoch == epoch)
        }))
    }

    /// A rotation of `category` to `epoch` with key `ck`: sealed to this account and to every
    /// recipient of a grant in force covering the category (except `excluding`).
    fn rotation(
        &self,
        category: Category,
        epoch: u32,
        ck: &CategoryKey,
        excluding: Option<(&Grantee, &[Category])>,
    ) -> anyhow::Result<Rotation> {
        let own = envelope::seal_category_key(
            &self.key.encryption().public(),
            ck,
            &self.me,
            category,
            epoch,
        )?;
        let grants: Vec<GrantView> = self.get(&format!("/api/v1/grants?patient={}", self.me))?;
        let mut wraps = Vec::new();
        for g in grants.iter().filter(|g| !g.expired) {
            let mut cats = g.grant.categories.clone();
            if let Some((revoked_from, revoked)) = excluding
                && *revoked_from == g.grantee
            {
                cats.retain(|c| !revoked.contains(c));
            }
            if !cats.contains(&category) {
                continue;
            }
            for (r, key, _) in allowed(&self.recipients(&g.grantee)?, category) {
                wraps.push(KeyWrap {
                    category,
                    epoch,
                    recipient: r,
                    sealed: envelope::seal_category_key(&key, ck, &self.me, category, epoch)?,
                });
            }
        }
        Ok(Rotation {
            category,
            own,
            wraps,
        })
    }

    /// The accounts (and their encryption keys) a grant to `grantee` seals keys to.
    fn recipients(&self, grantee: &Grantee) -> anyhow::Result<Vec<Recipient>> {
        match grantee {
            Grantee::Account(a) => Ok(vec![(*a, self.encryption_key(a)?, None)]),
            Grantee::Organisation(o) => {
                // Every approved member, page by page (the node lists at most 1000 at once).
                let mut out = Vec::new();
                let mut after: Option<AccountId> = None;
                loop {
                    let mut path = "/api/v1/accounts?limit=1000&status=active".to_string();
                    if let Some(a) = after {
                        path += &format!("&after={a}");
                    }
                    let page: Vec<AccountView> = self.client.get(&path)?;
                    after = page.last().map(|a| a.id);
                    let n = page.len();
                    out.extend(
                        page.into_iter()
                            .filter(|a| {
                                a.account.organisation.as_deref() == Some(o.as_str())
                                    && ehrchain_ledger::access::is_member(&a.account)
                            })
                            .filter_map(|a| {
                                a.account.encryption_key.map(|k| (a.id, k, a.account.role))
                            }),
                    );
                    if n < 1000 {
                        break;
                    }
                }
                Ok(out)
            }
        }
    }

    /// Every epoch of this account's keys of `categories`, sealed to each recipient.
    fn grant_wraps(
        &self,
        categories: &[Category],
        recipients: &[Recipient],
    ) -> anyhow::Result<Vec<KeyWrap>> {
        let own = self.own_keys()?;
        let enc = self.key.encryption();
        let mut wraps = Vec::new();
        for &c in categories {
            for (epoch, sealed) in own.get(&c).into_iter().flatten().enumerate() {
                let epoch = epoch as u32;
                let ck = enc.open_category_key(sealed, &self.me, c, epoch)?;
                for (r, key, _) in allowed(recipients, c) {
                    wraps.push(KeyWrap {
                        category: c,
                        epoch,
                        recipient: r,
                        sealed: envelope::seal_category_key(&key, &ck, &self.me, c, epoch)?,
                    });
                }
            }
        }
        Ok(wraps)
    }

    /// The data key of a record this account may read.
    pub fn data_key(&self, r: &Record) -> anyhow::Result<DataKey> {
        let enc = self.key.encryption();
        match &r.key {
            RecordKey::Direct { wraps } => {
                let (_, sealed) = wraps
                    .iter()
                    .find(|(a, _)| *a == self.me)
                    .ok_or_else(|| anyhow!("record {} is not sealed to you", r.id))?;
                Ok(enc.open_data_key(sealed, &r.id)?)
            }
            RecordKey::Category { epoch, wrapped } => {
                let ck = if r.patient == self.me {
                    let own = self.own_keys()?;
                    let sealed = own
                        .get(&r.category)
                        .and_then(|e| e.get(*epoch as usize))
                        .ok_or_else(|| {
                            anyhow!("your {} key of epoch {epoch} is missing", r.category)
                        })?;
                    enc.open_category_key(sealed, &self.me, r.category, *epoch)?
                } else {
                    let k: KeysView = self.get(&format!("/api/v1/keys?patient={}", r.patient))?;
                    let w = k
                        .wraps
                        .iter()
                        .find(|w| w.category == r.category && w.epoch == *epoch)
                        .ok_or_else(|| {
                            anyhow!("no {} key of epoch {epoch} was shared with you", r.category)
                        })?;
                    enc.open_category_key(&w.sealed, &r.patient, r.category, *epoch)?
                };
                Ok(envelope::unwrap_data_key(&ck, &wrapped.0, &r.id)?)
            }
        }
    }
}

/// Parses `90s`, `30m`, `12h`, `7d` into a duration.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| anyhow!("invalid duration {s:?} (examples: 90s, 30m, 12h, 7d)"))?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => bail!("invalid duration unit in {s:?} (use s, m, h or d)"),
    };
    if secs == 0 {
        bail!("the duration must be positive");
    }
    Ok(Duration::from_secs(secs))
}

/// Metadata encrypted with the record, padded to one length (`envelope::seal_meta`).
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct Meta {
    pub title: Option<String>,
    pub file_name: Option<String>,
    /// The true content size: the ledger's `size` is that of the padded ciphertext, which
    /// shows only the content's Padmé bucket.
    pub plaintext_size: u64,
}

/// What `record add` produced.
#[derive(Serialize, Debug)]
pub struct Added {
    pub record: RecordId,
    pub cid: String,
    pub status: &'static str,
    pub size: u64,
    pub plaintext_size: u64,
    pub tx: Hash,
}

/// A record encrypted here and uploaded, ready to be anchored.
pub struct Sealed {
    pub id: RecordId,
    pub dk: DataKey,
    pub enc: Encrypted,
    /// The metadata, encrypted under the data key.
    pub meta: Vec<u8>,
}

impl Sealed {
    /// The `add_record` body for this ciphertext.
    pub fn draft(&self, patient: AccountId, category: Category, key: RecordKey) -> RecordDraft {
        RecordDraft {
            id: self.id,
            patient,
            category,
            content: self.enc.content,
            size: self.enc.size,
            commitment: self.enc.commitment,
            meta: HexBytes(self.meta.clone()),
            key,
            profile: false,
        }
    }

    /// The data key sealed to `patient` and the author, as a record written for a patient
    /// carries it until the patient approves it.
    pub fn direct_key(&self, s: &Session, patient: &AccountId) -> anyhow::Result<RecordKey> {
        let pk = s.encryption_key(patient)?;
        Ok(RecordKey::Direct {
            wraps: vec![
                (*patient, envelope::seal_data_key(&pk, &self.dk, &self.id)?),
                (
                    s.me,
                    envelope::seal_data_key(&s.key.encryption().public(), &self.dk, &self.id)?,
                ),
            ],
        })
    }
}

/// Encrypts `input` into a temporary file (nothing the node can see), with `title` and
/// `file_name` as encrypted metadata, and uploads the ciphertext.
pub fn seal_upload(
    s: &Session,
    input: impl std::io::Read,
    title: Option<String>,
    file_name: Option<String>,
) -> anyhow::Result<Sealed> {
    let id = envelope::new_record_id();
    let dk = DataKey::generate();
    // The sealed metadata has a fixed length, so a title or file name too long for it is
    // refused now, before a large file is encrypted: the size is not known yet, so the check
    // uses the widest one.
    let mut meta = Meta {
        title,
        file_name,
        plaintext_size: u64::MAX,
    };
    envelope::seal_meta(&dk, &id, &serde_json::to_vec(&meta)?)?;
    let mut tmp = tempfile::tempfile().context("cannot create a temporary file")?;
    let enc: Encrypted = envelope::encrypt_stream(
        &dk,
        &id,
        BufReader::with_capacity(1 << 20, input),
        BufWriter::with_capacity(1 << 20, &mut tmp),
    )?;
    meta.plaintext_size = enc.plaintext_size;
    let meta = envelope::seal_meta(&dk, &id, &serde_json::to_vec(&meta)?)?;
    upload(s, &enc, &mut tmp)?;
    Ok(Sealed { id, dk, enc, meta })
}

/// Encrypts a file, uploads the ciphertext and anchors the record. The patient's own records
/// use the category key; others' are sealed to the patient and the author and wait for the
/// patient's approval.
pub fn add_record(
    s: &Session,
    patient: &AccountId,
    category: Category,
    file: &Path,
    title: Option<String>,
    profile: bool,
) -> anyhow::Result<Added> {
    let input =
        std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    let file_name = file.file_name().map(|n| n.to_string_lossy().to_string());
    add_record_from(s, patient, category, input, title, file_name, profile)
}

/// [`add_record`] from any reader.
pub fn add_record_from(
    s: &Session,
    patient: &AccountId,
    category: Category,
    input: impl std::io::Read,
    title: Option<String>,
    file_name: Option<String>,
    profile: bool,
) -> anyhow::Result<Added> {
    let key_first = *patient == s.me;
    // The category key is made (or rotated) before anything is uploaded.
    let own_key = key_first
        .then(|| s.current_category_key(category))
        .transpose()?;
    let sealed = seal_upload(s, input, title, file_name)?;
    let key = match own_key {
        Some((epoch, ck)) => RecordKey::Category {
            epoch,
            wrapped: HexBytes(envelope::wrap_data_key(&ck, &sealed.dk, &sealed.id)),
        },
        None => sealed.direct_key(s, patient)?,
    };
    let draft = RecordDraft {
        profile,
        ..sealed.draft(*patient, category, key)
    };
    let t = s.submit(vec![TxPayload::AddRecord(draft)])?;
    Ok(Added {
        record: sealed.id,
        cid: cid_string(&sealed.enc.content),
        status: if key_first { "active" } else { "pending" },
        size: sealed.enc.size,
        plaintext_size: sealed.enc.plaintext_size,
        tx: t[0].id,
    })
}

fn upload(s: &Session, enc: &Encrypted, tmp: &mut std::fs::File) -> anyhow::Result<()> {
    use std::io::Seek;
    tmp.seek(std::io::SeekFrom::Start(0))?;
    // Ask first whether the node would take this many bytes (quota, storage): a refusal in
    // the middle of a streamed body reaches the client only as a broken connection.
    let _: serde_json::Value = s.get(&format!("/api/v1/blobs/check?size={}", enc.size))?;
    let path = format!("/api/v1/blobs/{}", cid_string(&enc.content));
    let _: serde_json::Value = s
        .client
        .put_file(&path, &s.auth("PUT", &path), tmp, enc.size)?;
    Ok(())
}

/// A record as the CLI lists it, with its metadata decrypted when the key is at hand.
#[derive(Serialize, Debug)]
pub struct Listed {
    pub id: RecordId,
    pub patient: AccountId,
    pub author: AccountId,
    pub category: Category,
    pub status: RecordStatus,
    pub created_ms: u64,
    /// Ciphertext bytes on the ledger (padded to a size bucket).
    pub size: u64,
    pub cid: String,
    pub title: Option<String>,
    pub file_name: Option<String>,
    /// The true content size, from the encrypted metadata, when the key is at hand.
    pub plaintext_size: Option<u64>,
    pub access: String,
}

pub fn list_records(s: &Session, patient: &AccountId) -> anyhow::Result<Vec<Listed>> {
    let views: Vec<RecordView> = s.get(&format!("/api/v1/records?patient={patient}"))?;
    Ok(views
        .into_iter()
        .map(|v| {
            let meta = s
                .data_key(&v.record)
                .ok()
                .and_then(|dk| envelope::open_meta(&dk, &v.record.id, &v.record.meta.0).ok())
                .and_then(|m| serde_json::from_slice::<Meta>(&m).ok());
            let plaintext_size = meta.as_ref().map(|m| m.plaintext_size);
            let meta = meta.unwrap_or_default();
            Listed {
                id: v.record.id,
                patient: v.record.patient,
                author: v.record.author,
                category: v.record.category,
                status: v.record.status,
                created_ms: v.record.created_ms,
                size: v.record.size,
                cid: v.cid,
                title: meta.title,
                file_name: meta.file_name,
                plaintext_size,
                access: v.access,
            }
        })
        .collect())
}

/// What `record get` did.
#[derive(Serialize, Debug)]
pub struct Fetched {
    pub record: RecordId,
    pub decision: Decision,
    pub reason: String,
    pub event: Option<ehrchain_types::EventId>,
    pub bytes: u64,
    pub out: Option<String>,
}

/// An audited read: the read is put on the ledger first; on "allowed" the ciphertext is
/// downloaded, decrypted to a temporary file beside `out`, checked against the ledger's
/// commitment and only then renamed to `out`.
pub fn get_record(s: &Session, id: &RecordId, out: &Path) -> anyhow::Result<Fetched> {
    get_record_with(s, id, out, None)
}

/// [`get_record`] with the data key given (a pharmacy holds a prescription's key through
/// the prescription, not through the record).
pub fn get_record_with(
    s: &Session,
    id: &RecordId,
    out: &Path,
    key: Option<DataKey>,
) -> anyhow::Result<Fetched> {
    let t = s.submit(vec![TxPayload::ReadRecord { record: *id }])?;
    let ev = t[0]
        .events
        .first()
        .ok_or_else(|| anyhow!("the read left no audit event"))?;
    if ev.event.decision == Decision::Denied {
        return Ok(Fetched {
            record: *id,
            decision: Decision::Denied,
            reason: ev.event.reason.to_string(),
            event: Some(ev.id),
            bytes: 0,
            out: None,
        });
    }
    let view: RecordView = s.get(&format!("/api/v1/records/{id}"))?;
    let dk = match key {
        Some(k) => k,
        None => s.data_key(&view.record)?,
    };
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    let path = format!("/api/v1/records/{id}/content");
    let mut commitment = None;
    let mut bytes = 0u64;
    s.client.download(&path, &s.auth("GET", &path), &mut |r| {
        let mut w = CountingWriter {
            inner: BufWriter::with_capacity(1 << 20, tmp.as_file_mut()),
            n: 0,
        };
        commitment = Some(envelope::decrypt_stream(
            &dk,
            id,
            BufReader::with_capacity(1 << 20, r),
            &mut w,
        )?);
        bytes = w.n;
        Ok(())
    })?;
    if commitment != Some(view.record.commitment) {
        bail!("the decrypted content does not match the ledger's commitment; nothing was written");
    }
    tmp.as_file().sync_all()?;
    tmp.persist(out)
        .map_err(|e| anyhow!("cannot write {}: {}", out.display(), e.error))?;
    Ok(Fetched {
        record: *id,
        decision: Decision::Allowed,
        reason: ev.event.reason.to_string(),
        event: Some(ev.id),
        bytes,
        out: Some(out.display().to_string()),
    })
}

struct CountingWriter<W> {
    inner: W,
    n: u64,
}

impl<W: std::io::Write> std::io::Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The patient approves a pending record: its data key moves under the category key.
pub fn review(s: &Session, id: &RecordId, approve: bool) -> anyhow::Result<TxView> {
    let payload = if approve {
        let view: RecordView = s.get(&format!("/api/v1/records/{id}"))?;
        if view.record.patient != s.me {
            bail!("record {id} is not yours to review");
        }
        let dk = s.data_key(&view.record)?;
        let (epoch, ck) = s.current_category_key(view.record.category)?;
        TxPayload::ReviewRecord {
            record: *id,
            approve: true,
            key: Some(RecordKey::Category {
                epoch,
                wrapped: HexBytes(envelope::wrap_data_key(&ck, &dk, id)),
            }),
        }
    } else {
        TxPayload::ReviewRecord {
            record: *id,
            approve: false,
            key: None,
        }
    };
    Ok(s.submit(vec![payload])?.remove(0))
}

/// Grants categories to a grantee, sealing every epoch of each category key to it.
pub fn grant(
    s: &Session,
    to: &Grantee,
    categories: &[Category],
    expires: Option<Duration>,
    write: bool,
) -> anyhow::Result<TxView> {
    let recipients = s.recipients(to)?;
    if recipients.is_empty() {
        bail!("{to} has no active members with an encryption key");
    }
    // A grant adds to what the grantee already has (narrowing one is a revocation).
    let mut categories = categories.to_vec();
    let mut write = write;
    let grants: Vec<GrantView> = s.get(&format!("/api/v1/grants?patient={}", s.me))?;
    if let Some(g) = grants.iter().find(|g| g.grantee == *to && !g.expired) {
        categories.extend(g.grant.categories.iter().copied());
        write |= g.grant.write;
    }
    categories.sort();
    categories.dedup();
    let wraps = s.grant_wraps(&categories, &recipients)?;
    Ok(s.submit(vec![TxPayload::Grant {
        to: to.clone(),
        categories,
        expires_ms: expires.map(|d| now_ms() + d.as_millis() as u64),
        write,
        wraps,
    }])?
    .remove(0))
}

/// Revokes categories (all when empty) from a grantee, starting a new key epoch for each.
pub fn revoke(s: &Session, from: &Grantee, categories: &[Category]) -> anyhow::Result<TxView> {
    let grants: Vec<GrantView> = s.get(&format!("/api/v1/grants?patient={}", s.me))?;
    let g = grants
        .iter()
        .find(|g| g.grantee == *from)
        .ok_or_else(|| anyhow!("there is no grant to {from}"))?;
    let revoked: Vec<Category> = if categories.is_empty() {
        g.grant.categories.clone()
    } else {
        categories.to_vec()
    };
    let own = s.own_keys()?;
    let mut rotations = Vec::new();
    for &c in &revoked {
        let epochs = own.get(&c).map_or(0, Vec::len) as u32;
        if epochs > 0 {
            let ck = CategoryKey::generate();
            rotations.push(s.rotation(c, epochs, &ck, Some((from, &revoked)))?);
        }
    }
    Ok(s.submit(vec![TxPayload::Revoke {
        from: from.clone(),
        categories: categories.to_vec(),
        rotations,
    }])?
    .remove(0))
}

/// A professional's request for access; the reason is sealed to the patient.
pub fn request(
    s: &Session,
    patient: &AccountId,
    categories: &[Category],
    write: bool,
    reason: &str,
) -> anyhow::Result<(RequestId, TxView)> {
    let pk = s.encryption_key(patient)?;
    let sealed = envelope::seal_reason(&pk, &s.me, patient, reason)?;
    let t = s
        .submit(vec![TxPayload::RequestAccess {
            patient: *patient,
            categories: categories.to_vec(),
            write,
            reason: sealed,
        }])?
        .remove(0);
    Ok((RequestId(t.id.0), t))
}

/// A request with its reason decrypted (when this account is the patient).
#[derive(Serialize, Debug)]
pub struct Inbox {
    #[serde(flatten)]
    pub request: AccessRequest,
    pub reason_text: Option<String>,
    pub requester_role: Option<Role>,
    pub requester_organisation: Option<String>,
}

pub fn requests(s: &Session) -> anyhow::Result<Vec<Inbox>> {
    let reqs: Vec<AccessRequest> = s.get("/api/v1/requests")?;
    let enc = s.key.encryption();
    reqs.into_iter()
        .map(|r| {
            let reason_text = (r.patient == s.me)
                .then(|| enc.open_reason(&r.reason, &r.requester, &r.patient).ok())
                .flatten();
            let who = s.account(&r.requester)?;
            Ok(Inbox {
                requester_role: who.account.role,
                requester_organisation: who.account.organisation,
                request: r,
                reason_text,
            })
        })
        .collect()
}

/// Answers a request: approving grants what was asked (added to any existing grant).
pub fn answer(
    s: &Session,
    id: &RequestId,
    approve: bool,
    expires: Option<Duration>,
) -> anyhow::Result<TxView> {
    let reqs: Vec<AccessRequest> = s.get(&format!("/api/v1/requests?patient={}", s.me))?;
    let r = reqs
        .iter()
        .find(|r| r.id == *id)
        .ok_or_else(|| anyhow!("no request {id} in your inbox"))?;
    let wraps = if approve {
        let to = Grantee::Account(r.requester);
        let mut cats = r.categories.clone();
        let grants: Vec<GrantView> = s.get(&format!("/api/v1/grants?patient={}", s.me))?;
        if let Some(g) = grants.iter().find(|g| g.grantee == to) {
            cats.extend(g.grant.categories.iter().copied());
        }
        cats.sort();
        cats.dedup();
        s.grant_wraps(&cats, &s.recipients(&to)?)?
    } else {
        Vec::new()
    };
    Ok(s.submit(vec![TxPayload::AnswerRequest {
        request: *id,
        approve,
        expires_ms: expires.map(|d| now_ms() + d.as_millis() as u64),
        wraps,
    }])?
    .remove(0))
}

pub fn audit(s: &Session, record: Option<&RecordId>) -> anyhow::Result<Vec<EventView>> {
    let mut path = format!("/api/v1/audit?patient={}", s.me);
    if let Some(r) = record {
        path += &format!("&record={r}");
    }
    s.get(&path)
}

/// Checks a profile JSON file has the fields the role needs; returns its canonical bytes.
pub fn check_profile(role: Role, text: &str) -> anyhow::Result<Vec<u8>> {
    let v: serde_json::Value =
        serde_json::from_str(text).context("the profile is not valid JSON")?;
    let obj = v
        .as_object()
        .ok_or_else(|| anyhow!("the profile must be a JSON object"))?;
    let required: &[&str] = match role {
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
    };
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|f| {
            obj.get(*f)
                .is_none_or(|v| v.is_null() || v.as_str() == Some(""))
        })
        .collect();
    if !missing.is_empty() {
        bail!(
            "the {role} profile is missing: {} (a {role} profile has {})",
            missing.join(", "),
            required.join(", ")
        );
    }
    Ok(serde_json::to_vec_pretty(&v)?)
}

/// The QR payload of an account: chain, account and profile fingerprint.
pub fn qr_payload(chain_id: &str, account: &AccountView) -> anyhow::Result<String> {
    let fp = account.profile_fingerprint.clone().ok_or_else(|| {
        anyhow!(
            "account {} has no profile on the ledger (register with --profile FILE.json)",
            account.id
        )
    })?;
    Ok(format!("ehrchain:1:{chain_id}:{}:{fp}", account.id))
}

/// What a scanned QR payload says, checked against the ledger.
#[derive(Serialize, Debug)]
pub struct QrCheck {
    pub account: AccountId,
    pub role: Option<Role>,
    pub status: String,
    pub profile_matches: bool,
}

pub fn qr_check(client: &Client, payload: &str) -> anyhow::Result<QrCheck> {
    let parts: Vec<&str> = payload.trim().split(':').collect();
    let [tag, version, chain, account, fp] = parts.as_slice() else {
        bail!("not an ehrchain QR payload (expected ehrchain:1:CHAIN:ACCOUNT:FINGERPRINT)");
    };
    if *tag != "ehrchain" || *version != "1" {
        bail!("not an ehrchain v1 QR payload");
    }
    let status: StatusView = client.get("/api/v1/status")?;
    if *chain != status.chain_id {
        bail!(
            "the QR code is for chain {chain:?}; this node serves {:?}",
            status.chain_id
        );
    }
    let id: AccountId = account.parse().map_err(|e| anyhow!("{e}"))?;
    let a: AccountView = client.get(&format!("/api/v1/accounts/{id}"))?;
    if !a.exists {
        bail!("account {id} is not on the ledger");
    }
    let matches = a.profile_fingerprint.as_deref() == Some(*fp);
    if !matches {
        bail!(
            "the QR code's profile fingerprint does not match the ledger's for {id} (stale or forged)"
        );
    }
    Ok(QrCheck {
        account: id,
        role: a.account.role,
        status: a.account.status.name().to_string(),
        profile_matches: matches,
    })
}

/// Renders a payload as an SVG QR code.
pub fn qr_svg(payload: &str) -> anyhow::Result<String> {
    let code = qrcode::QrCode::new(payload.as_bytes()).map_err(|e| anyhow!("QR code: {e}"))?;
    Ok(code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(256, 256)
        .build())
}
