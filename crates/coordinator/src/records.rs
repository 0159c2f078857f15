//! The coordinator's records and their states, as the store keeps them and the API shows
//! them. This file is a leaf: it depends on nothing else of the coordinator, and everything
//! else (store, engine, transfer machines, API) depends on it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use concord_types::Scheme;
use concord_wire::authority::{AddressRef, AgreementRule, SignedIntent};
use concord_wire::units::Amount;
use serde::{Deserialize, Serialize};

/// Current time, RFC 3339 (UTC, seconds).
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Milliseconds since the Unix epoch.
pub fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch, with the fraction (for step timings).
pub fn epoch_ms_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Declares a string-backed state enum: serde, `Display`/`FromStr` and its OpenAPI schema (a
/// string enum, described by the doc comments) with the stored names, so the store, the API,
/// its document and the code use one spelling, and the compiler lists every place a new state
/// touches. Only doc comments may stand on the enum and its states (they are its schema's
/// description).
macro_rules! states {
    ($(#[doc = $doc:literal])* $name:ident {
        $($(#[doc = $vdoc:literal])* $v:ident = $s:literal),+ $(,)?
    }) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[doc = $vdoc])* #[serde(rename = $s)] $v),+
        }

        impl $name {
            /// Every state, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$v),+];

            /// The stored name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok($name::$v),)+
                    other => Err(format!(concat!("unknown ", stringify!($name), " {:?}"), other)),
                }
            }
        }

        /// A string enum of the stored names; the description is the type's doc and each
        /// name's.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                let names: &[(&str, &[&str])] = &[$(($s, &[$($vdoc),*])),+];
                state_schema(&[$($doc),*], names)
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

/// The OpenAPI schema of a [`states!`] enum: a string enum of its `names` (each with the lines
/// of its doc comment), described by the lines of the type's `doc` comment and a list of the
/// names and what each means.
fn state_schema(
    doc: &[&str],
    names: &[(&str, &[&str])],
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    let join = |lines: &[&str]| lines.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ");
    let mut description = join(doc);
    description.push('\n');
    for (name, doc) in names {
        description.push_str(&format!("\n- `{name}`: {}", join(doc)));
    }
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(names.iter().map(|(name, _)| *name)))
        .description(Some(description))
        .into()
}

states! {
    /// What a job does.
    JobKind {
        /// A signer group prepares its ECDSA auxiliary material.
        AuxInfo = "aux_info",
        /// A wallet is made by distributed key generation.
        Keygen = "keygen",
        /// An existing key is imported (each member opens its sealed shard).
        Import = "import",
        /// A payload is proposed, approved and signed.
        Sign = "sign",
        /// An ECDSA presignature is made for the pool.
        Presign = "presign",
        /// A wallet's shares are re-randomised (proactive refresh), its key unchanged.
        Refresh = "refresh",
        /// A child wallet (non-hardened BIP-32) is derived by every member from its share.
        Derive = "derive",
        /// A lost member is replaced: its shares rebuilt for the new member, every share
        /// refreshed.
        Repair = "repair",
    }
}

states! {
    /// Where a job is.
    JobStatus {
        /// Recorded, not started.
        Pending = "pending",
        /// A protocol run is under way (aux info, key generation, presignature).
        Running = "running",
        /// Proposed; approvals are being collected.
        Approving = "approving",
        /// Approved; the signers are signing.
        Signing = "signing",
        /// Finished with a result.
        Done = "done",
        /// Finished without one.
        Failed = "failed",
    }
}

impl JobStatus {
    /// The states a job ends in.
    pub const FINAL: [JobStatus; 2] = [JobStatus::Done, JobStatus::Failed];

    /// Whether the job has ended.
    pub fn is_final(self) -> bool {
        Self::FINAL.contains(&self)
    }
}

states! {
    /// What a job event records.
    EventKind {
        /// A module's signed approval.
        Approval = "approval",
        /// A module refused, or its approval did not check out.
        Dissent = "dissent",
        /// Progress of a protocol run.
        Progress = "progress",
        /// The job's result was verified.
        Result = "result",
        /// A run or the job failed.
        Failure = "failure",
        /// Anything else worth knowing.
        Note = "note",
        /// A module released its approval (the job was given up before it signed).
        Release = "release",
    }
}

states! {
    /// Where a signer group is.
    GroupStatus {
        /// Its auxiliary material is being prepared.
        Preparing = "preparing",
        /// Wallets can be made.
        Ready = "ready",
        /// Preparation failed.
        Failed = "failed",
    }
}

states! {
    /// Deposit or withdrawal.
    TransferKind {
        /// Wallet → exchange.
        Deposit = "deposit",
        /// Exchange → wallet.
        Withdrawal = "withdrawal",
    }
}

states! {
    /// Where a transfer is. Deposits: requested → queued → resolving → signing → signed →
    /// broadcast → confirmed → credited. Withdrawals: requested → signing → signed →
    /// submitted (or unknown, until reconciled) → sent → arrived. Either may end failed; a
    /// transaction that can still be mined is never failed.
    TransferStatus {
        /// Recorded.
        Requested = "requested",
        /// Waiting for its wallet's earlier deposits to reach the chain (nonces go in order).
        Queued = "queued",
        /// Asking every module for the deposit address.
        Resolving = "resolving",
        /// Proposed to the modules; approvals and signing.
        Signing = "signing",
        /// Signed (the transaction or the withdraw request is stored).
        Signed = "signed",
        /// Accepted by the node; pending until mined.
        Broadcast = "broadcast",
        /// Mined to the configured depth.
        Confirmed = "confirmed",
        /// The exchange credited the deposit (final).
        Credited = "credited",
        /// The exchange accepted the withdraw request.
        Submitted = "submitted",
        /// The withdraw request was sent but its outcome is not known yet: reconciled by
        /// looking the order up at the exchange, never requested twice.
        Unknown = "unknown",
        /// The exchange sent the withdrawal on chain.
        Sent = "sent",
        /// The withdrawal reached the wallet (final).
        Arrived = "arrived",
        /// Ended without moving funds (final).
        Failed = "failed",
    }
}

impl TransferStatus {
    /// The states a transfer ends in.
    pub const FINAL: [TransferStatus; 3] = [
        TransferStatus::Credited,
        TransferStatus::Arrived,
        TransferStatus::Failed,
    ];

    /// Whether the transfer has ended.
    pub fn is_final(self) -> bool {
        Self::FINAL.contains(&self)
    }
}

/// How an ECDSA sign job produces its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignMode {
    /// One online round from a pooled presignature, when one fits.
    #[default]
    Presigned,
    /// The full interactive protocol.
    Interactive,
}

impl SignMode {
    /// The name stored with a job.
    pub fn as_str(self) -> &'static str {
        match self {
            SignMode::Presigned => "presigned",
            SignMode::Interactive => "interactive",
        }
    }
}

impl FromStr for SignMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "presigned" => Ok(SignMode::Presigned),
            "interactive" => Ok(SignMode::Interactive),
            other => Err(format!(
                "unknown signing mode {other:?}: expected presigned or interactive"
            )),
        }
    }
}

/// An enrolled module.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ModuleRecord {
    /// Operator-chosen id.
    pub id: String,
    /// Ed25519 identity key (hex in JSON).
    #[serde(with = "hex::serde")]
    #[schema(value_type = String, pattern = "^([0-9a-fA-F]{2})*$")]
    pub identity: Vec<u8>,
    /// X25519 sealing key (hex).
    #[serde(with = "hex::serde")]
    #[schema(value_type = String, pattern = "^([0-9a-fA-F]{2})*$")]
    pub sealing_key: Vec<u8>,
    /// The identity's signature over the sealing key (hex).
    #[serde(with = "hex::serde")]
    #[schema(value_type = String, pattern = "^([0-9a-fA-F]{2})*$")]
    pub sealing_key_signature: Vec<u8>,
    /// When it was enrolled.
    pub enrolled_at: String,
}

/// A signer group.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct GroupRecord {
    /// Group id.
    pub id: String,
    /// Signers required.
    pub threshold: u16,
    /// Members.
    pub size: u16,
    /// Where it is.
    pub status: GroupStatus,
    /// The job preparing its auxiliary material.
    pub aux_job_id: Option<String>,
    /// Member module ids in index order.
    pub members: Vec<String>,
    /// The engine its ECDSA wallets run (pinned by every member when the group is set up).
    pub engine: concord_types::EcdsaEngine,
    /// When it was created.
    pub created_at: String,
}

/// The result of a repair job: who replaced whom, and the wallets whose shares were rebuilt
/// (then every member's refreshed).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct GroupRepaired {
    /// The group.
    pub group_id: String,
    /// The member index.
    pub index: u16,
    /// The module that was lost.
    pub replaced: String,
    /// The module now at that index.
    pub by: String,
    /// The wallets repaired (their children were derived again by the new member).
    pub wallets: Vec<String>,
}

/// The result of a refresh job: the wallet, its (unchanged) key, and the commitment to the
/// refreshed public shares every member now holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct WalletRefreshed {
    /// The wallet.
    pub wallet_id: String,
    /// Its public key, hex (unchanged).
    pub public_key: String,
    /// Commitment to the members' refreshed public verifying shares, hex.
    pub commitment: String,
    /// The members that replaced their shares.
    pub members: Vec<String>,
}

/// A wallet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct WalletRecord {
    /// Wallet id (hex).
    pub id: String,
    /// Its signer group.
    pub group_id: String,
    /// Scheme name.
    pub scheme: String,
    /// Group public key (hex).
    #[serde(with = "hex::serde")]
    #[schema(value_type = String, pattern = "^([0-9a-fA-F]{2})*$")]
    pub public_key: Vec<u8>,
    /// The key-generation job that made it.
    pub job_id: String,
    /// When it was created.
    pub created_at: String,
}

states! {
    /// How a wallet's key came to be.
    WalletKind {
        /// By distributed key generation: the key never existed whole.
        Generated = "generated",
        /// Imported: an existing key, split and sealed to the modules by the importing tool.
        Imported = "imported",
        /// Derived (non-hardened BIP-32) from another wallet of the group by every member.
        Derived = "derived",
        /// Native multisig: defined by the admin-signed policy from the member modules' own
        /// keys (a P2WSH, a Safe); no shares, no group of its own.
        Multisig = "multisig",
    }
}

impl WalletKind {
    /// The kind of wallet a job of `kind` makes, if it makes one.
    pub fn made_by(kind: JobKind) -> Option<WalletKind> {
        match kind {
            JobKind::Keygen => Some(WalletKind::Generated),
            JobKind::Import => Some(WalletKind::Imported),
            JobKind::Derive => Some(WalletKind::Derived),
            JobKind::AuxInfo
            | JobKind::Sign
            | JobKind::Presign
            | JobKind::Refresh
            | JobKind::Repair => None,
        }
    }
}

/// An address a wallet has on a network, derived from its group key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct WalletAddress {
    /// The exchanges' network code (`ETH`).
    pub network: String,
    /// The kind of address: `evm`; on a UTXO chain `p2wpkh`, `p2tr` or `p2wsh`; a Safe
    /// wallet's `safe`.
    pub kind: String,
    /// The address as the network writes it (EVM: EIP-55 checksummed).
    pub address: String,
}

/// The address kind of an EVM account.
pub const EVM_ADDRESS: &str = "evm";

/// Every address a wallet has, derived from its group key: an ecdsa-secp256k1 wallet has its
/// EVM account, on `evm_network` (the exchanges' code for the coordinator's EVM chain).
/// schnorr-taproot, ed25519 and ecdsa-p256 (exchange API key) wallets have none yet.
pub fn wallet_addresses(
    wallet: &WalletRecord,
    evm_network: &str,
) -> Result<Vec<WalletAddress>, String> {
    let scheme: Scheme = wallet
        .scheme
        .parse()
        .map_err(|e| format!("wallet {}: {e}", wallet.id))?;
    Ok(match scheme {
        Scheme::EcdsaSecp256k1 => {
            let address = concord_chain::evm_address(&wallet.public_key)
                .map_err(|e| format!("wallet {}'s key: {e}", wallet.id))?;
            vec![WalletAddress {
                network: evm_network.to_owned(),
                kind: EVM_ADDRESS.to_owned(),
                address: address.to_checksum(None),
            }]
        }
        // Extension point: the UTXO chains add their addresses here (P2WPKH for an ECDSA
        // key, P2TR for a schnorr-taproot one), one `WalletAddress` per network and kind.
        Scheme::SchnorrTaproot | Scheme::Ed25519 | Scheme::EcdsaP256 => Vec::new(),
    })
}

/// A threshold wallet's addresses on a UTXO chain (`network` is the exchanges' code for it):
/// P2WPKH of an ECDSA key, P2TR of a FROST Taproot key; none for Ed25519.
pub fn utxo_addresses(
    wallet: &WalletRecord,
    chain: concord_chain::utxo::UtxoNetwork,
    network: &str,
) -> Vec<WalletAddress> {
    let Ok(scheme) = wallet.scheme.parse::<Scheme>() else {
        return Vec::new();
    };
    concord_wire::payload::threshold_wallet_script(scheme, &wallet.public_key)
        .ok()
        .and_then(|script| {
            Some(WalletAddress {
                network: network.to_owned(),
                kind: script.kind().to_owned(),
                address: chain.address(&script.script_pubkey()).ok()?,
            })
        })
        .into_iter()
        .collect()
}

/// A finished key-generation or import job's result: the wallet it made, and its addresses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct WalletCreated {
    /// The wallet.
    #[serde(flatten)]
    pub wallet: WalletRecord,
    /// Its addresses ([`wallet_addresses`]).
    #[serde(default)]
    pub addresses: Vec<WalletAddress>,
}

impl WalletCreated {
    /// The result for `wallet`, with its addresses on `evm_network`.
    pub fn of(wallet: WalletRecord, evm_network: &str) -> Result<WalletCreated, String> {
        let addresses = wallet_addresses(&wallet, evm_network)?;
        Ok(WalletCreated { wallet, addresses })
    }
}

/// A finished aux-info job's result: the group it prepared, now ready.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupPrepared {
    /// The group.
    pub group_id: String,
}

/// A finished sign job's result: the signature, verified against the wallet's key, and who
/// made it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignatureMade {
    /// Whether the signers signed from a presignature (one online round), as they report it.
    pub presigned: bool,
    /// The signature, hex (65 bytes `r || s || v` for ECDSA, 64 bytes otherwise).
    pub signature: String,
    /// The group indices of the members that signed.
    pub signers: Vec<u16>,
    /// The modules that approved.
    pub approvers: Vec<String>,
    /// The modules that refused, with their reasons.
    pub dissenters: BTreeMap<String, String>,
    /// The digest signed, hex.
    pub digest: String,
    /// The hash of the policy the approving modules applied, hex.
    pub policy: Option<String>,
    /// A native multisig wallet's: each signer's own signatures (hex; one per input of a
    /// UTXO spend, one of the SafeTx hash for a Safe), `signature` left empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub multisig: BTreeMap<String, Vec<String>>,
    /// A threshold wallet's spend on a UTXO chain: the signature of each input, in input
    /// order (hex; `signature` is input 0's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    /// A held credential's withdraw request (Kraken): nothing is signed here; the holder
    /// sent the approved request with the key it holds, and this is the exchange's
    /// withdrawal id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange_withdrawal_id: Option<String>,
}

/// A finished presign job's result: the presignature added to the wallet's pool.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresignatureMade {
    /// Its public fingerprint (hex), identical at every signer.
    pub fingerprint: String,
    /// The group indices of the members that hold it.
    pub signers: Vec<u16>,
}

/// What a finished job made, by its kind: an aux-info job its group, a key generation or
/// import its wallet, a sign job its signature, a presign job its presignature, a refresh
/// the commitment to the new shares.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(untagged)]
pub enum JobResult {
    /// A repair's (first: no other result has `replaced`).
    Repaired(GroupRepaired),
    /// A refresh's (no other result has a `commitment`).
    Refreshed(WalletRefreshed),
    /// An aux-info job's.
    Group(GroupPrepared),
    /// A key generation's or an import's.
    Wallet(WalletCreated),
    /// A sign job's.
    Signature(SignatureMade),
    /// A presign job's.
    Presignature(PresignatureMade),
}

/// One coin a wallet holds on chain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ChainBalance {
    /// The exchanges' coin code (`ETH`, or a configured token's).
    pub coin: String,
    /// `native`, or the token's contract (EIP-55 checksummed).
    pub asset: String,
    /// In coin units, a plain decimal without trailing zeros (`1.5`).
    pub amount: String,
    /// In base units (wei for ETH), a decimal integer.
    pub raw: String,
}

/// The asset name of a chain's native coin in [`ChainBalance::asset`].
pub const NATIVE_ASSET: &str = "native";

/// A wallet's balances on the coordinator's chain: the native coin, then every configured
/// token, in configuration order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct WalletBalances {
    /// The wallet.
    pub wallet: String,
    /// The exchanges' network code of the chain.
    pub network: String,
    /// The wallet's address there (EVM: EIP-55 checksummed).
    pub address: String,
    /// One entry per coin, zero balances included.
    pub balances: Vec<ChainBalance>,
}

/// An exchange account's balances, as one module's connector read them with its read key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ExchangeBalances {
    /// The exchange connection, as modules name it.
    pub exchange: String,
    /// The module whose connector answered.
    pub module: String,
    /// The coins the account holds (free or locked); coins at zero are left out.
    pub balances: Vec<concord_exchange::Balance>,
}

/// A job: a group's aux material, a wallet's key generation or import, a signature, a
/// presignature.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct JobRecord {
    /// Job id.
    pub id: String,
    /// What it does.
    pub kind: JobKind,
    /// Signer group.
    pub group_id: String,
    /// Wallet (sign, presign and import jobs).
    pub wallet_id: Option<String>,
    /// Scheme (keygen, import and sign jobs).
    pub scheme: Option<String>,
    /// Agreement rule (sign jobs).
    pub rule: Option<AgreementRule>,
    /// ECDSA sign jobs: from a presignature or interactive.
    pub mode: Option<SignMode>,
    /// Canonical signing payload (sign jobs); the import request (import jobs).
    #[serde(skip)]
    pub payload: Option<Vec<u8>>,
    /// The signed intent the job answers (JSON; sign and import jobs).
    #[serde(skip)]
    pub intent: Option<Vec<u8>>,
    /// Digest the coordinator computed (sign jobs; hex).
    #[serde(serialize_with = "opt_hex", deserialize_with = "de_opt_hex", default)]
    #[schema(value_type = Option<String>, pattern = "^([0-9a-fA-F]{2})*$")]
    pub digest: Option<Vec<u8>>,
    /// Where it is.
    pub status: JobStatus,
    /// Current protocol session.
    #[serde(skip)]
    pub session: Option<Vec<u8>>,
    /// Group indices signing (JSON list).
    pub signers: Option<String>,
    /// Result (JSON).
    #[serde(skip)]
    pub result: Option<Vec<u8>>,
    /// Why it failed.
    pub error: Option<String>,
    /// The transfer it signs for, if any (its runner runs it).
    pub transfer_id: Option<String>,
    /// Created.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

impl JobRecord {
    /// A new pending job of `kind` in `group_id`, everything else empty: callers fill in what
    /// their kind needs with struct-update syntax.
    pub fn pending(id: String, kind: JobKind, group_id: &str) -> JobRecord {
        let t = now();
        JobRecord {
            id,
            kind,
            group_id: group_id.to_owned(),
            wallet_id: None,
            scheme: None,
            rule: None,
            mode: None,
            payload: None,
            intent: None,
            digest: None,
            status: JobStatus::Pending,
            session: None,
            signers: None,
            result: None,
            error: None,
            transfer_id: None,
            created_at: t.clone(),
            updated_at: t,
        }
    }
}

fn opt_hex<S: serde::Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(b) => s.serialize_some(&hex::encode(b)),
        None => s.serialize_none(),
    }
}

fn de_opt_hex<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| hex::decode(s).map_err(serde::de::Error::custom))
        .transpose()
}

/// One recorded event of a job: an approval, a dissent, a result…
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct JobEvent {
    /// Order of recording.
    pub seq: i64,
    /// The module concerned, if any.
    pub module_id: Option<String>,
    /// What it records.
    pub kind: EventKind,
    /// Digest the module approved or computed (hex).
    #[serde(serialize_with = "opt_hex", deserialize_with = "de_opt_hex", default)]
    #[schema(value_type = Option<String>, pattern = "^([0-9a-fA-F]{2})*$")]
    pub digest: Option<Vec<u8>>,
    /// Human-readable detail.
    pub detail: Option<String>,
    /// The module's signature over its statement (approvals; hex).
    #[serde(serialize_with = "opt_hex", deserialize_with = "de_opt_hex", default)]
    #[schema(value_type = Option<String>, pattern = "^([0-9a-fA-F]{2})*$")]
    pub signature: Option<Vec<u8>>,
    /// The entry of the module's audit trail that records its answer: `<seq>:<SHA-256 hex>`
    /// (`concord module audit` shows the module's side).
    #[serde(default)]
    pub audit: Option<String>,
    /// When.
    pub at: String,
}

/// A policy the coordinator relays: as proposed and signed so far.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PolicyRecord {
    /// Its hash, hex.
    pub hash: String,
    /// Its version.
    pub version: u64,
    /// JSON of the signed policy.
    #[serde(skip)]
    pub document: String,
    /// `proposed` (no module adopted it), `active` (in force in at least one module) or
    /// `superseded`.
    pub status: String,
    /// When it was proposed.
    pub created_at: String,
}

/// The policy a module reports in force.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ModulePolicy {
    /// The module.
    pub module_id: String,
    /// The hash of its policy in force (none yet: `None`).
    pub policy_hash: Option<String>,
    /// Its version (0: none).
    pub version: u64,
    /// The last policy offered to it.
    pub offered: Option<String>,
    /// Why it did not adopt that one.
    pub error: Option<String>,
}

/// What one module said the deposit address is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Resolution {
    /// The module.
    pub module: String,
    /// The address it reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Or why it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A withdraw request as signed by the module group: kept so that a resumed withdrawal
/// sends the same bytes while they are still acceptable.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SignedRequest {
    /// The exact request (Binance: the query string without `signature`; Coinbase: the
    /// token's signing input).
    pub request: String,
    /// The group's signature (base64, as the exchange expects it). The API shows it empty
    /// while the request can still be sent: a live signed request is a bearer credential (a
    /// Coinbase token does not even bind the send's body).
    pub signature: String,
    /// After this time (ms since the Unix epoch) the exchange no longer accepts it.
    pub valid_until_ms: u64,
}

/// A transfer's whole record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct TransferRecord {
    /// Transfer id: the intent's id.
    pub id: String,
    /// Deposit or withdrawal.
    pub kind: TransferKind,
    /// Where it is.
    pub status: TransferStatus,
    /// The trader's wallet (sender of a deposit; receiver of a withdrawal to a wallet, empty
    /// for one to an outside address).
    pub wallet_id: String,
    /// The exchange connection.
    pub exchange: String,
    /// Coin code.
    pub coin: String,
    /// Network code.
    pub network: String,
    /// Amount in coin units, as requested.
    pub amount: Amount,
    /// Agreement rule.
    pub rule: AgreementRule,
    /// Signing mode for ECDSA.
    pub mode: SignMode,
    /// Where the funds go: the deposit address (deposits) or the withdrawal's destination
    /// address.
    #[serde(default)]
    pub destination: Option<String>,
    /// A withdrawal's address-book destination, as the intent names it.
    #[serde(default)]
    pub to: Option<AddressRef>,
    /// The principal who signed the intent.
    #[serde(default)]
    pub requester: Option<String>,
    /// The signed intent (the transfer's id is its id).
    #[serde(default)]
    pub intent: Option<SignedIntent>,
    /// Each module's report of the deposit address.
    #[serde(default)]
    pub resolutions: Vec<Resolution>,
    /// The account nonce used (deposits).
    #[serde(default)]
    pub nonce: Option<u64>,
    /// The exact payload proposed (canonical, hex): re-proposed unchanged until its nonce
    /// is used or released.
    #[serde(default)]
    pub payload: Option<String>,
    /// The sign job.
    #[serde(default)]
    pub sign_job_id: Option<String>,
    /// Modules that refused, with their reasons.
    #[serde(default)]
    pub dissenters: BTreeMap<String, String>,
    /// Modules that approved.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// The hash of the policy the approving modules applied.
    #[serde(default)]
    pub policy: Option<String>,
    /// The signed transaction (hex), once signed.
    #[serde(default)]
    pub raw_tx: Option<String>,
    /// The signed withdraw request, once signed.
    #[serde(default)]
    pub signed_request: Option<SignedRequest>,
    /// The chain transaction hash.
    #[serde(default)]
    pub tx_hash: Option<String>,
    /// The exchange's withdrawal id.
    #[serde(default)]
    pub exchange_withdrawal_id: Option<String>,
    /// Milliseconds from the request to each step, as measured here.
    #[serde(default)]
    pub timings_ms: BTreeMap<String, f64>,
    /// What happened, in order.
    #[serde(default)]
    pub log: Vec<String>,
    /// Why it failed, or what it waits for.
    #[serde(default)]
    pub error: Option<String>,
    /// When it was requested.
    pub created_at: String,
    /// Request time, ms since the Unix epoch (for timings).
    pub created_ms: f64,
}

impl TransferRecord {
    /// The record as the API shows it: a signed request's signature withheld while the
    /// exchange may still accept it.
    pub fn for_api(mut self) -> Self {
        if let Some(sr) = self.signed_request.as_mut()
            && sr.valid_until_ms > epoch_ms()
        {
            sr.signature.clear();
        }
        self
    }

    /// Moves to `status`, logging why.
    pub fn step(&mut self, status: TransferStatus, note: impl Into<String>) {
        self.status = status;
        self.log
            .push(format!("{} {status}: {}", now(), note.into()));
        self.mark(status.as_str());
    }

    /// Logs a note without changing the status.
    pub fn note(&mut self, note: impl Into<String>) {
        self.log.push(format!("{} {}", now(), note.into()));
    }

    /// Records when a step was reached (ms since the request, to the microsecond); the first
    /// time counts.
    pub fn mark(&mut self, what: &str) {
        let at = ((epoch_ms_f64() - self.created_ms) * 1000.0).round() / 1000.0;
        self.timings_ms.entry(what.to_owned()).or_insert(at);
    }

    /// Whether the transfer has ended.
    pub fn is_final(&self) -> bool {
        self.status.is_final()
    }
}
