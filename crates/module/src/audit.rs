//! The module's audit trail: every proposal it saw, every approval and refusal (with its
//! reason and the policy it decided under), every signature it released, every policy it
//! adopted — append-only, hash-chained and sealed.
//!
//! The trail is one file, `audit.log`, beside the vault's header. Each line is
//! `<seq> <base64(nonce ‖ ciphertext)>`: the entry's JSON ([`Entry`]) encrypted with
//! XChaCha20-Poly1305 under the trail's own key (a random key kept in the vault as the secret
//! `audit.key`, so reading the trail needs the vault open), the sequence number authenticated
//! with it. Each entry names the SHA-256 of the plaintext of the entry before it (`prev`; the
//! first names 32 zero bytes): an entry changed fails its authentication, an entry removed or
//! moved breaks the chain at the place it happened, and [`verify`] names that entry. The hash of
//! an entry (the [`AuditRef`] a module sends with its answers, which the coordinator records
//! with each step of a job) commits to the whole trail before it, so a trail rewritten after
//! the fact no longer matches what the coordinator holds. Removing the last entries leaves a
//! chain that is intact on its own: compare its head with the coordinator's record.
//!
//! Appends are serialised, written whole and synced (`fdatasync`) before the answer they
//! record leaves the module.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use concord_wire::rpc::AuditRef;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::Error;

/// The trail's file name, in the vault's directory.
pub const AUDIT_FILE: &str = "audit.log";
/// The vault secret holding the trail's key.
pub(crate) const AUDIT_KEY: &str = "audit.key";
/// Authenticated with every entry (with its sequence number).
const AAD_TAG: &[u8] = b"concord/audit/v1";

/// What an entry records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// A proposal came from the coordinator (before any check).
    ProposalSeen {
        /// The job.
        job: String,
        /// The wallet it names.
        wallet: String,
        /// The digest it proposes, hex.
        digest: String,
    },
    /// The module approved: its signed statement left with this entry's reference.
    Approved {
        /// The job.
        job: String,
        /// The digest approved, hex.
        digest: String,
        /// The intent approved.
        intent: String,
        /// The SHA-256 of the policy decided under, hex.
        policy: String,
        /// What was checked, in words.
        checks: Vec<String>,
    },
    /// The module refused.
    Refused {
        /// The job.
        job: String,
        /// What kind of check refused (see the proto's `Refusal.code`).
        code: String,
        /// Why, in words.
        reason: String,
        /// The SHA-256 of the policy in force, hex (empty: none yet).
        policy: String,
    },
    /// The module released its part of a signature (a threshold share, or its own key's
    /// signatures of a multisig spend), once per signing session.
    SignatureReleased {
        /// The job.
        job: String,
        /// The signing session, hex (for a multisig spend: empty).
        session: String,
        /// `threshold` or `multisig`.
        kind: String,
    },
    /// A held credential's request whose answer was lost was found at the exchange, once:
    /// the one withdrawal of its asset, amount and address since it was sent that no other
    /// request claims.
    HeldSendFound {
        /// The job it was approved under.
        job: String,
        /// The transfer.
        transfer: String,
        /// The exchange's withdrawal id.
        withdrawal: String,
    },
    /// The coordinator released an approval that was never signed under: it binds nothing.
    ApprovalReleased {
        /// The job.
        job: String,
        /// The coordinator's reason.
        reason: String,
    },
    /// A new policy was adopted (its signatures checked against the admins in force).
    PolicyAdopted {
        /// Its version.
        version: u64,
        /// Its SHA-256, hex.
        policy: String,
    },
}

/// One entry of the trail, as sealed. (Unknown fields are refused by [`Event`]: a flattened
/// enum takes every field the entry does not name.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Its place in the trail, from 1.
    pub seq: u64,
    /// When it was written, Unix milliseconds.
    pub time_ms: u64,
    /// The SHA-256 of the previous entry's plaintext, hex (zeros for the first).
    pub prev: String,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// The key that seals the trail (XChaCha20-Poly1305, the vault's own construction). Wiped on
/// drop; never printed.
struct TrailKey(Zeroizing<[u8; 32]>);

fn aad(seq: u64) -> Vec<u8> {
    let mut aad = AAD_TAG.to_vec();
    aad.extend_from_slice(&seq.to_be_bytes());
    aad
}

/// The end of the trail: the next sequence number, the last entry's hash, the file's length
/// after it, and whether an append failed and could not be undone (then nothing more is
/// appended: the module must be restarted, and the trail is verified again).
struct Tail {
    file: File,
    next: u64,
    head: [u8; 32],
    len: u64,
    failed: bool,
}

/// Opens (creating it readable by its owner only) the trail's file for appending.
fn create_private(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).append(true).read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

/// An open audit trail, appended to by the daemon.
pub struct AuditLog {
    path: PathBuf,
    key: TrailKey,
    tail: Mutex<Tail>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// What [`verify`] found in an intact trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The entries, in order.
    pub entries: Vec<Entry>,
    /// Each entry's hash (the SHA-256 of its plaintext: what the coordinator records).
    pub hashes: Vec<[u8; 32]>,
    /// The last entry's reference (sequence 0 and zeros for an empty trail).
    pub head: (u64, [u8; 32]),
    /// Whether the file ends in a line written only in part (a process stopped while
    /// appending it; the answer it would have recorded never left the module). Opening the
    /// trail for appending cuts it off.
    pub cut_short: bool,
    /// The length of the file's verified entries, bytes.
    pub valid_len: u64,
}

/// Where a trail is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the audit trail is broken at entry {entry} (line {line}): {why}")]
pub struct Broken {
    /// The first entry (its expected sequence number) that does not verify.
    pub entry: u64,
    /// Its line in the file, from 1.
    pub line: u64,
    /// What is wrong with it, in words.
    pub why: String,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Vault(format!("{what} the audit trail {}: {e}", path.display()))
}

impl AuditLog {
    /// Opens the trail in `dir` (the vault's directory) under `key`, creating it if it does
    /// not exist. Refuses a trail that does not verify: a module never appends to a broken
    /// trail (the operator keeps it as evidence and moves it aside).
    pub(crate) fn open(
        dir: &Path,
        key: Zeroizing<[u8; 32]>,
        must_exist: bool,
    ) -> Result<AuditLog, Error> {
        let path = dir.join(AUDIT_FILE);
        let key = TrailKey(key);
        if must_exist && !path.exists() {
            return Err(Error::Vault(format!(
                "the vault holds an audit key but {} is gone: this module's audit trail was removed; restore it (the module starts no new trail over a lost one)",
                path.display()
            )));
        }
        // One process appends: the file is locked for as long as this log lives.
        let file = create_private(&path).map_err(|e| io("cannot open", &path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Vault(format!(
                    "another process appends to {} (is this module running already?)",
                    path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("cannot lock", &path, e)),
        }
        let v = read_and_verify(&path, &key).map_err(|e| match e {
            ReadError::Io(e) => io("cannot read", &path, e),
            ReadError::Broken(b) => Error::Vault(format!(
                "{b}; this module appends to no broken trail: keep {} as evidence, move it aside and start the module again",
                path.display()
            )),
        })?;
        if v.cut_short {
            tracing::warn!(trail = %path.display(), "the audit trail ends in an entry written only in part (the module stopped while appending it): it is cut off");
            file.set_len(v.valid_len)
                .and_then(|()| file.sync_all())
                .map_err(|e| io("cannot cut the partial entry off", &path, e))?;
        }
        if let Some(parent) = path.parent() {
            // The file's name is durable too.
            let _ = File::open(parent).and_then(|d| d.sync_all());
        }
        Ok(AuditLog {
            path,
            key,
            tail: Mutex::new(Tail {
                file,
                next: v.head.0 + 1,
                head: v.head.1,
                len: v.valid_len,
                failed: false,
            }),
        })
    }

    /// The trail's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends an entry, synced to disk before this returns; its reference.
    pub(crate) fn append(&self, event: Event) -> Result<AuditRef, Error> {
        let mut tail = self
            .tail
            .lock()
            .map_err(|_| Error::Vault("the audit trail's lock is poisoned".into()))?;
        let entry = Entry {
            seq: tail.next,
            time_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            prev: hex::encode(tail.head),
            event,
        };
        let plain = Zeroizing::new(
            serde_json::to_vec(&entry)
                .map_err(|e| Error::Vault(format!("cannot encode an audit entry: {e}")))?,
        );
        let blob = concord_vault::seal(&self.key.0, &plain, &aad(entry.seq))
            .map_err(|e| Error::Vault(format!("cannot seal an audit entry: {e}")))?;
        let line = format!(
            "{} {}\n",
            entry.seq,
            base64::engine::general_purpose::STANDARD.encode(blob)
        );
        if tail.failed {
            return Err(Error::Vault(format!(
                "an earlier append to the audit trail {} failed and could not be undone: restart the module",
                self.path.display()
            )));
        }
        let written = tail
            .file
            .write_all(line.as_bytes())
            .and_then(|()| tail.file.sync_data());
        if let Err(e) = written {
            // Back to the last whole entry, so that the next one follows it; if even that
            // fails, nothing more is appended.
            let len = tail.len;
            if tail
                .file
                .set_len(len)
                .and_then(|()| tail.file.sync_data())
                .is_err()
            {
                tail.failed = true;
            }
            return Err(io("cannot append to", &self.path, e));
        }
        let hash: [u8; 32] = Sha256::digest(&plain).into();
        tail.head = hash;
        tail.next += 1;
        tail.len += line.len() as u64;
        Ok(AuditRef {
            seq: entry.seq,
            hash: hash.to_vec(),
        })
    }
}

enum ReadError {
    Io(std::io::Error),
    Broken(Broken),
}

fn read_and_verify(path: &Path, key: &TrailKey) -> Result<Verified, ReadError> {
    let file = File::open(path).map_err(ReadError::Io)?;
    let mut entries = Vec::new();
    let mut hashes = Vec::new();
    let mut head = [0u8; 32];
    let mut expected = 1u64;
    let mut reader = BufReader::new(file);
    let mut valid_len = 0u64;
    let mut cut_short = false;
    let mut line = Vec::new();
    for i in 0.. {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(ReadError::Io)?;
        if n == 0 {
            break;
        }
        if line.last() != Some(&b'\n') {
            // The last line, written only in part (the process stopped while appending it):
            // its answer never left the module.
            cut_short = true;
            break;
        }
        line.pop();
        let line_no = i as u64 + 1;
        let broken = |why: String| {
            ReadError::Broken(Broken {
                entry: expected,
                line: line_no,
                why,
            })
        };
        let text = std::str::from_utf8(&line).map_err(|_| broken("the line is not text".into()))?;
        let (seq, blob) = text
            .split_once(' ')
            .ok_or_else(|| broken("the line is not `<seq> <sealed entry>`".into()))?;
        let seq: u64 = seq
            .parse()
            .map_err(|_| broken(format!("{seq:?} is not a sequence number")))?;
        if seq != expected {
            return Err(broken(if seq > expected {
                format!(
                    "entry {seq} is where entry {expected} should be: entries were removed or moved"
                )
            } else {
                format!(
                    "entry {seq} comes again or out of order after entry {}",
                    expected - 1
                )
            }));
        }
        let blob = base64::engine::general_purpose::STANDARD
            .decode(blob)
            .map_err(|_| broken("the sealed entry is not base64".into()))?;
        let plain = concord_vault::open_sealed(&key.0, &blob, &aad(seq)).ok_or_else(|| {
            broken(
                "it does not authenticate under the trail's key: it was altered (or sealed by another module)"
                    .into(),
            )
        })?;
        let entry: Entry = serde_json::from_slice(&plain)
            .map_err(|e| broken(format!("its content is not an audit entry: {e}")))?;
        if entry.seq != seq {
            return Err(broken(format!(
                "it says it is entry {}, its line says {seq}",
                entry.seq
            )));
        }
        if entry.prev != hex::encode(head) {
            return Err(broken(format!(
                "it does not follow the entry before it (it names {}…, the entry before hashes to {}…): an entry was removed, replaced or moved",
                entry.prev.get(..16).unwrap_or(&entry.prev),
                &hex::encode(head)[..16]
            )));
        }
        head = Sha256::digest(&plain).into();
        hashes.push(head);
        entries.push(entry);
        expected += 1;
        valid_len += n as u64;
    }
    Ok(Verified {
        entries,
        hashes,
        head: (expected - 1, head),
        cut_short,
        valid_len,
    })
}

/// Reads and verifies the trail in `dir` under `key`: every entry authentic and each one
/// following the one before it. `Ok(Err(broken))` names the first entry that does not verify.
pub(crate) fn verify(
    dir: &Path,
    key: Zeroizing<[u8; 32]>,
) -> Result<Result<Verified, Broken>, Error> {
    let path = dir.join(AUDIT_FILE);
    if !path.exists() {
        return Ok(Ok(Verified {
            entries: Vec::new(),
            hashes: Vec::new(),
            head: (0, [0u8; 32]),
            cut_short: false,
            valid_len: 0,
        }));
    }
    match read_and_verify(&path, &TrailKey(key)) {
        Ok(v) => Ok(Ok(v)),
        Err(ReadError::Broken(b)) => Ok(Err(b)),
        Err(ReadError::Io(e)) => Err(io("cannot read", &path, e)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn key() -> Zeroizing<[u8; 32]> {
        Zeroizing::new([7u8; 32])
    }

    fn seen(n: u32) -> Event {
        Event::ProposalSeen {
            job: format!("job-{n}"),
            wallet: "w".into(),
            digest: "00".into(),
        }
    }

    /// A trail of five entries, and its lines.
    fn trail() -> (tempfile::TempDir, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), key(), false).unwrap();
        for n in 1..=5 {
            let r = log.append(seen(n)).unwrap();
            assert_eq!(r.seq, u64::from(n));
        }
        drop(log);
        let text = std::fs::read_to_string(dir.path().join(AUDIT_FILE)).unwrap();
        let lines = text.lines().map(str::to_owned).collect();
        (dir, lines)
    }

    fn write(dir: &Path, lines: &[String]) {
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(dir.join(AUDIT_FILE), text).unwrap();
    }

    fn broken_at(dir: &Path) -> Broken {
        verify(dir, key())
            .unwrap()
            .expect_err("the trail must not verify")
    }

    #[test]
    fn an_intact_trail_verifies_and_continues_after_reopening() {
        let (dir, _) = trail();
        let v = verify(dir.path(), key()).unwrap().unwrap();
        assert_eq!(v.entries.len(), 5);
        assert_eq!(v.entries[2].event, seen(3));
        let log = AuditLog::open(dir.path(), key(), false).unwrap();
        let r = log.append(seen(6)).unwrap();
        assert_eq!(r.seq, 6);
        let v = verify(dir.path(), key()).unwrap().unwrap();
        assert_eq!(
            v.head,
            (6, <[u8; 32]>::try_from(r.hash.as_slice()).unwrap())
        );
        assert_eq!(v.entries[4].seq, 5);
    }

    #[test]
    fn one_byte_changed_fails_at_that_entry() {
        let (dir, mut lines) = trail();
        // A byte inside the ciphertext of entry 3.
        let mut bytes = lines[2].clone().into_bytes();
        let at = bytes.len() - 10;
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        lines[2] = String::from_utf8(bytes).unwrap();
        write(dir.path(), &lines);
        let b = broken_at(dir.path());
        assert_eq!((b.entry, b.line), (3, 3), "{b}");
        assert!(b.why.contains("altered"), "{b}");
        // The module refuses to append to it.
        let e = AuditLog::open(dir.path(), key(), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("broken at entry 3"), "{e}");
    }

    #[test]
    fn a_changed_sequence_number_fails_at_that_entry() {
        let (dir, mut lines) = trail();
        // Entry 4 relabelled as 3 after entry 3 is removed: its seal names 4.
        let (_, blob) = lines[3].split_once(' ').unwrap();
        lines[3] = format!("3 {blob}");
        lines.remove(2);
        write(dir.path(), &lines);
        let b = broken_at(dir.path());
        assert_eq!((b.entry, b.line), (3, 3), "{b}");
    }

    #[test]
    fn an_entry_removed_fails_where_it_was() {
        let (dir, mut lines) = trail();
        lines.remove(1);
        write(dir.path(), &lines);
        let b = broken_at(dir.path());
        assert_eq!((b.entry, b.line), (2, 2), "{b}");
        assert!(b.why.contains("removed or moved"), "{b}");
    }

    #[test]
    fn entries_reordered_fail_at_the_first_moved() {
        let (dir, mut lines) = trail();
        lines.swap(1, 3);
        write(dir.path(), &lines);
        let b = broken_at(dir.path());
        assert_eq!((b.entry, b.line), (2, 2), "{b}");
    }

    #[test]
    fn another_trails_key_does_not_open_it() {
        let (dir, _) = trail();
        let b = verify(dir.path(), Zeroizing::new([8u8; 32]))
            .unwrap()
            .unwrap_err();
        assert_eq!(b.entry, 1);
    }

    #[test]
    fn an_entry_from_another_trail_spliced_in_fails() {
        let (dir, lines) = trail();
        // Another trail under the same key, of other proposals.
        let other = tempfile::tempdir().unwrap();
        let log = AuditLog::open(other.path(), key(), false).unwrap();
        for n in 101..=105 {
            log.append(seen(n)).unwrap();
        }
        drop(log);
        let text = std::fs::read_to_string(other.path().join(AUDIT_FILE)).unwrap();
        let other_lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let mut mixed = lines.clone();
        mixed[3] = other_lines[3].clone();
        write(dir.path(), &mixed);
        // Same key, same sequence number: it authenticates, but its chain is the other's.
        let b = broken_at(dir.path());
        assert_eq!(b.entry, 4, "{b}");
        assert!(b.why.contains("does not follow"), "{b}");
        drop(other);
    }

    #[test]
    fn an_entry_written_in_part_is_cut_off_and_the_trail_goes_on() {
        let (dir, _) = trail();
        let path = dir.path().join(AUDIT_FILE);
        let whole = std::fs::metadata(&path).unwrap().len();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"6 AAAAbroken-half-line").unwrap();
        drop(f);
        let v = verify(dir.path(), key()).unwrap().unwrap();
        assert!(v.cut_short);
        assert_eq!((v.head.0, v.valid_len), (5, whole));
        let log = AuditLog::open(dir.path(), key(), false).unwrap();
        assert_eq!(log.append(seen(6)).unwrap().seq, 6);
        let v = verify(dir.path(), key()).unwrap().unwrap();
        assert!(!v.cut_short);
        assert_eq!(v.entries.len(), 6);
    }

    #[test]
    fn one_process_appends() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), key(), false).unwrap();
        let e = AuditLog::open(dir.path(), key(), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("another process appends"), "{e}");
        drop(log);
        AuditLog::open(dir.path(), key(), false).unwrap();
    }

    #[test]
    fn a_removed_trail_is_not_replaced_by_a_new_one() {
        let (dir, _) = trail();
        std::fs::remove_file(dir.path().join(AUDIT_FILE)).unwrap();
        let e = AuditLog::open(dir.path(), key(), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("was removed"), "{e}");
    }

    #[test]
    fn debug_shows_no_key() {
        let (dir, _) = trail();
        let log = AuditLog::open(dir.path(), key(), false).unwrap();
        let shown = format!("{log:?}");
        assert!(shown.contains("redacted"));
        assert!(!shown.contains("7, 7"));
    }
}
