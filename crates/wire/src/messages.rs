//! JSON documents carried inside the protocol: the results modules report for each protocol
//! kind (approval statements are in [`crate::authority`]).

use concord_types::{Scheme, WalletId};
use serde::{Deserialize, Serialize};

/// Result of an aux-info run: the group whose material is ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuxResult {
    /// The group.
    pub group_id: String,
}

/// Result of a key generation: the wallet every member must agree on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeygenResult {
    /// Wallet id derived from the scheme and key.
    pub wallet_id: WalletId,
    /// Scheme.
    pub scheme: Scheme,
    /// Group public key, hex.
    pub public_key: String,
}

/// Result of a signing run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignResult {
    /// The signature, hex (65 bytes `r || s || v` for ECDSA, 64 bytes otherwise).
    pub signature: String,
    /// Whether the module signed from a presignature (one online round).
    #[serde(default)]
    pub presigned: bool,
}

/// Result of a refresh run (the new share set aside) or of its commit (the new share in use):
/// the same at every member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshResult {
    /// The wallet.
    pub wallet_id: WalletId,
    /// Its public key, hex (unchanged by a refresh).
    pub public_key: String,
    /// Commitment to the refreshed public verifying shares, hex.
    pub commitment: String,
}

/// Result of a presignature run: its public fingerprint, identical at every signer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresignResult {
    /// Fingerprint of the presignature (hex), which later signing runs name it by.
    pub fingerprint: String,
}

/// The session an imported shard is sealed under: it binds the shard to its group and wallet,
/// so a shard cannot be replayed into another import.
pub fn import_session(group_id: &str, wallet: &WalletId) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"concord/import/v1\0");
    h.update((group_id.len() as u64).to_be_bytes());
    h.update(group_id.as_bytes());
    h.update(wallet.0);
    h.finalize().into()
}

/// Group index an importing tool seals as (it is not a group member).
pub const IMPORTER_INDEX: u16 = u16::MAX;
