//! Flag values checked before any request is made: a mistake is named here, in the words of
//! the flag the user typed, never as the server's JSON parser saw it.

use clap::ValueEnum;
use concord_wire::authority::AgreementRule;

/// Agreement rule of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Rule {
    /// Every member of the wallet's group approves.
    All,
    /// The group's threshold approves (more where the group is large: max(t, n - t + 1)).
    Threshold,
}

impl From<Rule> for AgreementRule {
    fn from(r: Rule) -> AgreementRule {
        match r {
            Rule::All => AgreementRule::All,
            Rule::Threshold => AgreementRule::Threshold,
        }
    }
}

/// A wallet's signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scheme {
    /// ECDSA over secp256k1 (EVM chains; the group's engine: DKLs23 or CGGMP21).
    #[value(name = "ecdsa-secp256k1")]
    EcdsaSecp256k1,
    /// BIP-340 Schnorr with a BIP-341 (taproot) tweak (FROST).
    #[value(name = "schnorr-taproot")]
    SchnorrTaproot,
    /// Ed25519 (exchange API keys; FROST).
    #[value(name = "ed25519")]
    Ed25519,
    /// ECDSA over NIST P-256 (ES256 exchange API keys, e.g. Coinbase CDP; DKLs23).
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
}

impl Scheme {
    /// The scheme's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::EcdsaSecp256k1 => "ecdsa-secp256k1",
            Scheme::SchnorrTaproot => "schnorr-taproot",
            Scheme::Ed25519 => "ed25519",
            Scheme::EcdsaP256 => "ecdsa-p256",
        }
    }
}

/// How an ECDSA signature is made.
/// A non-hardened BIP-32 derivation path (`m/0/7`).
pub fn derivation_path(s: &str) -> Result<concord_tss::DerivationPath, String> {
    s.parse::<concord_tss::DerivationPath>()
        .map_err(|e| e.to_string())
}

/// Threshold-ECDSA engine of a signer group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// DKLs23: no group setup, interactive signing in milliseconds (the default).
    Dkls23,
    /// CGGMP21: audited; safe primes and aux info per group (minutes), presignatures.
    Cggmp21,
}

impl From<Engine> for concord_tss::EcdsaEngine {
    fn from(e: Engine) -> Self {
        match e {
            Engine::Dkls23 => concord_tss::EcdsaEngine::Dkls23,
            Engine::Cggmp21 => concord_tss::EcdsaEngine::Cggmp21,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// From a pooled presignature when one fits the approving modules (fast), else
    /// interactively.
    Presigned,
    /// Always the full interactive protocol.
    Interactive,
}

impl Mode {
    /// The mode's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Presigned => "presigned",
            Mode::Interactive => "interactive",
        }
    }
}

/// An API token's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Everything, including tokens and policies.
    Admin,
    /// Modules, groups, wallets, imports, exchange credentials; and reads.
    Operator,
    /// Transfers and signatures; and reads.
    Trader,
    /// Reads.
    Viewer,
}

impl From<Role> for concord_coordinator::api::TokenRole {
    fn from(r: Role) -> Self {
        use concord_coordinator::api::TokenRole;
        match r {
            Role::Admin => TokenRole::Admin,
            Role::Operator => TokenRole::Operator,
            Role::Trader => TokenRole::Trader,
            Role::Viewer => TokenRole::Viewer,
        }
    }
}

/// A coin or network code: letters and digits, any case (exchanges write them upper case).
pub fn code(s: &str) -> Result<String, String> {
    let ok = !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(s.to_ascii_uppercase())
    } else {
        Err(format!(
            "{s:?} is not a coin or network code (1 to 20 letters or digits, e.g. ETH)"
        ))
    }
}

/// An amount in coin units: a plain positive decimal (`0.5`, `12`). A value that starts
/// with `-` must be written `--amount=-1`; it is refused either way.
pub fn amount(s: &str) -> Result<String, String> {
    if s.starts_with('-') {
        return Err(format!("{s} is negative: an amount is more than zero"));
    }
    concord_wire::authority::check_decimal("amount", s).map_err(|e| e.to_string())?;
    if s.bytes().all(|b| b == b'0' || b == b'.') {
        return Err(format!("{s} is zero: an amount is more than zero"));
    }
    Ok(s.to_owned())
}

/// A wallet id or a unique prefix of one (at least 4 hex digits), resolved against the
/// coordinator's wallets before use.
pub fn wallet_ref(s: &str) -> Result<String, String> {
    let s = s
        .trim()
        .trim_end_matches('…')
        .trim_start_matches("0x")
        .to_ascii_lowercase();
    if s.len() < 4 || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{s:?} is not a wallet id: 64 hex digits, or a unique prefix of at least 4 (see `concord wallets list`)"
        ));
    }
    Ok(s)
}

/// An id the coordinator gave out (a transfer, job, group or module id): letters, digits,
/// `-` and `_`, at most 64.
pub fn id(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{:?} is not an id: 1 to 64 letters, digits, '-' or '_'",
            if s.len() > 80 { &s[..80] } else { s }
        ))
    }
}

/// An API token's name: 1 to 64 characters.
pub fn token_name(s: &str) -> Result<String, String> {
    if (1..=64).contains(&s.chars().count()) {
        Ok(s.to_owned())
    } else {
        Err("a token's name is 1 to 64 characters".to_owned())
    }
}

/// A policy hash: 64 hex digits.
pub fn hash(s: &str) -> Result<String, String> {
    let h = s.trim().trim_start_matches("0x").to_ascii_lowercase();
    if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(h)
    } else {
        Err(format!(
            "{s:?} is not a policy hash (64 hex digits, as `concord policy show` prints)"
        ))
    }
}

/// Bytes given as hex on the command line.
#[derive(Debug, Clone)]
pub struct HexBytes(pub Vec<u8>);

/// Hex bytes (an optional `0x` first).
pub fn hex_bytes(s: &str) -> Result<HexBytes, String> {
    hex::decode(s.trim().trim_start_matches("0x"))
        .map(HexBytes)
        .map_err(|e| format!("not hex ({e}); to sign text, use --text instead"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_case_insensitive_and_checked() {
        assert_eq!(code("eth").as_deref(), Ok("ETH"));
        assert!(code("e th").is_err());
        assert!(code("").is_err());
    }

    #[test]
    fn amounts_are_positive_plain_decimals() {
        assert_eq!(amount("0.5").as_deref(), Ok("0.5"));
        assert!(amount("-1").unwrap_err().contains("negative"));
        assert!(amount("0.00").unwrap_err().contains("zero"));
        assert!(amount("1e5").is_err());
        assert!(amount("1.").is_err());
    }

    #[test]
    fn wallet_refs_and_ids() {
        assert_eq!(wallet_ref("0xABCD").as_deref(), Ok("abcd"));
        assert!(wallet_ref("abc").is_err());
        assert!(wallet_ref("wxyz").is_err());
        assert!(id("../wallets").is_err());
        assert!(id("a%2f").is_err());
        assert_eq!(id("cdeef676").as_deref(), Ok("cdeef676"));
    }
}
