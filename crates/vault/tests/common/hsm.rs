//! SoftHSM fixtures. SoftHSM reads its configuration (where its tokens live) from the
//! `SOFTHSM2_CONF` environment variable once, at `C_Initialize`; a test process cannot set its
//! own environment without `unsafe`. So every HSM test runs in a child process of its own: the
//! parent (the test as cargo runs it) makes a temporary token directory and configuration,
//! initialises two tokens with `softhsm2-util`, and runs the same test binary on just that
//! test with `SOFTHSM2_CONF` set; the child does the work. Each test thus has tokens nobody
//! else touches, and a test can run several processes over the same tokens ("phases").
//!
//! SoftHSM missing is a failure with instructions, never a skip.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use concord_vault::{PinSource, Pkcs11Config, Pkcs11Kek, Token, TokenSelector};

/// The token most tests use.
pub const TOKEN: &str = "concord-test";
/// A second token, for wrong-token cases.
pub const OTHER_TOKEN: &str = "concord-other";
/// The user PIN of [`TOKEN`]: distinctive, so Debug output can be searched for it.
pub const PIN: &str = "pin-7c1e-secret";
/// The user PIN of [`OTHER_TOKEN`].
pub const OTHER_PIN: &str = "pin-other-93ab";
/// The security officer PIN of both tokens.
pub const SO_PIN: &str = "so-pin-5d20";
/// The variable the child finds [`PIN`] in (for the environment PIN source).
pub const PIN_ENV: &str = "CONCORD_TEST_HSM_PIN";

const DIR_ENV: &str = "CONCORD_TEST_HSM_DIR";
const LIB_ENV: &str = "CONCORD_TEST_HSM_LIB";
const PHASE_ENV: &str = "CONCORD_TEST_HSM_PHASE";

/// Where Debian and others install the SoftHSM 2 module; `CONCORD_TEST_SOFTHSM_LIB` overrides.
const LIBRARIES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

const INSTALL: &str = "install it (Debian/Ubuntu: `apt-get install softhsm2`, or \
                       `. scripts/lib.sh && install_softhsm`); the HSM tests do not skip";

/// The SoftHSM tokens of one test, as seen from the child process.
#[derive(Debug)]
pub struct Hsm {
    /// The test's temporary directory (configuration, tokens, PIN files).
    pub dir: PathBuf,
    /// The SoftHSM module.
    pub library: PathBuf,
    /// Which run of the test this is (`""`, or a phase name).
    pub phase: String,
}

impl Hsm {
    /// A file holding [`PIN`] (with a trailing newline, as an operator's editor leaves it).
    pub fn pin_file(&self) -> PathBuf {
        self.dir.join("user.pin")
    }

    /// The configuration of [`TOKEN`], PIN from [`Hsm::pin_file`].
    pub fn config(&self) -> Pkcs11Config {
        Pkcs11Config {
            library: self.library.clone(),
            token: TokenSelector::Label(TOKEN.into()),
            pin: PinSource::File(self.pin_file()),
        }
    }

    /// The configuration of [`OTHER_TOKEN`].
    pub fn other_config(&self) -> Pkcs11Config {
        Pkcs11Config {
            library: self.library.clone(),
            token: TokenSelector::Label(OTHER_TOKEN.into()),
            pin: PinSource::File(self.dir.join("other.pin")),
        }
    }

    /// [`Hsm::config`] with the PIN in `pin` (written to a file of its own).
    pub fn config_with_pin(&self, pin: &str) -> Pkcs11Config {
        let path = self.dir.join(format!("pin-{}", hex_of(pin)));
        std::fs::write(&path, pin).unwrap();
        Pkcs11Config {
            pin: PinSource::File(path),
            ..self.config()
        }
    }

    /// [`TOKEN`], opened.
    pub fn token(&self) -> Token {
        Token::open(&self.config()).unwrap()
    }

    /// A key-encryption-key provider on [`TOKEN`].
    pub fn kek(&self) -> Pkcs11Kek {
        Pkcs11Kek::from_config(&self.config()).unwrap()
    }

    /// A key-encryption-key provider on [`OTHER_TOKEN`].
    pub fn other_kek(&self) -> Pkcs11Kek {
        Pkcs11Kek::from_config(&self.other_config()).unwrap()
    }

    /// A directory for the test's files (vaults), inside the test's temporary directory so
    /// that later phases find it.
    pub fn work(&self, name: &str) -> PathBuf {
        let p = self.dir.join("work").join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        p
    }
}

fn hex_of(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The SoftHSM module, or a failure saying how to install it.
pub fn softhsm_library() -> PathBuf {
    if let Some(p) = std::env::var_os("CONCORD_TEST_SOFTHSM_LIB") {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "CONCORD_TEST_SOFTHSM_LIB names {}, which does not exist",
            p.display()
        );
        return p;
    }
    LIBRARIES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "SoftHSM 2 is not installed: none of {LIBRARIES:?} exists. SoftHSM is the \
                 PKCS#11 token these tests run on: {INSTALL}."
            )
        })
}

/// For a test named `full` (its `module_path!()` and name): in the parent, prepares the tokens,
/// runs the test in a child process, checks it passed, and returns `None`; in the child,
/// returns the fixture.
pub fn isolated(full: &str) -> Option<Hsm> {
    isolated_phases(full, &[""])
}

/// Like [`isolated`], running the test once per phase, in order, each in a new process over
/// the same tokens and directory; the child finds its phase in [`Hsm::phase`].
pub fn isolated_phases(full: &str, phases: &[&str]) -> Option<Hsm> {
    if let Some(dir) = std::env::var_os(DIR_ENV) {
        return Some(Hsm {
            dir: PathBuf::from(dir),
            library: PathBuf::from(std::env::var_os(LIB_ENV).unwrap()),
            phase: std::env::var(PHASE_ENV).unwrap_or_default(),
        });
    }
    // The name cargo knows the test by: the module path without the crate's name.
    let name = full.split_once("::").map_or(full, |(_, rest)| rest);
    let library = softhsm_library();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let conf = write_config(dir);
    init_token(&conf, TOKEN, PIN);
    init_token(&conf, OTHER_TOKEN, OTHER_PIN);
    std::fs::write(dir.join("user.pin"), format!("{PIN}\n")).unwrap();
    std::fs::write(dir.join("other.pin"), OTHER_PIN).unwrap();
    for phase in phases {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env("SOFTHSM2_CONF", &conf)
            .env(DIR_ENV, dir)
            .env(LIB_ENV, &library)
            .env(PHASE_ENV, phase)
            .env(PIN_ENV, PIN)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "the HSM test {name} (phase {phase:?}) failed in its child process \
             ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            out.status
        );
    }
    None
}

fn write_config(dir: &Path) -> PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    conf
}

fn init_token(conf: &Path, label: &str, pin: &str) {
    // The PINs are test constants; a real deployment initialises its token out of band.
    let out = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            label,
            "--so-pin",
            SO_PIN,
            "--pin",
            pin,
        ])
        .env("SOFTHSM2_CONF", conf)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run softhsm2-util ({e}): SoftHSM 2 is not installed? {INSTALL}.")
        });
    assert!(
        out.status.success(),
        "softhsm2-util --init-token failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Declares a test that runs in a SoftHSM child process (see the module documentation):
/// `hsm_test!(fn name(hsm) { … })`, `hsm` being a [`Hsm`].
#[allow(unused_macros)]
macro_rules! hsm_test {
    ($(#[$meta:meta])* fn $name:ident($hsm:ident) $body:block) => {
        $(#[$meta])*
        #[test]
        fn $name() {
            let full = concat!(module_path!(), "::", stringify!($name));
            let Some($hsm) = $crate::common::hsm::isolated(full) else {
                return;
            };
            $body
        }
    };
}

/// Declares tests that run in SoftHSM child processes, each calling the function of the same
/// name in module `$cases` with the [`Hsm`]: `hsm_tests!(cases: a, b phases &["x", "y"], c)`.
/// A test with phases runs once per phase, each in a new process over the same tokens.
#[allow(unused_macros)]
macro_rules! hsm_tests {
    ($cases:ident: $($name:ident $(phases $phases:expr)?),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let full = concat!(module_path!(), "::", stringify!($name));
                #[allow(unused_variables)]
                let phases: &[&str] = &[""];
                $(let phases: &[&str] = $phases;)?
                if let Some(hsm) = $crate::common::hsm::isolated_phases(full, phases) {
                    $cases::$name(hsm);
                }
            }
        )*
    };
}
