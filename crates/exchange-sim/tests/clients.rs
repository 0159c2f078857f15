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
import json, sys, time, krakenex
base, key, secret, to = sys.argv[1:5]
k = krakenex.API(key, secret)
k.uri = base  # the only change: where Kraken is
# krakenex's nonce is the time in milliseconds: two calls within one millisecond share a
# nonce, which Kraken (and the simulator) refuses. Calls here are a millisecond apart.
query = k.query_private
def spaced(*args, **kwargs):
    time.sleep(0.002)
    return query(*args, **kwargs)
k.query_private = spaced
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

/// The simulator behind HTTPS (as the real exchange is): a TLS front on 127.0.0.1 with a
/// self-signed certificate, passing each request through with its Host header (a CDP token
/// names the host it was made for). Returns the front's `host:port` and its certificate file.
async fn https_front(env: &Env, dir: &std::path::Path) -> (String, std::path::PathBuf) {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    let cert = concord_wire::api_tls::self_signed(&[]).unwrap();
    let (cert_file, key_file) = (dir.join("front.crt"), dir.join("front.key"));
    std::fs::write(&cert_file, &cert.cert_pem).unwrap();
    std::fs::write(&key_file, cert.key_pem.as_str()).unwrap();
    let (chain, key) = concord_wire::api_tls::load_pem(&cert_file, &key_file).unwrap();
    let config = concord_wire::api_tls::server_config(chain, key).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let upstream = env.base.clone();
    let http = reqwest::Client::new();
    let handler = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let (http, upstream) = (http.clone(), upstream.clone());
        async move {
            let url = format!(
                "{upstream}{}",
                uri.path_and_query().map_or("/", |p| p.as_str())
            );
            let mut req = http.request(
                reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap(),
                url,
            );
            for name in ["authorization", "content-type", "host"] {
                if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
                    req = req.header(name, v);
                }
            }
            let r = req.body(body.to_vec()).send().await.unwrap();
            let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
            (
                status,
                [("content-type", "application/json")],
                r.text().await.unwrap(),
            )
        }
    };
    let app = axum::Router::new().fallback(handler);
    let tls = concord_wire::api_tls::TlsListener::new(listener, config).unwrap();
    tokio::spawn(async move { axum::serve(tls, app).await });
    (front, cert_file)
}

const COINBASE_CLIENT: &str = r#"
import json, os, sys
from coinbase.rest import RESTClient
front, key, secret, to = sys.argv[1:5]
# Unchanged: only where Coinbase is (its host), and the front's certificate to trust
# (REQUESTS_CA_BUNDLE, set by the caller).
client = RESTClient(api_key=key, api_secret=secret, base_url=front)
out = {}
accounts = client.get("/v2/accounts")
out["accounts"] = accounts
eth = [a for a in accounts["data"] if a["currency"]["code"] == "ETH"][0]["id"]
out["addresses"] = client.get(f"/v2/accounts/{eth}/addresses")
out["send"] = client.post(f"/v2/accounts/{eth}/transactions", data={
    "type": "send", "to": to, "amount": "0.1", "currency": "ETH", "network": "ethereum",
    "idem": "4f1c2d3e-0a9b-4c8d-9e7f-1a2b3c4d5e6f"})
out["again"] = client.post(f"/v2/accounts/{eth}/transactions", data={
    "type": "send", "to": to, "amount": "0.1", "currency": "ETH", "network": "ethereum",
    "idem": "4f1c2d3e-0a9b-4c8d-9e7f-1a2b3c4d5e6f"})
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_advanced_py_rest_client_works_against_the_simulator_unchanged() {
    let env = Env::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (front, cert_file) = https_front(&env, dir.path()).await;
    let name = "organizations/test/apiKeys/rest-client".to_owned();
    let (status, body) = env
        .admin_post(
            "/sim/api-keys",
            ADMIN_TOKEN,
            json!({"account": "alice", "kind": "cdp-es256", "permissions": ["read", "withdraw"], "apiKey": name}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let secret = body["secretKey"].as_str().unwrap().to_owned();
    let to = common::signer(&env.anvil, 5).address().to_string();
    let out = tokio::task::spawn_blocking(move || {
        let out = Command::new(python())
            .arg("-c")
            .arg(COINBASE_CLIENT)
            .args([&front, &name, &secret, &to])
            .env("REQUESTS_CA_BUNDLE", &cert_file)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "coinbase-advanced-py failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str::<Value>(stdout.lines().last().unwrap()).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out["accounts"]["data"][0]["currency"]["code"], "ETH");
    let expected = env.deposit_address(&common::Key::doc(), "ETH").await;
    assert_eq!(
        out["addresses"]["data"][0]["address"]
            .as_str()
            .unwrap()
            .to_lowercase(),
        expected.to_string().to_lowercase()
    );
    assert_eq!(out["send"]["data"]["status"], "pending");
    assert_eq!(
        out["send"]["data"]["id"], out["again"]["data"]["id"],
        "one idem, one send"
    );
}
