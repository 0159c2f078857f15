//! The policy: what a module's operators (its admin quorum) allow, signed by that quorum.

use std::collections::BTreeSet;

use concord_types::WalletId;
use serde::{Deserialize, Serialize};

use super::{AuthorityError, Endorsement, Role, canonical, opt_hex32, tagged_hash};
use crate::identity::PublicIdentity;

/// Domain tag of policy signatures.
pub const POLICY_TAG: &str = "concord/policy/v1";

/// Longest name (principal, wallet label, address label, exchange, coin).
const MAX_NAME: usize = 64;

/// The keys allowed to sign policies, and how many must: the root a module's operator pins at
/// `concord module init`, then the admins of each policy in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AdminSet {
    /// The admin keys.
    pub keys: Vec<PublicIdentity>,
    /// Signatures needed.
    pub quorum: u16,
}

impl AdminSet {
    /// Checks the set: distinct keys, `1 <= quorum <= keys`.
    pub fn new(keys: Vec<PublicIdentity>, quorum: u16) -> Result<AdminSet, AuthorityError> {
        let distinct: BTreeSet<_> = keys.iter().collect();
        if distinct.len() != keys.len() {
            return Err(AuthorityError::Malformed(
                "an admin key is listed twice".into(),
            ));
        }
        if quorum == 0 || usize::from(quorum) > keys.len() {
            return Err(AuthorityError::Malformed(format!(
                "an admin quorum of {quorum} is impossible with {} admin key(s): it must be 1 to {}",
                keys.len(),
                keys.len()
            )));
        }
        Ok(AdminSet { keys, quorum })
    }

    /// Counts the distinct keys of this set with a valid signature over `bytes` (under the
    /// policy tag) and checks the quorum.
    pub fn check(
        &self,
        what: &str,
        signatures: &[Endorsement],
        bytes: &[u8],
    ) -> Result<usize, AuthorityError> {
        let mut valid = BTreeSet::new();
        for s in signatures {
            if self.keys.contains(&s.key) && s.verify(POLICY_TAG, bytes).is_ok() {
                valid.insert(s.key);
            }
        }
        if valid.len() < usize::from(self.quorum) {
            return Err(AuthorityError::Quorum {
                what: what.to_owned(),
                have: valid.len(),
                need: usize::from(self.quorum),
            });
        }
        Ok(valid.len())
    }
}

/// A principal: a requester key (Ed25519, like an SSH key) and what it may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Principal {
    /// A name people recognise (unique in the policy).
    pub name: String,
    /// The public key.
    pub key: PublicIdentity,
    /// Its roles.
    pub roles: Vec<Role>,
}

impl Principal {
    /// Whether the principal has `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// What a wallet is for. A wallet the policy does not name signs nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum WalletPurpose {
    /// A trader's wallet: deposits to the listed exchange connections, and raw message
    /// signing only if allowed (domain-separated even then).
    Trading {
        /// Exchange connections (as modules name them) it may deposit to.
        #[serde(default)]
        deposit_to: Vec<String>,
        /// Whether raw messages may be signed at all (off by default).
        #[serde(default)]
        raw_messages: bool,
    },
    /// An exchange connection's withdraw-capable API key (Ed25519): it signs withdraw requests
    /// to that exchange and nothing else, and only to the listed address-book entries.
    ExchangeCredential {
        /// The exchange connection's name.
        exchange: String,
        /// Address-book labels withdrawals may go to.
        #[serde(default)]
        withdraw_to: Vec<String>,
    },
}

/// Limits of one coin for one wallet, in coin units (decimal strings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CoinLimit {
    /// The exchange's coin code (e.g. `ETH`).
    pub coin: String,
    /// Largest amount of one transfer.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9]+(\\.[0-9]+)?$"))]
    pub per_transfer: String,
    /// Largest total over any rolling 24 hours, counted from the module's own ledger of what
    /// it approved.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9]+(\\.[0-9]+)?$"))]
    pub per_day: String,
    /// Above this amount, an intent needs `cosigners` approver signatures besides the
    /// requester's (absent: never).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9]+(\\.[0-9]+)?$"))]
    pub cosign_above: Option<String>,
    /// Approver co-signatures needed above `cosign_above`.
    #[serde(default)]
    pub cosigners: u16,
}

/// One wallet's rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WalletRule {
    /// The wallet.
    pub wallet: WalletId,
    /// A name people recognise.
    pub label: String,
    /// What it may do.
    pub purpose: WalletPurpose,
    /// Limits by coin; a coin without a limit is refused.
    #[serde(default)]
    pub limits: Vec<CoinLimit>,
    /// Whether the members may re-randomise their shares of this wallet (proactive refresh)
    /// when the coordinator asks; off by default (absent from the canonical form when off).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refresh: bool,
    /// Non-hardened BIP-32 path prefixes (`m/0`) under which the members may derive child
    /// wallets of this one (DKLs23 wallets). A child inherits this wallet's purpose and
    /// limits, and what it spends counts against this wallet's daily limits. Empty (the
    /// default, absent from the canonical form): no child wallets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub derive: Vec<concord_types::DerivationPath>,
    /// A native multisig wallet (no shares: each member module signs with its own key): its
    /// chain, threshold and keys. The wallet id is the definition's hash
    /// ([`MultisigDef::wallet_id`]). Absent (the default) for threshold wallets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multisig: Option<MultisigDef>,
    /// An exchange withdraw key the group cannot hold in shares (Kraken's HMAC secret): the
    /// one member module that holds it and the approvals it needs before it uses it. The
    /// wallet id is the definition's hash ([`HeldCredential::wallet_id`]). Absent (the
    /// default) for keys the group signs with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<HeldCredential>,
}

/// Domain tag of a held credential's wallet id.
pub const HELD_CREDENTIAL_TAG: &str = "concord/held-credential/v1";

/// An exchange withdraw key held whole by one module (an HMAC secret, which threshold
/// signatures cannot shard), as the admins define it: the holder uses it only for a
/// withdraw request `threshold` of the members approved (a certificate of their signed
/// approvals of the request's digest), and only once per transfer. One compromised holder
/// can still withdraw alone, but only to what the exchange lets the key withdraw to
/// (Kraken: withdrawal keys already registered and verified on the account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HeldCredential {
    /// The exchange connection's name.
    pub exchange: String,
    /// The API key (its public name at the exchange) requests go under.
    pub api_key: String,
    /// The module id of the member that holds the secret.
    pub holder: String,
    /// Approvals a request needs before the holder signs it.
    pub threshold: u8,
    /// The modules whose approvals count, each named with its identity key.
    pub members: Vec<HeldMember>,
}

/// One approver of a held credential's requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HeldMember {
    /// The module's id.
    pub module: String,
    /// Its identity key.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub identity: PublicIdentity,
}

impl HeldCredential {
    /// The credential's wallet id: the tagged hash of the canonical definition.
    pub fn wallet_id(&self) -> WalletId {
        WalletId(tagged_hash(HELD_CREDENTIAL_TAG, &canonical(self)))
    }

    /// The members as a certificate names them: (module id, identity key), in order.
    pub fn certificate_members(&self) -> Vec<(String, PublicIdentity)> {
        self.members
            .iter()
            .map(|m| (m.module.clone(), m.identity))
            .collect()
    }

    /// The holder's identity key.
    pub fn holder_identity(&self) -> Option<PublicIdentity> {
        self.members
            .iter()
            .find(|m| m.module == self.holder)
            .map(|m| m.identity)
    }

    /// Checks the definition: a named key, distinct members, a holder among them and a
    /// threshold of at least two (one approval would be the holder alone) and at most the
    /// members.
    pub fn validate(&self) -> Result<(), AuthorityError> {
        let bad = |m: String| Err(AuthorityError::Malformed(m));
        if self.api_key.is_empty() {
            return bad(format!(
                "the held credential of exchange {} names no API key",
                self.exchange
            ));
        }
        let mut modules = BTreeSet::new();
        let mut keys = BTreeSet::new();
        for m in &self.members {
            if !modules.insert(m.module.as_str()) || !keys.insert(m.identity) {
                return bad(format!(
                    "the held credential of exchange {} names module {} twice",
                    self.exchange, m.module
                ));
            }
        }
        if self.holder_identity().is_none() {
            return bad(format!(
                "the held credential's holder {} is not one of its members",
                self.holder
            ));
        }
        let t = usize::from(self.threshold);
        if t < 2 || t > self.members.len() {
            return bad(format!(
                "the held credential of exchange {} needs a threshold from 2 to its {} members, not {t}",
                self.exchange,
                self.members.len()
            ));
        }
        Ok(())
    }
}

/// Domain tag of a multisig wallet's id.
pub const MULTISIG_WALLET_TAG: &str = "concord/multisig-wallet/v1";

/// A native multisig wallet as the admins define it: `threshold` of the member modules' own
/// secp256k1 keys. Each member is named with its identity key and its identity's signature
/// over its multisig key (what `concord module show` publishes), so every module checks both
/// who the members are (their approvals make a certificate) and that each key is theirs. On
/// a UTXO chain the wallet is the P2WSH `OP_CHECKMULTISIG` of the keys in BIP-67 order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MultisigDef {
    /// The chain (`ltc-regtest`, `ltc`, `btc`, `btc-testnet`, `btc-regtest`).
    pub chain: String,
    /// Signatures needed.
    pub threshold: u8,
    /// The members, in ascending order of their keys (BIP-67).
    pub members: Vec<MultisigMember>,
    /// On an EVM chain (`chain` = `evm-<chain id>`): the Safe whose owners are the members'
    /// addresses. Absent on UTXO chains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub safe: Option<concord_chain::Address>,
}

/// One member of a multisig wallet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MultisigMember {
    /// The module's id.
    pub module: String,
    /// Its identity key.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub identity: PublicIdentity,
    /// Its own secp256k1 key, 33 bytes compressed, lowercase hex.
    pub key: String,
    /// Its identity's signature over the key, hex.
    pub key_signature: String,
}

impl MultisigDef {
    /// The wallet's id: the tagged hash of the canonical definition.
    pub fn wallet_id(&self) -> WalletId {
        WalletId(tagged_hash(MULTISIG_WALLET_TAG, &canonical(self)))
    }

    /// The chain id of a Safe wallet (`chain` = `evm-<chain id>`), `None` on a UTXO chain.
    pub fn evm_chain_id(&self) -> Option<u64> {
        self.chain
            .strip_prefix("evm-")
            .and_then(|id| id.parse().ok())
    }

    /// Checks the definition, whichever chain it is on.
    pub fn validate(&self) -> Result<(), AuthorityError> {
        match self.evm_chain_id() {
            Some(_) => self.safe_owners().map(|_| ()),
            None => self.wallet().map(|_| ()),
        }
    }

    /// A Safe wallet's chain id, Safe and owners (the members' Ethereum addresses, in the
    /// members' order), checking the definition.
    pub fn safe_owners(
        &self,
    ) -> Result<(u64, concord_chain::Address, Vec<concord_chain::Address>), AuthorityError> {
        let bad = |m: String| AuthorityError::Malformed(format!("multisig wallet: {m}"));
        let chain_id = self
            .evm_chain_id()
            .ok_or_else(|| bad(format!("chain {:?} is not evm-<chain id>", self.chain)))?;
        let safe = self
            .safe
            .ok_or_else(|| bad("a multisig wallet on an EVM chain names its Safe".into()))?;
        let owners = self
            .checked_keys()?
            .iter()
            .map(|k| concord_chain::evm_address(k).map_err(|e| bad(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        if self.threshold == 0 || usize::from(self.threshold) > owners.len() {
            return Err(bad(format!(
                "threshold {} is not between 1 and the {} members",
                self.threshold,
                owners.len()
            )));
        }
        Ok((chain_id, safe, owners))
    }

    /// The chain and the wallet's script on a UTXO chain, checking the definition (see
    /// [`MultisigDef::checked_keys`]; a threshold between 1 and the members' number).
    pub fn wallet(
        &self,
    ) -> Result<
        (
            concord_chain::utxo::UtxoNetwork,
            concord_chain::utxo::WalletScript,
        ),
        AuthorityError,
    > {
        let bad = |m: String| AuthorityError::Malformed(format!("multisig wallet: {m}"));
        let chain: concord_chain::utxo::UtxoNetwork = self
            .chain
            .parse()
            .map_err(|e: concord_chain::utxo::UtxoError| bad(e.0))?;
        if self.safe.is_some() {
            return Err(bad("a Safe is named on a UTXO chain".into()));
        }
        let keys = self.checked_keys()?;
        let script = concord_chain::utxo::WalletScript::multisig(self.threshold, &keys)
            .map_err(|e| bad(e.0))?;
        Ok((chain, script))
    }

    /// The members' keys, each checked: lowercase hex (one definition, one id), 33 bytes,
    /// signed by its member's identity; in ascending order; module ids and identities
    /// distinct.
    pub fn checked_keys(&self) -> Result<Vec<Vec<u8>>, AuthorityError> {
        let bad = |m: String| AuthorityError::Malformed(format!("multisig wallet: {m}"));
        let mut keys = Vec::with_capacity(self.members.len());
        for m in &self.members {
            let key = match hex::decode(&m.key) {
                Ok(b) if hex::encode(&b) == m.key => b,
                _ => {
                    return Err(bad(format!(
                        "{}'s key {:?} is not lowercase hex",
                        m.module, m.key
                    )));
                }
            };
            let key33: [u8; 33] = key
                .as_slice()
                .try_into()
                .map_err(|_| bad(format!("{}'s key is not 33 bytes", m.module)))?;
            let sig = hex::decode(&m.key_signature)
                .map_err(|_| bad(format!("{}'s key signature is not hex", m.module)))?;
            m.identity.verify_multisig_key(&key33, &sig).map_err(|_| {
                bad(format!(
                    "{}'s key is not signed by its identity {}",
                    m.module,
                    m.identity.fingerprint()
                ))
            })?;
            keys.push(key);
        }
        if keys.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad(
                "members must be listed once each, in ascending order of their keys (BIP-67)"
                    .into(),
            ));
        }
        let ids: BTreeSet<&str> = self.members.iter().map(|m| m.module.as_str()).collect();
        let identities: BTreeSet<_> = self.members.iter().map(|m| m.identity).collect();
        if ids.len() != self.members.len() || identities.len() != self.members.len() {
            return Err(bad("a member is listed twice".into()));
        }
        Ok(keys)
    }

    /// The members as a certificate names them: (module id, identity key), in order.
    pub fn certificate_members(&self) -> Vec<(String, PublicIdentity)> {
        self.members
            .iter()
            .map(|m| (m.module.clone(), m.identity))
            .collect()
    }

    /// Whether `key` (33 bytes compressed) is one of the members' keys.
    pub fn has_key(&self, key: &[u8; 33]) -> bool {
        let key = hex::encode(key);
        self.members.iter().any(|m| m.key == key)
    }
}

impl WalletRule {
    /// Whether this wallet's rule covers its child at `path` (a prefix in [`WalletRule::derive`]).
    pub fn allows_child(&self, path: &concord_types::DerivationPath) -> bool {
        !path.is_master() && self.derive.iter().any(|prefix| path.starts_with(prefix))
    }
}

impl WalletRule {
    /// The limit for `coin` (coin codes compare case-insensitively).
    pub fn limit(&self, coin: &str) -> Option<&CoinLimit> {
        self.limits
            .iter()
            .find(|l| l.coin.eq_ignore_ascii_case(coin))
    }
}

/// The admins' word on who a signer group's members are (identity keys, in index order):
/// what lets the members of a group accept a new member in a lost one's place (a repair).
/// Without it, a group keeps the members it was set up with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GroupRule {
    /// The group's id.
    pub group: String,
    /// Its members' identity keys, in index order.
    pub members: Vec<PublicIdentity>,
}

/// Where an address-book entry points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AddressTarget {
    /// A wallet of this system: modules derive its address from their own share.
    Wallet {
        /// The wallet.
        wallet: WalletId,
    },
    /// An outside address on a network.
    Address {
        /// The exchanges' network code (e.g. `ETH`).
        network: String,
        /// The address, as the network writes it.
        address: String,
    },
}

/// An allowed withdrawal destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddressEntry {
    /// Its label (unique in the policy).
    pub label: String,
    /// Where it points.
    pub target: AddressTarget,
}

/// The policy document. Versioned; names the hash of the one it replaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// 1 for the first policy, then one more than the policy it replaces.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub version: u64,
    /// The hash of the policy it replaces (absent for version 1).
    #[serde(default, with = "opt_hex32")]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Option<String>, pattern = "^[0-9a-fA-F]{64}$")
    )]
    pub previous: Option<[u8; 32]>,
    /// Admin signatures needed for the next policy change.
    pub admin_quorum: u16,
    /// Requester keys and their roles.
    pub principals: Vec<Principal>,
    /// What each wallet may do.
    #[serde(default)]
    pub wallets: Vec<WalletRule>,
    /// Allowed withdrawal destinations.
    #[serde(default)]
    pub address_book: Vec<AddressEntry>,
    /// Signer groups whose membership the admins have set (absent from the canonical form
    /// when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupRule>,
}

fn check_name(what: &str, name: &str) -> Result<(), AuthorityError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | ' '));
    if ok {
        Ok(())
    } else {
        Err(AuthorityError::Malformed(format!(
            "{what} {name:?} is invalid: use 1 to {MAX_NAME} letters, digits, spaces or - _ . :"
        )))
    }
}

/// Checks a decimal amount's syntax (digits, at most one '.', not empty).
pub fn check_decimal(what: &str, value: &str) -> Result<(), AuthorityError> {
    let (int, frac) = value.split_once('.').unwrap_or((value, ""));
    let ok = !int.is_empty()
        && int.len() <= 40
        && frac.len() <= 40
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(value.contains('.') && frac.is_empty());
    if ok {
        Ok(())
    } else {
        Err(AuthorityError::Malformed(format!(
            "{what} {value:?} is not a plain decimal amount (digits, at most one '.')"
        )))
    }
}

impl Policy {
    /// The canonical encoding that is hashed and signed.
    pub fn to_canonical(&self) -> Vec<u8> {
        canonical(self)
    }

    /// The policy's hash: what approvals name and what the next policy names as `previous`.
    pub fn hash(&self) -> [u8; 32] {
        tagged_hash(POLICY_TAG, &self.to_canonical())
    }

    /// The admin set this policy installs for the next change.
    pub fn admins(&self) -> AdminSet {
        AdminSet {
            keys: self
                .principals
                .iter()
                .filter(|p| p.has(Role::Admin))
                .map(|p| p.key)
                .collect(),
            quorum: self.admin_quorum,
        }
    }

    /// The principal with this key.
    pub fn principal(&self, key: &PublicIdentity) -> Option<&Principal> {
        self.principals.iter().find(|p| p.key == *key)
    }

    /// The rule of a wallet.
    pub fn wallet(&self, wallet: &WalletId) -> Option<&WalletRule> {
        self.wallets.iter().find(|w| w.wallet == *wallet)
    }

    /// The wallet that is `exchange`'s withdraw credential, if the policy names one.
    pub fn credential(&self, exchange: &str) -> Option<&WalletRule> {
        self.wallets.iter().find(|w| {
            matches!(&w.purpose, WalletPurpose::ExchangeCredential { exchange: x, .. } if x == exchange)
        })
    }

    /// The admins' member list of a signer group, if the policy sets one.
    pub fn group(&self, group: &str) -> Option<&GroupRule> {
        self.groups.iter().find(|g| g.group == group)
    }

    /// The address-book entry with this label.
    pub fn address(&self, label: &str) -> Option<&AddressEntry> {
        self.address_book.iter().find(|a| a.label == label)
    }

    /// The address-book entry that points at this wallet.
    pub fn address_of_wallet(&self, wallet: &WalletId) -> Option<&AddressEntry> {
        self.address_book
            .iter()
            .find(|a| matches!(&a.target, AddressTarget::Wallet { wallet: w } if w == wallet))
    }

    /// Checks the policy's own consistency: names, unique keys and labels, amounts, an admin
    /// quorum its admins can meet, address-book references that exist.
    pub fn validate(&self) -> Result<(), AuthorityError> {
        let bad = |m: String| Err(AuthorityError::Malformed(m));
        if self.version == 0 {
            return bad("a policy's version starts at 1".into());
        }
        if (self.version == 1) != self.previous.is_none() {
            return bad(
                "version 1 names no previous policy; every later version names the hash of the one it replaces"
                    .into(),
            );
        }
        let mut names = BTreeSet::new();
        let mut keys = BTreeSet::new();
        for p in &self.principals {
            check_name("principal name", &p.name)?;
            if !names.insert(p.name.as_str()) {
                return bad(format!("principal {:?} is listed twice", p.name));
            }
            if !keys.insert(p.key) {
                return bad(format!(
                    "key {} belongs to two principals",
                    p.key.fingerprint()
                ));
            }
            if p.roles.is_empty() {
                return bad(format!("principal {:?} has no role", p.name));
            }
        }
        AdminSet::new(self.admins().keys, self.admin_quorum).map_err(|e| {
            AuthorityError::Malformed(format!("admins: {e} (give principals the admin role)"))
        })?;
        let mut labels = BTreeSet::new();
        for a in &self.address_book {
            check_name("address label", &a.label)?;
            if !labels.insert(a.label.as_str()) {
                return bad(format!("address label {:?} is listed twice", a.label));
            }
            if let AddressTarget::Address { network, address } = &a.target {
                check_name("network", network)?;
                if address.is_empty() || address.len() > 128 {
                    return bad(format!("the address of {:?} is empty or too long", a.label));
                }
            }
        }
        let mut groups = BTreeSet::new();
        for g in &self.groups {
            check_name("group", &g.group)?;
            if !groups.insert(g.group.as_str()) {
                return bad(format!("group {:?} is listed twice", g.group));
            }
            if g.members.len() < 2 || g.members.len() > 255 {
                return bad(format!("group {:?} must list 2 to 255 members", g.group));
            }
            let distinct: BTreeSet<_> = g.members.iter().collect();
            if distinct.len() != g.members.len() {
                return bad(format!("group {:?} lists a member twice", g.group));
            }
        }
        let mut wallets = BTreeSet::new();
        let mut credentials = BTreeSet::new();
        for w in &self.wallets {
            check_name("wallet label", &w.label)?;
            if !wallets.insert(w.wallet) {
                return bad(format!("wallet {} is listed twice", w.wallet));
            }
            if let Some(h) = &w.held {
                h.validate()?;
                if h.wallet_id() != w.wallet {
                    return bad(format!(
                        "wallet {:?} is a held credential whose id must be its definition's hash {}",
                        w.label,
                        h.wallet_id()
                    ));
                }
                if !matches!(&w.purpose, WalletPurpose::ExchangeCredential { exchange, .. } if *exchange == h.exchange)
                {
                    return bad(format!(
                        "held credential {:?} must be exchange {}'s withdraw credential",
                        w.label, h.exchange
                    ));
                }
                if w.multisig.is_some() || w.refresh || !w.derive.is_empty() {
                    return bad(format!(
                        "held credential {:?} has no shares: no multisig, refresh or derivation",
                        w.label
                    ));
                }
            }
            if let Some(m) = &w.multisig {
                m.validate()?;
                if m.wallet_id() != w.wallet {
                    return bad(format!(
                        "wallet {:?} is a multisig wallet whose id must be its definition's hash {}",
                        w.label,
                        m.wallet_id()
                    ));
                }
                if !matches!(
                    w.purpose,
                    WalletPurpose::Trading {
                        raw_messages: false,
                        ..
                    }
                ) {
                    return bad(format!(
                        "multisig wallet {:?} can only be a trading wallet without raw messages",
                        w.label
                    ));
                }
                if w.refresh || !w.derive.is_empty() {
                    return bad(format!(
                        "multisig wallet {:?} has no shares to refresh or derive from",
                        w.label
                    ));
                }
            }
            match &w.purpose {
                WalletPurpose::Trading { deposit_to, .. } => {
                    for x in deposit_to {
                        check_name("exchange", x)?;
                    }
                }
                WalletPurpose::ExchangeCredential {
                    exchange,
                    withdraw_to,
                } => {
                    check_name("exchange", exchange)?;
                    if !credentials.insert(exchange.as_str()) {
                        return bad(format!(
                            "two wallets are exchange {exchange}'s withdraw credential"
                        ));
                    }
                    for l in withdraw_to {
                        if !labels.contains(l.as_str()) {
                            return bad(format!(
                                "wallet {:?} may withdraw to {l:?}, which is not in the address book",
                                w.label
                            ));
                        }
                    }
                }
            }
            let mut coins = BTreeSet::new();
            for l in &w.limits {
                check_name("coin", &l.coin)?;
                if !coins.insert(l.coin.to_ascii_uppercase()) {
                    return bad(format!("wallet {:?} limits coin {} twice", w.label, l.coin));
                }
                check_decimal("per_transfer", &l.per_transfer)?;
                check_decimal("per_day", &l.per_day)?;
                if let Some(a) = &l.cosign_above {
                    check_decimal("cosign_above", a)?;
                    if l.cosigners == 0 {
                        return bad(format!(
                            "wallet {:?}, coin {}: cosign_above needs cosigners of at least 1",
                            w.label, l.coin
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// A policy with its admins' signatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignedPolicy {
    /// The policy.
    pub policy: Policy,
    /// Admin signatures over its canonical encoding.
    pub signatures: Vec<Endorsement>,
}

impl SignedPolicy {
    /// Adds an admin's signature (replacing an earlier one by the same key).
    pub fn sign(&mut self, admin: &crate::identity::IdentityKey) {
        let e = Endorsement::sign(admin, POLICY_TAG, &self.policy.to_canonical());
        self.signatures.retain(|s| s.key != e.key);
        self.signatures.push(e);
    }

    /// Checks that this policy may replace `current` (none: the first policy, checked against
    /// the admins pinned at init, `root`): the version follows, `previous` names the current
    /// hash, the policy is consistent, and both the admins in force and the admins it installs
    /// signed it with their quorums (so a policy can neither be forced on the current admins
    /// nor name admins who cannot act).
    pub fn check_succession(
        &self,
        current: Option<&Policy>,
        root: &AdminSet,
    ) -> Result<(), AuthorityError> {
        let p = &self.policy;
        p.validate()?;
        let (want_version, want_previous) = match current {
            Some(c) => (c.version + 1, Some(c.hash())),
            None => (1, None),
        };
        if p.version != want_version || p.previous != want_previous {
            return Err(AuthorityError::OutOfOrder(format!(
                "policy v{} does not follow the policy in force ({}): expected version {want_version}{}",
                p.version,
                current.map_or("none".to_owned(), |c| format!(
                    "v{} {}",
                    c.version,
                    short_hash(&c.hash())
                )),
                want_previous.map_or(String::new(), |h| format!(" replacing {}", short_hash(&h)))
            )));
        }
        let bytes = p.to_canonical();
        let in_force = current.map_or_else(|| root.clone(), Policy::admins);
        let what = if current.is_some() {
            "the admins in force"
        } else {
            "the admins pinned at init"
        };
        in_force.check(what, &self.signatures, &bytes)?;
        p.admins()
            .check("the admins the policy installs", &self.signatures, &bytes)?;
        Ok(())
    }
}

/// The first 16 hex digits of a hash, for messages.
pub(crate) fn short_hash(h: &[u8; 32]) -> String {
    hex::encode(&h[..8])
}
