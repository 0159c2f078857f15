//! Concord's wire: how parties recognise each other and talk without trusting the path.
//!
//! - [`identity`]: each party's Ed25519 identity key (the patent's environment-specific key)
//!   and X25519 sealing key, with fingerprints operators compare when pinning.
//! - [`tls`]: module ↔ coordinator mutual TLS 1.3 in which each side pins the other's identity
//!   key (no certificate authority), ready for gRPC (ALPN `h2`).
//! - [`api_tls`]: HTTPS for the coordinator's REST API: its server certificate, and clients
//!   that pin the certificate's SHA-256 fingerprint or trust a CA the operator names.
//! - [`seal`]: module ↔ module MPC messages, relayed by the coordinator, sealed to their
//!   recipient (HPKE) and signed by their sender, so the relay can neither read nor alter them.
//!
//! - [`rpc`], [`grpc`]: the module ↔ coordinator gRPC service (`proto/concord.proto`) and its
//!   plumbing over that TLS.
//! - [`payload`]: what modules are asked to sign (a message, an EVM transfer, an exchange
//!   withdraw request), in one canonical encoding, and the digest they approve.
//! - [`authority`]: who may ask for what — the admin-signed policy, signed intents, approval
//!   statements and the certificates modules check before they sign.
//! - [`messages`], [`verify`]: approval statements and protocol results, and independent
//!   verification of finished signatures.
//!
//! Errors are one enum, [`WireError`], with the blamed party as data.

pub mod api_tls;
pub mod authority;
pub mod grpc;
pub mod identity;
pub mod messages;
pub mod payload;
pub mod rpc;
pub mod seal;
pub mod telemetry;
pub mod tls;
pub mod units;
pub mod verify;

mod error;

pub use error::WireError;
pub use grpc::{connect_channel, tls_incoming};
pub use identity::{IdentityKey, IdentitySigner, PublicIdentity, SealingKey, SealingPublicKey};
