//! Fuzz harness for the protocol envelope every module receives from its peers
//! (`Envelope::decode`) and the decoding of the protocol message inside it (`inspect`).
//!
//! A bolero target: under `cargo test`/`cargo nextest` a bounded number of generated cases;
//! under `scripts/fuzz.sh` the same target coverage-guided (libFuzzer).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use bolero::{TypeGenerator, check};
use concord_tss::{ENVELOPE_VERSION, Envelope, MAX_BODY_LEN, SessionId, TssError, inspect};

#[derive(Debug, TypeGenerator)]
enum EnvelopeInput {
    /// Bytes as they arrive.
    Raw(Vec<u8>),
    /// A well-formed header with any length field and any body: the length field must never
    /// make the decoder allocate or read what is not there.
    Header {
        session: [u8; 32],
        sender: u16,
        kind: u8,
        recipient: u16,
        length: u32,
        body: Vec<u8>,
    },
    /// A well-formed envelope around any protocol tag, round and payload.
    Body {
        sender: u16,
        recipient: Option<u16>,
        tag: u8,
        round: u8,
        payload: Vec<u8>,
    },
}

fn check_bytes(bytes: &[u8]) {
    match Envelope::decode(bytes) {
        Ok(e) => {
            // One envelope, one encoding: what decodes re-encodes to the same bytes.
            assert_eq!(e.encode(), bytes);
            assert!(e.body.len() <= MAX_BODY_LEN);
            assert_eq!(bytes[0], ENVELOPE_VERSION);
            if let Ok(kind) = inspect(&e) {
                assert!(!kind.protocol.is_empty());
                assert!(!e.body.is_empty());
            }
        }
        Err(TssError::MalformedMessage { party, .. }) => {
            // The blamed party is the sender the header names, when there is one.
            if bytes.len() >= 35 {
                assert_eq!(party, u16::from_be_bytes([bytes[33], bytes[34]]));
            }
        }
        Err(TssError::UnsupportedVersion { found, .. }) => {
            assert_ne!(found, ENVELOPE_VERSION);
            assert_eq!(found, bytes[0]);
        }
        Err(e) => panic!("unexpected kind of refusal: {e:?}"),
    }
}

/// `Envelope::decode` and `inspect`: decode → encode is the identity, errors are errors, and
/// the length field is checked before anything is allocated.
#[test]
fn protocol_envelope() {
    check!()
        .with_type::<EnvelopeInput>()
        .with_iterations(20000)
        .for_each(|input| match input {
            EnvelopeInput::Raw(bytes) => check_bytes(bytes),
            EnvelopeInput::Header {
                session,
                sender,
                kind,
                recipient,
                length,
                body,
            } => {
                let mut bytes = vec![ENVELOPE_VERSION];
                bytes.extend_from_slice(session);
                bytes.extend_from_slice(&sender.to_be_bytes());
                bytes.push(kind % 3);
                bytes.extend_from_slice(&recipient.to_be_bytes());
                // Mostly the true length, sometimes a lie.
                let len = if length % 4 == 0 {
                    *length
                } else {
                    body.len() as u32
                };
                bytes.extend_from_slice(&len.to_be_bytes());
                bytes.extend_from_slice(body);
                check_bytes(&bytes);
            }
            EnvelopeInput::Body {
                sender,
                recipient,
                tag,
                round,
                payload,
            } => {
                let mut body = vec![tag % 18, *round];
                body.extend_from_slice(payload);
                let e = Envelope {
                    session: SessionId([9; 32]),
                    sender: *sender,
                    recipient: *recipient,
                    body,
                };
                let bytes = e.encode();
                assert_eq!(Envelope::decode(&bytes).unwrap(), e);
                check_bytes(&bytes);
            }
        });
}
