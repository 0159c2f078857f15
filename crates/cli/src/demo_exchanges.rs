//! The demo's other trading platforms: deposits from the trader's wallet to Kraken and to
//! Coinbase (each module resolves the deposit address with its own read key on that
//! exchange's API: Kraken's HMAC-signed `DepositAddresses`, Coinbase's ES256 CDP JWT on the
//! account's address list), the forged-address attack on each, and what is not offered yet
//! (withdrawals from them) refused by the coordinator in words.

use anyhow::Result;
use concord_chain::Address;
use concord_wire::authority::{Action, AgreementRule};
use serde_json::json;

use crate::demo::{Demo, FORGED, transfer_summary};

/// Runs the steps (after the Binance flows; the policy lets the trader's wallet deposit to
/// all three).
pub(crate) async fn run(d: &mut Demo, wallet: &str) -> Result<()> {
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
    // Withdrawals from them are not offered yet: said in words, nothing signed.
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
    let refused = d
        .api
        .post("/v1/transfers/withdrawals", &json!({ "intent": intent }))
        .await;
    d.record(
        "a withdrawal from Kraken → the coordinator says withdrawals from it are not supported yet (only Binance's withdraw requests are built and checked by the modules)",
        refused
            .as_ref()
            .err()
            .is_some_and(|e| format!("{e:#}").contains("not supported yet")),
        json!({"error": refused.err().map(|e| format!("{e:#}"))}),
    );
    Ok(())
}
