//! End-to-end: a coordinator and three modules as separate OS processes (the `concord`
//! binary), over mutual TLS on 127.0.0.1, driven through the CLI as an operator would.
//! ECDSA signer groups use the committed INSECURE test primes (preloaded into each vault)
//! so that no test spends minutes finding safe primes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_concord");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tss/tests/fixtures")
}

/// A process killed when dropped.
struct Proc {
    child: Child,
    name: String,
    log: PathBuf,
}

impl Proc {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- log of {} ----\n{}", self.name, self.log());
        }
    }
}

struct Net {
    http: String,
    grpc: String,
    coordinator_key: String,
    coordinator_fingerprint: String,
    /// The SHA-256 fingerprint of the coordinator's API certificate (the CLI pins it).
    api_pin: String,
    coordinator: Option<Proc>,
    modules: Vec<(String, Option<Proc>)>,
    // Last: dropped after the processes, so their logs can still be printed.
    dir: tempfile::TempDir,
}

fn pass_var(id: &str) -> String {
    format!("CONCORD_TEST_PASS_{}", id.to_uppercase())
}

impl Net {
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("CONCORD_URL", format!("https://{}", self.http))
            .env("CONCORD_API_PIN", &self.api_pin)
            .env("CONCORD_TOKEN_FILE", self.path("coordinator/admin.token"))
            .env("CONCORD_KEY_FILE", self.path("keys/trader.key"))
            .env("CONCORD_LOG", "warn");
        for (id, _) in &self.modules {
            cmd.env(pass_var(id), format!("passphrase of {id}"));
        }
        cmd.output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "concord {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(self.ok(&a).trim()).unwrap()
    }

    fn spawn(&self, name: &str, args: &[&str], extra_env: &[(String, String)]) -> Proc {
        let log = self.path(&format!("{name}.log"));
        let f = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("CONCORD_LOG", "info,concord_module=debug")
            .stdout(Stdio::null())
            .stderr(f);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        Proc {
            child: cmd.spawn().unwrap(),
            name: name.into(),
            log,
        }
    }

    fn start_coordinator(&mut self) {
        let config = self.path("coordinator").display().to_string();
        let p = self.spawn(
            "coordinator",
            &["coordinator", "run", "--config", &config],
            &[],
        );
        self.coordinator = Some(p);
        wait_until(Duration::from_secs(20), "the coordinator API", || {
            std::net::TcpStream::connect(&self.http).is_ok()
        });
    }

    fn start_module(&mut self, id: &str) {
        self.start_module_with(id, &[]);
    }

    fn start_module_with(&mut self, id: &str, extra_env: &[(String, String)]) {
        let config = self.path(id).display().to_string();
        let mut env = vec![(pass_var(id), format!("passphrase of {id}"))];
        env.extend_from_slice(extra_env);
        let p = self.spawn(id, &["module", "run", "--config", &config], &env);
        let slot = self.modules.iter_mut().find(|(m, _)| m == id).unwrap();
        slot.1 = Some(p);
    }

    fn stop_module(&mut self, id: &str) {
        let slot = self.modules.iter_mut().find(|(m, _)| m == id).unwrap();
        if let Some(mut p) = slot.1.take() {
            p.kill();
        }
    }

    fn connected(&self) -> Vec<String> {
        self.json(&["modules", "list"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["connected"] == true)
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    }

    fn wait_connected(&self, ids: &[&str]) {
        wait_until(
            Duration::from_secs(30),
            &format!("modules {ids:?} to connect"),
            || {
                let c = self.connected();
                ids.iter().all(|i| c.iter().any(|x| x == i))
            },
        );
    }
}

impl Net {
    /// A principal's public key.
    fn public_key(&self, name: &str) -> String {
        let k = self.path(&format!("keys/{name}.key")).display().to_string();
        self.json(&["keys", "show", "--key", &k])["public_key"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Proposes a policy (the admin, trader, importer and approver of the test; `wallets` as
    /// trading wallets that may sign raw messages unless listed in `no_raw`) through the CLI,
    /// signs it with the admin key, and waits until every connected module has it.
    fn install_policy(&self, wallets: &[&str], no_raw: &[&str]) {
        self.install_policy_with(wallets, no_raw, &[], &[]);
    }

    /// [`Net::install_policy`], with `refresh = true` for the wallets in `refresh`, and child
    /// wallets allowed under the path prefixes `derive` for every wallet.
    fn install_policy_with(
        &self,
        wallets: &[&str],
        no_raw: &[&str],
        refresh: &[&str],
        derive: &[&str],
    ) {
        self.install_policy_full(wallets, no_raw, refresh, derive, &[]);
    }

    /// A 2-of-3 signer group of m1, m2, m3 with the default engine, ready: its record.
    fn group_of_three(&self, id: &str) -> Value {
        self.json(&[
            "groups",
            "create",
            "--id",
            id,
            "--threshold",
            "2",
            "--members",
            "m1,m2,m3",
            "--wait",
        ])
    }

    /// A wallet of `scheme` made by DKG in `group`: its id and public key.
    fn new_wallet(&self, group: &str, scheme: &str) -> (String, String) {
        let w = self.json(&[
            "wallets", "create", "--group", group, "--scheme", scheme, "--wait",
        ]);
        (
            w["id"].as_str().unwrap().to_owned(),
            w["public_key"].as_str().unwrap().to_owned(),
        )
    }

    /// A module's identity key (hex), from its `module init` output.
    fn identity(&self, id: &str) -> String {
        let info: Value = serde_json::from_str(
            &std::fs::read_to_string(self.path(&format!("{id}.json"))).unwrap(),
        )
        .unwrap();
        info["identity"].as_str().unwrap().to_owned()
    }

    /// [`Net::install_policy_with`], and the members (module ids, in index order) of the
    /// signer groups in `groups`.
    fn install_policy_full(
        &self,
        wallets: &[&str],
        no_raw: &[&str],
        refresh: &[&str],
        derive: &[&str],
        groups: &[(&str, &[&str])],
    ) {
        let mut doc = String::from("admin_quorum = 1\n");
        for (g, members) in groups {
            let keys: Vec<String> = members.iter().map(|m| self.identity(m)).collect();
            doc.push_str(&format!(
                "[[groups]]\ngroup = \"{g}\"\nmembers = {keys:?}\n"
            ));
        }
        for (name, role) in [
            ("admin", "admin"),
            ("trader", "trader"),
            ("importer", "importer"),
            ("approver", "approver"),
        ] {
            doc.push_str(&format!(
                "[[principals]]\nname = \"{name}\"\nkey = \"{}\"\nroles = [\"{role}\"]\n",
                self.public_key(name)
            ));
        }
        for (i, w) in wallets.iter().enumerate() {
            doc.push_str(&format!(
                "[[wallets]]\nwallet = \"{w}\"\nlabel = \"w{i}\"\nrefresh = {}\nderive = {derive:?}\n[wallets.purpose]\nkind = \"trading\"\nraw_messages = {}\n",
                refresh.contains(w),
                !no_raw.contains(w)
            ));
        }
        let file = self.path("policy.toml");
        std::fs::write(&file, doc).unwrap();
        let v = self.json(&["policy", "propose", "--file", &file.display().to_string()]);
        let hash = v["hash"].as_str().unwrap().to_owned();
        let admin = self.path("keys/admin.key").display().to_string();
        self.json(&["policy", "approve", "--key", &admin, &hash]);
        wait_until(
            Duration::from_secs(20),
            "the modules to adopt the policy",
            || {
                let v = self.json(&["policy", "show", &hash]);
                let connected = self.connected();
                v["modules"].as_array().unwrap().iter().all(|m| {
                    !connected.contains(&m["module_id"].as_str().unwrap().to_owned())
                        || m["policy_hash"] == hash.as_str()
                })
            },
        );
    }
}

fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sets up a coordinator and modules m1..mN (enrolled, peers pinned, INSECURE fixture primes
/// preloaded for group `g1`), and starts them.
fn setup(n: usize) -> Net {
    let dir = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let grpc = format!("127.0.0.1:{}", free_port());
    let mut net = Net {
        dir,
        http: http.clone(),
        grpc: grpc.clone(),
        coordinator_key: String::new(),
        coordinator_fingerprint: String::new(),
        api_pin: String::new(),
        coordinator: None,
        modules: (1..=n).map(|i| (format!("m{i}"), None)).collect(),
    };
    let cdir = net.path("coordinator").display().to_string();
    let c = net.json(&[
        "coordinator",
        "init",
        "--dir",
        &cdir,
        "--grpc-listen",
        &grpc,
        "--http-listen",
        &http,
    ]);
    net.coordinator_key = c["identity"].as_str().unwrap().to_owned();
    net.coordinator_fingerprint = c["fingerprint"].as_str().unwrap().to_owned();
    net.api_pin = c["api_fingerprint"].as_str().unwrap().to_owned();
    for name in ["admin", "trader", "importer", "approver"] {
        let f = net.path(&format!("keys/{name}.key")).display().to_string();
        net.ok(&["keys", "new", "--out", &f]);
    }
    let admin = net.public_key("admin");
    let ids: Vec<String> = net.modules.iter().map(|(m, _)| m.clone()).collect();
    let mut infos = Vec::new();
    for id in &ids {
        let mdir = net.path(id).display().to_string();
        let info = net.json(&[
            "module",
            "init",
            "--dir",
            &mdir,
            "--id",
            id,
            "--coordinator",
            &grpc,
            "--coordinator-key",
            &net.coordinator_key,
            "--passphrase-env",
            &pass_var(id),
            "--admin",
            &admin,
            "--admin-quorum",
            "1",
        ]);
        let info_file = net.path(&format!("{id}.json"));
        std::fs::write(&info_file, info.to_string()).unwrap();
        infos.push((id.clone(), info, info_file));
    }
    net.start_coordinator();
    for (id, _, file) in &infos {
        let enrolled = net.json(&["modules", "enroll", "--info", &file.display().to_string()]);
        assert_eq!(enrolled["id"], id.as_str());
    }
    for (i, (id, _, _)) in infos.iter().enumerate() {
        let mdir = net.path(id).display().to_string();
        for (j, (_, other, _)) in infos.iter().enumerate() {
            if i != j {
                net.ok(&[
                    "module",
                    "pin",
                    "--config",
                    &mdir,
                    "--peer",
                    other["identity"].as_str().unwrap(),
                ]);
            }
        }
        let primes = fixtures()
            .join(format!("INSECURE-primes-{i}.bin"))
            .display()
            .to_string();
        net.ok(&[
            "module",
            "preload-primes",
            "--config",
            &mdir,
            "--group",
            "g1",
            "--file",
            &primes,
        ]);
    }
    for id in &ids {
        net.start_module(id);
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    net.wait_connected(&refs);
    net
}

fn verify(scheme: &str, public_key: &str, signing_input: &[u8], signature: &str) {
    concord_wire::verify::verify_signature(
        scheme.parse().unwrap(),
        &hex::decode(public_key).unwrap(),
        signing_input,
        &hex::decode(signature).unwrap(),
    )
    .unwrap_or_else(|e| panic!("{scheme} signature does not verify independently: {e}"));
}

fn eth_address(sec1: &[u8]) -> String {
    use sha3::Digest;
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(sec1).unwrap();
    let point = vk.to_encoded_point(false);
    let hash = sha3::Keccak256::digest(&point.as_bytes()[1..]);
    format!("0x{}", hex::encode(&hash[12..]))
}

/// What a wallet signs for a raw message: always domain-separated.
fn signing_input(scheme: &str, message: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let tagged = [b"concord/message/v1\0".as_slice(), message].concat();
    if scheme == "ecdsa-secp256k1" {
        sha2::Sha256::digest(&tagged).to_vec()
    } else {
        tagged
    }
}

#[test]
fn dkg_and_signing_across_processes_for_every_scheme_with_one_module_down() {
    let mut net = setup(3);
    let g = net.json(&[
        "groups",
        "create",
        "--id",
        "g1",
        "--threshold",
        "2",
        "--members",
        "m1,m2,m3",
        "--wait",
    ]);
    assert_eq!(g["status"], "ready");
    // The first policy: who is who (no wallet may sign anything yet).
    net.install_policy(&[], &[]);

    let mut wallets = Vec::new();
    for scheme in ["ecdsa-secp256k1", "schnorr-taproot", "ed25519"] {
        let w = net.json(&[
            "wallets", "create", "--group", "g1", "--scheme", scheme, "--wait",
        ]);
        assert_eq!(w["scheme"], scheme);
        wallets.push((
            scheme,
            w["id"].as_str().unwrap().to_owned(),
            w["public_key"].as_str().unwrap().to_owned(),
        ));
    }

    // Import an existing key (Anvil's and Hardhat's first development account): split in the
    // CLI, sealed per module; the wallet keeps the key's Ethereum address.
    let key_file = net.path("anvil0.key");
    std::fs::write(
        &key_file,
        "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    )
    .unwrap();
    let import = |signer: &str| {
        net.run(&[
            "wallets",
            "import",
            "--group",
            "g1",
            "--scheme",
            "ecdsa-secp256k1",
            "--key-file",
            &key_file.display().to_string(),
            "--key",
            &net.path(&format!("keys/{signer}.key"))
                .display()
                .to_string(),
            "--json",
        ])
    };
    // Only an importer may import.
    let out = import("trader");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not have the role 'importer'"), "{err}");
    let out = import("importer");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("WARNING: this ecdsa-secp256k1 key existed whole")
    );
    let imported: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pk = imported["public_key"].as_str().unwrap().to_owned();
    assert_eq!(
        eth_address(&hex::decode(&pk).unwrap()),
        "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
    );
    wallets.push((
        "ecdsa-secp256k1",
        imported["id"].as_str().unwrap().to_owned(),
        pk,
    ));
    // Importing it again (same key, fresh intent): every module already holds it.
    let out = import("importer");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already exists") || err.contains("already holds"),
        "{err}"
    );

    // Raw messages are off until the policy allows them for a wallet.
    let (_, w0, _) = &wallets[0];
    let out = net.run(&["sign", "--wallet", w0, "--message", "00", "--wait"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not named in policy v1"), "{err}");
    let ids: Vec<&str> = wallets.iter().map(|(_, w, _)| w.as_str()).collect();
    net.install_policy(&ids, &[]);

    for (scheme, wallet, pk) in &wallets {
        let message = format!("pay 1 unit from {scheme}");
        let hexmsg = hex::encode(message.as_bytes());
        let job = net.json(&["sign", "--wallet", wallet, "--message", &hexmsg, "--wait"]);
        let r = &job["result"];
        assert_eq!(
            r["approvers"].as_array().unwrap().len(),
            3,
            "all three approve: {job}"
        );
        verify(
            scheme,
            pk,
            &signing_input(scheme, message.as_bytes()),
            r["signature"].as_str().unwrap(),
        );
    }

    // Messages equal to chain sighashes (EVM, BIP-143, BIP-341) are signed domain-separated:
    // the signature verifies over the tagged message, never over the sighash.
    sighash_messages_sign_nothing_but_the_tagged_message(&net, &wallets);

    // One module down: rule `all` needs every member, so it is refused; 2-of-3 still signs
    // under rule `threshold`, each signer checking the other's signed approval.
    net.stop_module("m3");
    wait_until(Duration::from_secs(10), "m3 to disconnect", || {
        !net.connected().contains(&"m3".to_owned())
    });
    let (_, w0, _) = &wallets[0];
    let out = net.run(&["sign", "--wallet", w0, "--message", "01", "--wait"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rule 'all' needs 3"), "{err}");
    for (scheme, wallet, pk) in &wallets {
        let message = format!("second payment from {scheme}");
        let job = net.json(&[
            "sign",
            "--wallet",
            wallet,
            "--message",
            &hex::encode(&message),
            "--rule",
            "threshold",
            "--wait",
        ]);
        let r = &job["result"];
        let signers: Vec<u64> = r["signers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(signers, vec![0, 1], "m1 and m2 sign: {job}");
        verify(
            scheme,
            pk,
            &signing_input(scheme, message.as_bytes()),
            r["signature"].as_str().unwrap(),
        );
    }
}

/// Signs, as raw messages, an EVM transaction's sighash (ECDSA wallet), a BIP-143 sighash of
/// a P2WPKH spend from the ECDSA wallet's key, and a BIP-341 key-path sighash of a P2TR spend
/// from the Taproot wallet's key; checks each signature verifies over the domain-separated
/// message and not over the sighash (so it can never authorise that transaction).
fn sighash_messages_sign_nothing_but_the_tagged_message(
    net: &Net,
    wallets: &[(&str, String, String)],
) {
    use bitcoin::hashes::Hash;
    let (_, ecdsa_wallet, ecdsa_pk) = &wallets[0];
    let (_, tr_wallet, tr_pk) = &wallets[1];
    let evm = concord_chain::EvmTransfer {
        chain_id: 1,
        nonce: 0,
        gas_limit: 21_000,
        fees: concord_chain::FeeCaps {
            max_fee_per_gas: 30_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
        },
        asset: concord_chain::Asset::Native,
        recipient: concord_chain::Address::repeat_byte(0x66),
        amount: concord_chain::U256::from(10u64).pow(concord_chain::U256::from(18u64)),
    }
    .sighash()
    .0;
    let prev = bitcoin::OutPoint {
        txid: bitcoin::Txid::from_byte_array([7; 32]),
        vout: 0,
    };
    let spend = bitcoin::Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn {
            previous_output: prev,
            ..Default::default()
        }],
        output: vec![bitcoin::TxOut {
            value: bitcoin::Amount::from_sat(90_000),
            script_pubkey: bitcoin::ScriptBuf::new_op_return([1u8; 4]),
        }],
    };
    let wpkh = bitcoin::CompressedPublicKey::from_slice(&hex::decode(ecdsa_pk).unwrap())
        .unwrap()
        .wpubkey_hash();
    let p2wpkh = bitcoin::ScriptBuf::new_p2wpkh(&wpkh);
    let mut cache = bitcoin::sighash::SighashCache::new(&spend);
    let bip143 = cache
        .p2wpkh_signature_hash(
            0,
            &p2wpkh,
            bitcoin::Amount::from_sat(100_000),
            bitcoin::EcdsaSighashType::All,
        )
        .unwrap()
        .to_byte_array();
    let output_key = bitcoin::key::TweakedPublicKey::dangerous_assume_tweaked(
        bitcoin::XOnlyPublicKey::from_slice(&hex::decode(tr_pk).unwrap()).unwrap(),
    );
    let prevout = bitcoin::TxOut {
        value: bitcoin::Amount::from_sat(100_000),
        script_pubkey: bitcoin::ScriptBuf::new_p2tr_tweaked(output_key),
    };
    let bip341 = cache
        .taproot_key_spend_signature_hash(
            0,
            &bitcoin::sighash::Prevouts::All(&[prevout]),
            bitcoin::TapSighashType::Default,
        )
        .unwrap()
        .to_byte_array();
    for (scheme, wallet, pk, sighash) in [
        ("ecdsa-secp256k1", ecdsa_wallet, ecdsa_pk, evm),
        ("ecdsa-secp256k1", ecdsa_wallet, ecdsa_pk, bip143),
        ("schnorr-taproot", tr_wallet, tr_pk, bip341),
    ] {
        let job = net.json(&[
            "sign",
            "--wallet",
            wallet,
            "--message",
            &hex::encode(sighash),
            "--wait",
        ]);
        let sig = hex::decode(job["result"]["signature"].as_str().unwrap()).unwrap();
        let pk = hex::decode(pk).unwrap();
        concord_wire::verify::verify_signature(
            scheme.parse().unwrap(),
            &pk,
            &signing_input(scheme, &sighash),
            &sig,
        )
        .unwrap();
        assert!(
            concord_wire::verify::verify_signature(scheme.parse().unwrap(), &pk, &sighash, &sig)
                .is_err(),
            "{scheme}: a raw message signature must never verify over the sighash it carries"
        );
    }
}

#[test]
fn wrong_passphrase_unenrolled_module_and_wrong_coordinator_key_are_refused() {
    let mut net = setup(1);
    // Wrong vault passphrase: a clear error, and the module does not start.
    let config = net.path("m1").display().to_string();
    let out = Command::new(BIN)
        .args(["module", "show", "--config", &config])
        .env(pass_var("m1"), "not the passphrase")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("passphrase does not open this vault"), "{err}");

    // A module the coordinator never enrolled is refused at connection, and the coordinator
    // logs the refused key's fingerprint.
    let mdir = net.path("rogue").display().to_string();
    let var = pass_var("rogue");
    let out = Command::new(BIN)
        .args([
            "module",
            "init",
            "--dir",
            &mdir,
            "--id",
            "rogue",
            "--coordinator",
            &net.grpc,
            "--coordinator-key",
            &net.coordinator_key,
            "--passphrase-env",
            &var,
            "--admin",
            &net.public_key("admin"),
            "--admin-quorum",
            "1",
            "--json",
        ])
        .env(&var, "rogue pass")
        .output()
        .unwrap();
    assert!(out.status.success());
    let rogue_info: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rogue_fp = rogue_info["fingerprint"].as_str().unwrap().to_owned();
    let rogue = net.spawn(
        "rogue",
        &["module", "run", "--config", &mdir],
        &[(var.clone(), "rogue pass".into())],
    );
    wait_until(
        Duration::from_secs(20),
        "the coordinator to refuse the rogue module",
        || net.coordinator.as_ref().unwrap().log().contains(&rogue_fp),
    );
    assert!(rogue.log().contains("coordinator link failed"));
    assert!(!net.connected().contains(&"rogue".to_owned()));

    // A module pinning the wrong coordinator key refuses the coordinator.
    let wrong = concord_wire::identity::IdentityKey::generate(&mut rand::rngs::OsRng)
        .public()
        .to_string();
    let wdir = net.path("wrongpin").display().to_string();
    let var = pass_var("wrongpin");
    let out = Command::new(BIN)
        .args([
            "module",
            "init",
            "--dir",
            &wdir,
            "--id",
            "wrongpin",
            "--coordinator",
            &net.grpc,
            "--coordinator-key",
            &wrong,
            "--passphrase-env",
            &var,
            "--admin",
            &net.public_key("admin"),
            "--admin-quorum",
            "1",
        ])
        .env(&var, "p")
        .output()
        .unwrap();
    assert!(out.status.success());
    let p = net.spawn(
        "wrongpin",
        &["module", "run", "--config", &wdir],
        &[(var, "p".into())],
    );
    wait_until(
        Duration::from_secs(20),
        "the wrongly pinned module to refuse the coordinator",
        || p.log().contains("coordinator link failed"),
    );
    // It names the key the coordinator actually presented.
    assert!(
        p.log().contains(&net.coordinator_fingerprint),
        "{}",
        p.log()
    );
    assert!(!net.connected().contains(&"wrongpin".to_owned()));
    net.stop_module("m1");
}

fn job_status(net: &Net, id: &str) -> Value {
    net.json(&["jobs", id])
}

#[test]
fn presigned_signing_and_crashes_mid_job() {
    let mut net = setup(3);
    let g = net.json(&[
        "groups",
        "create",
        "--id",
        "g1",
        "--threshold",
        "2",
        "--members",
        "m1,m2,m3",
        "--engine",
        "cggmp21",
        "--wait",
    ]);
    assert_eq!(g["engine"], "cggmp21", "{g}");
    let w = net.json(&[
        "wallets",
        "create",
        "--group",
        "g1",
        "--scheme",
        "ecdsa-secp256k1",
        "--wait",
    ]);
    let wallet = w["id"].as_str().unwrap().to_owned();
    let pk = w["public_key"].as_str().unwrap().to_owned();
    net.install_policy(&[&wallet], &[]);

    // The pool fills in the background; a signature soon comes from a presignature.
    let mut presigned = false;
    for i in 0..10 {
        std::thread::sleep(Duration::from_secs(2));
        let message = format!("warm {i}");
        let job = net.json(&[
            "sign",
            "--wallet",
            &wallet,
            "--message",
            &hex::encode(&message),
            "--wait",
        ]);
        verify(
            "ecdsa-secp256k1",
            &pk,
            &signing_input("ecdsa-secp256k1", message.as_bytes()),
            job["result"]["signature"].as_str().unwrap(),
        );
        if job["result"]["presigned"] == true {
            presigned = true;
            break;
        }
    }
    assert!(presigned, "a pooled presignature was used");

    // The load command: a short bounded run signs and reports percentiles.
    let report = net.json(&["bench", "sign", "--wallet", &wallet, "--duration", "3"]);
    assert_eq!(report["failed"], 0, "{report}");
    assert!(report["signatures"].as_u64().unwrap() >= 1, "{report}");
    assert!(
        report["rows"][2]["p50_ms"].as_f64().unwrap() > 0.0,
        "{report}"
    );

    // A signer killed mid-signing: the job completes with the remaining approvers.
    let message = "signer killed mid-signing";
    let body = serde_json::json!({ "wallet": wallet, "message": hex::encode(message), "mode": "interactive" });
    let id = post_sign(&net, &body);
    wait_until(Duration::from_secs(20), "the job to reach signing", || {
        let j = job_status(&net, &id);
        assert_ne!(j["status"], "failed", "{j}");
        j["status"] == "signing"
    });
    let signers: Vec<u64> =
        serde_json::from_str(job_status(&net, &id)["signers"].as_str().unwrap()).unwrap();
    let victim = format!("m{}", signers[1] + 1);
    net.stop_module(&victim);
    let done = net.json(&["jobs", &id, "--wait"]);
    assert_eq!(done["status"], "done", "{done}");
    let final_signers: Vec<u64> = done["result"]["signers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(
        !final_signers.contains(&signers[1]),
        "the killed module is replaced: {done}"
    );
    verify(
        "ecdsa-secp256k1",
        &pk,
        &signing_input("ecdsa-secp256k1", message.as_bytes()),
        done["result"]["signature"].as_str().unwrap(),
    );
    let events = done["events"].to_string();
    assert!(events.contains("dropped out"), "{events}");

    // The coordinator killed mid-job: after a restart the job completes, with the same
    // approvals (modules answer from their stored approval, they do not approve anew).
    let message = "coordinator killed mid-signing";
    let body = serde_json::json!({ "wallet": wallet, "message": hex::encode(message), "mode": "interactive" });
    let id = post_sign(&net, &body);
    wait_until(Duration::from_secs(20), "the job to reach signing", || {
        let j = job_status(&net, &id);
        assert_ne!(j["status"], "failed", "{j}");
        j["status"] == "signing"
    });
    net.coordinator.take().unwrap().kill();
    net.start_coordinator();
    let done = net.json(&["jobs", &id, "--wait"]);
    assert_eq!(done["status"], "done", "{done}");
    verify(
        "ecdsa-secp256k1",
        &pk,
        &signing_input("ecdsa-secp256k1", message.as_bytes()),
        done["result"]["signature"].as_str().unwrap(),
    );
    let events = done["events"].as_array().unwrap();
    assert!(events.iter().any(|e| {
        e["detail"]
            .as_str()
            .unwrap_or("")
            .contains("resumed by a coordinator")
    }));
    let approvals: Vec<&Value> = events.iter().filter(|e| e["kind"] == "approval").collect();
    let first_by_module = |m: &str| {
        approvals
            .iter()
            .filter(|e| e["module_id"] == m)
            .map(|e| e["signature"].clone())
            .collect::<Vec<_>>()
    };
    for m in ["m1", "m3"] {
        let sigs = first_by_module(m);
        assert!(!sigs.is_empty(), "{m} approved");
        assert!(
            sigs.windows(2).all(|w| w[0] == w[1]),
            "{m} gave one approval, repeated verbatim: {sigs:?}"
        );
    }
}

#[test]
#[cfg_attr(
    not(feature = "failpoints"),
    ignore = "kills a module at a named failpoint: needs the failpoints feature"
)]
fn dkls_group_signs_refreshes_and_survives_a_module_killed_mid_signing() {
    let mut net = setup(3);
    // The default engine: no safe primes, no auxiliary material; the members pin the group.
    let started = Instant::now();
    let g = net.group_of_three("fast");
    assert_eq!(
        (g["engine"].as_str(), g["status"].as_str()),
        (Some("dkls23"), Some("ready")),
        "{g}"
    );
    eprintln!("DKLs23 group set up in {:?}", started.elapsed());
    let (wallet, pk) = net.new_wallet("fast", "ecdsa-secp256k1");
    net.install_policy(&[&wallet], &[]);

    // Signing is interactive (DKLs23 has no presignatures) whatever the mode asked; no
    // presignature job is ever made for the wallet.
    for (i, mode) in ["presigned", "interactive"].iter().enumerate() {
        let done = signed(
            &net,
            "ecdsa-secp256k1",
            &wallet,
            &pk,
            &format!("dkls {i}"),
            mode,
        );
        assert_eq!(done["result"]["presigned"], false, "{done}");
    }
    let presigns = net.json(&["jobs", "list", "--kind", "presign"]);
    assert_eq!(presigns.as_array().map(Vec::len), Some(0), "{presigns}");

    // Refresh: refused by every module while the policy does not allow it.
    let out = net.run(&["wallets", "refresh", &wallet, "--wait"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not allow refreshing"), "{err}");
    // Allowed by the admins: every member re-randomises its share; same key; signing goes on
    // with every pair of members.
    net.install_policy_with(&[&wallet], &[], &[&wallet], &[]);
    let r = net.json(&["wallets", "refresh", &wallet, "--wait"]);
    assert_eq!(r["public_key"], pk.as_str(), "{r}");
    assert_eq!(r["members"], serde_json::json!(["m1", "m2", "m3"]), "{r}");
    let w2 = net.json(&["wallets", "show", &wallet]);
    assert_eq!(w2["public_key"], pk.as_str());
    // Nothing is left set aside in any vault: the refreshed share replaced the old one.
    for m in ["m1", "m2", "m3"] {
        let names = vault_names(&net.path(&format!("{m}/vault")));
        assert!(
            names
                .iter()
                .any(|n| n.starts_with(&format!("share-{wallet}"))),
            "{names:?}"
        );
        assert!(
            !names.iter().any(|n| n.starts_with("refreshed-")),
            "{names:?}"
        );
    }
    for (i, m) in ["m1", "m2", "m3"].iter().enumerate() {
        // Each pair signs: take one member down at a time.
        net.stop_module(m);
        let message = format!("after refresh {i}");
        signed(
            &net,
            "ecdsa-secp256k1",
            &wallet,
            &pk,
            &message,
            "interactive",
        );
        net.start_module(m);
        net.wait_connected(&["m1", "m2", "m3"]);
    }

    // m1 (index 0, picked first) dies right after sending its first signing message: the
    // job completes with the two others.
    net.stop_module("m1");
    net.start_module_with(
        "m1",
        &[(
            "CONCORD_MODULE_FAILPOINT".into(),
            "module::sign::sent".into(),
        )],
    );
    net.wait_connected(&["m1", "m2", "m3"]);
    let message = "signer killed mid-DKLs-signing";
    let done = signed(&net, "ecdsa-secp256k1", &wallet, &pk, message, "presigned");
    let signers: Vec<u64> = done["result"]["signers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(signers, vec![1, 2], "{done}");
    // m1 dies after its first signing message: the run it was in either saw it drop out, or
    // (DKLs23 starts that run behind the proposal) m1 died before its approval left, so the
    // early run was given up and the approvers signed without it. Either way not with m1.
    let events = done["events"].to_string();
    let m1_approved = done["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "approval" && e["module_id"] == "m1");
    assert!(
        events.contains("dropped out") || !m1_approved,
        "m1 approved and no drop-out is recorded: {events}"
    );
    assert!(
        net.modules[0]
            .1
            .as_ref()
            .unwrap()
            .log()
            .contains("failpoint module::sign::sent"),
        "m1 stopped at the failpoint"
    );
}

/// `message` signed with `wallet` in `mode` (rule threshold): the job, checked done, its
/// signature verified against `public_key` with an independent implementation.
fn signed(
    net: &Net,
    scheme: &str,
    wallet: &str,
    public_key: &str,
    message: &str,
    mode: &str,
) -> Value {
    let body =
        serde_json::json!({ "wallet": wallet, "message": hex::encode(message), "mode": mode });
    let id = post_sign(net, &body);
    let done = net.json(&["jobs", &id, "--wait"]);
    assert_eq!(done["status"], "done", "{done}");
    verify(
        scheme,
        public_key,
        &signing_input(scheme, message.as_bytes()),
        done["result"]["signature"].as_str().unwrap(),
    );
    done
}

/// HD wallets: children of a DKLs23 wallet derived by every member under the policy's
/// prefixes; a child signs under its parent's rule, a path outside it or a policy without it
/// signs nothing; children follow a refresh of their parent.
#[test]
fn child_wallets_are_derived_under_the_policy_and_sign_for_their_own_key() {
    let net = setup(3);
    net.group_of_three("hd");
    let (parent, parent_pk) = net.new_wallet("hd", "ecdsa-secp256k1");
    // No `derive` in the policy: every module refuses.
    net.install_policy(&[&parent], &[]);
    let out = net.run(&["wallets", "derive", &parent, "--path", "m/0/7", "--wait"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only under []"), "{err}");
    // Hardened paths are refused before anything is sent.
    let out = net.run(&["wallets", "derive", &parent, "--path", "m/0'/7"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hardened"));

    net.install_policy_with(&[&parent], &[], &[&parent], &["m/0"]);
    let out = net.run(&["wallets", "derive", &parent, "--path", "m/1/0", "--wait"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only under [m/0], not at m/1/0"), "{err}");

    let child = net.json(&["wallets", "derive", &parent, "--path", "m/0/7", "--wait"]);
    assert_eq!(child["kind"], "derived", "{child}");
    assert_eq!(child["derived_from"]["wallet"], parent.as_str(), "{child}");
    assert_eq!(child["derived_from"]["path"], "m/0/7", "{child}");
    assert_eq!(child["label"], "w0 m/0/7", "{child}");
    assert_eq!(
        child["addresses"].as_array().map(Vec::len),
        Some(1),
        "{child}"
    );
    let child_id = child["id"].as_str().unwrap().to_owned();
    let child_pk = child["public_key"].as_str().unwrap().to_owned();
    assert_ne!(child_pk, parent_pk);
    // The same path again: the same child.
    let again = net.json(&["wallets", "derive", &parent, "--path", "m/0/7", "--wait"]);
    assert_eq!(again["id"], child_id.as_str());
    let sibling = net.json(&["wallets", "derive", &parent, "--path", "m/0/8", "--wait"]);
    assert_ne!(sibling["id"], child_id.as_str());
    // A child has no children.
    let out = net.run(&["wallets", "derive", &child_id, "--path", "m/0/1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("itself a derived wallet"));

    // The child signs for its own key, under its parent's rule.
    signed(
        &net,
        "ecdsa-secp256k1",
        &child_id,
        &child_pk,
        "from the child",
        "interactive",
    );
    // Children follow a refresh of their parent (and cannot be refreshed themselves).
    let out = net.run(&["wallets", "refresh", &child_id]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("refresh its parent"));
    net.json(&["wallets", "refresh", &parent, "--wait"]);
    signed(
        &net,
        "ecdsa-secp256k1",
        &child_id,
        &child_pk,
        "after the parent's refresh",
        "interactive",
    );
    // A policy without the prefix: the child signs nothing.
    net.install_policy(&[&parent], &[]);
    let body = serde_json::json!({ "wallet": child_id, "message": hex::encode("no longer allowed"), "mode": "interactive" });
    let id = post_sign(&net, &body);
    let out = net.run(&["jobs", &id, "--wait"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("child at m/0/7, a path policy"), "{err}");
}

/// Repair: a member is lost; without the admins' word the others refuse to take a new one;
/// with the policy listing the group with the new module in its place, the others rebuild
/// its shares (and every share is refreshed), the new member derives the group's children,
/// and every pair including it signs for the wallet and its child.
#[test]
fn a_lost_member_is_replaced_as_the_policy_says_and_the_group_signs_on() {
    let mut net = setup(4);
    net.group_of_three("g");
    let (wallet, pk) = net.new_wallet("g", "ecdsa-secp256k1");
    // A FROST wallet in the same group is repaired too.
    let (ed, ed_pk) = net.new_wallet("g", "ed25519");
    net.install_policy_with(&[&wallet, &ed], &[], &[], &["m/0"]);
    let child = net.json(&["wallets", "derive", &wallet, "--path", "m/0/3", "--wait"]);
    let child_id = child["id"].as_str().unwrap().to_owned();
    let child_pk = child["public_key"].as_str().unwrap().to_owned();

    // m2 is lost. The coordinator alone cannot seat m4 in its place: every member refuses.
    net.stop_module("m2");
    let out = net.run(&[
        "groups", "replace", "g", "--member", "m2", "--with", "m4", "--wait",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("differently") || err.contains("has not joined"),
        "{err}"
    );

    // The admins list the group with m4 at m2's index: the repair goes through.
    net.install_policy_full(
        &[&wallet, &ed],
        &[],
        &[],
        &["m/0"],
        &[("g", &["m1", "m4", "m3"])],
    );
    let r = net.json(&[
        "groups", "replace", "g", "--member", "m2", "--with", "m4", "--wait",
    ]);
    assert_eq!(r["by"], "m4", "{r}");
    assert_eq!(r["index"], 1, "{r}");
    let mut repaired: Vec<&str> = r["wallets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    repaired.sort_unstable();
    let mut both = vec![wallet.as_str(), ed.as_str()];
    both.sort_unstable();
    assert_eq!(repaired, both, "{r}");
    let g = net.json(&["groups", "show", "g"]);
    assert_eq!(g["members"], serde_json::json!(["m1", "m4", "m3"]), "{g}");
    for m in ["m1", "m3"] {
        // Each pair that includes the new member signs, for the wallet and for its child.
        net.stop_module(m);
        for (scheme, id, key, msg) in [
            ("ecdsa-secp256k1", &wallet, &pk, "repaired"),
            ("ecdsa-secp256k1", &child_id, &child_pk, "repaired child"),
            ("ed25519", &ed, &ed_pk, "repaired ed25519"),
        ] {
            let done = signed(&net, scheme, id, key, msg, "interactive");
            let signers = done["result"]["signers"].to_string();
            assert!(signers.contains('1'), "m4 (index 1) signed: {signers}");
        }
        net.start_module(m);
        net.wait_connected(&["m1", "m3", "m4"]);
    }
}

/// Every file name under a vault directory.
fn vault_names(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(vault_names(&p));
        } else {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

fn post_sign(net: &Net, body: &Value) -> String {
    let job = net.json(&[
        "sign",
        "--wallet",
        body["wallet"].as_str().unwrap(),
        "--message",
        body["message"].as_str().unwrap(),
        "--mode",
        body["mode"].as_str().unwrap(),
        // A module is stopped in these runs: rule `all` would need it.
        "--rule",
        "threshold",
    ]);
    job["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{job}"))
        .to_owned()
}

/// The CLI pins the coordinator's API certificate: a coordinator presenting any other
/// certificate (here, the real one's address served with another coordinator's certificate
/// and key, as an impostor would) is refused before the token is sent, in a sentence naming
/// both fingerprints; an https URL without a pin says how to get one.
#[test]
fn the_cli_refuses_a_coordinator_whose_certificate_is_not_the_pinned_one() {
    let mut net = setup(0);
    let listed = net.json(&["modules", "list"]);
    assert_eq!(listed, serde_json::json!([]));

    // Another coordinator's certificate: its fingerprint is not the pinned one.
    let other_dir = net.path("other");
    let other = net.json(&[
        "coordinator",
        "init",
        "--dir",
        &other_dir.display().to_string(),
    ]);
    let other_pin = other["api_fingerprint"].as_str().unwrap().to_owned();
    assert_ne!(other_pin, net.api_pin);

    // The impostor: the coordinator's address, the other certificate.
    net.coordinator.take().unwrap().kill();
    for f in ["api.crt", "api.key"] {
        std::fs::copy(other_dir.join(f), net.path(&format!("coordinator/{f}"))).unwrap();
    }
    net.start_coordinator();
    let out = net.run(&["modules", "list"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&other_pin) && err.contains(&net.api_pin),
        "the refusal does not name both fingerprints: {err}"
    );
    assert!(err.contains("Nothing was sent"), "{err}");
    assert!(
        !err.contains("Other("),
        "a debug dump, not a sentence: {err}"
    );

    // Pinning the certificate it now presents works; a pin in openssl's form too.
    let openssl_form = format!(
        "sha256 Fingerprint={}",
        hex::decode(&other_pin)
            .unwrap()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    );
    let out = Command::new(BIN)
        .args(["modules", "list", "--api-pin", &openssl_form])
        .args(["--url", &format!("https://{}", net.http), "--token-file"])
        .arg(net.path("coordinator/admin.token"))
        .env_remove("CONCORD_API_PIN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // No pin at all: refused, saying where the fingerprint comes from.
    let out = Command::new(BIN)
        .args(["modules", "list", "--url", &format!("https://{}", net.http)])
        .arg("--token-file")
        .arg(net.path("coordinator/admin.token"))
        .env_remove("CONCORD_API_PIN")
        .env_remove("CONCORD_API_CA")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--api-pin") && err.contains("concord coordinator init"),
        "{err}"
    );
}

/// Plain HTTP is served only when asked for and only on a loopback address: `init
/// --insecure-http` refuses another address, `run` refuses a configuration that asks for
/// plain HTTP elsewhere (or names neither HTTPS nor plain HTTP), and the CLI refuses a plain
/// http:// URL to another machine.
#[test]
fn plain_http_is_refused_on_a_non_loopback_address() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("CONCORD_LOG", "warn")
            .env_remove("CONCORD_API_PIN")
            .output()
            .unwrap()
    };
    let cdir = dir.path().join("c");
    let cdir_s = cdir.display().to_string();
    let any = format!("0.0.0.0:{}", free_port());
    let out = run(&[
        "coordinator",
        "init",
        "--dir",
        &cdir_s,
        "--insecure-http",
        "--http-listen",
        &any,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("loopback"), "{err}");
    assert!(!cdir.join("coordinator.toml").exists());

    // A loopback development coordinator over plain HTTP…
    let http = format!("127.0.0.1:{}", free_port());
    let grpc = format!("127.0.0.1:{}", free_port());
    let out = run(&[
        "coordinator",
        "init",
        "--dir",
        &cdir_s,
        "--insecure-http",
        "--http-listen",
        &http,
        "--grpc-listen",
        &grpc,
        "--json",
    ]);
    assert!(out.status.success());
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["api_fingerprint"], Value::Null);
    assert!(!cdir.join("api.crt").exists());
    let config = cdir.join("coordinator.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("insecure_http = true"), "{text}");

    // …moved to every address is refused at start.
    std::fs::write(&config, text.replace(&http, &any)).unwrap();
    let out = run(&["coordinator", "run", "--config", &cdir_s]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("loopback") && err.contains("insecure_http"),
        "{err}"
    );

    // Neither [api_tls] nor insecure_http: refused, saying how to fix it.
    std::fs::write(&config, text.replace("insecure_http = true\n", "")).unwrap();
    let out = run(&["coordinator", "run", "--config", &cdir_s]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("[api_tls]"), "{err}");

    // A HTTPS coordinator forced to plain HTTP by the flag, on every address: refused.
    let tdir = dir.path().join("t").display().to_string();
    let out = run(&[
        "coordinator",
        "init",
        "--dir",
        &tdir,
        "--http-listen",
        &any,
        "--grpc-listen",
        &grpc,
    ]);
    assert!(out.status.success());
    let out = run(&["coordinator", "run", "--config", &tdir, "--insecure-http"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("loopback"), "{err}");

    // The CLI sends no token over plain HTTP to another machine.
    let token = cdir.join("admin.token").display().to_string();
    let out = run(&[
        "modules",
        "list",
        "--url",
        "http://192.0.2.1:8080",
        "--token-file",
        &token,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("https://"), "{err}");

    // On loopback, with the flag: served, with a loud warning, and the CLI reaches it.
    std::fs::write(&config, &text).unwrap();
    let log = dir.path().join("c.log");
    let mut p = Proc {
        child: Command::new(BIN)
            .args(["coordinator", "run", "--config", &cdir_s])
            .env("CONCORD_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
        name: "plain coordinator".into(),
        log,
    };
    wait_until(Duration::from_secs(20), "the plain-HTTP API", || {
        std::net::TcpStream::connect(&http).is_ok()
    });
    let url = format!("http://{http}");
    let out = run(&["modules", "list", "--url", &url, "--token-file", &token]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(p.log().contains("PLAIN HTTP"), "{}", p.log());
    p.kill();
}
