//! End-to-end sealing of MPC messages, which the coordinator relays but can neither read nor
//! alter. Each message is encrypted to its recipient's [`SealingPublicKey`] with HPKE and
//! signed by its sender's [`IdentityKey`](crate::IdentityKey).
//!
//! # Sealed format, version 1
//!
//! All integers big-endian; offsets in bytes.
//!
//! | offset | length | field |
//! |---|---|---|
//! | 0 | 1 | format version, `0x01` |
//! | 1 | 32 | session id |
//! | 33 | 2 | sender index |
//! | 35 | 2 | recipient index |
//! | 37 | 32 | HPKE encapsulated key (`enc`) |
//! | 69 | 4 | ciphertext length `n` (plaintext length + 16) |
//! | 73 | `n` | HPKE ciphertext (ChaCha20-Poly1305, tag included) |
//! | 73 + `n` | 64 | Ed25519 signature by the sender's identity key |
//!
//! The first 73 bytes are the *header*.
//!
//! - HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305.
//!   `info` = `"concord/mpc/v1"` ‖ session ‖ sender index ‖ recipient index; AAD = the header.
//! - The signature is a pure Ed25519 signature of `"concord/mpc/v1/signature"` ‖ every
//!   preceding byte of the message (header and ciphertext). The domain tag is not sent; it
//!   keeps these signatures apart from everything else the identity key signs.
//!
//! [`open`] checks, in this order: length and version, that session and indices are the ones
//! the caller expects, the sender's signature (`verify_strict`), and only then decrypts. Every
//! error names the party the message came in the name of (see [`WireError`]).

use hpke::aead::{AeadTag, ChaCha20Poly1305};
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::identity::IdentitySigner;
use crate::{PublicIdentity, SealingKey, SealingPublicKey, WireError};

type Kem = X25519HkdfSha256;
type Kdf = HkdfSha256;
type Aead = ChaCha20Poly1305;

/// The format version [`seal`] writes and [`open`] reads.
pub const VERSION: u8 = 1;
/// Length of the header (everything before the ciphertext).
pub const HEADER_LEN: usize = 1 + 32 + 2 + 2 + 32 + 4;
/// Length of the AEAD tag inside the ciphertext.
pub const TAG_LEN: usize = 16;
/// Length of the trailing signature.
pub const SIGNATURE_LEN: usize = 64;
/// Bytes a sealed message adds to its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN + SIGNATURE_LEN;

const INFO_TAG: &[u8] = b"concord/mpc/v1";
const SIGNATURE_TAG: &[u8] = b"concord/mpc/v1/signature";

const ENC_AT: usize = 37;
const LEN_AT: usize = 69;

/// The routing fields of a sealed message, read without any check: a hint for relays and
/// for picking the sender's key, never a proof of anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealedHeader {
    /// Session id.
    pub session: [u8; 32],
    /// Claimed sender index.
    pub sender: u16,
    /// Recipient index.
    pub recipient: u16,
}

impl SealedHeader {
    /// Reads the routing fields of a version-1 message, or `None` if it is too short or of
    /// another version.
    pub fn peek(sealed: &[u8]) -> Option<SealedHeader> {
        if sealed.len() < HEADER_LEN || sealed[0] != VERSION {
            return None;
        }
        Some(SealedHeader {
            session: sealed[1..33].try_into().ok()?,
            sender: u16::from_be_bytes([sealed[33], sealed[34]]),
            recipient: u16::from_be_bytes([sealed[35], sealed[36]]),
        })
    }
}

fn info(session: &[u8; 32], sender_index: u16, recipient_index: u16) -> Vec<u8> {
    let mut info = Vec::with_capacity(INFO_TAG.len() + 36);
    info.extend_from_slice(INFO_TAG);
    info.extend_from_slice(session);
    info.extend_from_slice(&sender_index.to_be_bytes());
    info.extend_from_slice(&recipient_index.to_be_bytes());
    info
}

fn signed_bytes(body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SIGNATURE_TAG.len() + body.len());
    msg.extend_from_slice(SIGNATURE_TAG);
    msg.extend_from_slice(body);
    msg
}

/// Seals `plaintext` from party `sender_index` (signing with `sender`) to party
/// `recipient_index` (encrypting to `recipient`), for protocol session `session`.
pub fn seal<R: CryptoRngCore + ?Sized>(
    sender: &dyn IdentitySigner,
    sender_index: u16,
    recipient: &SealingPublicKey,
    recipient_index: u16,
    session: &[u8; 32],
    plaintext: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, WireError> {
    let sealing_failed = |reason: String| WireError::Sealing {
        recipient: recipient_index,
        reason,
    };
    let ct_len = plaintext
        .len()
        .checked_add(TAG_LEN)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| sealing_failed("the plaintext is too long".into()))?;
    let recipient_key = <Kem as hpke::Kem>::PublicKey::from_bytes(recipient.as_bytes())
        .map_err(|e| sealing_failed(e.to_string()))?;
    let (enc, mut ctx) = hpke::setup_sender::<Aead, Kdf, Kem, _>(
        &OpModeS::Base,
        &recipient_key,
        &info(session, sender_index, recipient_index),
        &mut Rng09(rng),
    )
    .map_err(|e| sealing_failed(format!("HPKE encapsulation failed: {e}")))?;

    let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
    out.push(VERSION);
    out.extend_from_slice(session);
    out.extend_from_slice(&sender_index.to_be_bytes());
    out.extend_from_slice(&recipient_index.to_be_bytes());
    out.extend_from_slice(&enc.to_bytes());
    out.extend_from_slice(&ct_len.to_be_bytes());
    debug_assert_eq!(out.len(), HEADER_LEN);

    let ciphertext = ctx
        .seal(plaintext, &out)
        .map_err(|e| sealing_failed(format!("HPKE sealing failed: {e}")))?;
    out.extend_from_slice(&ciphertext);
    let signature = sender.try_sign(&signed_bytes(&out))?;
    out.extend_from_slice(&signature);
    Ok(out)
}

/// Opens a message sealed by party `sender_index` (whose pinned identity is `sender`) to us,
/// party `recipient_index`, for protocol session `session`.
pub fn open(
    recipient: &SealingKey,
    recipient_index: u16,
    sender: &PublicIdentity,
    sender_index: u16,
    session: &[u8; 32],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, WireError> {
    let from = sender_index;

    // 1. Length and version.
    if sealed.len() < OVERHEAD {
        return Err(WireError::malformed(
            from,
            format!(
                "{} bytes is shorter than the {OVERHEAD} bytes of an empty message",
                sealed.len()
            ),
        ));
    }
    if sealed[0] != VERSION {
        return Err(WireError::UnsupportedVersion {
            sender: from,
            found: sealed[0],
            supported: VERSION,
        });
    }
    let (header, rest) = sealed.split_at(HEADER_LEN);
    let ct_len = u32::from_be_bytes([
        header[LEN_AT],
        header[LEN_AT + 1],
        header[LEN_AT + 2],
        header[LEN_AT + 3],
    ]);
    let body_len = rest.len() - SIGNATURE_LEN;
    if usize::try_from(ct_len).ok() != Some(body_len) {
        return Err(WireError::malformed(
            from,
            format!("the header announces {ct_len} ciphertext bytes but {body_len} follow"),
        ));
    }

    // 2. Session and indices.
    let claimed = SealedHeader::peek(header)
        .ok_or_else(|| WireError::malformed(from, "unreadable header"))?;
    if &claimed.session != session {
        return Err(WireError::WrongSession { sender: from });
    }
    if claimed.sender != sender_index {
        return Err(WireError::WrongSender {
            sender: from,
            claimed: claimed.sender,
        });
    }
    if claimed.recipient != recipient_index {
        return Err(WireError::WrongRecipient {
            sender: from,
            recipient: claimed.recipient,
            expected: recipient_index,
        });
    }

    // 3. The sender's signature over everything before it.
    let (signed, signature) = sealed.split_at(sealed.len() - SIGNATURE_LEN);
    sender
        .verify(&signed_bytes(signed), signature)
        .map_err(|_| WireError::Tampered { sender: from })?;

    // 4. Decrypt. The signature proves the sender made these bytes, so failure is theirs.
    let undecryptable = || WireError::Undecryptable { sender: from };
    let ciphertext = &rest[..body_len];
    let (body, tag) = ciphertext.split_at(body_len - TAG_LEN);
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&header[ENC_AT..LEN_AT])
        .map_err(|_| undecryptable())?;
    let tag = AeadTag::<Aead>::from_bytes(tag).map_err(|_| undecryptable())?;
    let secret = <Kem as hpke::Kem>::PrivateKey::from_bytes(recipient.to_bytes().as_ref())
        .map_err(|_| undecryptable())?;
    let mut ctx = hpke::setup_receiver::<Aead, Kdf, Kem>(
        &OpModeR::Base,
        &secret,
        &enc,
        &info(session, sender_index, recipient_index),
    )
    .map_err(|_| undecryptable())?;
    let mut plaintext = Zeroizing::new(body.to_vec());
    ctx.open_in_place_detached(&mut plaintext, header, &tag)
        .map_err(|_| undecryptable())?;
    Ok(plaintext)
}

/// Lends a `rand_core` 0.6 RNG (what the rest of Concord hands out) to hpke, which takes
/// `rand_core` 0.9 ones.
struct Rng09<'a, R: ?Sized>(&'a mut R);

impl<R: CryptoRngCore + ?Sized> hpke::rand_core::RngCore for Rng09<'_, R> {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        self.0.fill_bytes(dst)
    }
}

impl<R: CryptoRngCore + ?Sized> hpke::rand_core::CryptoRng for Rng09<'_, R> {}
