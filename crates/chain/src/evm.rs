//! EVM transactions from threshold signatures: addresses from group keys, EIP-1559 transfers
//! (native or ERC-20), their signing hash, and attaching a 65-byte `r || s || v` signature.

use alloy::consensus::transaction::SignerRecoverable;
use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::{Decodable2718, Encodable2718};
use alloy::primitives::{Address, B256, Bytes, Signature, TxKind, U256, keccak256};
use alloy::sol_types::SolCall;
use serde::{Deserialize, Serialize};

use crate::ChainError;
use crate::erc20::IERC20;

/// Half the secp256k1 group order: the largest `s` Ethereum accepts (EIP-2).
const SECP256K1N_HALF: U256 = U256::from_be_bytes([
    0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0x5D, 0x57, 0x6E, 0x73, 0x57, 0xA4, 0x50, 0x1D, 0xDF, 0xE9, 0x2F, 0x46, 0x68, 0x1B, 0x20, 0xA0,
]);

/// The EVM address of a secp256k1 public key given in SEC1 form, compressed (33 bytes) or
/// uncompressed (65 bytes): the last 20 bytes of the keccak-256 of the uncompressed point.
pub fn evm_address(public_key_sec1: &[u8]) -> Result<Address, ChainError> {
    let len = public_key_sec1.len();
    if len != 33 && len != 65 {
        return Err(ChainError::InvalidPublicKey {
            len,
            reason: "a SEC1 key is 33 bytes (compressed) or 65 bytes (uncompressed)".into(),
        });
    }
    let key = k256::PublicKey::from_sec1_bytes(public_key_sec1).map_err(|_| {
        ChainError::InvalidPublicKey {
            len,
            reason: "the bytes are not a point on the curve".into(),
        }
    })?;
    let point = k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&key, false);
    let digest = keccak256(&point.as_bytes()[1..]);
    Ok(Address::from_slice(&digest[12..]))
}

/// What a transfer moves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Asset {
    /// The chain's own coin (ether on Ethereum).
    Native,
    /// An ERC-20 token.
    Erc20 {
        /// The token contract.
        token: Address,
    },
}

/// EIP-1559 fee caps, in wei per gas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeCaps {
    /// The most the sender pays per gas, base fee included.
    pub max_fee_per_gas: u128,
    /// The most the sender tips the block producer per gas.
    pub max_priority_fee_per_gas: u128,
}

/// A transfer from a wallet, described by everything that goes into its transaction. Every
/// module rebuilds the same transaction (and so the same [`EvmTransfer::sighash`]) from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvmTransfer {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// The wallet's nonce for this transaction.
    pub nonce: u64,
    /// Gas limit (see [`EvmTransfer::default_gas_limit`]).
    pub gas_limit: u64,
    /// Fee caps.
    pub fees: FeeCaps,
    /// What is moved.
    pub asset: Asset,
    /// Who receives it.
    pub recipient: Address,
    /// How much, in the asset's smallest unit (wei, or token base units).
    pub amount: U256,
}

impl EvmTransfer {
    /// The unsigned EIP-1559 transaction. Native: to the recipient with `value = amount` and
    /// no data. ERC-20: to the token with value 0 and the data `transfer(recipient, amount)`.
    pub fn unsigned(&self) -> TxEip1559 {
        let (to, value, input) = match &self.asset {
            Asset::Native => (self.recipient, self.amount, Bytes::new()),
            Asset::Erc20 { token } => {
                let call = IERC20::transferCall {
                    to: self.recipient,
                    value: self.amount,
                };
                (*token, U256::ZERO, Bytes::from(call.abi_encode()))
            }
        };
        TxEip1559 {
            chain_id: self.chain_id,
            nonce: self.nonce,
            gas_limit: self.gas_limit,
            max_fee_per_gas: self.fees.max_fee_per_gas,
            max_priority_fee_per_gas: self.fees.max_priority_fee_per_gas,
            to: TxKind::Call(to),
            value,
            access_list: Default::default(),
            input,
        }
    }

    /// The EIP-1559 signing hash: keccak-256 of `0x02 || rlp(fields)`. This is the digest the
    /// threshold engine signs.
    pub fn sighash(&self) -> B256 {
        self.unsigned().signature_hash()
    }

    /// A gas limit that is always enough: 21 000 for a native transfer; 100 000 for an ERC-20
    /// `transfer` (a standard token needs about 35 000 to 52 000 gas; unused gas is refunded).
    pub fn default_gas_limit(asset: &Asset) -> u64 {
        match asset {
            Asset::Native => 21_000,
            Asset::Erc20 { .. } => 100_000,
        }
    }

    /// Attaches a 65-byte `r || s || v` signature (`v` is the recovery id 0 or 1; 27 and 28
    /// are accepted too) to the transaction, recovers the sender and refuses unless it is
    /// `expected_sender`. High-s signatures are refused (the chain would refuse them too).
    pub fn attach(
        &self,
        signature: &[u8],
        expected_sender: Address,
    ) -> Result<SignedTransaction, ChainError> {
        let signature = parse_signature(signature)?;
        let unsigned = self.unsigned();
        let recovered = signature
            .recover_address_from_prehash(&unsigned.signature_hash())
            .map_err(|e| ChainError::InvalidSignature {
                reason: format!("no public key can be recovered from it ({e})"),
            })?;
        if recovered != expected_sender {
            return Err(ChainError::WrongSender {
                expected: expected_sender,
                recovered,
            });
        }
        let envelope = TxEnvelope::from(unsigned.into_signed(signature));
        Ok(SignedTransaction {
            raw: envelope.encoded_2718(),
            hash: *envelope.tx_hash(),
            sender: recovered,
        })
    }
}

/// Parses `r || s || v`, checking the encoding rules Ethereum applies.
fn parse_signature(bytes: &[u8]) -> Result<Signature, ChainError> {
    let bytes: &[u8; 65] = bytes.try_into().map_err(|_| ChainError::InvalidSignature {
        reason: format!(
            "it is {} bytes, not the 65 bytes of r || s || v",
            bytes.len()
        ),
    })?;
    let parity = match bytes[64] {
        0 | 27 => false,
        1 | 28 => true,
        v => {
            return Err(ChainError::InvalidSignature {
                reason: format!("its recovery id v is {v}; only 0, 1, 27 and 28 are valid"),
            });
        }
    };
    let r = U256::from_be_slice(&bytes[..32]);
    let s = U256::from_be_slice(&bytes[32..64]);
    if r.is_zero() || s.is_zero() {
        return Err(ChainError::InvalidSignature {
            reason: "r or s is zero".into(),
        });
    }
    if s > SECP256K1N_HALF {
        return Err(ChainError::HighS);
    }
    Ok(Signature::new(r, s, parity))
}

/// A signed transaction, ready to broadcast.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTransaction {
    /// The EIP-2718 envelope bytes (what `eth_sendRawTransaction` takes).
    #[serde(with = "hex::serde")]
    pub raw: Vec<u8>,
    /// The transaction hash (keccak-256 of `raw`).
    pub hash: B256,
    /// The sender, recovered from the signature.
    pub sender: Address,
}

impl SignedTransaction {
    /// Decodes EIP-2718 envelope bytes (any transaction type) and recovers the sender.
    /// High-s signatures are refused.
    pub fn decode(raw: &[u8]) -> Result<Self, ChainError> {
        let mut buf = raw;
        let envelope = TxEnvelope::decode_2718(&mut buf).map_err(|e| ChainError::Decode {
            reason: e.to_string(),
        })?;
        if !buf.is_empty() {
            return Err(ChainError::Decode {
                reason: format!("{} bytes follow the transaction", buf.len()),
            });
        }
        if envelope.signature().s() > SECP256K1N_HALF {
            return Err(ChainError::HighS);
        }
        let sender = envelope
            .recover_signer()
            .map_err(|e| ChainError::InvalidSignature {
                reason: format!("no sender can be recovered from it ({e})"),
            })?;
        Ok(Self {
            raw: raw.to_vec(),
            hash: *envelope.tx_hash(),
            sender,
        })
    }

    /// The sender's account nonce the transaction uses.
    pub fn nonce(&self) -> Result<u64, ChainError> {
        use alloy::consensus::Transaction;
        let mut buf = self.raw.as_slice();
        TxEnvelope::decode_2718(&mut buf)
            .map(|e| e.nonce())
            .map_err(|e| ChainError::Decode {
                reason: e.to_string(),
            })
    }
}

/// The nonce for a wallet's next transaction: the larger of the chain's pending nonce and the
/// wallet's own record of the next nonce (which covers transactions signed but not yet seen
/// by this node).
pub fn next_nonce(chain_pending: u64, recorded_next: Option<u64>) -> u64 {
    chain_pending.max(recorded_next.unwrap_or(0))
}

/// Fee caps a module or the coordinator accepts, in wei per gas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeePolicy {
    /// The highest acceptable `max_fee_per_gas`.
    pub max_fee_per_gas: u128,
    /// The highest acceptable `max_priority_fee_per_gas`.
    pub max_priority_fee_per_gas: u128,
}

impl FeePolicy {
    /// Refuses fees above a cap (naming the field, the value and the cap), and a priority fee
    /// above the total fee cap (no EIP-1559 chain accepts that transaction).
    pub fn check(&self, fees: &FeeCaps) -> Result<(), ChainError> {
        if fees.max_fee_per_gas > self.max_fee_per_gas {
            return Err(ChainError::FeeCapExceeded {
                field: "max_fee_per_gas",
                value: fees.max_fee_per_gas,
                cap: self.max_fee_per_gas,
            });
        }
        if fees.max_priority_fee_per_gas > self.max_priority_fee_per_gas {
            return Err(ChainError::FeeCapExceeded {
                field: "max_priority_fee_per_gas",
                value: fees.max_priority_fee_per_gas,
                cap: self.max_priority_fee_per_gas,
            });
        }
        if fees.max_priority_fee_per_gas > fees.max_fee_per_gas {
            return Err(ChainError::PriorityAboveMax {
                priority: fees.max_priority_fee_per_gas,
                max: fees.max_fee_per_gas,
            });
        }
        Ok(())
    }
}
