//! What a wallet is asked to sign, in one canonical encoding, and the digest modules approve.
//!
//! The coordinator proposes a payload; every module parses it, recomputes the digest itself
//! and approves that digest only. Parsing accepts only the canonical encoding (compact JSON,
//! fields in declaration order), so two modules that accept the same bytes agree on the same
//! payload.
//!
//! Three kinds:
//! - [`SigningPayload::Message`]: raw bytes, always domain-separated: what is signed is
//!   `"concord/message/v1" || 0x00 || message` (FROST schemes) or its SHA-256 (ECDSA), so no
//!   message can be a signature over a chain transaction's sighash (EVM, BIP-143, BIP-341).
//! - [`SigningPayload::EvmTransfer`]: an EIP-1559 transfer of ETH or an ERC-20 token to an
//!   exchange deposit address (flow 3). The digest is the transaction's signing hash, so what
//!   a module approves is exactly the transaction that can reach the chain.
//! - [`SigningPayload::ExchangeWithdrawal`]: a withdraw request to an exchange, signed with
//!   the group's sharded Ed25519 API key (flow 4). The FROST signature is over the request's
//!   exact bytes (Binance's query string, Coinbase's JWT signing input); the digest is their
//!   SHA-256, or, when a body the signature does not cover goes with them (Coinbase's send),
//!   the tagged SHA-256 of both.
//! - [`SigningPayload::UtxoTransfer`]: a spend on a UTXO chain (Bitcoin, Litecoin) to an
//!   exchange deposit address, as an unsigned PSBT. The digest is the tagged SHA-256 of the
//!   PSBT's bytes, which fix every input's signature hash; what each input is signed over is
//!   recomputed by each module from the PSBT it checked against its own node.

use concord_chain::{Address, Asset, EvmTransfer, FeeCaps, U256};
use concord_types::{Scheme, TypesError, WalletId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Largest message a [`SigningPayload::Message`] may carry.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;
/// Largest exchange request a [`SigningPayload::ExchangeWithdrawal`] may carry.
pub const MAX_REQUEST_LEN: usize = 4 * 1024;
/// Largest PSBT a [`SigningPayload::UtxoTransfer`] may carry.
pub const MAX_PSBT_LEN: usize = 100 * 1024;
/// Domain tag of the digest of an exchange request sent with a body its signature does not
/// cover.
pub const EXCHANGE_BODY_TAG: &[u8] = b"concord/exchange-request-body/v1\0";
/// Domain tag of a UTXO spend's digest.
pub const UTXO_SPEND_TAG: &[u8] = b"concord/utxo-spend/v1\0";

/// Where an EVM transfer is meant to go, as the trader asked for it. Modules resolve the
/// address themselves from this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Destination {
    /// The trader's deposit address at an exchange for a coin on a network.
    ExchangeDeposit {
        /// The exchange connection's name, as modules configure it.
        exchange: String,
        /// The exchange's coin code (e.g. `ETH`).
        coin: String,
        /// The exchange's network code (e.g. `ETH`).
        network: String,
    },
}

impl Destination {
    /// The exchange's coin code.
    pub fn coin(&self) -> &str {
        match self {
            Destination::ExchangeDeposit { coin, .. } => coin,
        }
    }
}

/// A request to sign, as modules see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SigningPayload {
    /// Sign raw bytes with a wallet, domain-separated: ECDSA signs the SHA-256 of the tagged
    /// message ([`crate::authority::tagged_message`]); FROST schemes sign the tagged message.
    Message {
        /// The wallet that signs.
        wallet: WalletId,
        /// The bytes, hex-encoded in the canonical form.
        #[serde(with = "hex_bytes")]
        message: Vec<u8>,
        /// Optional replay-protection nonce: a module never signs two different digests for
        /// the same (wallet, nonce).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<u64>,
    },
    /// An EIP-1559 transfer from an ECDSA wallet's address.
    EvmTransfer {
        /// The coordinator's transfer id (bound into the approval).
        transfer: String,
        /// The wallet that signs (its address is the sender).
        wallet: WalletId,
        /// EIP-155 chain id.
        chain_id: u64,
        /// The sender's account nonce.
        nonce: u64,
        /// Gas limit.
        gas_limit: u64,
        /// EIP-1559 fee cap (wei per gas), as a decimal string.
        #[serde(with = "dec_u128")]
        max_fee_per_gas: u128,
        /// EIP-1559 priority fee cap (wei per gas), as a decimal string.
        #[serde(with = "dec_u128")]
        max_priority_fee_per_gas: u128,
        /// What is sent: ETH or an ERC-20 token.
        asset: Asset,
        /// Amount in the asset's base units.
        amount: U256,
        /// The receiving address the coordinator proposes.
        recipient: Address,
        /// What the recipient is meant to be: modules resolve it themselves.
        destination: Destination,
    },
    /// A withdraw request to an exchange, signed by the group's sharded Ed25519 API key.
    ExchangeWithdrawal {
        /// The coordinator's transfer id.
        transfer: String,
        /// The Ed25519 wallet that is the exchange's withdraw-capable API key.
        wallet: WalletId,
        /// The exchange connection's name.
        exchange: String,
        /// The API key (public) the request is sent under.
        api_key: String,
        /// The exact request payload that is signed (for Binance: the query string without
        /// `signature`; for Coinbase: the JWT signing input, `base64url(header).base64url(claims)`).
        /// Modules resolve the destination from the intent and their policy's address book
        /// themselves and compare it with the request's address.
        request: String,
        /// The HTTP body sent with the request when the signature does not cover it (Coinbase:
        /// the send's JSON, which the token's claims do not bind). It is bound into the digest,
        /// so every module approves one body and the audit trail names it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
    },
    /// A transfer out of a Safe (native multisig on an EVM chain) to an exchange's deposit
    /// address: the `SafeTx` its owners sign (a plain call, no refund).
    SafeTransfer {
        /// The coordinator's transfer id (bound into the approval).
        transfer: String,
        /// The multisig wallet (the policy's definition names the Safe).
        wallet: WalletId,
        /// EIP-155 chain id.
        chain_id: u64,
        /// The Safe.
        safe: Address,
        /// The Safe's nonce this transaction uses.
        nonce: u64,
        /// What is sent: ETH or an ERC-20 token.
        asset: Asset,
        /// Amount in the asset's base units.
        amount: U256,
        /// The receiving address the coordinator proposes.
        recipient: Address,
        /// What the recipient is meant to be: modules resolve it themselves.
        destination: Destination,
    },
    /// A spend on a UTXO chain to an exchange's deposit address.
    UtxoTransfer {
        /// The coordinator's transfer id (bound into the approval).
        transfer: String,
        /// The paying wallet.
        wallet: WalletId,
        /// The chain (`ltc-regtest`, `btc`, …).
        chain: String,
        /// The unsigned spend, BIP-174 PSBT bytes (every input carrying its spent output).
        #[serde(with = "hex_bytes")]
        psbt: Vec<u8>,
        /// What the destination receives, in satoshis (litoshis).
        amount: u64,
        /// What the recipient is meant to be: modules resolve it themselves.
        destination: Destination,
    },
}

impl SigningPayload {
    /// The canonical encoding (compact JSON).
    pub fn to_canonical(&self) -> Vec<u8> {
        // Serializing these plain types to JSON cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a payload, accepting only its canonical encoding.
    pub fn from_canonical(bytes: &[u8]) -> Result<Self, TypesError> {
        let payload: SigningPayload =
            serde_json::from_slice(bytes).map_err(|e| TypesError::InvalidPayload(e.to_string()))?;
        if payload.to_canonical() != bytes {
            return Err(TypesError::InvalidPayload(
                "the payload is not in canonical form (compact JSON, fields in order)".into(),
            ));
        }
        payload.check()?;
        Ok(payload)
    }

    /// Checks the payload's own limits.
    pub fn check(&self) -> Result<(), TypesError> {
        match self {
            SigningPayload::Message { message, .. } if message.len() > MAX_MESSAGE_LEN => {
                Err(TypesError::InvalidPayload(format!(
                    "message of {} bytes exceeds the {MAX_MESSAGE_LEN}-byte limit",
                    message.len()
                )))
            }
            SigningPayload::ExchangeWithdrawal { request, .. }
                if request.len() > MAX_REQUEST_LEN =>
            {
                Err(TypesError::InvalidPayload(format!(
                    "exchange request of {} bytes exceeds the {MAX_REQUEST_LEN}-byte limit",
                    request.len()
                )))
            }
            SigningPayload::ExchangeWithdrawal {
                body: Some(body), ..
            } if body.len() > MAX_REQUEST_LEN => Err(TypesError::InvalidPayload(format!(
                "exchange request body of {} bytes exceeds the {MAX_REQUEST_LEN}-byte limit",
                body.len()
            ))),
            SigningPayload::SafeTransfer { amount, .. } if amount.is_zero() => Err(
                TypesError::InvalidPayload("a transfer of zero is refused".into()),
            ),
            SigningPayload::EvmTransfer { amount, .. } if amount.is_zero() => Err(
                TypesError::InvalidPayload("a transfer of zero is refused".into()),
            ),
            SigningPayload::UtxoTransfer { amount: 0, .. } => Err(TypesError::InvalidPayload(
                "a transfer of zero is refused".into(),
            )),
            SigningPayload::UtxoTransfer { psbt, .. } if psbt.len() > MAX_PSBT_LEN => {
                Err(TypesError::InvalidPayload(format!(
                    "a PSBT of {} bytes exceeds the {MAX_PSBT_LEN}-byte limit",
                    psbt.len()
                )))
            }
            SigningPayload::UtxoTransfer { psbt, .. } => match self.psbt() {
                // One transaction, one encoding (no trailing bytes): one digest.
                Some(parsed) if parsed.serialize() == *psbt => Ok(()),
                Some(_) => Err(TypesError::InvalidPayload(
                    "the PSBT is not in its canonical encoding".into(),
                )),
                None => Err(TypesError::InvalidPayload(format!(
                    "the PSBT ({} bytes) does not parse",
                    psbt.len()
                ))),
            },
            _ => Ok(()),
        }
    }

    /// The wallet asked to sign.
    pub fn wallet(&self) -> WalletId {
        match self {
            SigningPayload::Message { wallet, .. }
            | SigningPayload::EvmTransfer { wallet, .. }
            | SigningPayload::ExchangeWithdrawal { wallet, .. }
            | SigningPayload::UtxoTransfer { wallet, .. }
            | SigningPayload::SafeTransfer { wallet, .. } => *wallet,
        }
    }

    /// The Safe transaction of a [`SigningPayload::SafeTransfer`].
    pub fn safe_transaction(&self) -> Option<concord_chain::safe::SafeTransaction> {
        match self {
            SigningPayload::SafeTransfer {
                chain_id,
                safe,
                nonce,
                asset,
                amount,
                recipient,
                ..
            } => Some(match asset {
                Asset::Native => concord_chain::safe::SafeTransaction::native(
                    *chain_id,
                    *safe,
                    *recipient,
                    *amount,
                    U256::from(*nonce),
                ),
                Asset::Erc20 { token } => concord_chain::safe::SafeTransaction::erc20(
                    *chain_id,
                    *safe,
                    *token,
                    *recipient,
                    *amount,
                    U256::from(*nonce),
                ),
            }),
            _ => None,
        }
    }

    /// The PSBT of a [`SigningPayload::UtxoTransfer`], parsed.
    pub fn psbt(&self) -> Option<concord_chain::utxo::bitcoin::Psbt> {
        match self {
            SigningPayload::UtxoTransfer { psbt, .. } => {
                concord_chain::utxo::bitcoin::Psbt::deserialize(psbt).ok()
            }
            _ => None,
        }
    }

    /// The transfer this payload belongs to, if any.
    pub fn transfer(&self) -> Option<&str> {
        match self {
            SigningPayload::Message { .. } => None,
            SigningPayload::EvmTransfer { transfer, .. }
            | SigningPayload::ExchangeWithdrawal { transfer, .. }
            | SigningPayload::UtxoTransfer { transfer, .. }
            | SigningPayload::SafeTransfer { transfer, .. } => Some(transfer),
        }
    }

    /// The replay-protection key in the module's nonce log, if the payload carries one: a
    /// module never approves two different digests under the same (wallet, key). EVM
    /// transfers use the account nonce of their chain, so a module never signs two
    /// transactions that could both be mined for one nonce.
    pub fn nonce_key(&self) -> Option<String> {
        match self {
            SigningPayload::Message { nonce, .. } => nonce.map(|n| n.to_string()),
            SigningPayload::EvmTransfer {
                chain_id, nonce, ..
            } => Some(format!("evm-{chain_id}-{nonce}")),
            // Two spends of one coin exclude each other on chain: the coin is its own nonce.
            // A Safe's nonce, like an account's: one transaction per nonce.
            SigningPayload::SafeTransfer {
                chain_id,
                safe,
                nonce,
                ..
            } => Some(format!("safe-{chain_id}-{safe}-{nonce}")),
            SigningPayload::ExchangeWithdrawal { .. } | SigningPayload::UtxoTransfer { .. } => None,
        }
    }

    /// The schemes this payload may be signed with, if the kind fixes them: an EVM
    /// transfer is secp256k1 ECDSA; an exchange's withdraw request is signed by its API key,
    /// Ed25519 (Binance, Coinbase EdDSA) or P-256 (Coinbase ES256).
    pub fn allowed_schemes(&self) -> Option<&'static [Scheme]> {
        match self {
            SigningPayload::Message { .. } => None,
            SigningPayload::EvmTransfer { .. } => Some(&[Scheme::EcdsaSecp256k1]),
            SigningPayload::ExchangeWithdrawal { .. } => {
                Some(&[Scheme::Ed25519, Scheme::EcdsaP256])
            }
            SigningPayload::UtxoTransfer { .. } | SigningPayload::SafeTransfer { .. } => None,
        }
    }

    /// The EVM transaction an [`SigningPayload::EvmTransfer`] describes.
    pub fn evm_transfer(&self) -> Option<EvmTransfer> {
        match self {
            SigningPayload::EvmTransfer {
                chain_id,
                nonce,
                gas_limit,
                max_fee_per_gas,
                max_priority_fee_per_gas,
                asset,
                amount,
                recipient,
                ..
            } => Some(EvmTransfer {
                chain_id: *chain_id,
                nonce: *nonce,
                gas_limit: *gas_limit,
                fees: FeeCaps {
                    max_fee_per_gas: *max_fee_per_gas,
                    max_priority_fee_per_gas: *max_priority_fee_per_gas,
                },
                asset: asset.clone(),
                recipient: *recipient,
                amount: *amount,
            }),
            _ => None,
        }
    }

    /// The digest every module must compute identically and approve: it fixes exactly what
    /// will be signed.
    pub fn digest(&self) -> [u8; 32] {
        match self {
            SigningPayload::Message { message, .. } => {
                Sha256::digest(crate::authority::tagged_message(message)).into()
            }
            SigningPayload::EvmTransfer { .. } => self
                .evm_transfer()
                .map(|t| t.sighash().0)
                .unwrap_or_default(),
            SigningPayload::ExchangeWithdrawal {
                request,
                body: None,
                ..
            } => Sha256::digest(request.as_bytes()).into(),
            // The request's length first: no (request, body) split of one byte string gives
            // the digest of another.
            SigningPayload::ExchangeWithdrawal {
                request,
                body: Some(body),
                ..
            } => {
                let mut h = Sha256::new();
                h.update(EXCHANGE_BODY_TAG);
                h.update((request.len() as u64).to_be_bytes());
                h.update(request.as_bytes());
                h.update(body.as_bytes());
                h.finalize().into()
            }
            SigningPayload::SafeTransfer { .. } => self
                .safe_transaction()
                .map(|t| t.hash().0)
                .unwrap_or_default(),
            SigningPayload::UtxoTransfer { psbt, .. } => {
                let mut h = Sha256::new();
                h.update(UTXO_SPEND_TAG);
                h.update(psbt);
                h.finalize().into()
            }
        }
    }

    /// The bytes a threshold wallet's signing run `input` signs for a
    /// [`SigningPayload::UtxoTransfer`]: that input's signature hash (BIP-143 for a P2WPKH
    /// wallet of an ECDSA key, BIP-341 key path for a P2TR wallet of a FROST Taproot key),
    /// computed from the PSBT. Every other payload has one run, input 0: its
    /// [`SigningPayload::signing_input`].
    pub fn signing_input_of(
        &self,
        scheme: Scheme,
        public_key: &[u8],
        input: u32,
    ) -> Result<Vec<u8>, TypesError> {
        let SigningPayload::UtxoTransfer { .. } = self else {
            return match input {
                0 => Ok(self.signing_input(scheme)),
                i => Err(TypesError::InvalidPayload(format!(
                    "this payload has one signing input, not input {i}"
                ))),
            };
        };
        let script = threshold_wallet_script(scheme, public_key)?;
        let psbt = self
            .psbt()
            .ok_or_else(|| TypesError::InvalidPayload("the PSBT does not parse".into()))?;
        let hashes = concord_chain::utxo::sighashes(&psbt, &script)
            .map_err(|e| TypesError::InvalidPayload(e.to_string()))?;
        hashes
            .get(input as usize)
            .map(|h| h.to_vec())
            .ok_or_else(|| {
                TypesError::InvalidPayload(format!(
                    "the spend has {} inputs; there is no input {input}",
                    hashes.len()
                ))
            })
    }

    /// How many signing runs a threshold wallet makes for this payload: one per input of a
    /// UTXO spend, one otherwise.
    pub fn signing_runs(&self) -> usize {
        match self {
            SigningPayload::UtxoTransfer { .. } => self.psbt().map_or(1, |p| p.inputs.len()),
            _ => 1,
        }
    }

    /// The bytes the threshold protocol signs under `scheme`: the 32-byte digest for ECDSA
    /// (for an EVM transfer, its signing hash), the message or request itself for FROST. A
    /// P-256 key signs ES256: SHA-256 of the request (a JWT's `header.payload`) or message.
    pub fn signing_input(&self, scheme: Scheme) -> Vec<u8> {
        match (self, scheme) {
            (_, Scheme::EcdsaSecp256k1) => self.digest().to_vec(),
            (SigningPayload::ExchangeWithdrawal { request, .. }, Scheme::EcdsaP256) => {
                Sha256::digest(request.as_bytes()).to_vec()
            }
            (SigningPayload::Message { message, .. }, Scheme::EcdsaP256) => {
                Sha256::digest(crate::authority::tagged_message(message)).to_vec()
            }
            (SigningPayload::Message { message, .. }, _) => {
                crate::authority::tagged_message(message)
            }
            (SigningPayload::ExchangeWithdrawal { request, .. }, _) => request.as_bytes().to_vec(),
            (SigningPayload::EvmTransfer { .. }, _)
            | (SigningPayload::UtxoTransfer { .. }, _)
            | (SigningPayload::SafeTransfer { .. }, _) => self.digest().to_vec(),
        }
    }
}

/// The script of a threshold wallet on a UTXO chain: P2WPKH of an ECDSA key (33 bytes
/// compressed), P2TR key path of a FROST Taproot output key (32 bytes x-only, the BIP-341
/// tweak already applied by the engine). An Ed25519 key has no UTXO script.
pub fn threshold_wallet_script(
    scheme: Scheme,
    public_key: &[u8],
) -> Result<concord_chain::utxo::WalletScript, TypesError> {
    let bad = |e: concord_chain::utxo::UtxoError| TypesError::InvalidPayload(e.0);
    match scheme {
        Scheme::EcdsaSecp256k1 => {
            concord_chain::utxo::WalletScript::p2wpkh(public_key).map_err(bad)
        }
        Scheme::SchnorrTaproot => concord_chain::utxo::WalletScript::p2tr(public_key).map_err(bad),
        Scheme::Ed25519 | Scheme::EcdsaP256 => Err(TypesError::InvalidPayload(format!(
            "an {scheme} wallet cannot spend on a UTXO chain"
        ))),
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(&s).map_err(serde::de::Error::custom)
    }
}

mod dec_u128 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SigningPayload {
        SigningPayload::Message {
            wallet: WalletId([1; 32]),
            message: b"hello".to_vec(),
            nonce: Some(7),
        }
    }

    fn transfer() -> SigningPayload {
        SigningPayload::EvmTransfer {
            transfer: "t-1".into(),
            wallet: WalletId([2; 32]),
            chain_id: 31337,
            nonce: 4,
            gas_limit: 21_000,
            max_fee_per_gas: 2_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
            asset: Asset::Native,
            amount: U256::from(10u64).pow(U256::from(18u64)),
            recipient: Address::repeat_byte(0x11),
            destination: Destination::ExchangeDeposit {
                exchange: "sim".into(),
                coin: "ETH".into(),
                network: "ETH".into(),
            },
        }
    }

    #[test]
    fn canonical_round_trip_and_digest() {
        let p = sample();
        let bytes = p.to_canonical();
        assert_eq!(SigningPayload::from_canonical(&bytes).unwrap(), p);
        let tagged = b"concord/message/v1\0hello".to_vec();
        assert_eq!(p.digest(), <[u8; 32]>::from(Sha256::digest(&tagged)));
        assert_eq!(p.signing_input(Scheme::EcdsaSecp256k1), p.digest().to_vec());
        assert_eq!(p.signing_input(Scheme::Ed25519), tagged);
        assert_eq!(p.signing_input(Scheme::SchnorrTaproot), tagged);
    }

    #[test]
    fn an_evm_transfer_digest_is_its_transaction_sighash() {
        let p = transfer();
        let bytes = p.to_canonical();
        assert_eq!(SigningPayload::from_canonical(&bytes).unwrap(), p);
        let tx = p.evm_transfer().unwrap();
        assert_eq!(p.digest(), tx.sighash().0);
        assert_eq!(p.nonce_key().as_deref(), Some("evm-31337-4"));
        // Any change of a field changes what is approved.
        let SigningPayload::EvmTransfer { .. } = &p else {
            unreachable!()
        };
        let mut other = p.clone();
        if let SigningPayload::EvmTransfer { recipient, .. } = &mut other {
            *recipient = Address::repeat_byte(0x12);
        }
        assert_ne!(other.digest(), p.digest());
    }

    #[test]
    fn non_canonical_and_unknown_fields_are_refused() {
        let bytes = String::from_utf8(sample().to_canonical()).unwrap();
        let spaced = bytes.replace(',', ", ");
        let err = SigningPayload::from_canonical(spaced.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("canonical"), "{err}");
        let extra = bytes.replace("}", ",\"to\":\"x\"}");
        assert!(SigningPayload::from_canonical(extra.as_bytes()).is_err());
        assert!(SigningPayload::from_canonical(b"{").is_err());
        // An address in another letter case is not the canonical form (one encoding, one
        // digest input, whatever case a proposer writes).
        let mut p = transfer();
        if let SigningPayload::EvmTransfer { recipient, .. } = &mut p {
            *recipient = Address::repeat_byte(0xab);
        }
        let t = String::from_utf8(p.to_canonical()).unwrap();
        assert!(t.contains(&"ab".repeat(20)), "{t}");
        let upper = t.replace(&"ab".repeat(20), &"AB".repeat(20));
        assert!(SigningPayload::from_canonical(upper.as_bytes()).is_err());
    }

    #[test]
    fn oversized_message_and_zero_transfer_are_refused() {
        let p = SigningPayload::Message {
            wallet: WalletId([0; 32]),
            message: vec![0; MAX_MESSAGE_LEN + 1],
            nonce: None,
        };
        let err = SigningPayload::from_canonical(&p.to_canonical()).unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{err}");
        let mut t = transfer();
        if let SigningPayload::EvmTransfer { amount, .. } = &mut t {
            *amount = U256::ZERO;
        }
        let err = SigningPayload::from_canonical(&t.to_canonical()).unwrap_err();
        assert!(err.to_string().contains("zero"), "{err}");
    }

    #[test]
    fn a_utxo_transfer_is_canonical_and_its_digest_fixes_the_psbt() {
        use concord_chain::utxo::bitcoin::{
            Amount, OutPoint, ScriptBuf, Transaction, TxIn, TxOut, Txid, absolute::LockTime,
            hashes::Hash, transaction::Version,
        };
        let tx = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint {
                    txid: Txid::from_byte_array([1; 32]),
                    vout: 0,
                },
                ..Default::default()
            }],
            output: vec![TxOut {
                value: Amount::from_sat(1000),
                script_pubkey: ScriptBuf::new(),
            }],
        };
        let psbt = concord_chain::utxo::bitcoin::Psbt::from_unsigned_tx(tx).unwrap();
        let p = SigningPayload::UtxoTransfer {
            transfer: "t-1".into(),
            wallet: WalletId([3; 32]),
            chain: "ltc-regtest".into(),
            psbt: psbt.serialize(),
            amount: 1000,
            destination: Destination::ExchangeDeposit {
                exchange: "sim".into(),
                coin: "LTC".into(),
                network: "LTC".into(),
            },
        };
        let bytes = p.to_canonical();
        assert_eq!(SigningPayload::from_canonical(&bytes).unwrap(), p);
        assert_eq!(p.psbt().unwrap(), psbt);
        assert_eq!(p.nonce_key(), None);
        // The digest is the tagged hash of the PSBT: another PSBT, another digest.
        let mut other = psbt.clone();
        other.unsigned_tx.output[0].value = Amount::from_sat(999);
        let mut q = p.clone();
        if let SigningPayload::UtxoTransfer { psbt, .. } = &mut q {
            *psbt = other.serialize();
        }
        assert_ne!(p.digest(), q.digest());
        let expected: [u8; 32] =
            Sha256::digest([UTXO_SPEND_TAG, psbt.serialize().as_slice()].concat()).into();
        assert_eq!(p.digest(), expected);
        // Bytes that are not a PSBT, and a zero amount, are refused at parsing.
        let mut bad = p.clone();
        if let SigningPayload::UtxoTransfer { psbt, .. } = &mut bad {
            *psbt = vec![1, 2, 3];
        }
        let e = SigningPayload::from_canonical(&bad.to_canonical()).unwrap_err();
        assert!(e.to_string().contains("does not parse"), "{e}");
        let mut trailing = p.clone();
        if let SigningPayload::UtxoTransfer { psbt, .. } = &mut trailing {
            psbt.push(0);
        }
        if let Ok(q) = SigningPayload::from_canonical(&trailing.to_canonical()) {
            panic!("a PSBT with a trailing byte was taken: {q:?}");
        }
        let mut zero = p.clone();
        if let SigningPayload::UtxoTransfer { amount, .. } = &mut zero {
            *amount = 0;
        }
        assert!(SigningPayload::from_canonical(&zero.to_canonical()).is_err());
    }

    /// A threshold wallet's run `i` signs input `i`'s hash, computed from the PSBT for the
    /// wallet's own script (P2WPKH of its key here); an index the spend lacks, a payload of
    /// one input asked for another, and an Ed25519 wallet are refused.
    #[test]
    fn each_input_of_a_threshold_spend_has_its_own_signing_input() {
        use concord_chain::utxo::bitcoin::secp256k1::{Secp256k1, SecretKey};
        use concord_chain::utxo::bitcoin::{Amount, FeeRate, OutPoint, TxOut, Txid, hashes::Hash};
        use concord_chain::utxo::{SpendRequest, Utxo, UtxoNetwork, WalletScript, build_spend};
        let key = SecretKey::from_slice(&[7; 32])
            .unwrap()
            .public_key(&Secp256k1::new())
            .serialize();
        let wallet = WalletScript::p2wpkh(&key).unwrap();
        let coin = |n: u8| Utxo {
            outpoint: OutPoint {
                txid: Txid::from_byte_array([n; 32]),
                vout: 0,
            },
            txout: TxOut {
                value: Amount::from_sat(60_000),
                script_pubkey: wallet.script_pubkey(),
            },
        };
        let net = UtxoNetwork::LitecoinRegtest;
        let psbt = build_spend(&SpendRequest {
            network: net,
            wallet: &wallet,
            available: &[coin(1), coin(2)],
            to: wallet.script_pubkey(),
            amount: Amount::from_sat(100_000),
            fee_rate: FeeRate::from_sat_per_vb(2).unwrap(),
        })
        .unwrap();
        assert_eq!(psbt.inputs.len(), 2);
        let p = SigningPayload::UtxoTransfer {
            transfer: "t-2".into(),
            wallet: WalletId([4; 32]),
            chain: "ltc-regtest".into(),
            psbt: psbt.serialize(),
            amount: 100_000,
            destination: Destination::ExchangeDeposit {
                exchange: "sim".into(),
                coin: "LTC".into(),
                network: "LTC".into(),
            },
        };
        assert_eq!(p.signing_runs(), 2);
        let hashes = concord_chain::utxo::sighashes(&psbt, &wallet).unwrap();
        for (i, h) in hashes.iter().enumerate() {
            assert_eq!(
                p.signing_input_of(Scheme::EcdsaSecp256k1, &key, i as u32)
                    .unwrap(),
                h.to_vec()
            );
        }
        assert_ne!(hashes[0], hashes[1]);
        let e = p
            .signing_input_of(Scheme::EcdsaSecp256k1, &key, 2)
            .unwrap_err();
        assert!(e.to_string().contains("no input 2"), "{e}");
        let e = p
            .signing_input_of(Scheme::Ed25519, &[0; 32], 0)
            .unwrap_err();
        assert!(e.to_string().contains("ed25519"), "{e}");
        let m = SigningPayload::Message {
            wallet: WalletId([4; 32]),
            message: b"hi".to_vec(),
            nonce: None,
        };
        assert_eq!(m.signing_runs(), 1);
        assert_eq!(
            m.signing_input_of(Scheme::Ed25519, &[0; 32], 0).unwrap(),
            m.signing_input(Scheme::Ed25519)
        );
        assert!(m.signing_input_of(Scheme::Ed25519, &[0; 32], 1).is_err());
    }
}
