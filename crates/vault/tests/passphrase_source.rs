//! Reading passphrases from files and environment variables.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use concord_vault::{PassphraseKek, PassphraseSource, VaultError};

fn from_file(content: &[u8]) -> Result<String, VaultError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pass");
    std::fs::write(&path, content).unwrap();
    PassphraseSource::File(path).read().map(|p| p.to_string())
}

#[test]
fn file_trailing_newline_is_stripped_once() {
    assert_eq!(from_file(b"secret\n").unwrap(), "secret");
    assert_eq!(from_file(b"secret\r\n").unwrap(), "secret");
    assert_eq!(from_file(b"secret").unwrap(), "secret");
    assert_eq!(from_file(b"secret\n\n").unwrap(), "secret\n");
    assert_eq!(from_file(b" spaced secret  ").unwrap(), " spaced secret  ");
}

#[test]
fn empty_or_unreadable_file_is_an_error() {
    for content in [&b""[..], b"\n", b"\r\n"] {
        let err = from_file(content).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }
    let err = from_file(&[0xff, 0xfe, b'\n']).unwrap_err();
    assert!(err.to_string().contains("UTF-8"), "{err}");
}

#[test]
fn missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-passphrase-file");
    let err = PassphraseSource::File(path.clone()).read().unwrap_err();
    assert!(matches!(err, VaultError::Passphrase { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("does not exist"), "{msg}");
}

#[test]
fn missing_variable_is_named() {
    let err = PassphraseSource::Env("CONCORD_VAULT_TEST_SURELY_UNSET_7f3a".into())
        .read()
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("environment variable CONCORD_VAULT_TEST_SURELY_UNSET_7f3a"),
        "{msg}"
    );
    assert!(msg.contains("not set"), "{msg}");
}

/// Runs in a child process (setting variables in this process would need `unsafe`): reads the
/// variables the parent set and checks them.
#[test]
fn env_child() {
    if std::env::var_os("CONCORD_VAULT_TEST_CHILD").is_none() {
        return;
    }
    let pass = PassphraseSource::Env("CONCORD_VAULT_TEST_PASS".into())
        .read()
        .unwrap();
    // Taken as is: no newline stripping for variables.
    assert_eq!(pass.as_str(), "from the environment\n");
    let err = PassphraseSource::Env("CONCORD_VAULT_TEST_EMPTY".into())
        .read()
        .unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    assert!(
        err.to_string().contains("CONCORD_VAULT_TEST_EMPTY"),
        "{err}"
    );
    PassphraseKek::from_source(&PassphraseSource::Env("CONCORD_VAULT_TEST_PASS".into())).unwrap();
}

#[test]
fn env_source_reads_the_variable() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["env_child", "--exact", "--nocapture"])
        .env("CONCORD_VAULT_TEST_CHILD", "1")
        .env("CONCORD_VAULT_TEST_PASS", "from the environment\n")
        .env("CONCORD_VAULT_TEST_EMPTY", "")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
}

#[test]
fn deserializes_from_config() {
    let file: PassphraseSource = serde_json::from_str(r#"{"file": "/etc/concord/pass"}"#).unwrap();
    assert_eq!(file, PassphraseSource::File("/etc/concord/pass".into()));
    let env: PassphraseSource = serde_json::from_str(r#"{"env": "CONCORD_PASS"}"#).unwrap();
    assert_eq!(env, PassphraseSource::Env("CONCORD_PASS".into()));
    // There is no way to give the passphrase itself (as an argument or inline).
    for bad in [
        r#"{"arg": "hunter2"}"#,
        r#"{"value": "hunter2"}"#,
        r#""hunter2""#,
    ] {
        assert!(
            serde_json::from_str::<PassphraseSource>(bad).is_err(),
            "{bad}"
        );
    }
    assert_eq!(env.to_string(), "environment variable CONCORD_PASS");
}

#[test]
fn pins_are_read_with_the_same_rules_and_named_as_pins() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hsm.pin");
    std::fs::write(&path, "1234\n").unwrap();
    let source = concord_vault::PinSource::File(path.clone());
    assert_eq!(source.read_pin().unwrap().as_str(), "1234");
    std::fs::write(&path, "").unwrap();
    let err = source.read_pin().unwrap_err();
    assert!(matches!(err, VaultError::Pin { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot read the PKCS#11 PIN from file {}: the PIN is empty",
            path.display()
        )
    );
    // The passphrase wording is unchanged.
    let err = source.read().unwrap_err();
    assert!(
        err.to_string().ends_with("the passphrase is empty"),
        "{err}"
    );
}
