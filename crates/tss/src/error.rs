//! The crate's one error type. Parties to blame are data, not prose, so callers (the module
//! daemon, the aggregator) can record and alert on them.

use concord_types::{Scheme, TypesError};

/// Everything that can go wrong in a threshold protocol or while loading its state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TssError {
    /// The caller asked for something the protocol cannot do (bad threshold, unknown signer…).
    #[error("invalid parameters: {0}")]
    InvalidParameters(String),

    /// A message came from a party that is not part of this protocol run (or from ourselves).
    #[error("message from party {party}, which is not a participant of this session")]
    UnexpectedSender {
        /// The claimed sender.
        party: u16,
    },

    /// A message was addressed to another party.
    #[error("message from party {party} is addressed to party {recipient}, not to us")]
    WrongRecipient {
        /// The sender.
        party: u16,
        /// The party the message was addressed to.
        recipient: u16,
    },

    /// A message belongs to another protocol run.
    #[error("message from party {party} belongs to another session")]
    WrongSession {
        /// The sender.
        party: u16,
    },

    /// A message could not be decoded: truncated, garbled, or of the wrong protocol.
    #[error("malformed message from party {party}: {reason}")]
    MalformedMessage {
        /// The sender, as far as the envelope tells.
        party: u16,
        /// What was wrong.
        reason: String,
    },

    /// A party sent two different messages where one was expected.
    #[error("party {party} sent more than one message for round {round}")]
    DuplicateMessage {
        /// The sender.
        party: u16,
        /// The round.
        round: u8,
    },

    /// Parties disagree about what was broadcast: someone sent different messages to
    /// different recipients (reliable-broadcast check failed).
    #[error(
        "inconsistent broadcast: parties {parties:?} saw different round-{round} messages than we did"
    )]
    InconsistentBroadcast {
        /// Parties whose view differs from ours.
        parties: Vec<u16>,
        /// The round.
        round: u8,
    },

    /// The protocol aborted because parties misbehaved or a proof failed.
    #[error("{scheme} protocol aborted{}: {detail}", blame_suffix(.culprits))]
    Protocol {
        /// Which scheme's protocol.
        scheme: Scheme,
        /// Parties the protocol blamed, if it could tell.
        culprits: Vec<u16>,
        /// The protocol library's explanation.
        detail: String,
    },

    /// A party cheated in a way that exposes state the signers reuse across sessions (the
    /// pairwise oblivious-transfer correlations of DKLs23). It must never take part in a
    /// session of this key again: record it with [`crate::dkls::DklsKeyShare::exclude`] and
    /// persist the share.
    #[error(
        "party {party} cheated and must be excluded from every future session of this key ({scheme} protocol: {detail})"
    )]
    CheatingParty {
        /// Which scheme's protocol.
        scheme: Scheme,
        /// The party that cheated.
        party: u16,
        /// The protocol library's explanation.
        detail: String,
    },

    /// The final signature did not verify against the group key.
    #[error("the {scheme} signature does not verify against the group public key{}", blame_suffix(.culprits))]
    InvalidSignature {
        /// Which scheme.
        scheme: Scheme,
        /// Parties blamed, if known.
        culprits: Vec<u16>,
    },

    /// A stored key share, presignature or auxiliary material failed validation.
    #[error("invalid {what}: {reason}")]
    InvalidState {
        /// What was being loaded.
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },

    /// A key share belongs to another wallet than the one the operation is for.
    #[error("key share belongs to wallet {found}, not to wallet {expected}")]
    WrongWallet {
        /// The wallet the caller expected.
        expected: concord_types::WalletId,
        /// The wallet the share belongs to.
        found: concord_types::WalletId,
    },

    /// A stored object has a format version this build cannot read.
    #[error("unsupported {what} format version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        /// What was being loaded.
        what: &'static str,
        /// Version found.
        found: u8,
        /// Version this build reads.
        supported: u8,
    },

    /// The message transport failed or closed before the protocol finished.
    #[error("transport failed: {0}")]
    Transport(String),

    /// A domain value was out of range.
    #[error(transparent)]
    Types(#[from] TypesError),
}

fn blame_suffix(culprits: &[u16]) -> String {
    if culprits.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = culprits.iter().map(|c| c.to_string()).collect();
        format!(" (blamed: party {})", list.join(", party "))
    }
}

impl TssError {
    /// Parties this error blames, if any.
    pub fn blamed(&self) -> Vec<u16> {
        match self {
            TssError::UnexpectedSender { party }
            | TssError::WrongRecipient { party, .. }
            | TssError::WrongSession { party }
            | TssError::MalformedMessage { party, .. }
            | TssError::DuplicateMessage { party, .. }
            | TssError::CheatingParty { party, .. } => vec![*party],
            TssError::InconsistentBroadcast { parties, .. } => parties.clone(),
            TssError::Protocol { culprits, .. } | TssError::InvalidSignature { culprits, .. } => {
                culprits.clone()
            }
            _ => Vec::new(),
        }
    }

    pub(crate) fn invalid_state(what: &'static str, reason: impl ToString) -> Self {
        TssError::InvalidState {
            what,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn params(reason: impl ToString) -> Self {
        TssError::InvalidParameters(reason.to_string())
    }
}

/// Renders an error and its whole source chain on one line (the protocol libraries put the
/// useful detail, such as blamed parties, in inner errors).
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}
