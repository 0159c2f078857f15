//! A signer group's auxiliary material, and wallets: distributed key generation and import.

use concord_types::{Scheme, WalletId};
use concord_wire::authority::Action;
use concord_wire::messages::{AuxResult, KeygenResult, RefreshResult};
use concord_wire::rpc::{ProtocolKind, StartProtocol};

use super::Engine;
use super::protocol::{Events, Run};
use crate::Error;
use crate::records::{
    EventKind, GroupPrepared, GroupRecord, GroupRepaired, GroupStatus, JobKind, JobRecord,
    JobStatus, WalletCreated, WalletRecord, WalletRefreshed, now,
};

/// What an import carries to the modules.
struct ImportParts {
    importer: Vec<u8>,
    shards: Vec<Vec<u8>>,
    wallet: Vec<u8>,
    intent: Vec<u8>,
    public_key: String,
}

impl Engine {
    pub(crate) async fn run_aux(&self, job: &JobRecord, events: &mut Events) -> Result<(), Error> {
        let group = self.group_of(&job.group_id).await?;
        self.wait_connected(&group.members).await?;
        let all: Vec<u16> = (0..group.size).collect();
        let run = Run {
            job,
            kind: ProtocolKind::AuxInfo,
            group: &group,
            parties: &all,
            status: JobStatus::Running,
            timeout: self.timeouts.aux_info,
            session: None,
        };
        let results = self
            .run_protocol(run, events, |_| {})
            .await
            .map_err(|e| e.into_error(&group))?;
        for (module, r) in &results {
            let r: AuxResult = serde_json::from_slice(r).map_err(|e| {
                Error::protocol(format!("module {module} sent an unreadable result: {e}"))
            })?;
            if r.group_id != group.id {
                return Err(Error::Protocol {
                    reason: format!(
                        "module {module} prepared group {} instead of {}",
                        r.group_id, group.id
                    ),
                    blamed: vec![module.clone()],
                });
            }
        }
        self.store
            .set_group_status(&group.id, GroupStatus::Ready)
            .await?;
        let result = GroupPrepared {
            group_id: group.id.clone(),
        };
        self.store
            .finish_job(&job.id, &serde_json::to_vec(&result).unwrap_or_default())
            .await
    }

    fn import_parts(job: &JobRecord) -> Result<ImportParts, Error> {
        let raw = job.payload.as_deref().unwrap_or_default();
        let i: crate::ImportWallet = serde_json::from_slice(raw)
            .map_err(|e| Error::Internal(format!("stored import request: {e}")))?;
        let Action::Import {
            scheme, public_key, ..
        } = &i.intent.intent.action
        else {
            return Err(Error::Internal(
                "stored import without an import intent".into(),
            ));
        };
        let shards = i
            .shards
            .iter()
            .map(|h| hex::decode(h).map_err(|_| Error::BadRequest("a shard is not hex".into())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ImportParts {
            importer: hex::decode(&i.importer).unwrap_or_default(),
            shards,
            wallet: WalletId::derive(*scheme, public_key).0.to_vec(),
            intent: i.intent.to_json(),
            public_key: hex::encode(public_key),
        })
    }

    /// Key generation or import: every member must report the same key.
    pub(crate) async fn run_keygen(
        &self,
        job: &JobRecord,
        events: &mut Events,
    ) -> Result<(), Error> {
        let group = self.group_of(&job.group_id).await?;
        if group.status != GroupStatus::Ready {
            return Err(Error::Conflict(format!(
                "group {} is {}, not ready",
                group.id, group.status
            )));
        }
        self.wait_connected(&group.members).await?;
        let all: Vec<u16> = (0..group.size).collect();
        let import = match job.kind {
            JobKind::Import => Some(Self::import_parts(job)?),
            _ => None,
        };
        let run = Run {
            job,
            kind: if import.is_some() {
                ProtocolKind::Import
            } else {
                ProtocolKind::Keygen
            },
            group: &group,
            parties: &all,
            status: JobStatus::Running,
            timeout: self.timeouts.protocol,
            session: None,
        };
        let results = self
            .run_protocol(run, events, |s| {
                if let Some(i) = &import {
                    s.importer = i.importer.clone();
                    s.import_shards = i.shards.clone();
                    s.wallet_id = i.wallet.clone();
                    s.intent = i.intent.clone();
                }
            })
            .await
            .map_err(|e| e.into_error(&group))?;
        let r = agreed_key(&results)?;
        if let Some(i) = &import
            && !r.public_key.eq_ignore_ascii_case(&i.public_key)
        {
            return Err(Error::protocol(
                "the modules hold shares of another key than the one announced for import",
            ));
        }
        self.record_wallet(job, &group.id, r).await
    }

    async fn record_wallet(
        &self,
        job: &JobRecord,
        group_id: &str,
        r: KeygenResult,
    ) -> Result<(), Error> {
        let scheme: Scheme = r.scheme;
        let public_key = hex::decode(&r.public_key)
            .map_err(|_| Error::protocol("the reported public key is not hex"))?;
        if WalletId::derive(scheme, &public_key) != r.wallet_id {
            return Err(Error::protocol(
                "the reported wallet id does not match its public key",
            ));
        }
        let wallet = WalletRecord {
            id: r.wallet_id.to_string(),
            group_id: group_id.to_owned(),
            scheme: scheme.to_string(),
            public_key,
            job_id: job.id.clone(),
            created_at: now(),
        };
        // Its addresses are derived before it is recorded: a key that has none is refused.
        let result =
            WalletCreated::of(wallet.clone(), self.evm_network()).map_err(Error::protocol)?;
        self.store.insert_wallet(&wallet).await?;
        self.store
            .finish_job(&job.id, &serde_json::to_vec(&result).unwrap_or_default())
            .await
    }
}

/// What a refresh job's event records once every member has set its new share aside.
const REFRESH_AGREED: &str = "every member holds its refreshed share: committing";

impl Engine {
    /// A proactive refresh: every member re-randomises its share (the key stays); once all
    /// report the same commitment to the new public shares, they are told to put the new
    /// share in use (the old one is then gone). A coordinator that resumes the job after the
    /// agreement goes straight to the commit, so members never refresh from different shares.
    pub(crate) async fn run_refresh(
        &self,
        job: &JobRecord,
        events: &mut Events,
    ) -> Result<(), Error> {
        let group = self.group_of(&job.group_id).await?;
        let wallet_id = job.wallet_id.clone().unwrap_or_default();
        let wallet = self
            .store
            .wallet(&wallet_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("wallet {wallet_id}")))?;
        self.all_connected(&group, "a refresh needs every member of group")
            .await?;
        let r = self
            .refresh_and_commit(
                job,
                &group,
                &wallet,
                ProtocolKind::Refresh,
                REFRESH_AGREED,
                events,
                |_| {},
            )
            .await?;
        let result = WalletRefreshed {
            wallet_id: wallet.id.clone(),
            public_key: hex::encode(&wallet.public_key),
            commitment: r.commitment,
            members: group.members.clone(),
        };
        self.store
            .finish_job(&job.id, &serde_json::to_vec(&result).unwrap_or_default())
            .await
    }

    /// Every member connected (a run of all `n`), or an error naming who is not.
    async fn all_connected(&self, group: &GroupRecord, why: &str) -> Result<(), Error> {
        self.wait_connected(&group.members).await?;
        let missing: Vec<&str> = group
            .members
            .iter()
            .filter(|m| !self.hub.is_connected(m))
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::Unavailable(format!(
                "{why} {}; not connected: {}",
                group.id,
                missing.join(", ")
            )))
        }
    }

    /// Runs `kind` among every member of the group, `fill` completing the start message.
    async fn run_all(
        &self,
        job: &JobRecord,
        group: &GroupRecord,
        kind: ProtocolKind,
        events: &mut Events,
        fill: impl Fn(&mut StartProtocol),
    ) -> Result<std::collections::BTreeMap<String, Vec<u8>>, Error> {
        let all: Vec<u16> = (0..group.size).collect();
        let run = Run {
            job,
            kind,
            group,
            parties: &all,
            status: JobStatus::Running,
            timeout: self.timeouts.protocol,
            session: None,
        };
        self.run_protocol(run, events, fill)
            .await
            .map_err(|e| e.into_error(group))
    }

    /// A run that sets new shares of `wallet` aside (REFRESH or REPAIR) -- skipped when the
    /// job already recorded the members' agreement under `tag` (a resumed job) -- then the
    /// commit of exactly the agreed shares. Members never refresh from different shares.
    #[allow(clippy::too_many_arguments)]
    async fn refresh_and_commit(
        &self,
        job: &JobRecord,
        group: &GroupRecord,
        wallet: &WalletRecord,
        kind: ProtocolKind,
        tag: &str,
        events: &mut Events,
        fill: impl Fn(&mut StartProtocol),
    ) -> Result<RefreshResult, Error> {
        let wallet_raw: WalletId = wallet
            .id
            .parse()
            .map_err(|e: concord_types::TypesError| Error::Internal(e.to_string()))?;
        let agreed = self
            .store
            .events(&job.id)
            .await?
            .into_iter()
            .rev()
            .find(|e| e.kind == EventKind::Note && e.detail.as_deref() == Some(tag))
            .and_then(|e| e.digest);
        let commitment = match agreed {
            Some(c) => c,
            None => {
                let results = self
                    .run_all(job, group, kind, events, |s| {
                        s.wallet_id = wallet_raw.0.to_vec();
                        fill(s);
                    })
                    .await?;
                let r = agreed_refresh(&results, wallet)?;
                let c = hex::decode(&r.commitment)
                    .map_err(|_| Error::protocol("the reported commitment is not hex"))?;
                self.store
                    .add_event(&job.id, None, EventKind::Note, Some(&c), Some(tag), None)
                    .await?;
                c
            }
        };
        let results = self
            .run_all(job, group, ProtocolKind::RefreshCommit, events, |s| {
                s.wallet_id = wallet_raw.0.to_vec();
                s.refresh_commitment = commitment.clone();
            })
            .await?;
        let r = agreed_refresh(&results, wallet)?;
        if r.commitment != hex::encode(&commitment) {
            return Err(Error::protocol(
                "the members committed other new shares than the ones they agreed on",
            ));
        }
        Ok(r)
    }
}

/// What a repair job's event records once every member has set its new share of a wallet
/// aside (followed by the wallet id).
const REPAIR_AGREED: &str = "every member holds its rebuilt or refreshed share: committing";

impl Engine {
    /// Replaces a lost member (the group record already names the new one): for every root
    /// wallet of the group, the others rebuild the new member's share and all refresh (each
    /// setting the new share aside), then all commit the agreed shares; then the new member
    /// derives the group's child wallets. Resumed, a wallet already agreed goes straight to
    /// its commit.
    pub(crate) async fn run_repair(
        &self,
        job: &JobRecord,
        events: &mut Events,
    ) -> Result<(), Error> {
        let group = self.group_of(&job.group_id).await?;
        let ask: crate::RepairRequest =
            serde_json::from_slice(job.payload.as_deref().unwrap_or_default())
                .map_err(|e| Error::Internal(format!("stored repair request: {e}")))?;
        let index = ask.index;
        self.all_connected(
            &group,
            "a repair needs every member (the new one included) of group",
        )
        .await?;
        let mut roots = Vec::new();
        let mut children = Vec::new();
        for w in self
            .store
            .wallets()
            .await?
            .into_iter()
            .filter(|w| w.group_id == group.id)
        {
            match self.derivation(&w).await? {
                Some(from) => children.push((w, from)),
                None => roots.push(w),
            }
        }
        for wallet in &roots {
            let tag = format!("{REPAIR_AGREED} {}", wallet.id);
            self.refresh_and_commit(
                job,
                &group,
                wallet,
                ProtocolKind::Repair,
                &tag,
                events,
                |s| {
                    s.repair_target = u32::from(index);
                    s.scheme = wallet.scheme.clone();
                },
            )
            .await?;
        }
        // The new member records the group's child wallets (each member checks the path
        // against its policy again; the others already hold them).
        for (child, from) in &children {
            let r = self.derive_everywhere(job, &group, from, events).await?;
            if r.wallet_id.to_string() != child.id {
                return Err(Error::protocol(format!(
                    "the members derive another wallet than {} at {}",
                    child.id, from.path
                )));
            }
        }
        let result = GroupRepaired {
            group_id: group.id.clone(),
            index,
            replaced: ask.replaced,
            by: ask.by,
            wallets: roots.iter().map(|w| w.id.clone()).collect(),
        };
        self.store
            .finish_job(&job.id, &serde_json::to_vec(&result).unwrap_or_default())
            .await
    }

    /// A child wallet: every member (all of them, so any `t` can sign for it later) checks the
    /// path against its policy, derives the child key from its own share and reports it; all
    /// must report the same key.
    pub(crate) async fn run_derive(
        &self,
        job: &JobRecord,
        events: &mut Events,
    ) -> Result<(), Error> {
        let group = self.group_of(&job.group_id).await?;
        let from = crate::DerivedFrom::of(job)?
            .ok_or_else(|| Error::Internal(format!("job {} is not a derivation", job.id)))?;
        self.all_connected(&group, "every member derives the child itself, in group")
            .await?;
        let r = self.derive_everywhere(job, &group, &from, events).await?;
        if let Some(existing) = self.store.wallet(&r.wallet_id.to_string()).await? {
            let result =
                WalletCreated::of(existing, self.evm_network()).map_err(Error::protocol)?;
            return self
                .store
                .finish_job(&job.id, &serde_json::to_vec(&result).unwrap_or_default())
                .await;
        }
        self.record_wallet(job, &group.id, r).await
    }
}

impl Engine {
    /// Where `wallet` comes from, if it is a derived wallet.
    pub(crate) async fn derivation(
        &self,
        wallet: &WalletRecord,
    ) -> Result<Option<crate::DerivedFrom>, Error> {
        match self.store.job(&wallet.job_id).await? {
            Some(job) => crate::DerivedFrom::of(&job),
            None => Ok(None),
        }
    }

    /// Every member derives the child `from` names (each checks the path against its policy)
    /// and reports its key; all must report the same.
    async fn derive_everywhere(
        &self,
        job: &JobRecord,
        group: &GroupRecord,
        from: &crate::DerivedFrom,
        events: &mut Events,
    ) -> Result<KeygenResult, Error> {
        let parent: WalletId = from
            .wallet
            .parse()
            .map_err(|e: concord_types::TypesError| Error::Internal(e.to_string()))?;
        let path = from.path.to_string();
        let results = self
            .run_all(job, group, ProtocolKind::Derive, events, |s| {
                s.wallet_id = parent.0.to_vec();
                s.derivation_path = path.clone();
            })
            .await?;
        agreed_key(&results)
    }
}

/// The result every member reports, or who reported another (or one `check` refuses).
fn agreed<T: serde::de::DeserializeOwned + PartialEq>(
    results: &std::collections::BTreeMap<String, Vec<u8>>,
    what: &str,
    check: impl Fn(&T) -> Result<(), String>,
) -> Result<T, Error> {
    let mut agreed: Option<T> = None;
    for (module, r) in results {
        let blame = |reason: String| Error::Protocol {
            reason,
            blamed: vec![module.clone()],
        };
        let r: T = serde_json::from_slice(r)
            .map_err(|e| blame(format!("module {module} sent an unreadable result: {e}")))?;
        check(&r).map_err(|e| blame(format!("module {module} {e}")))?;
        match &agreed {
            None => agreed = Some(r),
            Some(a) if *a == r => {}
            Some(_) => {
                return Err(blame(format!(
                    "module {module} reports another {what} than the others"
                )));
            }
        }
    }
    agreed.ok_or_else(|| Error::Internal(format!("no {what} was reported")))
}

/// The refresh result every member reports (for this wallet and its unchanged key).
fn agreed_refresh(
    results: &std::collections::BTreeMap<String, Vec<u8>>,
    wallet: &WalletRecord,
) -> Result<RefreshResult, Error> {
    agreed(results, "set of new shares", |r: &RefreshResult| {
        if r.wallet_id.to_string() == wallet.id
            && r.public_key
                .eq_ignore_ascii_case(&hex::encode(&wallet.public_key))
        {
            Ok(())
        } else {
            Err("refreshed another wallet or key".into())
        }
    })
}

/// The key every member reports.
fn agreed_key(
    results: &std::collections::BTreeMap<String, Vec<u8>>,
) -> Result<KeygenResult, Error> {
    agreed(results, "group key", |_: &KeygenResult| Ok(()))
}
