//! Deciding on a proposal: the module recomputes the digest from the payload, checks the
//! wallet, what the wallet is for, the kind-specific facts against its own view of the
//! exchange and the chain, its policy and its nonce log, then signs and stores its approval
//! before anything is sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use concord_tss::{Scheme, WalletId};
use concord_wire::identity::IdentityKey;
use concord_wire::messages::ApprovalStatement;
use concord_wire::payload::SigningPayload;
use concord_wire::rpc::{Approval, Proposal, Refusal};

use crate::Error;
use crate::checks::Outside;
use crate::state::{ApprovalRecord, State};

/// The purpose prefix of a wallet that is an exchange's withdraw-capable API key.
pub const CREDENTIAL_PURPOSE: &str = "exchange-credential:";

/// Everything a decision needs. Cheap to share.
pub(crate) struct Decider {
    pub(crate) state: Arc<State>,
    pub(crate) identity: Arc<IdentityKey>,
    pub(crate) outside: Outside,
    /// wallet → (scheme, group public key), read once from the share.
    wallets: Mutex<HashMap<WalletId, (Scheme, Vec<u8>)>>,
    /// Serializes the last step (nonce log, approval record) of concurrent decisions.
    commit: tokio::sync::Mutex<()>,
}

pub(crate) fn refusal(
    job_id: &str,
    reason: impl Into<String>,
    computed: Option<[u8; 32]>,
) -> Refusal {
    Refusal {
        job_id: job_id.to_owned(),
        reason: reason.into(),
        computed_digest: computed.map(|d| d.to_vec()).unwrap_or_default(),
    }
}

impl Decider {
    pub(crate) fn new(state: Arc<State>, identity: Arc<IdentityKey>, outside: Outside) -> Self {
        Decider {
            state,
            identity,
            outside,
            wallets: Mutex::default(),
            commit: tokio::sync::Mutex::new(()),
        }
    }

    /// The scheme and group public key of a wallet this module holds a share of.
    fn wallet(&self, wallet: WalletId) -> Result<Option<(Scheme, Vec<u8>)>, Error> {
        if let Some(w) = self
            .wallets
            .lock()
            .ok()
            .and_then(|m| m.get(&wallet).cloned())
        {
            return Ok(Some(w));
        }
        let Some(share) = self.state.share(wallet)? else {
            return Ok(None);
        };
        let w = (share.scheme(), share.public_key());
        if let Ok(mut m) = self.wallets.lock() {
            m.insert(wallet, w.clone());
        }
        Ok(Some(w))
    }

    /// Decides on a proposal.
    pub(crate) async fn decide(&self, p: &Proposal) -> Result<Approval, Refusal> {
        let state = &self.state;
        let job = p.job_id.as_str();
        let payload = SigningPayload::from_canonical(&p.payload)
            .map_err(|e| refusal(job, format!("cannot read the payload: {e}"), None))?;
        let digest = payload.digest();
        if p.digest != digest {
            return Err(refusal(
                job,
                format!(
                    "the proposed digest {} is not the digest of the payload ({})",
                    hex::encode(&p.digest),
                    hex::encode(digest)
                ),
                Some(digest),
            ));
        }
        let wallet = payload.wallet();
        if p.wallet_id != wallet.0 {
            return Err(refusal(
                job,
                "the proposal names another wallet than its payload",
                Some(digest),
            ));
        }
        let err = |e: Error| refusal(job, e.to_string(), Some(digest));
        let refuse = |reason: String| refusal(job, reason, Some(digest));
        if !state.has_share(wallet).map_err(err)? {
            return Err(refuse(format!(
                "this module holds no share of wallet {wallet}"
            )));
        }
        // Asked again (a coordinator restart, a lost answer): the same statement, verbatim,
        // even if the world has moved on since.
        if let Some(prev) = state.approval(job).map_err(err)? {
            return replay(job, prev, p, digest);
        }
        let purpose = state.purpose(wallet).map_err(err)?;
        let (scheme, _) = self
            .wallet(wallet)
            .map_err(err)?
            .ok_or_else(|| refuse(format!("this module holds no share of wallet {wallet}")))?;
        if let Some(required) = payload.required_scheme()
            && required != scheme
        {
            return Err(refuse(format!(
                "this payload must be signed with {required}, and wallet {wallet} is {scheme}"
            )));
        }
        let policy = &state.policy;
        let mut checks = vec![
            "payload is canonical".to_owned(),
            "digest recomputed from the payload".to_owned(),
            "this module holds a share of the wallet".to_owned(),
        ];
        match &payload {
            SigningPayload::Message { message, .. } => {
                if let Some(exchange) = purpose.strip_prefix(CREDENTIAL_PURPOSE) {
                    return Err(refuse(format!(
                        "wallet {wallet} is exchange {exchange}'s withdraw key: it signs withdraw requests checked by this module, never raw messages"
                    )));
                }
                if message.len() > policy.max_message_len {
                    return Err(refuse(format!(
                        "policy: messages over {} bytes are refused",
                        policy.max_message_len
                    )));
                }
                if policy.require_nonce && payload.nonce_key().is_none() {
                    return Err(refuse(
                        "policy: a replay-protection nonce is required".into(),
                    ));
                }
                checks.push("within local policy".to_owned());
            }
            SigningPayload::EvmTransfer { .. } => {
                if !purpose.is_empty() {
                    return Err(refuse(format!(
                        "wallet {wallet} is for {purpose}, not for transfers"
                    )));
                }
                let (_, public_key) = self.wallet(wallet).map_err(err)?.ok_or_else(|| {
                    refuse(format!("this module holds no share of wallet {wallet}"))
                })?;
                let more = self
                    .outside
                    .check_evm_transfer(policy, &payload, &public_key)
                    .await
                    .map_err(refuse)?;
                checks.extend(more);
            }
            SigningPayload::ExchangeWithdrawal {
                exchange,
                destination_wallet,
                ..
            } => {
                if purpose != format!("{CREDENTIAL_PURPOSE}{exchange}") {
                    return Err(refuse(format!(
                        "wallet {wallet} is not exchange {exchange}'s withdraw key here"
                    )));
                }
                let (dest_scheme, dest_key) = self
                    .wallet(*destination_wallet)
                    .map_err(err)?
                    .ok_or_else(|| {
                        refuse(format!(
                            "this module holds no share of the destination wallet {destination_wallet}, so it cannot derive its address"
                        ))
                    })?;
                if dest_scheme != Scheme::EcdsaSecp256k1 {
                    return Err(refuse(format!(
                        "the destination wallet {destination_wallet} is {dest_scheme}, not an EVM (ECDSA) wallet"
                    )));
                }
                let more = self
                    .outside
                    .check_withdrawal(policy, &payload, &dest_key)
                    .map_err(refuse)?;
                checks.extend(more);
            }
        }
        self.commit(job, p, &payload, wallet, digest, checks).await
    }

    /// The serialized last step: nonce log, statement, approval stored, then sent.
    async fn commit(
        &self,
        job: &str,
        p: &Proposal,
        payload: &SigningPayload,
        wallet: WalletId,
        digest: [u8; 32],
        mut checks: Vec<String>,
    ) -> Result<Approval, Refusal> {
        let _guard = self.commit.lock().await;
        let state = &self.state;
        let err = |e: Error| refusal(job, e.to_string(), Some(digest));
        if let Some(prev) = state.approval(job).map_err(err)? {
            return replay(job, prev, p, digest);
        }
        if let Some(key) = payload.nonce_key() {
            match state.nonce_digest(wallet, &key).map_err(err)? {
                Some(d) if d != digest => {
                    let shown = key.rsplit('-').next().unwrap_or(&key).to_owned();
                    return Err(refusal(
                        job,
                        format!(
                            "nonce {shown} of wallet {wallet} was already approved for another digest ({})",
                            hex::encode(d)
                        ),
                        Some(digest),
                    ));
                }
                Some(_) => {}
                None => state.record_nonce(wallet, &key, &digest).map_err(err)?,
            }
            checks.push(format!("nonce {key} not approved for another digest"));
        }
        let statement = ApprovalStatement {
            version: 1,
            job_id: job.to_owned(),
            module_id: state.id.clone(),
            wallet_id: wallet,
            digest,
            checks,
        }
        .to_bytes();
        let signature = self.identity.sign(&statement).to_vec();
        state
            .save_approval(
                job,
                &ApprovalRecord {
                    wallet_id: wallet,
                    payload: p.payload.clone(),
                    digest,
                    statement: statement.clone(),
                    signature: signature.clone(),
                },
            )
            .map_err(err)?;
        Ok(Approval {
            job_id: job.to_owned(),
            digest: digest.to_vec(),
            statement,
            signature,
        })
    }
}

fn replay(
    job: &str,
    prev: ApprovalRecord,
    p: &Proposal,
    digest: [u8; 32],
) -> Result<Approval, Refusal> {
    if prev.digest == digest && prev.payload == p.payload {
        Ok(Approval {
            job_id: job.to_owned(),
            digest: digest.to_vec(),
            statement: prev.statement,
            signature: prev.signature,
        })
    } else {
        Err(refusal(
            job,
            "this job was already approved for another payload",
            Some(digest),
        ))
    }
}

#[cfg(test)]
mod tests {
    //! A module against a coordinator that proposes what the trader did not ask for: the real
    //! anvil chain and the real exchange simulator, the module's own connector and read key.
    use super::*;
    use crate::config::{ChainConfig, ExchangeConfig};
    use concord_chain::{Address, Asset};
    use concord_tss::local::LocalNetwork;
    use concord_tss::rand_core::OsRng;
    use concord_tss::{SessionId, Threshold};
    use concord_vault::{Argon2Params, PassphraseKek};
    use concord_wire::payload::Destination;

    async fn shares(state: &State) -> (WalletId, WalletId) {
        use concord_tss::ecdsa::{self, AuxMaterial};
        let fixtures =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tss/tests/fixtures");
        let t = Threshold::new(2, 2).unwrap();
        let mut handles = Vec::new();
        for ep in LocalNetwork::connect(&[0, 1]) {
            let aux = AuxMaterial::from_bytes(
                &std::fs::read(fixtures.join(format!("INSECURE-aux-n2-party{}.bin", ep.index)))
                    .unwrap(),
            )
            .unwrap();
            handles.push(tokio::spawn(async move {
                ecdsa::keygen(
                    SessionId([4; 32]),
                    t,
                    &aux,
                    ep.incoming,
                    ep.outgoing,
                    &mut OsRng,
                )
                .await
            }));
        }
        let ecdsa_share = concord_tss::KeyShare::Ecdsa(handles.remove(0).await.unwrap().unwrap());
        state.save_purpose(ecdsa_share.wallet_id(), "").unwrap();
        state.save_share(&ecdsa_share).unwrap();
        let mut handles = Vec::new();
        for ep in LocalNetwork::connect(&[0, 1]) {
            handles.push(tokio::spawn(async move {
                concord_tss::dkg(
                    Scheme::Ed25519,
                    SessionId([5; 32]),
                    ep.index,
                    t,
                    None,
                    ep.incoming,
                    ep.outgoing,
                    &mut OsRng,
                )
                .await
            }));
        }
        let cred = handles.remove(0).await.unwrap().unwrap();
        state
            .save_purpose(cred.wallet_id(), "exchange-credential:binance")
            .unwrap();
        state.save_share(&cred).unwrap();
        (ecdsa_share.wallet_id(), cred.wallet_id())
    }

    fn proposal(job: &str, payload: &SigningPayload) -> Proposal {
        Proposal {
            job_id: job.into(),
            wallet_id: payload.wallet().0.to_vec(),
            payload: payload.to_canonical(),
            digest: payload.digest().to_vec(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_coordinator_cannot_get_another_destination_amount_or_withdraw_address_approved() {
        // The chain.
        let bin = concord_chain::anvil::anvil_binary(|m| eprintln!("{m}")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut anvil = std::process::Command::new(bin)
            .args(["--port", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let rpc = format!("http://127.0.0.1:{port}");
        let client = concord_chain::EvmClient::new(&rpc).unwrap();
        for _ in 0..100 {
            if client.block_number().await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // The exchange, with this module's read key.
        let (key, secret) = ("k".repeat(64), "s".repeat(64));
        let sim: concord_exchange_sim::SimConfig = serde_json::from_value(serde_json::json!({
            "rpc_url": rpc, "chain_id": 31337, "confirmations": 1,
            "hot_wallet_key": "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
            "admin_token": "admin",
            "coins": [{"coin": "ETH", "network": "ETH", "decimals": 18, "withdraw_fee": "0", "withdraw_min": "0.001"}],
            "accounts": [{"name": "trader", "api_keys": [{"api_key": key, "kind": "hmac", "secret": secret, "permissions": ["read"]}]}],
        }))
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = concord_exchange_sim::SimHandle::start(sim, listener)
            .await
            .unwrap();
        // The module.
        let dir = tempfile::tempdir().unwrap();
        let kek = PassphraseKek::with_params(
            zeroize::Zeroizing::new("test passphrase".into()),
            Argon2Params {
                m_cost_kib: 8 * 1024,
                t_cost: 1,
                p_cost: 1,
            },
        )
        .unwrap();
        let mut policy = crate::config::Policy::default();
        policy.max_transfer.insert("ETH".into(), "2".into());
        policy.max_withdrawal.insert("ETH".into(), "2".into());
        let state = State::create("m1", &dir.path().join("vault"), &kek, policy).unwrap();
        state
            .save_exchange_secret("binance", secret.as_bytes())
            .unwrap();
        let (wallet, cred) = shares(&state).await;
        let mut config = crate::Config {
            id: "m1".into(),
            coordinator: crate::config::CoordinatorConfig {
                address: "127.0.0.1:1".into(),
                identity: state.identity().public(),
            },
            vault: crate::config::VaultConfig {
                dir: dir.path().join("vault"),
                passphrase: concord_vault::PassphraseSource::Env("UNUSED".into()),
            },
            policy: state.policy.clone(),
            chain: None,
            exchanges: Vec::new(),
        };
        config.chain = Some(ChainConfig {
            rpc_url: rpc.clone(),
            chain_id: 31337,
            network: "ETH".into(),
            tokens: vec![],
        });
        config.exchanges = vec![ExchangeConfig {
            name: "binance".into(),
            kind: "binance".into(),
            url: sim.base_url(),
            read_api_key: key.clone(),
            read_key_type: "hmac".into(),
        }];
        let outside = Outside::build(&config, &state).unwrap();
        let state = Arc::new(state);
        let decider = Decider::new(state.clone(), state.identity(), outside);

        // What the exchange really says.
        let http = reqwest::Client::new();
        let honest: serde_json::Value = http
            .get(format!(
                "{}/sim/deposit-address?account=trader&network=ETH",
                sim.base_url()
            ))
            .bearer_auth("admin")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let honest: Address = honest["address"].as_str().unwrap().parse().unwrap();
        let deposit = |recipient: Address, amount: &str| SigningPayload::EvmTransfer {
            transfer: "t".into(),
            wallet,
            chain_id: 31337,
            nonce: 0,
            gas_limit: 21_000,
            max_fee_per_gas: 2_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
            asset: Asset::Native,
            amount: concord_wire::units::parse_amount(amount, 18).unwrap(),
            recipient,
            destination: Destination::ExchangeDeposit {
                exchange: "binance".into(),
                coin: "ETH".into(),
                network: "ETH".into(),
            },
        };
        // Another destination: refused, naming both addresses.
        let attacker = Address::repeat_byte(0x66);
        let r = decider
            .decide(&proposal("j1", &deposit(attacker, "1")))
            .await
            .unwrap_err();
        assert!(
            r.reason.contains(&attacker.to_string()) && r.reason.contains(&honest.to_string()),
            "{}",
            r.reason
        );
        // Another amount than the transaction the digest fixes: refused.
        let mut p = proposal("j2", &deposit(honest, "1"));
        p.digest = deposit(honest, "1.5").digest().to_vec();
        let r = decider.decide(&p).await.unwrap_err();
        assert!(r.reason.contains("is not the digest"), "{}", r.reason);
        // An amount over the module's policy: refused.
        let r = decider
            .decide(&proposal("j3", &deposit(honest, "3")))
            .await
            .unwrap_err();
        assert!(
            r.reason.contains("exceeds this module's limit"),
            "{}",
            r.reason
        );
        // The honest transfer: approved.
        decider
            .decide(&proposal("j4", &deposit(honest, "1")))
            .await
            .unwrap();
        // The exchange key never signs a raw message.
        let msg = SigningPayload::Message {
            wallet: cred,
            message: b"coin=ETH&address=0x66".to_vec(),
            nonce: None,
        };
        let r = decider.decide(&proposal("j5", &msg)).await.unwrap_err();
        assert!(r.reason.contains("withdraw key"), "{}", r.reason);
        // A withdraw request to any address but the wallet's own: refused.
        let own = concord_chain::evm_address(&state.share(wallet).unwrap().unwrap().public_key())
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let withdraw = |to: Address| SigningPayload::ExchangeWithdrawal {
            transfer: "w".into(),
            wallet: cred,
            exchange: "binance".into(),
            api_key: "group-key".into(),
            request: concord_exchange::binance::WithdrawParams {
                coin: "ETH".into(),
                network: "ETH".into(),
                address: to.to_string(),
                amount: "1".into(),
                withdraw_order_id: Some("w1".into()),
                timestamp_ms: now,
                recv_window_ms: 5000,
            }
            .to_query(),
            destination_wallet: wallet,
        };
        let r = decider
            .decide(&proposal("j6", &withdraw(attacker)))
            .await
            .unwrap_err();
        assert!(
            r.reason.contains("not the wallet's own address"),
            "{}",
            r.reason
        );
        decider
            .decide(&proposal("j7", &withdraw(own)))
            .await
            .unwrap();
        sim.shutdown().await.unwrap();
        let _ = anvil.kill();
        let _ = anvil.wait();
    }
}
