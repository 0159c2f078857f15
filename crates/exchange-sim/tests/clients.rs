//! Widely used exchange client libraries, unchanged, against the simulator: Kraken's
//! `krakenex`, and Coinbase's own `coinbase-advanced-py` token code (`jwt_generator`, PyJWT),
//! whose tokens the simulator must take and which must verify the connector's tokens (an
//! implementation other than ours on both sides). Pinned in `scripts/lib.sh`, installed by
//! `scripts/test.sh` into a venv of their own; `CONCORD_TEST_EXCHANGE_PYTHON` names its
//! python. Without it these tests fail with instructions; they never skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{ADMIN_TOKEN, Env};
use serde_json::{Value, json};

fn python() -> String {
    std::env::var("CONCORD_TEST_EXCHANGE_PYTHON").unwrap_or_else(|_| {
        panic!(
            "CONCORD_TEST_EXCHANGE_PYTHON is not set: run the tests with scripts/test.sh, or \
             `. scripts/lib.sh && install_exchange_clients` first (it installs krakenex into a \
             venv and sets the variable)"
        )
    })
}

/// Runs `script` with the clients' python; its last output line is JSON.
fn run(script: &str, args: &[&str]) -> Value {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the client script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap()
}

const KRAKENEX: &str = r#"
import json, sys, krakenex
base, key, secret, to = sys.argv[1:5]
k = krakenex.API(key, secret)
k.uri = base  # the only change: where Kraken is
out = {}
out["balance"] = k.query_private("Balance")
out["methods"] = k.query_private("DepositMethods", {"asset": "XETH"})
out["addresses"] = k.query_private("DepositAddresses", {"asset": "XETH", "method": "Ether (Hex)"})
out["withdraw_keys"] = k.query_private("WithdrawAddresses", {"asset": "XETH"})
out["withdraw"] = k.query_private("Withdraw", {"asset": "XETH", "key": "own-wallet", "amount": "0.1", "address": to})
out["unknown_key"] = k.query_private("Withdraw", {"asset": "XETH", "key": "attacker", "amount": "0.1"})
out["status"] = k.query_private("WithdrawStatus", {"asset": "XETH"})
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn krakenex_works_against_the_simulator_unchanged() {
    let env = Env::new().await;
    let (status, body) = env
        .admin_post(
            "/sim/api-keys",
            ADMIN_TOKEN,
            json!({"account": "alice", "kind": "kraken", "permissions": ["read", "withdraw"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let key = body["apiKey"].as_str().unwrap().to_owned();
    let secret = body["secretKey"].as_str().unwrap().to_owned();
    let to = common::signer(&env.anvil, 5).address().to_string();
    let (status, body) = env
        .admin_post(
            "/sim/kraken/withdraw-keys",
            ADMIN_TOKEN,
            json!({"account": "alice", "key": "own-wallet", "coin": "ETH", "network": "ETH", "address": to}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let base = env.base.clone();
    let out = tokio::task::spawn_blocking(move || run(KRAKENEX, &[&base, &key, &secret, &to]))
        .await
        .unwrap();
    let ok = |name: &str| {
        assert_eq!(out[name]["error"], json!([]), "{name}: {}", out[name]);
        out[name]["result"].clone()
    };
    assert_eq!(ok("balance")["XETH"], "5.00000000");
    assert_eq!(ok("methods")[0]["method"], "Ether (Hex)");
    let expected = env.deposit_address(&common::Key::doc(), "ETH").await;
    assert_eq!(
        ok("addresses")[0]["address"]
            .as_str()
            .unwrap()
            .to_lowercase(),
        expected.to_string().to_lowercase()
    );
    assert_eq!(ok("withdraw_keys")[0]["key"], "own-wallet");
    let refid = ok("withdraw")["refid"].as_str().unwrap().to_owned();
    assert_eq!(
        out["unknown_key"]["error"],
        json!(["EFunding:Unknown withdraw key"])
    );
    let status = ok("status");
    let entry = status
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["refid"] == refid.as_str())
        .unwrap();
    assert_eq!(entry["asset"], "XETH");
    assert_eq!(entry["key"], "own-wallet");
}

const COINBASE: &str = r#"
import json, sys, requests, jwt
from coinbase import jwt_generator
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
import base64
base, host, key, secret, ours = sys.argv[1:6]
out = {}
# Coinbase's own token code, unchanged: the simulator takes its tokens.
uri = jwt_generator.format_jwt_uri("GET", "/v2/accounts").replace("api.coinbase.com", host)
token = jwt_generator.build_rest_jwt(uri, key, secret)
r = requests.get(base + "/v2/accounts", headers={"Authorization": "Bearer " + token})
out["official_status"] = r.status_code
out["official_body"] = r.json()
# The same token again: taken once.
r = requests.get(base + "/v2/accounts", headers={"Authorization": "Bearer " + token})
out["replayed_status"] = r.status_code
# The connector's token, verified by PyJWT with the key's public half.
if secret.startswith("-----BEGIN"):
    public = serialization.load_pem_private_key(secret.encode(), password=None).public_key()
    algs = ["ES256"]
else:
    public = ed25519.Ed25519PrivateKey.from_private_bytes(base64.b64decode(secret)[:32]).public_key()
    algs = ["EdDSA"]
claims = jwt.decode(ours, public, algorithms=algs)
out["ours"] = {"claims": claims, "header": jwt.get_unverified_header(ours)}
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_s_own_token_code_and_ours_agree() {
    use concord_exchange::coinbase::{CdpKey, CdpSigner, RequestClaims, finish};
    let env = Env::new().await;
    let host = env.base.trim_start_matches("http://").to_owned();
    for kind in ["cdp-es256", "cdp-ed25519"] {
        let name = format!("organizations/test/apiKeys/{kind}");
        let (status, body) = env
            .admin_post(
                "/sim/api-keys",
                ADMIN_TOKEN,
                json!({"account": "alice", "kind": kind, "permissions": ["read"], "apiKey": name}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let secret = body["secretKey"].as_str().unwrap().to_owned();
        let key = CdpKey::from_secret(&name, &secret).unwrap();
        let now = common::now_ms() / 1000;
        let claims = RequestClaims::new(&name, key.alg(), "GET", &host, "/v2/accounts", now);
        let input = claims.signing_input();
        let ours = finish(&input, &key.sign(input.as_bytes()).unwrap());
        let (base, h) = (env.base.clone(), host.clone());
        let out =
            tokio::task::spawn_blocking(move || run(COINBASE, &[&base, &h, &name, &secret, &ours]))
                .await
                .unwrap();
        assert_eq!(
            out["official_status"], 200,
            "{kind}: {}",
            out["official_body"]
        );
        assert_eq!(out["official_body"]["data"][0]["currency"]["code"], "ETH");
        assert_eq!(out["replayed_status"], 401, "{kind}");
        let verified = &out["ours"];
        assert_eq!(verified["claims"]["uri"], format!("GET {host}/v2/accounts"));
        assert_eq!(verified["claims"]["iss"], "cdp");
        assert_eq!(
            verified["header"]["alg"],
            if kind == "cdp-es256" {
                "ES256"
            } else {
                "EdDSA"
            }
        );
    }
}
