//! The threshold withdrawal's payload: one canonical query, and a strict parser that refuses
//! everything else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use concord_exchange::ExchangeError;
use concord_exchange::binance::WithdrawParams;

fn params() -> WithdrawParams {
    WithdrawParams {
        coin: "ETH".into(),
        network: "ETH".into(),
        address: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into(),
        amount: "1.25".into(),
        withdraw_order_id: Some("transfer-7f3a.1_b".into()),
        timestamp_ms: 1_700_000_000_123,
        recv_window_ms: 5000,
    }
}

const QUERY: &str = "coin=ETH&withdrawOrderId=transfer-7f3a.1_b&network=ETH&address=0x70997970C51812dc3A010C7d01b50e0d17dc79C8&amount=1.25&recvWindow=5000&timestamp=1700000000123";

#[test]
fn to_query_has_the_fixed_order_and_parse_round_trips() {
    let p = params();
    assert_eq!(p.to_query(), QUERY);
    assert_eq!(WithdrawParams::parse(QUERY).unwrap(), p);
    p.validate().unwrap();

    let without_id = WithdrawParams {
        withdraw_order_id: None,
        ..params()
    };
    let q = without_id.to_query();
    assert_eq!(
        q,
        "coin=ETH&network=ETH&address=0x70997970C51812dc3A010C7d01b50e0d17dc79C8&amount=1.25&recvWindow=5000&timestamp=1700000000123"
    );
    assert_eq!(WithdrawParams::parse(&q).unwrap(), without_id);
    assert_eq!(without_id.to_request().withdraw_order_id, None);
}

#[test]
fn reserved_characters_in_an_address_are_percent_encoded_and_round_trip() {
    let p = WithdrawParams {
        address: "bitcoincash:qq/x+y=z".into(),
        ..params()
    };
    let q = p.to_query();
    assert!(q.contains("address=bitcoincash%3Aqq%2Fx%2By%3Dz&"), "{q}");
    assert_eq!(WithdrawParams::parse(&q).unwrap(), p);
}

fn refused(query: &str) -> String {
    match WithdrawParams::parse(query) {
        Err(ExchangeError::InvalidRequest(msg)) => msg,
        other => panic!("{query:?} was not refused as invalid: {other:?}"),
    }
}

#[test]
fn refuses_empty_and_stray_separators() {
    assert!(refused("").contains("empty"));
    assert!(refused(&format!("{QUERY}&")).contains("stray"));
    assert!(refused(&format!("&{QUERY}")).contains("stray"));
    assert!(refused(&QUERY.replace("&network", "&&network")).contains("stray"));
    assert!(refused(&QUERY.replace("coin=ETH", "coin")).contains("no '='"));
}

#[test]
fn refuses_unknown_parameters() {
    let msg = refused(&QUERY.replace("&amount", "&addressTag=1&amount"));
    assert!(msg.contains("unknown parameter \"addressTag\""), "{msg}");
    let msg = refused(&QUERY.replace("&amount", "&walletType=1&amount"));
    assert!(msg.contains("walletType"), "{msg}");
    // Names are compared exactly: no case folding.
    assert!(refused(&QUERY.replace("coin=", "Coin=")).contains("unknown"));
}

#[test]
fn refuses_a_signature_inside_the_payload() {
    let msg = refused(&format!("{QUERY}&signature=abc"));
    assert!(msg.contains("signature"), "{msg}");
}

#[test]
fn refuses_duplicates() {
    let msg = refused(&QUERY.replace("&network=ETH", "&network=ETH&network=BSC"));
    assert!(msg.contains("more than once"), "{msg}");
    let msg = refused(&format!("{QUERY}&timestamp=1700000000124"));
    assert!(msg.contains("more than once"), "{msg}");
}

#[test]
fn refuses_missing_mandatory_parameters() {
    for name in [
        "coin",
        "network",
        "address",
        "amount",
        "recvWindow",
        "timestamp",
    ] {
        let q: Vec<&str> = QUERY
            .split('&')
            .filter(|p| !p.starts_with(&format!("{name}=")))
            .collect();
        let msg = refused(&q.join("&"));
        assert!(
            msg.contains(&format!("mandatory parameter \"{name}\"")),
            "{name}: {msg}"
        );
    }
}

#[test]
fn refuses_any_other_order() {
    let swapped = "coin=ETH&withdrawOrderId=transfer-7f3a.1_b&network=ETH&address=0x70997970C51812dc3A010C7d01b50e0d17dc79C8&amount=1.25&timestamp=1700000000123&recvWindow=5000";
    assert!(refused(swapped).contains("order"));
    let id_last = "coin=ETH&network=ETH&address=0x70997970C51812dc3A010C7d01b50e0d17dc79C8&amount=1.25&recvWindow=5000&timestamp=1700000000123&withdrawOrderId=x";
    assert!(refused(id_last).contains("order"));
}

#[test]
fn refuses_non_canonical_encoding() {
    // An unreserved character encoded.
    assert!(refused(&QUERY.replace("coin=ETH", "coin=%45TH")).contains("unreserved"));
    // Lowercase hex.
    let p = WithdrawParams {
        address: "a/b".into(),
        ..params()
    };
    let lower = p.to_query().replace("%2F", "%2f");
    assert!(refused(&lower).contains("percent escape"));
    // A reserved character left raw ('+' would read as a space to some decoders).
    assert!(refused(&QUERY.replace("0x7099", "0x+7099")).contains("unencoded"));
    // A truncated escape.
    assert!(refused(&QUERY.replace("amount=1.25", "amount=1.25%2")).contains("percent escape"));
}

#[test]
fn refuses_bad_amounts() {
    for bad in [
        "0",
        "0.0",
        "-1",
        "%2B1",
        "1e3",
        ".5",
        "5.",
        "01.5",
        "1.5.1",
        "1%2C5",
        "NaN",
        "0.0000000000000000001",
    ] {
        let msg = refused(&QUERY.replace("amount=1.25", &format!("amount={bad}")));
        assert!(
            msg.contains("amount") || msg.contains("unencoded"),
            "{bad}: {msg}"
        );
    }
    // Trailing zeros are still a positive decimal.
    WithdrawParams::parse(&QUERY.replace("amount=1.25", "amount=1.250")).unwrap();
}

#[test]
fn refuses_bad_numbers_and_symbols() {
    assert!(refused(&QUERY.replace("recvWindow=5000", "recvWindow=60001")).contains("recvWindow"));
    assert!(refused(&QUERY.replace("recvWindow=5000", "recvWindow=0")).contains("recvWindow"));
    assert!(refused(&QUERY.replace("recvWindow=5000", "recvWindow=05000")).contains("recvWindow"));
    assert!(
        refused(&QUERY.replace("timestamp=1700000000123", "timestamp=-1")).contains("timestamp")
    );
    assert!(
        refused(&QUERY.replace("timestamp=1700000000123", "timestamp=99999999999999999999"))
            .contains("timestamp")
    );
    assert!(
        refused(&QUERY.replace("timestamp=1700000000123", "timestamp=0")).contains("timestamp")
    );
    assert!(refused(&QUERY.replace("coin=ETH", "coin=eth")).contains("coin"));
    assert!(refused(&QUERY.replace("network=ETH", "network=")).contains("network"));
    assert!(
        refused(&QUERY.replace("address=0x7099", "address=%E2%82%AC0x7099")).contains("address")
    );
    assert!(
        refused(&QUERY.replace("withdrawOrderId=transfer-7f3a.1_b", "withdrawOrderId=a%20b"))
            .contains("withdrawOrderId")
    );
}

#[test]
fn validate_refuses_what_parse_would_refuse() {
    let bad = WithdrawParams {
        amount: "1e3".into(),
        ..params()
    };
    assert!(bad.validate().is_err());
    let bad = WithdrawParams {
        recv_window_ms: 70_000,
        ..params()
    };
    assert!(bad.validate().is_err());
}
