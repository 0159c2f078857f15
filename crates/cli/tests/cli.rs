//! The command line as a newcomer meets it, without any coordinator: help with an example
//! for every command, usage mistakes named in the words of the flag (exit code 2), one set
//! of connection flags accepted anywhere, a clear sentence when no coordinator can be
//! reached, completions, and a closed pipe that is not a panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;

/// `concord` with a clean environment: no connection variables, a home of its own (so no
/// default devnet is found).
fn concord(home: &tempfile::TempDir) -> Command {
    let mut cmd = Command::cargo_bin("concord").unwrap();
    for var in [
        "CONCORD_DEVNET",
        "CONCORD_URL",
        "CONCORD_TOKEN",
        "CONCORD_TOKEN_FILE",
        "CONCORD_API_PIN",
        "CONCORD_API_CA",
        "CONCORD_KEY_FILE",
        "XDG_STATE_HOME",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HOME", home.path())
        .env("CONCORD_HOME", home.path().join("state"))
        .env("CONCORD_LOG", "warn");
    cmd
}

fn run(home: &tempfile::TempDir, args: &[&str]) -> (i32, String, String) {
    let out = concord(home).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every command a user reaches (hidden and internal ones aside).
const COMMANDS: &[&[&str]] = &[
    &[],
    &["balances"],
    &["deposit"],
    &["withdraw"],
    &["transfers"],
    &["transfers", "list"],
    &["transfers", "show"],
    &["jobs"],
    &["jobs", "list"],
    &["jobs", "show"],
    &["wallets", "create"],
    &["wallets", "import"],
    &["wallets", "list"],
    &["wallets", "show"],
    &["groups", "create"],
    &["groups", "list"],
    &["groups", "show"],
    &["modules", "enroll"],
    &["modules", "list"],
    &["sign"],
    &["completions"],
    &["exchange-sim"],
    &["bench", "sign"],
    &["bench", "transfers"],
    &["bench", "soak"],
    &["bench", "api"],
];

#[test]
fn help_shows_an_example_for_every_command() {
    let home = tempfile::tempdir().unwrap();
    for cmd in COMMANDS {
        let mut args = cmd.to_vec();
        args.push("--help");
        let (code, out, _) = run(&home, &args);
        assert_eq!(code, 0, "concord {args:?}");
        assert!(
            out.contains("Example") || out.contains("Start here"),
            "concord {args:?} shows no example:\n{out}"
        );
        if !cmd.is_empty() && !matches!(cmd[0], "completions" | "exchange-sim") {
            assert!(
                out.contains("--devnet") && out.contains("--url") && out.contains("--token-file"),
                "concord {args:?} does not list the connection flags:\n{out}"
            );
        }
    }
}

#[test]
fn help_texts_are_as_reviewed() {
    let home = tempfile::tempdir().unwrap();
    for cmd in [
        &[][..],
        &["deposit"],
        &["transfers"],
        &["wallets", "list"],
        &["balances"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let (_, out, _) = run(&home, &args);
        let name = if cmd.is_empty() {
            "concord".to_owned()
        } else {
            cmd.join("_")
        };
        insta::assert_snapshot!(format!("help_{name}"), out);
    }
}

/// The code and the error of a mistake typed on the command line (no request is made: no
/// coordinator exists here).
fn mistake(args: &[&str]) -> (i32, String) {
    let home = tempfile::tempdir().unwrap();
    let (code, _, err) = run(&home, args);
    (code, err)
}

#[test]
fn flag_mistakes_are_named_before_any_request_with_exit_code_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["deposit", "--wallet", "xyz", "--amount", "1"], "--wallet"),
        (
            &["deposit", "--wallet", "abcd", "--amount", "-1"],
            "negative",
        ),
        (&["deposit", "--wallet", "abcd", "--amount=-1"], "negative"),
        (&["deposit", "--wallet", "abcd", "--amount", "0"], "zero"),
        (
            &["deposit", "--wallet", "abcd", "--amount", "1e3"],
            "plain decimal",
        ),
        (
            &[
                "deposit", "--wallet", "abcd", "--amount", "1", "--rule", "bogus",
            ],
            "possible values: all, threshold",
        ),
        (
            &[
                "deposit", "--wallet", "abcd", "--amount", "1", "--coin", "e th",
            ],
            "coin or network code",
        ),
        (&["transfers", "../wallets"], "not an id"),
        (&["jobs", "a/b"], "not an id"),
        (&["wallets", "show", "0x12"], "not a wallet id"),
        (
            &["wallets", "create", "--group", "g", "--scheme", "rsa"],
            "possible values",
        ),
        (&["sign", "--wallet", "abcd", "--message", "zz"], "not hex"),
        (
            &["tokens", "create", "--name", "x", "--role", "root"],
            "possible values",
        ),
        (&["policy", "show", "beef"], "not a policy hash"),
        (&["jobs", "list", "--limit", "0"], "--limit"),
    ];
    for (args, needle) in cases {
        let (code, err) = mistake(args);
        assert_eq!(code, 2, "concord {args:?}: {err}");
        assert!(
            err.contains(needle),
            "concord {args:?} should say {needle:?}: {err}"
        );
        assert!(
            !err.contains("JSON") && !err.contains("line 1 column"),
            "concord {args:?} leaks a server parse error: {err}"
        );
    }
}

#[test]
fn good_values_pass_the_parser() {
    // Accepted by the parser: the failure is the missing coordinator (checked after parsing).
    for args in [
        &[
            "sign",
            "--wallet",
            "abcd",
            "--message",
            "0x7761726d",
            "--rule",
            "threshold",
        ][..],
        &[
            "sign",
            "--wallet",
            "abcd…",
            "--text",
            "hello",
            "--mode",
            "interactive",
        ],
        &[
            "jobs", "list", "--kind", "sign", "--status", "failed", "--limit", "5",
        ],
        &["balances", "--wallet", "abcd"],
        &[
            "withdraw", "--to", "desk", "--amount", "0.5", "--coin", "ctt",
        ],
    ] {
        let (code, err) = mistake(args);
        assert_eq!(code, 2, "concord {args:?}: {err}");
        assert!(
            err.contains("no coordinator to talk to"),
            "concord {args:?}: {err}"
        );
    }
}

#[test]
fn coins_and_networks_are_case_insensitive() {
    // Accepted by the parser: the failure is the missing coordinator, not the coin.
    let (code, err) = mistake(&[
        "deposit",
        "--wallet",
        "abcd",
        "--coin",
        "eth",
        "--network",
        "eth",
        "--amount",
        "0.5",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no coordinator to talk to"), "{err}");
}

#[test]
fn no_coordinator_names_every_way_to_give_one() {
    let (code, err) = mistake(&["wallets", "list"]);
    assert_eq!(code, 2, "{err}");
    for way in [
        "--devnet",
        "--url",
        "--token-file",
        "CONCORD_DEVNET",
        "CONCORD_URL",
        "CONCORD_TOKEN_FILE",
        "CONCORD_TOKEN",
    ] {
        assert!(err.contains(way), "the error does not name {way}: {err}");
    }
}

#[test]
fn an_empty_variable_counts_as_unset() {
    let home = tempfile::tempdir().unwrap();
    let out = concord(&home)
        .env("CONCORD_DEVNET", "")
        .env("CONCORD_URL", "")
        .args(["transfers"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no coordinator to talk to"), "{err}");
}

#[test]
fn two_coordinators_at_once_is_a_mistake_not_a_silent_choice() {
    let (code, err) = mistake(&[
        "--devnet",
        "/nowhere",
        "--url",
        "http://127.0.0.1:1",
        "transfers",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--devnet and --url"), "{err}");
    let home = tempfile::tempdir().unwrap();
    let out = concord(&home)
        .env("CONCORD_DEVNET", "/nowhere")
        .env("CONCORD_URL", "http://127.0.0.1:1")
        .args(["transfers"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("both set"));
}

#[test]
fn connection_flags_go_before_or_after_the_command() {
    let home = tempfile::tempdir().unwrap();
    let nowhere = home.path().join("nowhere");
    let nowhere = nowhere.to_str().unwrap();
    for args in [
        vec!["--devnet", nowhere, "wallets", "list"],
        vec!["wallets", "--devnet", nowhere, "list"],
        vec!["wallets", "list", "--devnet", nowhere],
        vec!["transfers", "--devnet", nowhere],
        vec![
            "deposit", "--devnet", nowhere, "--wallet", "abcd", "--amount", "1",
        ],
    ] {
        let (code, _, err) = run(&home, &args);
        assert_eq!(code, 1, "concord {args:?}: {err}");
        assert!(
            err.contains(&format!("no devnet in {nowhere}")),
            "concord {args:?}: {err}"
        );
    }
}

#[test]
fn an_unreachable_coordinator_is_a_sentence() {
    let home = tempfile::tempdir().unwrap();
    let token = home.path().join("token");
    std::fs::write(&token, "cct_x").unwrap();
    let (code, _, err) = run(
        &home,
        &[
            "--url",
            "http://127.0.0.1:1",
            "--token-file",
            token.to_str().unwrap(),
            "wallets",
            "list",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cannot reach the coordinator at http://127.0.0.1:1/"),
        "{err}"
    );
    let (code, _, err) = run(&home, &["--url", "http://127.0.0.1:1", "wallets", "list"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("needs an API token"), "{err}");
}

#[test]
fn completions_for_each_shell() {
    let home = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = run(&home, &["completions", shell]);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("concord") && out.contains("balances"),
            "{shell}"
        );
    }
}

#[test]
fn a_closed_pipe_is_not_a_panic() {
    // The reader is gone before concord writes (`concord … | head` once head has exited).
    let home = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("concord"))
        .args(["completions", "bash"])
        .env("HOME", home.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}

/// A stand-in coordinator on 127.0.0.1: a transfer stuck in `signing` (each GET held 200 ms,
/// as a long poll would), a wallet list, deposits refused, and a token check.
async fn fake_coordinator() -> std::net::SocketAddr {
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post};
    use serde_json::json;
    fn authorized(h: &HeaderMap) -> bool {
        h.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer good")
    }
    let app = axum::Router::new()
        .route(
            "/v1/transfers/{id}",
            get(|h: HeaderMap, axum::extract::Path(id): axum::extract::Path<String>| async move {
                if !authorized(&h) {
                    return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "unknown API token"})));
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                (StatusCode::OK, axum::Json(json!({
                    "id": id, "kind": "deposit", "status": "signing", "wallet_id": "ab".repeat(32),
                    "exchange": "binance", "coin": "ETH", "network": "ETH", "amount": "0.5",
                    "rule": "all", "mode": "presigned",
                    "log": ["2026-11-30T09:11:41Z signing: proposing nonce 7"],
                    "error": "waiting: module m3 is not connected (retrying)",
                    "created_at": "2026-11-30T09:11:41Z", "created_ms": 1.0,
                })))
            }),
        )
        .route(
            "/v1/wallets",
            get(|| async {
                axum::Json(json!([{
                    "id": "ab".repeat(32), "group_id": "desk", "scheme": "ecdsa-secp256k1",
                    "public_key": "02".to_owned() + &"11".repeat(32), "job_id": "j",
                    "created_at": "2026-11-30T09:11:41Z", "kind": "generated", "threshold": 2,
                    "members": ["m1", "m2", "m3"], "label": null, "purpose": null, "addresses": [],
                }]))
            }),
        )
        .route(
            "/v1/transfers/deposits",
            post(|| async {
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    axum::Json(json!({"error": "refused: 0.5 ETH is over the wallet's limit"})),
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_wait_says_what_it_waits_for() {
    let addr = fake_coordinator().await;
    let home = tempfile::tempdir().unwrap();
    let token = home.path().join("token");
    std::fs::write(&token, "good").unwrap();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("concord"))
        .args(["transfers", "cdeef676c42b910e6905c364468afe31", "--wait"])
        .args(["--url", &format!("http://{addr}"), "--token-file"])
        .arg(&token)
        .env("HOME", home.path())
        .env_remove("CONCORD_DEVNET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(12)).await;
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("signing: proposing nonce 7"), "{err}");
    assert!(
        err.contains("still signing after 1") && err.contains("module m3 is not connected"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_is_exit_code_1_and_a_bad_token_is_named() {
    let addr = fake_coordinator().await;
    let home = tempfile::tempdir().unwrap();
    let url = format!("http://{addr}");
    let (token, key) = (home.path().join("token"), home.path().join("trader.key"));
    std::fs::write(&token, "good").unwrap();
    let (code, _, err) = run(&home, &["keys", "new", "--out", key.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let common = ["--url", &url, "--token-file", token.to_str().unwrap()];
    let mut args = common.to_vec();
    args.extend([
        "deposit",
        "--wallet",
        "abab",
        "--amount",
        "0.5",
        "--key",
        key.to_str().unwrap(),
    ]);
    let out = concord(&home).args(&args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refused: 0.5 ETH is over the wallet's limit"),
        "{err}"
    );

    std::fs::write(&token, "stolen").unwrap();
    let mut args = common.to_vec();
    args.extend(["transfers", "cdeef676"]);
    let out = concord(&home).args(&args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("refused the API token"), "{err}");
}
