//! The configuration file, and starting and stopping the server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use concord_exchange_sim::{SimConfig, SimError, SimHandle, load_config};

fn example_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sim.example.toml")
}

#[test]
fn the_example_config_loads_and_hides_its_secrets() {
    let config = load_config(example_path()).unwrap();
    assert_eq!(config.chain_id, 31337);
    assert_eq!(config.confirmations, 3);
    assert_eq!(config.coins.len(), 2);
    assert_eq!(config.accounts.len(), 2);
    assert_eq!(config.accounts[0].api_keys.len(), 2);
    let debug = format!("{config:?}");
    for secret in [
        "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j",
        "change-me-admin-token",
        "2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
    ] {
        assert!(!debug.contains(secret), "Debug shows a secret");
    }
    assert!(debug.contains("<redacted>"));
    // anvil dev account 9.
    assert_eq!(
        config.hot_wallet_signer().unwrap().address().to_string(),
        "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720"
    );
    // Written back and read again, it is the same configuration.
    let again = SimConfig::from_toml_str(&config.to_toml_string().unwrap()).unwrap();
    assert_eq!(format!("{again:?}"), debug);
}

#[test]
fn a_key_file_is_read_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(example_path()).unwrap().replace(
        "hot_wallet_key = \"0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6\"",
        "hot_wallet_key_file = \"keys/hot.key\"",
    );
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    std::fs::write(
        dir.path().join("keys/hot.key"),
        "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("sim.toml"), text).unwrap();
    let config = load_config(dir.path().join("sim.toml")).unwrap();
    // anvil dev account 1.
    assert_eq!(
        config.hot_wallet_signer().unwrap().address().to_string(),
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    );
}

#[test]
fn inconsistent_configs_are_refused() {
    let example = std::fs::read_to_string(example_path()).unwrap();
    let cases: &[(&str, &str, &str)] = &[
        ("confirmations = 3", "confirmations = 0", "confirmations"),
        (
            "api_key = \"vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A\"",
            "api_key = \"too-short\"",
            "64 ASCII letters and digits",
        ),
        (
            "MCowBQYDK2VwAyEAgmDRTtj2FA+wzJUIlAL9ly1eovjLBu7uXUFR+jFULmg=",
            "MCowBQYDK2VwAyEAgmDRTtj2FA+wzJUIlAL9ly1eovjLBu7uXUFR+jFULm==",
            "Ed25519",
        ),
        (
            "withdraw_fee = \"0.0001\"",
            "withdraw_fee = \"0.0x\"",
            "withdraw_fee",
        ),
        ("ETH = \"5\"", "DOGE = \"5\"", "unknown coin DOGE"),
        ("name = \"bob\"", "name = \"alice\"", "configured twice"),
        (
            "permissions = [\"read\"]",
            "permissions = []",
            "no permissions",
        ),
        (
            "hot_wallet_key = \"0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6\"",
            "",
            "hot_wallet_key",
        ),
        (
            "rpc_url = \"http://127.0.0.1:8545\"",
            "rpc_url = \"not a url\"",
            "rpc_url",
        ),
    ];
    for (from, to, expected) in cases {
        assert!(example.contains(from), "the example has no {from:?}");
        let text = example.replacen(from, to, 1);
        let error = SimConfig::from_toml_str(&text).unwrap_err().to_string();
        assert!(error.contains(expected), "{from:?} → {to:?}: {error}");
    }
    // An unknown field is refused rather than ignored.
    let text = format!("unknown_field = 1\n{example}");
    assert!(SimConfig::from_toml_str(&text).is_err());
}

#[tokio::test]
async fn serve_runs_until_shutdown() {
    let anvil = spawn_anvil();
    let config = base_config(&anvil, None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(concord_exchange_sim::serve(config, listener, async move {
        let _ = stopped.await;
    }));
    let url = format!("http://{addr}/api/v3/ping");
    let body = wait_for("the server", || async {
        match reqwest::get(&url).await {
            Ok(r) => Some(r.text().await.unwrap()),
            Err(_) => None,
        }
    })
    .await;
    assert_eq!(body, "{}");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(
        reqwest::get(&url).await.is_err(),
        "still serving after shutdown"
    );
}

#[tokio::test]
async fn a_node_on_another_chain_is_refused() {
    let anvil = spawn_anvil();
    let mut config = base_config(&anvil, None);
    config.chain_id = 1;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    match SimHandle::start(config, listener).await {
        Err(SimError::Chain { reason, .. }) => assert!(reason.contains("chain id"), "{reason}"),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("started against the wrong chain"),
    }
}
