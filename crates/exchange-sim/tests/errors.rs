//! Every error answer is JSON in the documented shape, whatever refuses the request (the
//! router, an extractor, the body limit, a handler), and never repeats a long input in full:
//! Binance's `{"code", "msg"}` outside `/sim/`, `{"error"}` under it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

const PING: &str = "/api/v3/ping";
const ACCOUNT: &str = "/api/v3/account";
const ADDRESS: &str = "/sapi/v1/capital/deposit/address";
const DHISTORY: &str = "/sapi/v1/capital/deposit/hisrec";
const WITHDRAW: &str = "/sapi/v1/capital/withdraw/apply";
const CREDIT: &str = "/sim/credit";
const KEYS: &str = "/sim/api-keys";
const FAULTS: &str = "/sim/faults";
const SIM_ADDRESS: &str = "/sim/deposit-address";

/// An error answer is at most this long, however long the input.
const MAX_ANSWER: usize = 1024;
/// 100 KB: a huge input, in a body (under the body limit) or a header.
const HUGE: usize = 100 * 1024;
/// 60 KB: a huge input in a URI (which cannot be longer than 64 KiB).
const LARGE: usize = 60 * 1024;
/// The simulator's body limit (256 KiB).
const BODY_LIMIT: usize = 256 * 1024;
/// Over the body limit.
const OVERSIZE: usize = BODY_LIMIT + 64 * 1024;

/// The JSON body of an error answer, after the checks every error answer must pass.
#[track_caller]
fn json_error(raw: &Raw, status: u16) -> serde_json::Map<String, Value> {
    assert_eq!(raw.status, status, "HTTP status of {:.300}", raw.text);
    assert!(
        raw.content_type().starts_with("application/json"),
        "content type {:?} of {:.300}",
        raw.content_type(),
        raw.text
    );
    assert!(
        raw.text.len() < MAX_ANSWER,
        "{} bytes: {:.300}…",
        raw.text.len(),
        raw.text
    );
    match serde_json::from_str(&raw.text) {
        Ok(Value::Object(object)) => object,
        other => panic!("not a JSON object: {other:?} from {:.300}", raw.text),
    }
}

/// Asserts a Binance error `{"code", "msg"}` (nothing else); its message.
#[track_caller]
fn binance_error(raw: &Raw, status: u16, code: i64) -> String {
    let object = json_error(raw, status);
    assert_eq!(object.len(), 2, "{object:?}");
    assert_eq!(object["code"], code, "{object:?}");
    let msg = object["msg"].as_str().expect("msg is a string");
    assert!(!msg.is_empty());
    msg.to_string()
}

/// Asserts an admin error `{"error"}` (nothing else); its message.
#[track_caller]
fn admin_error(raw: &Raw, status: u16) -> String {
    let object = json_error(raw, status);
    assert_eq!(object.len(), 1, "{object:?}");
    let msg = object["error"].as_str().expect("error is a string");
    assert!(!msg.is_empty());
    msg.to_string()
}

/// Asserts that a message repeats a long input clipped: its start, "…", its length.
#[track_caller]
fn clipped(msg: &str, start: &str, length: usize) {
    let expected = format!("{start}… ({length} chars)");
    assert!(msg.contains(&expected), "{expected:?} not in {msg:?}");
}

fn request(env: &Env, method: Method, path_and_query: &str) -> reqwest::RequestBuilder {
    env.http
        .request(method, format!("{}{path_and_query}", env.base))
}

/// A GET of `path` with the raw `payload` as query, signed as it stands (not re-encoded).
fn signed_get(env: &Env, key: &Key, path: &str, payload: &str) -> reqwest::RequestBuilder {
    let query = format!("{payload}&signature={}", key.sign(payload));
    request(env, Method::GET, &format!("{path}?{query}")).header("X-MBX-APIKEY", key.api_key())
}

fn admin(env: &Env, method: Method, path_and_query: &str) -> reqwest::RequestBuilder {
    request(env, method, path_and_query).bearer_auth(ADMIN_TOKEN)
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_answer_json() {
    let env = Env::new().await;
    for path in [
        "/",
        "/api/v3/order",
        "/sapi/v1/capital/config/getall",
        "/api/v3/ping/",
    ] {
        let raw = send_raw(request(&env, Method::GET, path)).await;
        let msg = binance_error(&raw, 404, -1020);
        assert!(msg.starts_with("This operation is not supported"), "{msg}");
        assert!(msg.contains(path), "{msg}");
    }
    // A huge unknown path is not repeated in full.
    let path = format!("/api/v3/{}", "p".repeat(LARGE));
    let raw = send_raw(request(&env, Method::GET, &path)).await;
    let msg = binance_error(&raw, 404, -1020);
    clipped(&msg, &path[..64], path.len());

    for (method, path, allow) in [
        (Method::POST, PING, "GET"),
        (Method::DELETE, ACCOUNT, "GET"),
        (Method::GET, WITHDRAW, "POST"),
        (Method::PUT, WITHDRAW, "POST"),
    ] {
        let raw = send_raw(request(&env, method.clone(), path)).await;
        let msg = binance_error(&raw, 405, -1020);
        assert!(msg.contains(path) && msg.contains(method.as_str()), "{msg}");
        assert!(raw.header("allow").contains(allow), "{method} {path}");
    }

    for path in ["/sim", "/sim/", "/sim/accounts", "/sim/credit/alice"] {
        let raw = send_raw(admin(&env, Method::GET, path)).await;
        let msg = admin_error(&raw, 404);
        assert!(msg.contains(path), "{msg}");
    }
    for (method, path, allow) in [
        (Method::GET, CREDIT, "POST"),
        (Method::PUT, FAULTS, "DELETE"),
        (Method::POST, SIM_ADDRESS, "GET"),
        (Method::POST, "/sim/health", "GET"),
    ] {
        let raw = send_raw(admin(&env, method.clone(), path)).await;
        let msg = admin_error(&raw, 405);
        assert!(msg.contains(path) && msg.contains(method.as_str()), "{msg}");
        assert!(raw.header("allow").contains(allow), "{method} {path}");
    }
}

#[tokio::test]
async fn malformed_missing_and_huge_parameters_answer_json() {
    let env = Env::new().await;
    let key = Key::hmac_rw();

    // Missing mandatory parameters.
    let raw = send_raw(signed_get(&env, &key, ADDRESS, &signed_payload(&[]))).await;
    let msg = binance_error(&raw, 400, -1102);
    assert!(msg.contains("'coin'"), "{msg}");
    let raw = send_raw(
        request(&env, Method::GET, &format!("{ADDRESS}?coin=ETH"))
            .header("X-MBX-APIKEY", key.api_key()),
    )
    .await;
    let msg = binance_error(&raw, 400, -1102);
    assert!(msg.contains("'timestamp'"), "{msg}");

    // Malformed values.
    for (path, params) in [
        (DHISTORY, vec![("limit", "abc")]),
        (DHISTORY, vec![("startTime", "-1")]),
        (ADDRESS, vec![("coin", "ETH"), ("recvWindow", "1e3")]),
    ] {
        let raw = send_raw(signed_get(&env, &key, path, &signed_payload(&params))).await;
        binance_error(&raw, 400, -1100);
    }
    let raw = send_raw(signed_get(&env, &key, ADDRESS, "coin=ETH&timestamp=12ab")).await;
    binance_error(&raw, 400, -1100);

    // A 60 KB value in the query where a name is expected, where a number is expected, and an
    // unknown 60 KB parameter; a 100 KB value in a body and in a header: short JSON answers.
    let huge = "Z".repeat(LARGE);
    let raw = send_raw(signed_get(
        &env,
        &key,
        ADDRESS,
        &signed_payload(&[("coin", &huge)]),
    ))
    .await;
    binance_error(&raw, 400, -4018);
    let raw = send_raw(signed_get(
        &env,
        &key,
        DHISTORY,
        &signed_payload(&[("limit", &"9".repeat(LARGE))]),
    ))
    .await;
    binance_error(&raw, 400, -1100);
    let raw = send_raw(signed_get(
        &env,
        &key,
        ADDRESS,
        &format!("coin=ETH&timestamp={huge}"),
    ))
    .await;
    binance_error(&raw, 400, -1100);
    let raw = send_raw(signed_get(
        &env,
        &key,
        ADDRESS,
        &signed_payload(&[("coin", "ETH"), (&huge, "1")]),
    ))
    .await;
    binance_error(&raw, 400, -1104);
    let payload = encode(&[
        ("coin", "ETH"),
        ("address", &"0".repeat(HUGE)),
        ("amount", "1"),
        ("timestamp", &now_ms().to_string()),
    ]);
    let raw = send_raw(
        request(&env, Method::POST, WITHDRAW)
            .header("X-MBX-APIKEY", key.api_key())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("{payload}&signature={}", key.sign(&payload))),
    )
    .await;
    binance_error(&raw, 400, -4033);
    let raw = send_raw(
        request(
            &env,
            Method::GET,
            &format!("{ACCOUNT}?timestamp=1&signature=0"),
        )
        .header("X-MBX-APIKEY", "K".repeat(HUGE)),
    )
    .await;
    binance_error(&raw, 401, -2014);

    // The admin query: missing, duplicated, unknown and 100 KB parameters.
    for query in [
        "account=alice",
        "network=ETH",
        "",
        "account=alice&network=ETH&account=bob",
        "account=alice&network=ETH&coin=ETH",
    ] {
        let raw = send_raw(admin(&env, Method::GET, &format!("{SIM_ADDRESS}?{query}"))).await;
        admin_error(&raw, 400);
    }
    let raw = send_raw(admin(
        &env,
        Method::GET,
        &format!("{SIM_ADDRESS}?account={huge}&network=ETH"),
    ))
    .await;
    let msg = admin_error(&raw, 404);
    clipped(&msg, &huge[..64], LARGE);
    let raw = send_raw(admin(
        &env,
        Method::GET,
        &format!("{SIM_ADDRESS}?account=alice&network={huge}"),
    ))
    .await;
    let msg = admin_error(&raw, 400);
    clipped(&msg, &huge[..64], LARGE);
}

/// `params&timestamp=now`, percent-encoded, ready to be signed.
fn signed_payload(params: &[(&str, &str)]) -> String {
    let ts = now_ms().to_string();
    let mut all = params.to_vec();
    all.push(("timestamp", &ts));
    encode(&all)
}

#[tokio::test]
async fn undecodable_parameters_are_1100() {
    let env = Env::new().await;
    let key = Key::hmac_rw();
    let ts = now_ms();
    // Percent-encoded bytes that are not UTF-8, and percent signs that encode nothing, in a
    // value or in a name: refused before the signature is looked at.
    for bad in [
        "coin=%FF",
        "coin=%C3%28",
        "coin=%E2%82",
        "coin=%ZZ",
        "coin=ETH%",
        "coin=ETH%4",
        "%FF=ETH",
        "co%in=ETH",
    ] {
        let payload = format!("{bad}&timestamp={ts}");
        let raw = send_raw(signed_get(&env, &key, ADDRESS, &payload)).await;
        let msg = binance_error(&raw, 400, -1100);
        assert!(
            msg.starts_with("Illegal characters found in a parameter"),
            "{bad}: {msg}"
        );
        let raw = send_raw(
            request(&env, Method::POST, WITHDRAW)
                .header("X-MBX-APIKEY", key.api_key())
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(format!("{payload}&signature={}", key.sign(&payload))),
        )
        .await;
        binance_error(&raw, 400, -1100);
    }
    // A body that is not UTF-8 at all.
    let raw = send_raw(
        request(&env, Method::POST, WITHDRAW)
            .header("X-MBX-APIKEY", key.api_key())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(vec![b'c', b'o', b'i', b'n', b'=', 0xff, 0xfe]),
    )
    .await;
    binance_error(&raw, 400, -1100);
    // Well-formed percent-encoding is decoded as before.
    let raw = send_raw(signed_get(
        &env,
        &key,
        ADDRESS,
        &format!("coin=%45%54H&timestamp={ts}"),
    ))
    .await;
    assert_eq!(raw.status, 200, "{}", raw.text);
    let raw = send_raw(signed_get(
        &env,
        &key,
        ADDRESS,
        &format!("coin=ETH&network=%45T%48&timestamp={ts}"),
    ))
    .await;
    assert_eq!(raw.status, 200, "{}", raw.text);
}

#[tokio::test]
async fn oversize_bodies_are_413_json() {
    let env = Env::new().await;
    let key = Key::hmac_rw();
    let huge_form = format!("pad={}", "a".repeat(OVERSIZE));
    let raw = send_raw(
        request(&env, Method::POST, WITHDRAW)
            .header("X-MBX-APIKEY", key.api_key())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(huge_form.clone()),
    )
    .await;
    let msg = binance_error(&raw, 413, -1101);
    assert!(msg.contains(&BODY_LIMIT.to_string()), "{msg}");
    // A GET with a body over the limit, and a 413 that goes through the fault middleware.
    let raw = send_raw(
        request(&env, Method::GET, ACCOUNT)
            .header("X-MBX-APIKEY", key.api_key())
            .body(huge_form.clone()),
    )
    .await;
    binance_error(&raw, 413, -1101);
    // A body under the limit reaches the checks.
    let payload = encode(&[
        ("coin", "ETH"),
        ("pad", &"a".repeat(HUGE)),
        ("timestamp", &now_ms().to_string()),
    ]);
    let raw = send_raw(
        request(&env, Method::POST, WITHDRAW)
            .header("X-MBX-APIKEY", key.api_key())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("{payload}&signature={}", key.sign(&payload))),
    )
    .await;
    binance_error(&raw, 400, -1104);

    let huge_json =
        json!({"account": "a".repeat(OVERSIZE), "coin": "ETH", "amount": "1"}).to_string();
    for path in [CREDIT, KEYS, FAULTS] {
        let raw = send_raw(
            admin(&env, Method::POST, path)
                .header("Content-Type", "application/json")
                .body(huge_json.clone()),
        )
        .await;
        let msg = admin_error(&raw, 413);
        assert!(msg.contains(&BODY_LIMIT.to_string()), "{msg}");
    }
    // Without the token, the token is refused first.
    let raw = send_raw(
        request(&env, Method::POST, CREDIT)
            .header("Content-Type", "application/json")
            .body(huge_json),
    )
    .await;
    admin_error(&raw, 401);
}

#[tokio::test]
async fn admin_body_refusals_answer_json() {
    let env = Env::new().await;
    let post = |path: &str, content_type: &str, body: String| {
        admin(&env, Method::POST, path)
            .header("Content-Type", content_type)
            .body(body)
    };
    let credit = json!({"account": "bob", "coin": "ETH", "amount": "1"}).to_string();
    // Not JSON: wrong content type, bad syntax, wrong shape.
    let raw = send_raw(post(CREDIT, "text/plain", credit.clone())).await;
    let msg = admin_error(&raw, 415);
    assert!(msg.contains("application/json"), "{msg}");
    let raw = send_raw(admin(&env, Method::POST, CREDIT).body(credit.clone())).await;
    admin_error(&raw, 415);
    for body in ["not json", "", "{\"account\": \"bob\",", "[]"] {
        let raw = send_raw(post(CREDIT, "application/json", body.into())).await;
        admin_error(&raw, 400);
    }
    let raw = send_raw(post(
        CREDIT,
        "application/json",
        json!({"account": "bob"}).to_string(),
    ))
    .await;
    let msg = admin_error(&raw, 400);
    assert!(msg.contains("missing field `coin`"), "{msg}");
    let raw = send_raw(post(
        KEYS,
        "application/json",
        json!({"account": "bob", "kind": "hmac", "permissions": ["read"], "colour": "red"})
            .to_string(),
    ))
    .await;
    let msg = admin_error(&raw, 400);
    assert!(msg.contains("unknown field `colour`"), "{msg}");
    // The token is checked before the body.
    let raw = send_raw(
        request(&env, Method::POST, CREDIT)
            .header("Content-Type", "text/plain")
            .body("not json"),
    )
    .await;
    assert_eq!(
        admin_error(&raw, 401),
        "missing or wrong admin bearer token"
    );

    // 60 KB inputs (under the body limit) come back clipped, wherever they are.
    let large = "q".repeat(HUGE);
    let start = &large[..64];
    // (path, body, status, whether the message quotes the large input)
    let cases = [
        (
            CREDIT,
            json!({"account": large, "coin": "ETH", "amount": "1"}),
            404,
            true,
        ),
        (
            CREDIT,
            json!({"account": "bob", "coin": large, "amount": "1"}),
            400,
            true,
        ),
        (
            CREDIT,
            json!({"account": "bob", "coin": "ETH", "amount": large}),
            400,
            true,
        ),
        (
            CREDIT,
            json!({"account": "bob", "coin": "ETH", "amount": 1, "x": large}),
            400,
            false,
        ),
        (
            CREDIT,
            json!({"account": "bob", "coin": "ETH", "amount": "1", large.as_str(): 1}),
            400,
            true,
        ),
        (
            KEYS,
            json!({"account": large, "kind": "hmac", "permissions": ["read"]}),
            404,
            true,
        ),
        (
            KEYS,
            json!({"account": "bob", "kind": large, "permissions": ["read"]}),
            400,
            true,
        ),
        (
            KEYS,
            json!({"account": "bob", "kind": "hmac", "permissions": [large]}),
            400,
            true,
        ),
        (
            KEYS,
            json!({"account": "bob", "kind": "hmac", "permissions": ["read"], "apiKey": large}),
            400,
            true,
        ),
        (
            KEYS,
            json!({"account": "bob", "kind": "ed25519", "permissions": ["read"], "publicKey": large}),
            400,
            false,
        ),
        (
            FAULTS,
            json!({"http5xx": {"count": 1, "paths": [large]}}),
            400,
            true,
        ),
        (
            FAULTS,
            json!({"slow": {"count": large, "delayMs": 1}}),
            400,
            true,
        ),
    ];
    for (path, body, status, quoted) in cases {
        let raw = send_raw(post(path, "application/json", body.to_string())).await;
        let msg = admin_error(&raw, status);
        if quoted {
            clipped(&msg, start, HUGE);
        }
    }
    // Clipping keeps the rest of a message: the field it names.
    let raw = send_raw(post(
        FAULTS,
        "application/json",
        json!({"http5xx": {"count": 1, "paths": ["/api/v3/ping", large]}}).to_string(),
    ))
    .await;
    let msg = admin_error(&raw, 400);
    assert!(msg.contains("http5xx.paths[1]: \""), "{msg}");
    assert!(msg.contains("is not a Binance or Kraken path"), "{msg}");
}

/// What the router never sees: hyper refuses a request line it cannot parse (a URI over
/// 64 KiB, raw bytes that are not UTF-8) before any route, with an empty body. Pinned here
/// because the README documents it as a limit.
#[tokio::test]
async fn hyper_refuses_unparsable_request_lines_before_the_router() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let env = Env::new().await;
    let long = format!("{PING}?x={}", "a".repeat(70 * 1024)).into_bytes();
    let mut raw_bytes = format!("{PING}?coin=").into_bytes();
    raw_bytes.push(0xff);
    for (target, status) in [(long, "414"), (raw_bytes, "400")] {
        let mut stream = tokio::net::TcpStream::connect(env.sim.local_addr())
            .await
            .unwrap();
        let mut request = b"GET ".to_vec();
        request.extend(target);
        request.extend(b" HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n");
        stream.write_all(&request).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{answer:.300}"
        );
    }
}
