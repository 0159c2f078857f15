//! The addressed message every protocol exchanges, and its stable binary encoding.
//!
//! Layout of version 1 (all integers big-endian):
//!
//! | bytes   | field                                   |
//! |---------|-----------------------------------------|
//! | 0       | format version (`1`)                    |
//! | 1..33   | session id                              |
//! | 33..35  | sender (group index)                    |
//! | 35      | `0` broadcast, `1` point-to-point       |
//! | 36..38  | recipient (group index; `0` if broadcast) |
//! | 38..42  | body length `L`                         |
//! | 42..    | body (`L` bytes): protocol tag, then the protocol's own encoding |
//!
//! The transport (issue: modules over mutual TLS) authenticates the sender and seals the
//! body; this layer only routes and checks addressing.

use concord_types::SessionId;

use crate::TssError;

/// Current envelope format version.
pub const ENVELOPE_VERSION: u8 = 1;
const HEADER_LEN: usize = 42;
/// Largest body accepted (cggmp21 aux-info messages with ZK proofs are ~100 KiB for n = 5).
pub const MAX_BODY_LEN: usize = 16 * 1024 * 1024;

/// One protocol message, addressed by group index.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The protocol run this message belongs to.
    pub session: SessionId,
    /// Group index of the sender.
    pub sender: u16,
    /// Group index of the recipient, or `None` for a broadcast to every participant.
    pub recipient: Option<u16>,
    /// Protocol tag byte followed by the protocol message.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("session", &self.session)
            .field("sender", &self.sender)
            .field("recipient", &self.recipient)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl Envelope {
    /// Encodes to the version-1 binary layout.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.body.len());
        out.push(ENVELOPE_VERSION);
        out.extend_from_slice(self.session.as_bytes());
        out.extend_from_slice(&self.sender.to_be_bytes());
        match self.recipient {
            None => {
                out.push(0);
                out.extend_from_slice(&0u16.to_be_bytes());
            }
            Some(r) => {
                out.push(1);
                out.extend_from_slice(&r.to_be_bytes());
            }
        }
        // Bodies are bounded by MAX_BODY_LEN when decoded; a larger one here is a bug.
        let len = u32::try_from(self.body.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    /// Decodes a version-1 envelope, rejecting anything truncated, oversized or trailing.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, TssError> {
        let bad = |reason: String| TssError::MalformedMessage {
            party: if bytes.len() >= 35 {
                u16::from_be_bytes([bytes[33], bytes[34]])
            } else {
                u16::MAX
            },
            reason,
        };
        if bytes.is_empty() {
            return Err(bad("empty envelope".into()));
        }
        if bytes[0] != ENVELOPE_VERSION {
            return Err(TssError::UnsupportedVersion {
                what: "message envelope",
                found: bytes[0],
                supported: ENVELOPE_VERSION,
            });
        }
        if bytes.len() < HEADER_LEN {
            return Err(bad(format!(
                "envelope truncated: {} bytes, header alone is {HEADER_LEN}",
                bytes.len()
            )));
        }
        let mut session = [0u8; 32];
        session.copy_from_slice(&bytes[1..33]);
        let sender = u16::from_be_bytes([bytes[33], bytes[34]]);
        let recipient_raw = u16::from_be_bytes([bytes[36], bytes[37]]);
        let recipient = match bytes[35] {
            0 if recipient_raw == 0 => None,
            0 => return Err(bad("broadcast envelope names a recipient".into())),
            1 => Some(recipient_raw),
            other => return Err(bad(format!("unknown destination kind {other}"))),
        };
        let len = u32::from_be_bytes([bytes[38], bytes[39], bytes[40], bytes[41]]) as usize;
        if len > MAX_BODY_LEN {
            return Err(bad(format!(
                "body of {len} bytes exceeds the {MAX_BODY_LEN}-byte limit"
            )));
        }
        let body = &bytes[HEADER_LEN..];
        if body.len() != len {
            return Err(bad(format!(
                "body length field says {len} bytes but {} follow",
                body.len()
            )));
        }
        Ok(Envelope {
            session: SessionId(session),
            sender,
            recipient,
            body: body.to_vec(),
        })
    }
}

/// Protocol tags: the first byte of every envelope body (internal; public only because
/// [`crate::frost::FrostSuite`] names them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[doc(hidden)]
pub enum Tag {
    EcdsaKeygen = 1,
    EcdsaAuxInfo = 2,
    EcdsaSigning = 3,
    EcdsaOnline = 4,
    Ed25519Dkg = 5,
    Ed25519Sign = 6,
    TaprootDkg = 7,
    TaprootSign = 8,
    DklsKeygen = 9,
    DklsSign = 10,
    DklsRefresh = 11,
    DklsRepair = 12,
    /// DKLs23 key generation on NIST P-256.
    DklsP256Keygen = 17,
    /// DKLs23 signing on NIST P-256.
    DklsP256Sign = 18,
    /// DKLs23 key refresh on NIST P-256.
    DklsP256Refresh = 19,
    /// DKLs23 share repair on NIST P-256.
    DklsP256Repair = 20,
    Ed25519Refresh = 13,
    TaprootRefresh = 14,
    Ed25519Repair = 15,
    TaprootRepair = 16,
}

impl Tag {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Tag::EcdsaKeygen => "ECDSA key generation",
            Tag::EcdsaAuxInfo => "ECDSA auxiliary-info generation",
            Tag::EcdsaSigning => "ECDSA signing",
            Tag::EcdsaOnline => "ECDSA online signing",
            Tag::Ed25519Dkg => "FROST Ed25519 key generation",
            Tag::Ed25519Sign => "FROST Ed25519 signing",
            Tag::TaprootDkg => "FROST Taproot key generation",
            Tag::TaprootSign => "FROST Taproot signing",
            Tag::DklsKeygen => "DKLs23 key generation",
            Tag::DklsSign => "DKLs23 signing",
            Tag::DklsRefresh => "DKLs23 key refresh",
            Tag::DklsRepair => "DKLs23 share repair",
            Tag::DklsP256Keygen => "DKLs23 P-256 key generation",
            Tag::DklsP256Sign => "DKLs23 P-256 signing",
            Tag::DklsP256Refresh => "DKLs23 P-256 key refresh",
            Tag::DklsP256Repair => "DKLs23 P-256 share repair",
            Tag::Ed25519Refresh => "FROST Ed25519 key refresh",
            Tag::TaprootRefresh => "FROST Taproot key refresh",
            Tag::Ed25519Repair => "FROST Ed25519 share repair",
            Tag::TaprootRepair => "FROST Taproot share repair",
        }
    }

    pub(crate) fn from_u8(code: u8) -> Option<Tag> {
        [
            Tag::EcdsaKeygen,
            Tag::EcdsaAuxInfo,
            Tag::EcdsaSigning,
            Tag::EcdsaOnline,
            Tag::Ed25519Dkg,
            Tag::Ed25519Sign,
            Tag::TaprootDkg,
            Tag::TaprootSign,
            Tag::DklsKeygen,
            Tag::DklsSign,
            Tag::DklsRefresh,
            Tag::DklsRepair,
            Tag::DklsP256Keygen,
            Tag::DklsP256Sign,
            Tag::DklsP256Refresh,
            Tag::DklsP256Repair,
            Tag::Ed25519Refresh,
            Tag::TaprootRefresh,
            Tag::Ed25519Repair,
            Tag::TaprootRepair,
        ]
        .into_iter()
        .find(|t| *t as u8 == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            session: SessionId([7; 32]),
            sender: 2,
            recipient: Some(1),
            body: vec![1, 2, 3],
        }
    }

    #[test]
    fn round_trip() {
        for recipient in [None, Some(0), Some(4)] {
            let e = Envelope {
                recipient,
                ..sample()
            };
            assert_eq!(Envelope::decode(&e.encode()).unwrap(), e);
        }
    }

    #[test]
    fn truncated_and_trailing_bytes_are_rejected() {
        let bytes = sample().encode();
        for cut in [1, 10, 41, bytes.len() - 1] {
            let err = Envelope::decode(&bytes[..cut]).unwrap_err();
            assert!(
                matches!(err, TssError::MalformedMessage { .. }),
                "{cut}: {err}"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        let err = Envelope::decode(&long).unwrap_err().to_string();
        assert!(err.contains("party 2") && err.contains("4 follow"), "{err}");
        assert!(Envelope::decode(&[]).is_err());
    }

    #[test]
    fn unknown_version_is_named() {
        let mut bytes = sample().encode();
        bytes[0] = 9;
        let err = Envelope::decode(&bytes).unwrap_err().to_string();
        assert!(err.contains("version 9"), "{err}");
    }

    #[test]
    fn debug_does_not_dump_the_body() {
        let s = format!("{:?}", sample());
        assert!(s.contains("body_len: 3"), "{s}");
    }
}
