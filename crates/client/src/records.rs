//! Records: encrypt and upload, anchor, list, the audited read, review.
//!
//! Content is encrypted here, into a temporary file the node never sees, and uploaded as
//! ciphertext; a read is put on the ledger first and decrypted here only if the ledger allowed
//! it, then checked against the ledger's commitment before anything is written.

use crate::{Error, Result, Session, consent, invalid, schemas::Meta};
use ehrchain_api::{BlobCheckView, KeysView, RecordView, TxView, UploadView};
use ehrchain_crypto::{
    CategoryKey, DataKey,
    envelope::{self, Encrypted},
};
use ehrchain_types::{
    AccountId, AuditReason, Category, Decision, EventId, Hash, HexBytes, RecordDraft, RecordId,
    RecordKey, TxPayload,
    entries::{Record, RecordStatus},
};
use serde::Serialize;
use std::{
    io::{BufReader, BufWriter, Read, Seek, Write},
    path::Path,
};

pub use ehrchain_api::cid::cid_string;

/// The data key of record `r` for `me`, from the key material `keys` the node holds for
/// `me` and `r`'s patient (`GET /api/v1/keys?patient=…`): pure, no IO.
pub fn open_data_key(
    key: &ehrchain_crypto::Keypair,
    keys: &KeysView,
    r: &Record,
) -> Result<DataKey> {
    let me = key.account();
    let enc = key.encryption();
    match &r.key {
        RecordKey::Direct { wraps } => {
            let Some((_, sealed)) = wraps.iter().find(|(a, _)| *a == me) else {
                invalid!("record {} is not sealed to you", r.id);
            };
            Ok(enc.open_data_key(sealed, &r.id)?)
        }
        RecordKey::Category { epoch, wrapped } => {
            let ck: CategoryKey = if r.patient == me {
                let Some(sealed) = keys
                    .own
                    .iter()
                    .find(|o| o.category == r.category)
                    .and_then(|o| o.epochs.get(*epoch as usize))
                else {
                    invalid!("your {} key of epoch {epoch} is missing", r.category);
                };
                enc.open_category_key(sealed, &me, r.category, *epoch)?
            } else {
                let Some(w) = keys
                    .wraps
                    .iter()
                    .find(|w| w.category == r.category && w.epoch == *epoch)
                else {
                    invalid!("no {} key of epoch {epoch} was shared with you", r.category);
                };
                enc.open_category_key(&w.sealed, &r.patient, r.category, *epoch)?
            };
            Ok(envelope::unwrap_data_key(&ck, &wrapped.0, &r.id)?)
        }
    }
}

/// The key material the session account holds for `patient`'s records.
pub fn keys_for(s: &Session, patient: &AccountId) -> Result<KeysView> {
    s.get(&format!("/api/v1/keys?patient={patient}"))
}

/// The data key of a record the session account may read.
pub fn data_key(s: &Session, r: &Record) -> Result<DataKey> {
    if matches!(r.key, RecordKey::Direct { .. }) {
        // Sealed to the reader directly: no key material to fetch.
        return open_data_key(&s.key, &KeysView::empty(r.patient), r);
    }
    let keys = keys_for(s, &r.patient)?;
    if let RecordKey::Category { epoch, wrapped } = &r.key
        && r.patient != s.me
        && !keys
            .wraps
            .iter()
            .any(|w| w.category == r.category && w.epoch == *epoch)
        && let Some(ck) = crate::emergency::category_key(s, &r.patient, r.category, *epoch)?
    {
        // No grant holds this key: a released emergency access does.
        return Ok(envelope::unwrap_data_key(&ck, &wrapped.0, &r.id)?);
    }
    open_data_key(&s.key, &keys, r)
}

/// A record's ledger entry, as the session account may see it.
pub fn record(s: &Session, id: &RecordId) -> Result<RecordView> {
    s.get(&format!("/api/v1/records/{id}"))
}

/// Decrypts a record's metadata (title, file name, true size) with its data key.
pub fn open_meta(dk: &DataKey, r: &Record) -> Option<Meta> {
    let bytes = envelope::open_meta(dk, &r.id, &r.meta.0).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A record encrypted here and uploaded, ready to be anchored.
pub struct Sealed {
    pub id: RecordId,
    pub dk: DataKey,
    pub enc: Encrypted,
    /// The metadata, encrypted under the data key.
    pub meta: Vec<u8>,
    /// The erasure-coding manifest root the node placed the content under, if it did.
    pub coding: Option<ehrchain_types::Hash>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
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
            coding: self.coding,
        }
    }

    /// The data key sealed to `patient` and the author, as a record written for a patient
    /// carries it until the patient approves it.
    pub fn direct_key(&self, s: &Session, patient: &AccountId) -> Result<RecordKey> {
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

    /// The data key wrapped under a category key.
    pub fn category_key(&self, epoch: u32, ck: &CategoryKey) -> RecordKey {
        RecordKey::Category {
            epoch,
            wrapped: HexBytes(envelope::wrap_data_key(ck, &self.dk, &self.id)),
        }
    }

    /// The data key sealed to one more account (a pharmacy a prescription is directed to).
    pub fn seal_to(&self, s: &Session, to: &AccountId) -> Result<ehrchain_types::SealedKey> {
        seal_data_key_to(s, to, &self.dk, &self.id)
    }
}

/// A record's data key sealed to account `to`.
pub fn seal_data_key_to(
    s: &Session,
    to: &AccountId,
    dk: &DataKey,
    record: &RecordId,
) -> Result<ehrchain_types::SealedKey> {
    Ok(envelope::seal_data_key(&s.encryption_key(to)?, dk, record)?)
}

/// Encrypts `input` into a temporary file (nothing the node can see), with `title` and
/// `file_name` as encrypted metadata, and uploads the ciphertext.
pub fn seal_upload(
    s: &Session,
    input: impl Read,
    title: Option<String>,
    file_name: Option<String>,
) -> Result<Sealed> {
    seal_upload_as(s, envelope::new_record_id(), input, title, file_name)
}

/// [`seal_upload`] under the record id `id`.
fn seal_upload_as(
    s: &Session,
    id: RecordId,
    input: impl Read,
    title: Option<String>,
    file_name: Option<String>,
) -> Result<Sealed> {
    let dk = DataKey::generate();
    // The sealed metadata has a fixed length, so a title or file name too long for it is
    // refused now, before a large file is encrypted: the size is not known yet, so the check
    // uses the widest one.
    let mut meta = Meta {
        title,
        file_name,
        plaintext_size: u64::MAX,
    };
    envelope::seal_meta(&dk, &id, &meta.to_bytes())?;
    let mut tmp =
        tempfile::tempfile().map_err(|e| Error::io("cannot create a temporary file", e))?;
    let enc: Encrypted = envelope::encrypt_stream(
        &dk,
        &id,
        BufReader::with_capacity(1 << 20, input),
        BufWriter::with_capacity(1 << 20, &mut tmp),
    )?;
    meta.plaintext_size = enc.plaintext_size;
    let meta = envelope::seal_meta(&dk, &id, &meta.to_bytes())?;
    let coding = upload(s, &enc, &mut tmp)?;
    Ok(Sealed {
        id,
        dk,
        enc,
        meta,
        coding,
    })
}

/// Uploads a ciphertext file. Asks first whether the node would take this many bytes (quota,
/// storage): a refusal in the middle of a streamed body reaches the client only as a broken
/// connection.
fn upload(
    s: &Session,
    enc: &Encrypted,
    tmp: &mut std::fs::File,
) -> Result<Option<ehrchain_types::Hash>> {
    tmp.seek(std::io::SeekFrom::Start(0))
        .map_err(|e| Error::io("cannot read the encrypted temporary file", e))?;
    let _: BlobCheckView = s.get(&format!("/api/v1/blobs/check?size={}", enc.size))?;
    let path = format!("/api/v1/blobs/{}", cid_string(&enc.content));
    let up: UploadView = s.node.put_stream(
        &path,
        &s.auth_body("PUT", &path, &enc.content),
        tmp,
        enc.size,
    )?;
    Ok(up.coding)
}

/// What adding a record produced.
#[derive(Serialize, Debug, Clone)]
pub struct Added {
    pub record: RecordId,
    pub cid: String,
    pub status: RecordStatus,
    pub size: u64,
    pub plaintext_size: u64,
    pub tx: Hash,
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
) -> Result<Added> {
    let input = std::fs::File::open(file)
        .map_err(|e| Error::io(format!("cannot read {}", file.display()), e))?;
    let file_name = file.file_name().map(|n| n.to_string_lossy().to_string());
    add_record_from(s, patient, category, input, title, file_name, profile)
}

/// [`add_record`] from any reader.
pub fn add_record_from(
    s: &Session,
    patient: &AccountId,
    category: Category,
    input: impl Read,
    title: Option<String>,
    file_name: Option<String>,
    profile: bool,
) -> Result<Added> {
    let own = *patient == s.me;
    // The category key is made (or rotated) before anything is uploaded.
    let own_key = own
        .then(|| consent::current_category_key(s, category))
        .transpose()?;
    // A profile record's id is public (the account view names it): no clock in it.
    let id = if profile {
        envelope::random_record_id()
    } else {
        envelope::new_record_id()
    };
    let sealed = seal_upload_as(s, id, input, title, file_name)?;
    let key = match own_key {
        Some((epoch, ck)) => sealed.category_key(epoch, &ck),
        None => sealed.direct_key(s, patient)?,
    };
    let draft = RecordDraft {
        profile,
        ..sealed.draft(*patient, category, key)
    };
    let t = s.submit_one(TxPayload::AddRecord(draft))?;
    Ok(Added {
        record: sealed.id,
        cid: cid_string(&sealed.enc.content),
        status: if own {
            RecordStatus::Active
        } else {
            RecordStatus::Pending
        },
        size: sealed.enc.size,
        plaintext_size: sealed.enc.plaintext_size,
        tx: t.id,
    })
}

/// A record with its metadata decrypted when the key is at hand.
#[derive(Serialize, Debug, Clone)]
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
    /// Why this account may see it.
    pub access: AuditReason,
}

/// The records of `patient` the session account may see, with titles decrypted (the key
/// material is fetched once for the whole list).
pub fn list_records(s: &Session, patient: &AccountId) -> Result<Vec<Listed>> {
    let views: Vec<RecordView> = s.get_all(
        &format!("/api/v1/records?patient={patient}"),
        "after",
        |v: &RecordView| v.record.id.to_string(),
    )?;
    let keys = if views.is_empty() {
        KeysView::empty(*patient)
    } else {
        keys_for(s, patient)?
    };
    // Records shown through a released emergency access open with its keyring (built once
    // per category: its window covers the categories the patient chose).
    let mut rings: std::collections::BTreeMap<Category, Option<crate::emergency::Keyring>> =
        std::collections::BTreeMap::new();
    for v in &views {
        if matches!(v.access, AuditReason::Emergency { .. })
            && !rings.contains_key(&v.record.category)
        {
            let ring = crate::emergency::keyring(s, patient, v.record.category).unwrap_or(None);
            rings.insert(v.record.category, ring);
        }
    }
    Ok(views
        .into_iter()
        .map(|v| {
            let emergency = |r: &Record| -> Option<DataKey> {
                let RecordKey::Category { epoch, wrapped } = &r.key else {
                    return None;
                };
                let ck = rings
                    .get(&r.category)?
                    .as_ref()?
                    .category_key(r.category, *epoch)?;
                envelope::unwrap_data_key(&ck, &wrapped.0, &r.id).ok()
            };
            let meta = open_data_key(&s.key, &keys, &v.record)
                .ok()
                .or_else(|| emergency(&v.record))
                .and_then(|dk| open_meta(&dk, &v.record));
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

/// What an audited read did.
#[derive(Serialize, Debug, Clone)]
pub struct Fetched {
    pub record: RecordId,
    pub decision: Decision,
    /// Why the ledger allowed or denied the read (code, typed fields, rendered message).
    pub reason: AuditReason,
    pub event: Option<EventId>,
    pub bytes: u64,
    pub out: Option<String>,
}

/// An audited read: the read is put on the ledger first; on "allowed" the ciphertext is
/// downloaded, decrypted to a temporary file beside `out`, checked against the ledger's
/// commitment and only then renamed to `out`. A denial is returned (not an error): it is on
/// the ledger like an allowed read.
pub fn get_record(s: &Session, id: &RecordId, out: &Path) -> Result<Fetched> {
    get_record_with(s, id, out, None)
}

/// [`get_record`] with the data key given (a pharmacy holds a prescription's key through
/// the prescription, not through the record).
pub fn get_record_with(
    s: &Session,
    id: &RecordId,
    out: &Path,
    key: Option<DataKey>,
) -> Result<Fetched> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| Error::io(format!("cannot write in {}", dir.display()), e))?;
    let read = read_into(s, id, key, tmp.as_file_mut())?;
    let ReadOutcome { event, reason, .. } = &read;
    if read.decision == Decision::Denied {
        return Ok(Fetched {
            record: *id,
            decision: Decision::Denied,
            reason: reason.clone(),
            event: *event,
            bytes: 0,
            out: None,
        });
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(format!("cannot write {}", out.display()), e))?;
    tmp.persist(out)
        .map_err(|e| Error::io(format!("cannot write {}", out.display()), e.error))?;
    Ok(Fetched {
        record: *id,
        decision: Decision::Allowed,
        reason: read.reason,
        event: read.event,
        bytes: read.bytes,
        out: Some(out.display().to_string()),
    })
}

/// What [`read_into`] did.
#[derive(Debug, Clone)]
pub struct ReadOutcome {
    pub decision: Decision,
    pub reason: AuditReason,
    pub event: Option<EventId>,
    /// Plaintext bytes written.
    pub bytes: u64,
}

/// The audited read into any writer: nothing is written unless the ledger allowed the read;
/// the caller must discard what was written if this returns an error (the content did not
/// match the ledger's commitment, or the download broke).
pub fn read_into(
    s: &Session,
    id: &RecordId,
    key: Option<DataKey>,
    sink: &mut dyn Write,
) -> Result<ReadOutcome> {
    let t = s.submit_one(TxPayload::ReadRecord { record: *id })?;
    let Some(ev) = t.events.first() else {
        return Err(Error::Protocol("the read left no audit event".into()));
    };
    let reason = ev.event.reason.clone();
    if ev.event.decision == Decision::Denied {
        return Ok(ReadOutcome {
            decision: Decision::Denied,
            reason,
            event: Some(ev.id),
            bytes: 0,
        });
    }
    let view = record(s, id)?;
    let dk = match key {
        Some(k) => k,
        None => data_key(s, &view.record)?,
    };
    let path = format!("/api/v1/records/{id}/content");
    let (commitment, bytes) = s.node.download(&path, &s.auth("GET", &path), &mut |r| {
        let mut w = CountingWriter {
            inner: BufWriter::with_capacity(1 << 20, &mut *sink),
            n: 0,
        };
        let c = envelope::decrypt_stream(&dk, id, BufReader::with_capacity(1 << 20, r), &mut w)?;
        w.flush()
            .map_err(|e| Error::io("cannot write the decrypted record", e))?;
        Ok((c, w.n))
    })?;
    if commitment != view.record.commitment {
        invalid!(
            "the decrypted content does not match the ledger's commitment; nothing was written"
        );
    }
    Ok(ReadOutcome {
        decision: Decision::Allowed,
        reason,
        event: Some(ev.id),
        bytes,
    })
}

/// An audited read of a small record into memory; a denial is an [`Error::Denied`].
pub fn read_bytes(s: &Session, id: &RecordId, key: Option<DataKey>) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let r = read_into(s, id, key, &mut buf)?;
    if r.decision == Decision::Denied {
        return Err(Error::Denied {
            event: r.event,
            reason: r.reason,
        });
    }
    Ok(buf)
}

struct CountingWriter<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The patient approves (its data key moves under the category key) or rejects a record
/// someone wrote for them.
pub fn review(s: &Session, id: &RecordId, approve: bool) -> Result<TxView> {
    let payload = if approve {
        let view = record(s, id)?;
        if view.record.patient != s.me {
            invalid!("record {id} is not yours to review");
        }
        let dk = data_key(s, &view.record)?;
        let (epoch, ck) = consent::current_category_key(s, view.record.category)?;
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
    s.submit_one(payload)
}

/// A small record sealed in memory under a category key, not uploaded: its `add_record` body.
/// For anchoring many records fast (load tests); a real record also needs its ciphertext
/// uploaded ([`add_record`]).
pub fn draft_in_memory(
    patient: AccountId,
    category: Category,
    epoch: u32,
    ck: &CategoryKey,
    content: &[u8],
) -> Result<RecordDraft> {
    let id = envelope::new_record_id();
    let dk = DataKey::generate();
    let (_, e) = envelope::encrypt_bytes(&dk, &id, content);
    Ok(RecordDraft {
        id,
        patient,
        category,
        content: e.content,
        size: e.size,
        commitment: e.commitment,
        meta: HexBytes(envelope::seal_meta(&dk, &id, &Meta::default().to_bytes())?),
        key: RecordKey::Category {
            epoch,
            wrapped: HexBytes(envelope::wrap_data_key(ck, &dk, &id)),
        },
        profile: false,
        coding: None,
    })
}
