//! Which coordinator a command talks to, and with which token: one set of global flags for
//! every command.
//!
//! In order: `--devnet DIR` (the devnet's `devnet.json` gives URL, token and the API
//! certificate's pin), or `--url` with `--token-file` (and, for an `https` URL, `--api-pin`
//! or `--api-ca`); then the same from `CONCORD_DEVNET`, `CONCORD_URL`,
//! `CONCORD_TOKEN_FILE` / `CONCORD_TOKEN`, `CONCORD_API_PIN` / `CONCORD_API_CA` (empty
//! variables count as unset; a devnet's own pin beats the variables); then the default
//! devnet directory ([`default_devnet_dir`]) if a devnet was started there. A flag beats a
//! variable; two that name different coordinators at the same level are a usage error, never
//! silently one of them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use concord_wire::api_tls::CertFingerprint;

use crate::client::{Api, Trust};
use crate::output::usage;

/// How to reach the coordinator (global: accepted before or after any subcommand).
#[derive(Args, Clone, Default, Debug)]
pub struct Connection {
    /// Talk to the local devnet in DIR (its devnet.json gives the URL and token) [env:
    /// CONCORD_DEVNET]. Default: the devnet `concord devnet up` started in its default
    /// directory, if any.
    #[arg(long, global = true, value_name = "DIR", help_heading = "Connection")]
    pub devnet: Option<PathBuf>,
    /// The coordinator's API URL, e.g. https://coordinator:8080 [env: CONCORD_URL].
    #[arg(long, global = true, value_name = "URL", help_heading = "Connection")]
    pub url: Option<String>,
    /// File holding the API token [env: CONCORD_TOKEN_FILE, or the token itself in
    /// CONCORD_TOKEN].
    #[arg(long, global = true, value_name = "FILE", help_heading = "Connection")]
    pub token_file: Option<PathBuf>,
    /// With --url https://…: the SHA-256 fingerprint of the coordinator's API certificate,
    /// as `concord coordinator init` printed it; any other certificate is refused [env:
    /// CONCORD_API_PIN].
    #[arg(
        long,
        global = true,
        value_name = "SHA256",
        help_heading = "Connection"
    )]
    pub api_pin: Option<CertFingerprint>,
    /// With --url https://…: trust the coordinator's certificate if the certificate
    /// authority in this PEM file issued it for the URL's host, instead of a pin [env:
    /// CONCORD_API_CA].
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help_heading = "Connection",
        conflicts_with = "api_pin"
    )]
    pub api_ca: Option<PathBuf>,
}

/// Where the token comes from.
enum Token {
    File(PathBuf),
    Value(String),
}

/// A resolved connection.
enum Target {
    Devnet(PathBuf),
    Direct {
        url: String,
        token: Token,
        trust: Trust,
    },
}

/// An environment variable, empty counting as unset.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The devnet directory when none is given: `$CONCORD_HOME/devnet`, else
/// `$XDG_STATE_HOME/concord/devnet`, else `~/.local/state/concord/devnet` — outside any work
/// tree, so vault passphrases and tokens never end up in a repository.
pub fn default_devnet_dir() -> PathBuf {
    state_dir().join("devnet")
}

/// The flags that name the devnet in `dir` in a hint printed to the user: `--devnet DIR`
/// and `--dir DIR`, or nothing for the default directory.
pub fn devnet_flags(dir: &Path) -> (String, String) {
    if dir == default_devnet_dir() {
        (String::new(), String::new())
    } else {
        (
            format!(" --devnet {}", dir.display()),
            format!(" --dir {}", dir.display()),
        )
    }
}

/// Concord's state directory ([`default_devnet_dir`]'s parent).
pub fn state_dir() -> PathBuf {
    if let Some(home) = var("CONCORD_HOME") {
        return PathBuf::from(home);
    }
    if let Some(state) = var("XDG_STATE_HOME") {
        return Path::new(&state).join("concord");
    }
    match var("HOME") {
        Some(home) => Path::new(&home).join(".local/state/concord"),
        None => PathBuf::from(".concord"),
    }
}

/// The sentence naming every way to say which coordinator to use.
const HOW: &str = "pass --devnet DIR (a local devnet), or --url URL with --token-file FILE; \
or set CONCORD_DEVNET, or CONCORD_URL with CONCORD_TOKEN_FILE or CONCORD_TOKEN";

impl Connection {
    /// How to trust an HTTPS coordinator given by URL: a flag, else a variable.
    fn trust(&self) -> Result<Trust> {
        match (&self.api_pin, &self.api_ca) {
            (Some(pin), _) => return Ok(Trust::Pin(*pin)),
            (None, Some(ca)) => return Ok(Trust::Ca(ca.clone())),
            (None, None) => {}
        }
        match (var("CONCORD_API_PIN"), var("CONCORD_API_CA")) {
            (Some(_), Some(_)) => Err(usage(
                "CONCORD_API_PIN and CONCORD_API_CA are both set: unset one (a pin, or a CA to trust)",
            )),
            (Some(pin), None) => Ok(Trust::Pin(
                pin.parse()
                    .map_err(|e| usage(format!("CONCORD_API_PIN: {e}")))?,
            )),
            (None, Some(ca)) => Ok(Trust::Ca(ca.into())),
            (None, None) => Ok(Trust::None),
        }
    }

    fn resolve(&self) -> Result<Target> {
        // Flags first, then variables: each level must name one coordinator.
        let flag_token = self.token_file.clone().map(Token::File);
        match (&self.devnet, &self.url) {
            (Some(_), Some(_)) => {
                return Err(usage(
                    "--devnet and --url both name a coordinator: give one of them",
                ));
            }
            (Some(_), None) if self.token_file.is_some() => {
                return Err(usage(
                    "--devnet brings its own token: --token-file goes with --url",
                ));
            }
            (Some(_), None) if self.api_pin.is_some() || self.api_ca.is_some() => {
                return Err(usage(
                    "--devnet brings its own certificate pin: --api-pin and --api-ca go with --url",
                ));
            }
            (Some(dir), None) => return Ok(Target::Devnet(dir.clone())),
            (None, Some(url)) => {
                let token = flag_token
                    .or_else(|| var("CONCORD_TOKEN_FILE").map(|f| Token::File(f.into())))
                    .or_else(|| var("CONCORD_TOKEN").map(Token::Value))
                    .ok_or_else(|| {
                        usage(format!(
                            "--url {url} needs an API token: pass --token-file FILE, or set \
                             CONCORD_TOKEN_FILE or CONCORD_TOKEN"
                        ))
                    })?;
                return Ok(Target::Direct {
                    url: url.clone(),
                    token,
                    trust: self.trust()?,
                });
            }
            (None, None) => {}
        }
        let env_token = flag_token
            .or_else(|| var("CONCORD_TOKEN_FILE").map(|f| Token::File(f.into())))
            .or_else(|| var("CONCORD_TOKEN").map(Token::Value));
        match (var("CONCORD_DEVNET"), var("CONCORD_URL"), env_token) {
            (Some(_), Some(_), _) => Err(usage(
                "CONCORD_DEVNET and CONCORD_URL are both set: unset one, or pass --devnet or --url",
            )),
            (Some(dir), None, _) => Ok(Target::Devnet(dir.into())),
            (None, Some(url), Some(token)) => Ok(Target::Direct {
                url,
                token,
                trust: self.trust()?,
            }),
            (None, Some(url), None) => Err(usage(format!(
                "CONCORD_URL is {url} but no API token is given: pass --token-file FILE, or set \
                 CONCORD_TOKEN_FILE or CONCORD_TOKEN"
            ))),
            (None, None, token) => {
                let dir = default_devnet_dir();
                if dir.join("devnet.json").is_file() {
                    Ok(Target::Devnet(dir))
                } else if token.is_some() {
                    Err(usage(format!(
                        "an API token is given but no coordinator URL: pass --url URL or set CONCORD_URL (or {HOW})"
                    )))
                } else {
                    Err(usage(format!(
                        "no coordinator to talk to: {HOW} (no devnet is running in the default directory {})",
                        dir.display()
                    )))
                }
            }
        }
    }

    /// An API client for the coordinator this connection names.
    pub fn api(&self) -> Result<Api> {
        match self.resolve()? {
            Target::Devnet(dir) => Api::for_devnet(&crate::devnet::DevnetInfo::load(&dir)?),
            Target::Direct { url, token, trust } => {
                let token = match token {
                    Token::File(f) => std::fs::read_to_string(&f)
                        .with_context(|| format!("cannot read the API token from {}", f.display()))?
                        .trim()
                        .to_owned(),
                    Token::Value(t) => t.trim().to_owned(),
                };
                Api::with_token(&url, token, &trust)
            }
        }
    }
}
