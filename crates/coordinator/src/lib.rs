//! Concord's coordinator: the transaction manager and signature aggregator (patent 350 and
//! 310). It holds no key material: it enrolls modules, keeps every job's and transfer's
//! record, proposes what to sign with the requester's signed intent, collects and checks
//! approvals, relays sealed protocol messages it cannot read, and verifies every signature
//! against the wallet's key before releasing it. Authority is the modules' to check.
//!
//! Two listeners: gRPC over pinned-key mutual TLS for modules ([`grpc`]), and REST/JSON for
//! operators and traders ([`api`]). Several coordinators may share one PostgreSQL database:
//! work is leased to one at a time and taken over when its holder dies
//! ([`store::leases`]).
//!
//! Layers, bottom up: [`records`] and [`config`] (data, no behaviour) ← [`store`] ← the
//! [`engine`] (jobs) ← [`transfers`] (deposit and withdrawal machines) and [`policy`] ←
//! this facade ← [`api`] and [`grpc`].

pub mod api;
pub mod config;
mod engine;
mod error;
pub mod failpoints;
pub mod grpc;
pub mod hub;
pub mod policy;
pub mod records;
pub mod store;
pub mod transfers;

use std::sync::Arc;

use concord_types::{Scheme, Threshold, WalletId};
use concord_wire::authority::{Action, Endorsement, Policy, SignedIntent, WalletPurpose};
use concord_wire::identity::{PublicIdentity, SealingPublicKey};
use concord_wire::payload::SigningPayload;
use concord_wire::tls::PinStore;
use serde::{Deserialize, Serialize};

pub use config::Timeouts;
pub use engine::{Engine, subsets};
pub use error::Error;
pub use records::{
    ChainBalance, ExchangeBalances, GroupPrepared, GroupRecord, GroupRepaired, GroupStatus,
    JobEvent, JobKind, JobRecord, JobResult, JobStatus, ModuleRecord, PresignatureMade, SignMode,
    SignatureMade, TransferKind, TransferRecord, TransferStatus, WalletAddress, WalletBalances,
    WalletCreated, WalletKind, WalletRecord, WalletRefreshed, now,
};
pub use store::JobFilter;

use crate::hub::Hub;
use crate::store::Store;

pub use concord_wire::authority::AgreementRule;

/// The TLS pin store: identity keys of enrolled modules.
#[derive(Default)]
pub struct EnrolledModules {
    keys: std::sync::RwLock<std::collections::HashSet<[u8; 32]>>,
}

impl EnrolledModules {
    /// Pins a module's identity key.
    pub fn pin(&self, key: &PublicIdentity) {
        if let Ok(mut k) = self.keys.write() {
            k.insert(*key.as_bytes());
        }
    }
}

impl PinStore for EnrolledModules {
    fn is_pinned(&self, key: &PublicIdentity) -> bool {
        self.keys
            .read()
            .map(|k| k.contains(key.as_bytes()))
            .unwrap_or(false)
    }
}

/// Request to enroll a module.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct EnrollModule {
    /// Operator-chosen id (letters, digits, `-`, `_`; up to 64).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub id: String,
    /// Ed25519 identity key, hex.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub identity: String,
    /// X25519 sealing key, hex.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub sealing_key: String,
    /// The identity's signature over the sealing key, hex.
    #[schema(pattern = "^[0-9a-fA-F]{128}$")]
    pub sealing_key_signature: String,
}

/// Request to create a signer group.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct CreateGroup {
    /// Group id (letters, digits, `-`, `_`; up to 64).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub id: String,
    /// Signers required (2 to the number of members).
    #[schema(minimum = 2, maximum = 255)]
    pub threshold: u16,
    /// Member module ids, each enrolled and listed once; their order fixes their indices.
    #[schema(schema_with = api::group_members)]
    pub members: Vec<String>,
    /// The threshold-ECDSA engine of the group's ECDSA wallets; `dkls23` when omitted (see
    /// ADR 0002). Schnorr and Ed25519 wallets run FROST either way.
    #[serde(default)]
    pub engine: Option<concord_types::EcdsaEngine>,
}

/// Request to create a wallet by DKG.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct CreateWallet {
    /// Signer group.
    pub group: String,
    /// Scheme.
    pub scheme: Scheme,
}

/// Request to import an existing key, already split and sealed by the importing tool, under
/// an `importer` principal's signed intent (which names the group, scheme and public key).
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportWallet {
    /// The importer's signed intent; its action is an `import`.
    #[schema(schema_with = api::import_intent)]
    pub intent: SignedIntent,
    /// The importing tool's one-time identity key (hex), which sealed the shards.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub importer: String,
    /// One sealed shard per group index (hex).
    pub shards: Vec<String>,
}

/// Request to sign a message with a wallet: a trader's signed intent (wallet, message, rule).
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    /// The trader's signed intent; its action is a `sign_message`.
    #[schema(schema_with = api::sign_message_intent)]
    pub intent: SignedIntent,
    /// ECDSA only: `presigned` (default; in a cggmp21 group uses a pooled presignature when
    /// one fits the approving modules, else signs interactively; DKLs23 groups always sign
    /// interactively) or `interactive`.
    #[serde(default)]
    pub mode: SignMode,
}

/// A job with its events and result, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobView {
    /// The job.
    #[serde(flatten)]
    pub job: JobRecord,
    /// Its events, in order.
    pub events: Vec<JobEvent>,
    /// Its result, when done: what the job made ([`JobResult`], by its kind).
    #[schema(value_type = Option<JobResult>)]
    pub result: Option<serde_json::Value>,
}

/// A module as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModuleView {
    /// The record.
    #[serde(flatten)]
    pub module: ModuleRecord,
    /// Identity fingerprint, for operators to compare.
    pub fingerprint: String,
    /// Whether its stream is open now.
    pub connected: bool,
}

/// A wallet as the API shows it: its record, how it was made, its signer group, what the
/// policy in force says it is, and its addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WalletView {
    /// The record (its fields appear at the top level).
    #[serde(flatten)]
    pub wallet: WalletRecord,
    /// By key generation or by import (the kind of the job that made it).
    pub kind: WalletKind,
    /// Signers its group requires.
    pub threshold: u16,
    /// Its group's member modules, in index order.
    pub members: Vec<String>,
    /// Its label in the policy in force (`None`: the policy does not name it, or no policy
    /// is in force).
    pub label: Option<String>,
    /// What the policy in force lets it do (`None`: it signs nothing).
    pub purpose: Option<WalletPurpose>,
    /// Every address it has ([`records::wallet_addresses`]).
    pub addresses: Vec<WalletAddress>,
    /// For a derived wallet: its parent and path.
    #[serde(default)]
    pub derived_from: Option<DerivedFrom>,
}

/// Where a derived wallet comes from.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct DerivedFrom {
    /// The parent wallet's id.
    pub wallet: String,
    /// The non-hardened BIP-32 path below it: 1 to 16 child numbers, each below 2^31.
    #[schema(value_type = String, pattern = "^m(/0*(?:[0-9]{1,9}|1[0-9]{9}|20[0-9]{8}|21[0-3][0-9]{7}|214[0-6][0-9]{6}|2147[0-3][0-9]{5}|21474[0-7][0-9]{4}|214748[0-2][0-9]{3}|2147483[0-5][0-9]{2}|21474836[0-3][0-9]|214748364[0-7])){1,16}$")]
    pub path: concord_types::DerivationPath,
}

/// Request to replace a lost member of a signer group.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaceMember {
    /// The member module that was lost.
    pub member: String,
    /// The enrolled module that takes its index. Every member refuses unless the policy in
    /// force lists the group's members with it there.
    pub with: String,
}

/// Request to refresh a wallet's shares (no options: `{}`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshWallet {}

impl DerivedFrom {
    /// Where the wallet `job` made comes from, if the job is a derivation.
    pub(crate) fn of(job: &JobRecord) -> Result<Option<DerivedFrom>, Error> {
        if job.kind != JobKind::Derive {
            return Ok(None);
        }
        serde_json::from_slice(job.payload.as_deref().unwrap_or_default())
            .map(Some)
            .map_err(|e| Error::Internal(format!("stored derivation request {}: {e}", job.id)))
    }
}

/// What a repair job was asked (stored with it).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct RepairRequest {
    /// The member index.
    pub(crate) index: u16,
    /// The module that was lost.
    pub(crate) replaced: String,
    /// The module now at that index.
    pub(crate) by: String,
}

/// Request to derive a child wallet.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeriveWallet {
    /// The non-hardened BIP-32 path below the wallet (`m/0/7`): 1 to 16 child numbers, each
    /// below 2^31; the policy in force must allow children of the wallet under a prefix of it.
    #[schema(value_type = String, pattern = "^m(/0*(?:[0-9]{1,9}|1[0-9]{9}|20[0-9]{8}|21[0-3][0-9]{7}|214[0-6][0-9]{6}|2147[0-3][0-9]{5}|21474[0-7][0-9]{4}|214748[0-2][0-9]{3}|2147483[0-5][0-9]{2}|21474836[0-3][0-9]|214748364[0-7])){1,16}$")]
    pub path: concord_types::DerivationPath,
}

fn check_id(what: &str, id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "{what} id '{id}' is invalid: use 1 to 64 letters, digits, '-' or '_'"
        )))
    }
}

/// The coordinator's operations. Cheap to clone.
#[derive(Clone)]
pub struct Coordinator {
    engine: Engine,
    pins: Arc<EnrolledModules>,
}

impl Coordinator {
    /// Builds a coordinator over a store, loading enrolled modules into the pin store.
    pub async fn new(store: Store, timeouts: Timeouts) -> Result<Coordinator, Error> {
        // The metrics recorder first: what is counted before it is installed is lost.
        concord_wire::telemetry::prometheus();
        let pins = Arc::new(EnrolledModules::default());
        for id in store.identities().await? {
            if let Ok(key) = PublicIdentity::try_from(id.as_slice()) {
                pins.pin(&key);
            }
        }
        Ok(Coordinator {
            engine: Engine::new(store, timeouts),
            pins,
        })
    }

    /// Runs under this instance id (see [`config::Config::instance`]).
    pub fn with_instance(mut self, instance: &str) -> Coordinator {
        self.engine.instance = instance.into();
        self
    }

    /// Enables transfers over a chain and exchanges.
    pub fn with_transfers(
        mut self,
        chain: config::ChainSettings,
        exchanges: Vec<config::ExchangeEndpoint>,
        utxo: Option<config::UtxoSettings>,
    ) -> Result<Coordinator, Error> {
        self.engine.transfers = Some(Arc::new(config::TransferContext::new(
            chain, exchanges, utxo,
        )?));
        Ok(self)
    }

    /// Starts a deposit from a wallet to an exchange.
    pub async fn request_deposit(
        &self,
        req: transfers::DepositRequest,
    ) -> Result<TransferRecord, Error> {
        self.engine
            .accept(TransferKind::Deposit, req.intent, req.mode)
            .await
            .map(TransferRecord::for_api)
    }

    /// Starts a withdrawal from an exchange to a wallet.
    pub async fn request_withdrawal(
        &self,
        req: transfers::WithdrawalRequest,
    ) -> Result<TransferRecord, Error> {
        self.engine
            .accept(TransferKind::Withdrawal, req.intent, SignMode::Interactive)
            .await
            .map(TransferRecord::for_api)
    }

    /// Registers an exchange's withdraw-capable key (an Ed25519 wallet).
    pub async fn register_credential(
        &self,
        exchange: &str,
        req: transfers::CredentialRequest,
    ) -> Result<transfers::RegisteredCredential, Error> {
        self.engine
            .register_credential(exchange, req.clone())
            .await?;
        Ok(transfers::RegisteredCredential {
            exchange: exchange.to_owned(),
            wallet: req.wallet.to_string(),
            api_key: req.api_key,
        })
    }

    /// Transfers, newest first.
    pub async fn transfers(&self) -> Result<Vec<TransferRecord>, Error> {
        Ok(self
            .engine
            .store
            .transfers(1000)
            .await?
            .into_iter()
            .map(TransferRecord::for_api)
            .collect())
    }

    /// A transfer, waiting up to `wait` for it to reach a final status or `until` (a status
    /// name) if it has not.
    pub async fn transfer_wait(
        &self,
        id: &str,
        wait: std::time::Duration,
        until: Option<&str>,
    ) -> Result<TransferRecord, Error> {
        let deadline = tokio::time::Instant::now() + wait;
        // Subscribe before looking, so a step between the two is not missed.
        let mut moved = self.engine.finished.subscribe();
        loop {
            let t = self
                .engine
                .store
                .transfer(id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("transfer {id}")))?;
            let reached = until.is_some_and(|u| t.timings_ms.contains_key(u));
            if t.is_final() || reached || tokio::time::Instant::now() >= deadline {
                return Ok(t.for_api());
            }
            // Wake when the transfer moves (here), or look again within half a second (it
            // may be driven by another coordinator).
            let until =
                deadline.min(tokio::time::Instant::now() + std::time::Duration::from_millis(500));
            loop {
                match tokio::time::timeout_at(until, moved.recv()).await {
                    Ok(Ok(m)) if m == id => break,
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) | Err(_) => break,
                }
            }
        }
    }

    /// Reloads the TLS pin store from the database every two seconds (a module enrolled
    /// through another coordinator sharing it can connect here too).
    pub fn start_pin_refresh(&self) {
        let (store, pins) = (self.engine.store.clone(), self.pins.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                if let Ok(ids) = store.identities().await {
                    for id in ids {
                        if let Ok(key) = PublicIdentity::try_from(id.as_slice()) {
                            pins.pin(&key);
                        }
                    }
                }
            }
        });
    }

    /// The TLS pin store of enrolled modules.
    pub fn pins(&self) -> Arc<EnrolledModules> {
        self.pins.clone()
    }

    /// Sets the gauges read from the store (transfers and jobs by state, presignature pool
    /// depth) before the metrics are rendered.
    pub async fn refresh_gauges(&self) -> Result<(), Error> {
        concord_wire::telemetry::prometheus();
        let store = self.store();
        // Every state is set, those with nothing in them to zero.
        let transfers = store.transfer_counts().await?;
        for status in TransferStatus::ALL {
            let n = transfers
                .iter()
                .find(|(s, _)| s == status)
                .map_or(0, |(_, n)| *n);
            metrics::gauge!("concord_coordinator_transfers", "status" => status.to_string())
                .set(n as f64);
        }
        let jobs = store.job_counts().await?;
        for kind in records::JobKind::ALL {
            for status in records::JobStatus::ALL {
                let n = jobs
                    .iter()
                    .find(|(k, s, _)| k == kind.as_str() && s == status.as_str())
                    .map_or(0, |(_, _, n)| *n);
                metrics::gauge!("concord_coordinator_jobs", "kind" => kind.as_str(), "status" => status.as_str())
                    .set(n as f64);
            }
        }
        // A wallet whose pool ran dry shows 0 (wallets seen before are remembered).
        static SEEN: std::sync::Mutex<std::collections::BTreeSet<String>> =
            std::sync::Mutex::new(std::collections::BTreeSet::new());
        let depths = store.presignature_depths().await?;
        if let Ok(mut seen) = SEEN.lock() {
            seen.extend(depths.iter().map(|(w, _)| w.clone()));
            for wallet in seen.iter() {
                let n = depths
                    .iter()
                    .find(|(w, _)| w == wallet)
                    .map_or(0, |(_, n)| *n);
                metrics::gauge!("concord_coordinator_presignatures", "wallet" => wallet.clone())
                    .set(n as f64);
            }
        }
        Ok(())
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.engine.store
    }

    /// The hub of connected modules.
    pub fn hub(&self) -> &Hub {
        &self.engine.hub
    }

    /// Claims and resumes unfinished work now and every second from now on: what this
    /// coordinator left when it stopped, and what another left when it died.
    pub fn start_claims(&self) {
        self.engine.start_claims();
    }

    /// Enrolls a module after checking that its identity signed its sealing key.
    pub async fn enroll(&self, req: EnrollModule) -> Result<ModuleView, Error> {
        check_id("module", &req.id)?;
        let identity: PublicIdentity = req
            .identity
            .parse()
            .map_err(|e| Error::BadRequest(format!("identity: {e}")))?;
        let sealing: SealingPublicKey = req
            .sealing_key
            .parse()
            .map_err(|e| Error::BadRequest(format!("sealing_key: {e}")))?;
        let sig = hex::decode(&req.sealing_key_signature)
            .map_err(|_| Error::BadRequest("sealing_key_signature is not hex".into()))?;
        identity.verify_sealing_key(&sealing, &sig).map_err(|_| {
            Error::BadRequest("the sealing key is not signed by the module's identity key".into())
        })?;
        let rec = ModuleRecord {
            id: req.id,
            identity: identity.as_bytes().to_vec(),
            sealing_key: sealing.as_bytes().to_vec(),
            sealing_key_signature: sig,
            enrolled_at: now(),
        };
        self.engine.store.enroll_module(&rec).await?;
        self.pins.pin(&identity);
        tracing::info!(module = %rec.id, fingerprint = %identity.fingerprint(), "module enrolled");
        Ok(ModuleView {
            fingerprint: identity.fingerprint(),
            connected: false,
            module: rec,
        })
    }

    /// Every enrolled module, with whether it is connected.
    pub async fn modules(&self) -> Result<Vec<ModuleView>, Error> {
        let mods = self.engine.store.modules().await?;
        Ok(mods
            .into_iter()
            .map(|m| ModuleView {
                fingerprint: PublicIdentity::try_from(m.identity.as_slice())
                    .map(|k| k.fingerprint())
                    .unwrap_or_default(),
                connected: self.engine.hub.is_connected(&m.id),
                module: m,
            })
            .collect())
    }

    /// Creates a signer group and starts preparing its auxiliary material.
    pub async fn create_group(&self, req: CreateGroup) -> Result<GroupRecord, Error> {
        check_id("group", &req.id)?;
        let n = u16::try_from(req.members.len())
            .map_err(|_| Error::BadRequest("too many members".into()))?;
        Threshold::new(req.threshold, n).map_err(|e| Error::BadRequest(e.to_string()))?;
        let distinct: std::collections::BTreeSet<_> = req.members.iter().collect();
        if distinct.len() != req.members.len() {
            return Err(Error::BadRequest(
                "a module is listed twice in the group".into(),
            ));
        }
        for m in &req.members {
            if self.engine.store.module(m).await?.is_none() {
                return Err(Error::NotFound(format!("module {m}")));
            }
        }
        let job_id = uuid::Uuid::new_v4().to_string();
        let group = GroupRecord {
            id: req.id.clone(),
            threshold: req.threshold,
            size: n,
            status: GroupStatus::Preparing,
            aux_job_id: Some(job_id.clone()),
            members: req.members,
            engine: req.engine.unwrap_or(concord_types::EcdsaEngine::DEFAULT),
            created_at: now(),
        };
        self.engine.store.create_group(&group).await?;
        let job = JobRecord::pending(job_id, JobKind::AuxInfo, &group.id);
        self.engine
            .store
            .insert_job(&job, &self.engine.instance, engine::lease_deadline())
            .await?;
        self.engine.spawn(job);
        Ok(group)
    }

    /// A group.
    pub async fn group(&self, id: &str) -> Result<GroupRecord, Error> {
        self.engine
            .store
            .group(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("group {id}")))
    }

    /// Starts creating a wallet by DKG in a ready group, as job `job_id` (the API names it
    /// after the request's idempotency key): the same id again finds the job it started.
    pub async fn create_wallet(&self, req: CreateWallet, job_id: &str) -> Result<JobRecord, Error> {
        if let Some(existing) = self.engine.store.job(job_id).await? {
            return Ok(existing);
        }
        let group = self.group(&req.group).await?;
        if group.status != GroupStatus::Ready {
            return Err(Error::Conflict(format!(
                "group {} is {}: wallets can be created once its auxiliary material is ready",
                group.id, group.status
            )));
        }
        let job = JobRecord {
            scheme: Some(req.scheme.to_string()),
            ..JobRecord::pending(job_id.to_owned(), JobKind::Keygen, &group.id)
        };
        self.insert_and_run(job).await
    }

    /// Starts a proactive refresh of a wallet's shares (every member of its group, all
    /// connected; the policy in force must allow it: each module checks). Idempotent on the
    /// job id.
    pub async fn refresh_wallet(&self, wallet_id: &str, job_id: &str) -> Result<JobRecord, Error> {
        if let Some(existing) = self.engine.store.job(job_id).await? {
            return Ok(existing);
        }
        let wallet = self.wallet(wallet_id).await?;
        let group = self.group(&wallet.group_id).await?;
        if self.engine.derivation(&wallet).await?.is_some() {
            return Err(Error::BadRequest(format!(
                "wallet {} is a derived wallet: refresh its parent, its children follow",
                wallet.id
            )));
        }
        if wallet.scheme == concord_types::Scheme::EcdsaSecp256k1.as_str()
            && group.engine == concord_types::EcdsaEngine::Cggmp21
        {
            return Err(Error::BadRequest(format!(
                "wallet {} is an ecdsa-secp256k1 wallet of a cggmp21 group: cggmp21 0.6 has no threshold key refresh, so it cannot be refreshed (DKLs23 and FROST wallets can)",
                wallet.id
            )));
        }
        let job = JobRecord {
            wallet_id: Some(wallet.id.clone()),
            scheme: Some(wallet.scheme.clone()),
            ..JobRecord::pending(job_id.to_owned(), JobKind::Refresh, &group.id)
        };
        self.insert_and_run(job).await
    }

    /// Replaces a lost member of a DKLs23 group: the group's record names the new module at
    /// the lost one's index, then a repair job rebuilds the new member's share of every
    /// wallet and refreshes every share. The members decide (the policy in force must list
    /// the group with the new member); the coordinator only arranges it.
    pub async fn replace_member(
        &self,
        group_id: &str,
        req: ReplaceMember,
        job_id: &str,
    ) -> Result<JobRecord, Error> {
        if let Some(existing) = self.engine.store.job(job_id).await? {
            return Ok(existing);
        }
        let group = self.group(group_id).await?;
        if group.engine != concord_types::EcdsaEngine::Dkls23 {
            return Err(Error::BadRequest(format!(
                "group {} runs {}: only DKLs23 groups rebuild a member's shares (cggmp21 0.6 has no repair)",
                group.id, group.engine
            )));
        }
        let index = match (
            group.members.iter().position(|m| *m == req.member),
            group.members.iter().position(|m| *m == req.with),
        ) {
            (Some(_), Some(_)) => {
                return Err(Error::Conflict(format!(
                    "module {} is already a member of group {}",
                    req.with, group.id
                )));
            }
            // A first request, or one asked again after the record changed (the repair
            // runs again; members that already hold their new shares commit nothing new).
            (Some(i), None) | (None, Some(i)) => i,
            (None, None) => {
                return Err(Error::BadRequest(format!(
                    "module {} is not a member of group {}",
                    req.member, group.id
                )));
            }
        };
        if self.engine.store.module(&req.with).await?.is_none() {
            return Err(Error::NotFound(format!("module {}", req.with)));
        }
        let index = u16::try_from(index).map_err(|_| Error::Internal("member index".into()))?;
        let job = JobRecord {
            scheme: Some(concord_types::Scheme::EcdsaSecp256k1.to_string()),
            payload: Some(
                serde_json::to_vec(&RepairRequest {
                    index,
                    replaced: req.member,
                    by: req.with.clone(),
                })
                .unwrap_or_default(),
            ),
            ..JobRecord::pending(job_id.to_owned(), JobKind::Repair, &group.id)
        };
        self.engine
            .store
            .replace_group_member(&group.id, index, &req.with)
            .await?;
        self.insert_and_run(job).await
    }

    /// Starts deriving a child wallet (non-hardened BIP-32) of a DKLs23 wallet: every member
    /// checks the path against its policy and derives the child itself. Idempotent on the job
    /// id; deriving a child that exists answers with a job that finds it.
    pub async fn derive_wallet(
        &self,
        wallet_id: &str,
        req: DeriveWallet,
        job_id: &str,
    ) -> Result<JobRecord, Error> {
        if let Some(existing) = self.engine.store.job(job_id).await? {
            return Ok(existing);
        }
        let wallet = self.wallet(wallet_id).await?;
        let group = self.group(&wallet.group_id).await?;
        if wallet.scheme != concord_types::Scheme::EcdsaSecp256k1.as_str()
            || group.engine != concord_types::EcdsaEngine::Dkls23
        {
            return Err(Error::BadRequest(format!(
                "wallet {} is a {} wallet of a {} group: child wallets are derived from DKLs23 (ecdsa-secp256k1) wallets",
                wallet.id, wallet.scheme, group.engine
            )));
        }
        if req.path.is_master() {
            return Err(Error::BadRequest(
                "path m is the wallet itself: name a child, as m/0/7".into(),
            ));
        }
        if self.engine.derivation(&wallet).await?.is_some() {
            return Err(Error::BadRequest(format!(
                "wallet {} is itself a derived wallet: derive from its parent",
                wallet.id
            )));
        }
        let from = DerivedFrom {
            wallet: wallet.id.clone(),
            path: req.path,
        };
        let job = JobRecord {
            wallet_id: Some(wallet.id.clone()),
            scheme: Some(wallet.scheme.clone()),
            payload: Some(serde_json::to_vec(&from).unwrap_or_default()),
            ..JobRecord::pending(job_id.to_owned(), JobKind::Derive, &group.id)
        };
        self.insert_and_run(job).await
    }

    /// Starts importing an existing key: each member checks the importer's intent and opens
    /// and checks its sealed shard.
    pub async fn import_wallet(&self, req: ImportWallet) -> Result<JobRecord, Error> {
        let Action::Import {
            group,
            scheme,
            public_key,
            ..
        } = &req.intent.intent.action
        else {
            return Err(Error::BadRequest(format!(
                "the intent asks for a {}, not an import",
                req.intent.intent.action.kind()
            )));
        };
        let group = self.group(group).await?;
        if group.status != GroupStatus::Ready {
            return Err(Error::Conflict(format!(
                "group {} is {}: keys can be imported once its auxiliary material is ready",
                group.id, group.status
            )));
        }
        if req.shards.len() != usize::from(group.size) {
            return Err(Error::BadRequest(format!(
                "group {} has {} members but {} shards were sent",
                group.id,
                group.size,
                req.shards.len()
            )));
        }
        let wallet = WalletId::derive(*scheme, public_key);
        if self
            .engine
            .store
            .wallet(&wallet.to_string())
            .await?
            .is_some()
        {
            return Err(Error::Conflict(format!("wallet {wallet} already exists")));
        }
        let job = JobRecord {
            scheme: Some(scheme.to_string()),
            wallet_id: Some(wallet.to_string()),
            payload: Some(serde_json::to_vec(&req).map_err(|e| Error::Internal(e.to_string()))?),
            intent: Some(req.intent.to_json()),
            ..JobRecord::pending(req.intent.intent.id.clone(), JobKind::Import, &group.id)
        };
        self.insert_and_run(job).await
    }

    /// A wallet.
    pub async fn wallet(&self, id: &str) -> Result<WalletRecord, Error> {
        self.engine
            .store
            .wallet(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("wallet {id}")))
    }

    /// Every wallet.
    pub async fn wallets(&self) -> Result<Vec<WalletRecord>, Error> {
        self.engine.store.wallets().await
    }

    /// A wallet as the API shows it.
    pub async fn wallet_view(&self, id: &str) -> Result<WalletView, Error> {
        let policy = self.engine.policy_in_force().await?;
        if self.engine.store.wallet(id).await?.is_none()
            && let Some(view) = policy.as_ref().and_then(|p| {
                p.policy
                    .wallets
                    .iter()
                    .find(|r| r.wallet.to_string() == id)
                    .and_then(|r| self.multisig_view(r))
            })
        {
            return Ok(view);
        }
        let wallet = self.wallet(id).await?;
        let group = self.group(&wallet.group_id).await?;
        self.view_of(wallet, &group, policy.as_ref().map(|p| &p.policy))
            .await
    }

    /// Every wallet as the API shows it, oldest first.
    pub async fn wallet_views(&self) -> Result<Vec<WalletView>, Error> {
        let policy = self.engine.policy_in_force().await?;
        let mut groups = std::collections::HashMap::new();
        let mut views = Vec::new();
        for wallet in self.wallets().await? {
            if !groups.contains_key(&wallet.group_id) {
                let g = self.group(&wallet.group_id).await?;
                groups.insert(g.id.clone(), g);
            }
            let group = &groups[&wallet.group_id];
            views.push(
                self.view_of(wallet, group, policy.as_ref().map(|p| &p.policy))
                    .await?,
            );
        }
        // The native multisig wallets the policy in force defines.
        views.extend(
            policy
                .iter()
                .flat_map(|p| &p.policy.wallets)
                .filter_map(|r| self.multisig_view(r)),
        );
        Ok(views)
    }

    /// A native multisig wallet of the policy as the API shows it: its members and
    /// threshold from the definition, its P2WSH address (on the UTXO chain configured here)
    /// or its Safe. `None` for a rule that is not a multisig wallet's.
    fn multisig_view(&self, rule: &concord_wire::authority::WalletRule) -> Option<WalletView> {
        let def = rule.multisig.as_ref()?;
        let mut wallet = engine::multisig_wallet(def);
        wallet.scheme = "multisig".into();
        let addresses = match def.safe_owners() {
            Ok((_, safe, _)) => vec![WalletAddress {
                network: self.engine.evm_network().to_owned(),
                kind: "safe".into(),
                address: safe.to_checksum(None),
            }],
            Err(_) => def
                .wallet()
                .ok()
                .and_then(|(chain, script)| {
                    let network = match self.engine.utxo_network() {
                        Some((n, code)) if n == chain => code.to_owned(),
                        _ => chain.name().to_owned(),
                    };
                    Some(WalletAddress {
                        network,
                        kind: script.kind().to_owned(),
                        address: chain.address(&script.script_pubkey()).ok()?,
                    })
                })
                .into_iter()
                .collect(),
        };
        Some(WalletView {
            kind: WalletKind::Multisig,
            threshold: u16::from(def.threshold),
            members: def.members.iter().map(|m| m.module.clone()).collect(),
            label: Some(rule.label.clone()),
            purpose: Some(rule.purpose.clone()),
            addresses,
            derived_from: None,
            wallet,
        })
    }

    async fn view_of(
        &self,
        wallet: WalletRecord,
        group: &GroupRecord,
        policy: Option<&Policy>,
    ) -> Result<WalletView, Error> {
        let made_by = self.engine.store.job(&wallet.job_id).await?;
        let derived_from = made_by
            .as_ref()
            .and_then(|j| DerivedFrom::of(j).ok().flatten());
        let kind = made_by
            .and_then(|j| WalletKind::made_by(j.kind))
            .ok_or_else(|| {
                Error::Internal(format!(
                    "wallet {} names job {} as the one that made it, which is not a key generation or import",
                    wallet.id, wallet.job_id
                ))
            })?;
        let find =
            |id: &str| policy.and_then(|p| p.wallets.iter().find(|r| r.wallet.to_string() == id));
        // A child the policy does not name is under its parent's rule where that allows its
        // path (as the modules decide).
        let (label, purpose) = match (find(&wallet.id), &derived_from) {
            (Some(r), _) => (Some(r.label.clone()), Some(r.purpose.clone())),
            (None, Some(d)) => match find(&d.wallet) {
                Some(r) if r.allows_child(&d.path) => (
                    Some(format!("{} {}", r.label, d.path)),
                    Some(r.purpose.clone()),
                ),
                _ => (None, None),
            },
            (None, None) => (None, None),
        };
        let mut addresses = records::wallet_addresses(&wallet, self.engine.evm_network())
            .map_err(Error::Internal)?;
        if let Some((chain, network)) = self.engine.utxo_network() {
            addresses.extend(records::utxo_addresses(&wallet, chain, network));
        }
        Ok(WalletView {
            kind,
            threshold: group.threshold,
            members: group.members.clone(),
            label,
            purpose,
            addresses,
            derived_from,
            wallet,
        })
    }

    /// A wallet's balances on the chain (ECDSA wallets; a chain must be configured).
    pub async fn wallet_balances(&self, id: &str) -> Result<WalletBalances, Error> {
        self.engine.wallet_balances(id).await
    }

    /// An exchange account's balances, read by a connected module with its read key.
    pub async fn exchange_balances(&self, exchange: &str) -> Result<ExchangeBalances, Error> {
        self.engine.exchange_balances(exchange).await
    }

    /// Every signer group, oldest first.
    pub async fn groups(&self) -> Result<Vec<GroupRecord>, Error> {
        self.engine.store.groups().await
    }

    /// Jobs matching `filter`, newest first, without their events.
    pub async fn jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, Error> {
        self.engine.store.jobs(filter).await
    }

    /// Starts a sign job: proposal, approvals, agreement, threshold signature.
    pub async fn request_signature(&self, req: SignRequest) -> Result<JobRecord, Error> {
        let Action::SignMessage {
            wallet: wallet_id,
            message,
            rule,
        } = &req.intent.intent.action
        else {
            return Err(Error::BadRequest(format!(
                "the intent asks for a {}, not a message signature",
                req.intent.intent.action.kind()
            )));
        };
        let wallet = self.wallet(&wallet_id.to_string()).await?;
        let payload = SigningPayload::Message {
            wallet: *wallet_id,
            message: message.clone(),
            nonce: None,
        };
        payload
            .check()
            .map_err(|e| Error::BadRequest(e.to_string()))?;
        let job = JobRecord {
            wallet_id: Some(wallet.id.clone()),
            scheme: Some(wallet.scheme.clone()),
            rule: Some(*rule),
            mode: Some(req.mode),
            payload: Some(payload.to_canonical()),
            intent: Some(req.intent.to_json()),
            digest: Some(payload.digest().to_vec()),
            ..JobRecord::pending(
                req.intent.intent.id.clone(),
                JobKind::Sign,
                &wallet.group_id,
            )
        };
        self.insert_and_run(job).await
    }

    /// Records a new job and runs it; a job with its id recorded before (the same intent or
    /// request again, perhaps on another coordinator) is returned as it stands instead, and
    /// another request under a used intent id is refused.
    async fn insert_and_run(&self, job: JobRecord) -> Result<JobRecord, Error> {
        let store = &self.engine.store;
        if !store
            .insert_job(&job, &self.engine.instance, engine::lease_deadline())
            .await?
        {
            let existing = store
                .job(&job.id)
                .await?
                .ok_or_else(|| Error::Internal(format!("job {} vanished", job.id)))?;
            if existing.kind != job.kind || existing.intent != job.intent {
                return Err(Error::Conflict(format!(
                    "id {} was already used for another request",
                    job.id
                )));
            }
            return Ok(existing);
        }
        self.engine.spawn(job.clone());
        Ok(job)
    }

    /// A job, waiting up to `wait` for it to finish or fail if it is still running.
    pub async fn job_wait(&self, id: &str, wait: std::time::Duration) -> Result<JobView, Error> {
        self.engine.wait_job(id, Some(wait)).await?;
        self.job(id).await
    }

    /// Runs the presignature pool in the background (see [`Engine::run_pool`]).
    pub fn start_presignature_pool(&self, target: usize) {
        tokio::spawn(self.engine.clone().run_pool(target));
    }

    /// Stores a proposed policy.
    pub async fn propose_policy(
        &self,
        req: policy::ProposePolicy,
    ) -> Result<policy::PolicyView, Error> {
        self.engine.propose_policy(req).await
    }

    /// Adds an admin's signature to a policy and offers it to the modules.
    pub async fn sign_policy(
        &self,
        hash: &str,
        e: Endorsement,
    ) -> Result<policy::PolicyView, Error> {
        self.engine.sign_policy(hash, e).await
    }

    /// A policy with every module's report.
    pub async fn policy(&self, hash: &str) -> Result<policy::PolicyView, Error> {
        self.engine.policy_view(hash).await
    }

    /// The policy in force (or the newest proposal), and the newest proposal not in force.
    pub async fn policies(&self) -> Result<policy::Policies, Error> {
        Ok(policy::Policies {
            current: self.engine.current_policy().await?,
            pending: self.engine.pending_policy().await?,
        })
    }

    /// A job with its events and result.
    pub async fn job(&self, id: &str) -> Result<JobView, Error> {
        let job = self
            .engine
            .store
            .job(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("job {id}")))?;
        let events = self.engine.store.events(id).await?;
        let mut result: Option<serde_json::Value> = job
            .result
            .as_ref()
            .and_then(|r| serde_json::from_slice(r).ok());
        // A withdraw request's signature is a bearer credential while the exchange may still
        // take it (a Coinbase token does not even bind the send's body): withheld here as in
        // the transfer's record.
        if let (Some(tid), Some(serde_json::Value::Object(map))) =
            (&job.transfer_id, result.as_mut())
        {
            let live = match self.engine.store.transfer(tid).await? {
                Some(t) if t.kind == TransferKind::Withdrawal => t
                    .signed_request
                    .as_ref()
                    .is_none_or(|s| s.valid_until_ms > records::epoch_ms()),
                _ => false,
            };
            if live {
                if map.contains_key("signature") {
                    map.insert("signature".into(), serde_json::Value::String(String::new()));
                }
                map.remove("inputs");
            }
        }
        Ok(JobView {
            job,
            events,
            result,
        })
    }
}

/// Reads the coordinator's TLS identity key (a hex Ed25519 seed) from its file.
pub fn load_identity(path: &std::path::Path) -> Result<concord_wire::identity::IdentityKey, Error> {
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        Error::BadRequest(format!(
            "cannot read the identity key {}: {e}",
            path.display()
        ))
    })?);
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), &mut *seed).map_err(|_| {
        Error::BadRequest(format!(
            "{} does not hold a hex Ed25519 seed",
            path.display()
        ))
    })?;
    Ok(concord_wire::identity::IdentityKey::from_seed(&seed))
}

/// Serves modules (gRPC over pinned-key mutual TLS on `grpc`) and the REST API (on `http`,
/// over HTTPS, or plain HTTP when `api` says so and `http` is a loopback address) until
/// `shutdown` resolves, after resuming unfinished jobs.
pub async fn serve(
    coordinator: Coordinator,
    identity: &concord_wire::identity::IdentityKey,
    grpc: tokio::net::TcpListener,
    http: tokio::net::TcpListener,
    api: config::ApiTransport,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let http_addr = http
        .local_addr()
        .map_err(|e| Error::Internal(format!("the API listener: {e}")))?;
    if matches!(api, config::ApiTransport::InsecureHttp) {
        config::check_insecure_listen(http_addr)?;
        tracing::warn!(
            listen = %http_addr,
            "THE API IS SERVED OVER PLAIN HTTP (insecure_http): tokens and requests travel \
             unencrypted; for development on this machine only"
        );
    }
    failpoints::setup();
    coordinator.start_claims();
    coordinator.start_pin_refresh();
    let tls = concord_wire::tls::server_config(identity, coordinator.pins())
        .map_err(|e| Error::Internal(e.to_string()))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut stop_grpc = stop_rx.clone();
    let mut stop_http = stop_rx;
    let incoming = concord_wire::tls_incoming(grpc, tls);
    let grpc_server = tonic::transport::Server::builder()
        .initial_stream_window_size(concord_wire::grpc::STREAM_WINDOW)
        .initial_connection_window_size(concord_wire::grpc::CONNECTION_WINDOW)
        .add_service(
            concord_wire::rpc::module_link_server::ModuleLinkServer::new(grpc::LinkService::new(
                coordinator.clone(),
            )),
        )
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stop_grpc.wait_for(|s| *s).await;
        });
    let router = api::router(coordinator);
    let stopped = async move {
        let _ = stop_http.wait_for(|s| *s).await;
    };
    let http_server = async move {
        match api {
            config::ApiTransport::Https(tls) => {
                let listener = concord_wire::api_tls::TlsListener::new(http, tls)
                    .map_err(|e| Error::Internal(format!("the API listener: {e}")))?;
                axum::serve(listener, router)
                    .with_graceful_shutdown(stopped)
                    .await
            }
            config::ApiTransport::InsecureHttp => {
                // TCP_NODELAY as on the TLS listener, so both transports answer alike.
                let http = axum::serve::ListenerExt::tap_io(http, |tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                axum::serve(http, router)
                    .with_graceful_shutdown(stopped)
                    .await
            }
        }
        .map_err(|e| Error::Internal(format!("HTTP server: {e}")))
    };
    let (g, h) = tokio::join!(grpc_server, http_server);
    g.map_err(|e| Error::Internal(format!("gRPC server: {e}")))?;
    h?;
    Ok(())
}
