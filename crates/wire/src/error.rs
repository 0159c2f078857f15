//! The crate's one error type. Parties to blame are data, not prose, so callers (the module
//! daemon, the coordinator) can record and alert on them.

/// Everything that can go wrong with identities, pinned-key TLS or sealed MPC messages.
///
/// For sealed messages, `sender` is always the party index the message came *in the name
/// of* (the index the caller expected, which is also the one the relay claimed). Before the
/// sender's signature has been checked the fault may equally lie with the relay: only
/// [`WireError::Undecryptable`] is proven to be the sender's own doing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// A key could not be decoded or is not acceptable (wrong length, not hex, not a valid or
    /// a weak curve point).
    #[error("invalid {what}: {reason}")]
    InvalidKey {
        /// Which kind of key.
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },

    /// A signature did not verify against the identity key it was checked with.
    #[error("the signature does not verify against identity key {fingerprint}")]
    BadSignature {
        /// Fingerprint of the identity key the signature was checked against.
        fingerprint: String,
    },

    /// The identity key could not sign (a key kept in an HSM: the token refused, was
    /// unreachable, or returned a signature that does not verify).
    #[error("the identity key could not sign: {0}")]
    SignerFailed(String),

    /// A TLS certificate could not be made, or a TLS configuration could not be built.
    #[error("TLS setup failed: {0}")]
    TlsSetup(String),

    /// The TLS peer presented no certificate.
    #[error("the peer presented no certificate")]
    NoPeerCertificate,

    /// The TLS peer's certificate could not be parsed or is not acceptable.
    #[error("the peer's certificate is not acceptable: {reason}")]
    BadCertificate {
        /// Why it was rejected.
        reason: String,
    },

    /// The TLS peer's certificate carries a key that is not Ed25519.
    #[error("the peer's certificate does not carry an Ed25519 identity key")]
    NotEd25519,

    /// The TLS peer proved an identity key that is not pinned here.
    #[error("the peer's identity key {fingerprint} is not pinned here")]
    UnpinnedPeer {
        /// Fingerprint of the peer's identity key.
        fingerprint: String,
    },

    /// A message could not be sealed (HPKE encapsulation failed, or the plaintext is too long).
    #[error("could not seal a message to party {recipient}: {reason}")]
    Sealing {
        /// The intended recipient.
        recipient: u16,
        /// What went wrong.
        reason: String,
    },

    /// A sealed message is truncated, garbled or has inconsistent lengths.
    #[error("malformed sealed message from party {sender}: {reason}")]
    Malformed {
        /// The party the message came in the name of.
        sender: u16,
        /// What was wrong.
        reason: String,
    },

    /// A sealed message has a format version this build cannot read.
    #[error(
        "sealed message from party {sender} has format version {found} (this build reads version {supported})"
    )]
    UnsupportedVersion {
        /// The party the message came in the name of.
        sender: u16,
        /// Version found.
        found: u8,
        /// Version this build reads.
        supported: u8,
    },

    /// A sealed message belongs to another protocol session (a replay from another run).
    #[error("sealed message from party {sender} belongs to another session")]
    WrongSession {
        /// The party the message came in the name of.
        sender: u16,
    },

    /// A sealed message names another sender than the party it was delivered as coming from.
    #[error(
        "sealed message delivered as coming from party {sender} names party {claimed} as its sender"
    )]
    WrongSender {
        /// The party the message was delivered as coming from.
        sender: u16,
        /// The sender index written in the message.
        claimed: u16,
    },

    /// A sealed message is addressed to another party than us.
    #[error(
        "sealed message from party {sender} is addressed to party {recipient}, not to party {expected}"
    )]
    WrongRecipient {
        /// The party the message came in the name of.
        sender: u16,
        /// The recipient index written in the message.
        recipient: u16,
        /// Our own index.
        expected: u16,
    },

    /// A sealed message's signature does not verify against its sender's pinned identity key:
    /// it was altered on the way, or was not made by that sender.
    #[error("sealed message from party {sender} was altered or not signed by that party")]
    Tampered {
        /// The party the message came in the name of.
        sender: u16,
    },

    /// A correctly signed message could not be decrypted with our sealing key: the sender
    /// sealed it to another key or sealed garbage.
    #[error(
        "sealed message from party {sender} is correctly signed but cannot be decrypted with our sealing key"
    )]
    Undecryptable {
        /// The sender, proven by its signature.
        sender: u16,
    },

    /// A gRPC connection could not be made.
    #[error("{0}")]
    Connect(String),

    /// A finished signature does not verify against the wallet's key.
    #[error("{0}")]
    InvalidSignature(String),
}

impl WireError {
    /// The party this error blames, if any (see the type's documentation for how far the
    /// blame is proven).
    pub fn blamed(&self) -> Option<u16> {
        match self {
            WireError::Malformed { sender, .. }
            | WireError::UnsupportedVersion { sender, .. }
            | WireError::WrongSession { sender }
            | WireError::WrongSender { sender, .. }
            | WireError::WrongRecipient { sender, .. }
            | WireError::Tampered { sender }
            | WireError::Undecryptable { sender } => Some(*sender),
            _ => None,
        }
    }

    pub(crate) fn invalid_key(what: &'static str, reason: impl ToString) -> Self {
        WireError::InvalidKey {
            what,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn tls_setup(reason: impl ToString) -> Self {
        WireError::TlsSetup(reason.to_string())
    }

    pub(crate) fn malformed(sender: u16, reason: impl ToString) -> Self {
        WireError::Malformed {
            sender,
            reason: reason.to_string(),
        }
    }
}
