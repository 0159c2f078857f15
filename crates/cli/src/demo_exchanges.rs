//! The demo's other trading platforms: deposits from the trader's wallet to Kraken and to
//! Coinbase (each module resolves the deposit address with its own read key on that
//! exchange's API: Kraken's HMAC-signed `DepositAddresses`, Coinbase's ES256 CDP JWT on the
//! account's address list), the forged-address attack on each; a withdrawal from Coinbase
//! to the trader's wallet, its token signed by the group's sharded CDP Ed25519 key; and a
//! withdrawal from Kraken, whose HMAC secret cannot be sharded: one module holds it and
//! sends only under a certificate of the members' approvals.

use anyhow::{Context, Result};
use concord_chain::Address;
use concord_wire::authority::{Action, AgreementRule};
use serde_json::json;

use crate::demo::{Demo, FORGED, transfer_summary};

/// Runs the steps (after the Binance flows; the policy lets the trader's wallet deposit to
/// all three).
pub(crate) async fn run(d: &mut Demo, wallet: &str, address: Address) -> Result<()> {
    let deposit = |d: &Demo, exchange: &str, rule: AgreementRule| {
        d.intent(
            Action::Deposit {
                wallet: wallet.parse()?,
                exchange: exchange.into(),
                coin: "ETH".into(),
                network: "ETH".into(),
                amount: "0.1".into(),
                rule,
            },
            &[],
        )
    };
    for (exchange, how) in [
        (
            crate::devnet::KRAKEN,
            "Kraken's DepositAddresses (never `new`), HMAC-SHA512 API-Sign with its own Kraken key",
        ),
        (
            crate::devnet::COINBASE,
            "Coinbase's account address list (never one created), a JWT signed ES256 by its own CDP key",
        ),
    ] {
        let intent = deposit(d, exchange, AgreementRule::All)?;
        let t = d.transfer("/v1/transfers/deposits", &intent).await?;
        let held =
            t["status"] == "credited" && t["dissenters"].as_object().is_some_and(|m| m.is_empty());
        d.record(
            &format!("deposit 0.1 ETH to {exchange}: each module read the address through {how}; same address, signed, broadcast, credited at {exchange}"),
            held,
            transfer_summary(&t),
        );
        // The man in the middle on m3's path forges this exchange's address answer.
        std::fs::write(&d.info.mitm_forge_file, FORGED)?;
        let forged: Address = FORGED.parse()?;
        let before = d.client.balance(forged).await?;
        let intent = deposit(d, exchange, AgreementRule::All)?;
        let t = d.transfer("/v1/transfers/deposits", &intent).await;
        let _ = std::fs::remove_file(&d.info.mitm_forge_file);
        let t = t?;
        let after = d.client.balance(forged).await?;
        let named = t["dissenters"]
            .as_object()
            .is_some_and(|m| m.contains_key(&d.info.mitm_module));
        d.record(
            &format!("attack on {exchange}, rule all: a man in the middle forges m3's {exchange} deposit address → refused, m3 named, nothing reaches the forged address"),
            t["status"] == "failed" && named && t["tx_hash"].is_null() && after == before,
            transfer_summary(&t),
        );
    }
    // Their balances, read by a module through its own read key (Kraken's `Balance`,
    // Coinbase's accounts): each account started with 2 ETH and was credited 0.1.
    for exchange in [crate::devnet::KRAKEN, crate::devnet::COINBASE] {
        let b: concord_coordinator::records::ExchangeBalances = d
            .api
            .fetch(&["v1", "exchanges", exchange, "balances"], &[])
            .await?;
        let eth = b
            .balances
            .iter()
            .find(|x| x.asset == "ETH")
            .and_then(|x| x.free.parse::<f64>().ok())
            .unwrap_or_default();
        d.record(
            &format!("balances at {exchange}: read by module {} through its own read key; 2 ETH at the start, 2.1 after the deposit", b.module),
            (eth - 2.1).abs() < 1e-9,
            json!({"exchange": exchange, "module": b.module, "balances": b.balances}),
        );
    }
    coinbase_withdrawal(d, address).await?;
    kraken_withdrawal(d, address).await?;
    Ok(())
}

/// Kraken's withdraw key as the demo's policy names it: an HMAC secret that module
/// [`crate::devnet::KRAKEN_HOLDER`] holds whole (its `withdraw_api_key`), used only for a
/// request two of the three modules approved.
pub(crate) fn kraken_held_credential(
    info: &crate::devnet::DevnetInfo,
) -> Result<concord_wire::authority::HeldCredential> {
    let infos = crate::demo_multisig::module_infos(info)?;
    let holder = info
        .modules
        .iter()
        .find(|m| m.id == crate::devnet::KRAKEN_HOLDER)
        .context("the devnet has no Kraken holder module")?;
    let config = concord_module::Config::load(&holder.dir.join("module.toml"))?;
    let api_key = config
        .exchanges
        .iter()
        .find(|x| x.name == crate::devnet::KRAKEN)
        .and_then(|x| x.withdraw_api_key.clone())
        .context("the Kraken holder's configuration names no withdraw key")?;
    let members = infos
        .iter()
        .map(|i| {
            Ok(concord_wire::authority::HeldMember {
                module: i.id.clone(),
                identity: i.identity.parse()?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let def = concord_wire::authority::HeldCredential {
        exchange: crate::devnet::KRAKEN.into(),
        api_key,
        holder: crate::devnet::KRAKEN_HOLDER.into(),
        threshold: 2,
        members,
    };
    def.validate()?;
    Ok(def)
}

/// Kraken → wallet: the withdraw key is an HMAC secret one module holds whole. Every module
/// checks the `Withdraw` parameters (the withdrawal key, resolved with its own read key, must
/// withdraw to the address book's destination) and signs an approval; the holder sends the
/// request only under a certificate of two approvals, once per transfer.
async fn kraken_withdrawal(d: &mut Demo, address: Address) -> Result<()> {
    let def = kraken_held_credential(&d.info)?;
    // The account holder registers (and confirms) the trader's wallet as a withdrawal key at
    // Kraken, as a user does in Kraken's settings; then tells the coordinator the key.
    let admin = std::fs::read_to_string(&d.info.exchange_admin_token_file)?;
    let reg = reqwest::Client::new()
        .post(format!("{}/sim/kraken/withdraw-keys", d.info.exchange_url))
        .bearer_auth(admin.trim())
        .json(
            &json!({"account": crate::devnet::KRAKEN_ACCOUNT, "key": "desk-wallet",
            "coin": "ETH", "network": "ETH", "address": address.to_string()}),
        )
        .send()
        .await?;
    anyhow::ensure!(
        reg.status().is_success(),
        "Kraken did not register the withdrawal key: {}",
        reg.text().await.unwrap_or_default()
    );
    d.api
        .post(
            "/v1/exchanges/kraken/credential",
            &json!({"wallet": def.wallet_id().to_string(), "api_key": def.api_key}),
        )
        .await?;
    let before = d.client.balance(address).await?;
    // Kraken's amount includes its fee (the devnet's: 0.0001 ETH): 0.0999 arrives.
    let kraken_net = crate::demo::eth("0.0999")?;
    let t = kraken_withdraw_to_desk(d).await?;
    let after = d.client.balance(address).await?;
    let received = after.saturating_sub(before);
    let mut s = transfer_summary(&t);
    s["balance_increase_wei"] = json!(received.to_string());
    s["holder"] = json!(def.holder);
    d.record(
        &format!(
            "withdraw 0.1 ETH from Kraken to \"desk\": each module resolved withdrawal key \"desk-wallet\" with its own read key and found the address book's address; {} (the one module holding Kraken's HMAC secret) sent the Withdraw only under a certificate of the approvals, once; funds arrived (0.1 less Kraken's fee)",
            def.holder
        ),
        t["status"] == "arrived" && received == kraken_net,
        s,
    );

    // The answer lost: Kraken executes the next Withdraw but the holder's connection gets a
    // gateway's 504 instead of the answer. Kraken has no client order id; the holder never
    // sends it again, and asked again it finds it in WithdrawStatus (the one withdrawal of
    // that asset, amount and address since the send that no other request claims).
    reqwest::Client::new()
        .post(format!("{}/sim/faults", d.info.exchange_url))
        .bearer_auth(admin.trim())
        .json(&json!({"withdrawTimeoutAfterAccept": {"count": 1, "delayMs": 500}}))
        .send()
        .await?
        .error_for_status()?;
    let before = d.client.balance(address).await?;
    let t = kraken_withdraw_to_desk(d).await?;
    // A second send would arrive a block or two later: wait for it before counting.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let after = d.client.balance(address).await?;
    let received = after.saturating_sub(before);
    // The fault was used up: the Withdraw did execute and its answer was lost.
    let faults: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/sim/faults", d.info.exchange_url))
        .bearer_auth(admin.trim())
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let lost = faults["withdrawTimeoutAfterAccept"].is_null();
    let mut s = transfer_summary(&t);
    s["balance_increase_wei"] = json!(received.to_string());
    s["answer_lost"] = json!(lost);
    d.record(
        &format!(
            "Kraken's answer lost: the next Withdraw executed but {} got a 504; it never sent it again, found it in WithdrawStatus when asked again (the one withdrawal of 0.1 ETH to the desk since its send, claimed by no other request); paid once, funds arrived (0.1 less Kraken's fee)",
            def.holder
        ),
        lost && t["status"] == "arrived" && received == kraken_net,
        s,
    );
    Ok(())
}

/// Withdraws 0.1 ETH from Kraken to the address book's "desk", as the trader asks it, and
/// follows the transfer to its end.
async fn kraken_withdraw_to_desk(d: &mut Demo) -> Result<serde_json::Value> {
    let intent = d.intent(
        Action::Withdraw {
            exchange: crate::devnet::KRAKEN.into(),
            coin: "ETH".into(),
            network: "ETH".into(),
            amount: "0.1".into(),
            to: concord_wire::authority::AddressRef::Label("desk".into()),
            rule: AgreementRule::All,
        },
        &[],
    )?;
    d.transfer("/v1/transfers/withdrawals", &intent).await
}

/// Coinbase → wallet: the exchange's withdraw key is a CDP key no one holds whole (the
/// group's wallet, its public key uploaded as the key): ES256 (a P-256 key, threshold ECDSA
/// by DKLs23) in the demo, or EdDSA (a FROST Ed25519 key); each send's token is signed by
/// two of the three modules after each checked its claims and body.
async fn coinbase_withdrawal(d: &mut Demo, address: Address) -> Result<()> {
    let cred = crate::demo::wallets_labelled(d, "coinbase-withdraw-key")
        .await?
        .context("the policy names no coinbase-withdraw-key wallet")?;
    let w = d.api.get(&format!("/v1/wallets/{cred}")).await?;
    let public_key = w["public_key"]
        .as_str()
        .context("the Coinbase withdraw wallet has no public key")?
        .to_owned();
    // A P-256 group key is uploaded as Coinbase takes it: PEM SubjectPublicKeyInfo.
    let es256 = w["scheme"] == json!("ecdsa-p256");
    let (kind, public_key, alg, engine) = if es256 {
        use p256::pkcs8::EncodePublicKey as _;
        let key = p256::PublicKey::from_sec1_bytes(&hex::decode(&public_key)?)
            .context("the Coinbase withdraw wallet's key is not a P-256 point")?;
        let pem = key
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .context("the P-256 key does not encode as PEM")?;
        (
            "cdp-es256",
            pem,
            "ES256",
            "two modules signed the ES256 JWT together, by threshold ECDSA on P-256 (DKLs23)",
        )
    } else {
        (
            "cdp-ed25519",
            public_key,
            "EdDSA",
            "two FROST-signed the EdDSA JWT",
        )
    };
    // Upload the group's public key as a CDP Ed25519 key with the transfer permission, as a
    // user registers a key in Coinbase's portal; then tell the coordinator its name.
    let key_name = format!("organizations/concord-devnet/apiKeys/{cred}");
    let admin = std::fs::read_to_string(&d.info.exchange_admin_token_file)?;
    let reg: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/sim/api-keys", d.info.exchange_url))
        .bearer_auth(admin.trim())
        .json(
            &json!({"account": crate::devnet::COINBASE_ACCOUNT, "kind": kind,
            "apiKey": key_name, "publicKey": public_key, "permissions": ["read", "withdraw"]}),
        )
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(
        reg["apiKey"] == json!(key_name),
        "Coinbase did not register the key: {reg}"
    );
    d.api
        .post(
            "/v1/exchanges/coinbase/credential",
            &json!({"wallet": cred, "api_key": key_name}),
        )
        .await?;
    let before = d.client.balance(address).await?;
    let intent = d.intent(
        Action::Withdraw {
            exchange: crate::devnet::COINBASE.into(),
            coin: "ETH".into(),
            network: "ETH".into(),
            amount: "0.2".into(),
            to: concord_wire::authority::AddressRef::Label("desk".into()),
            rule: AgreementRule::All,
        },
        &[],
    )?;
    let t = d.transfer("/v1/transfers/withdrawals", &intent).await?;
    let after = d.client.balance(address).await?;
    let received = after.saturating_sub(before);
    let mut s = transfer_summary(&t);
    s["balance_increase_wei"] = json!(received.to_string());
    s["cdp_key"] = json!(key_name);
    s["jwt_alg"] = json!(alg);
    d.record(
        &format!("withdraw 0.2 ETH from Coinbase to \"desk\": each module checked the send token's claims (key, {alg}, POST, host, its own account's path, 2-minute life) and body (address-book destination, amount, idem = intent id); {engine}; Coinbase paid; funds arrived"),
        t["status"] == "arrived" && received == crate::demo::eth("0.2")?,
        s,
    );
    Ok(())
}
