//! The EVM adapter against the real anvil node: transactions signed exactly as the threshold
//! engine signs them (a recoverable prehash signature, low s, `r || s || v`) must be accepted
//! by the chain, move exactly what they say, and every refusal must be classified right.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{U64, hex};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionReceipt;
use concord_chain::erc20::IERC20;
use concord_chain::{
    Address, Asset, B256, ChainError, EvmClient, EvmTransfer, FeeCaps, FeePolicy,
    SignedTransaction, TxStatus, U256, evm_address, next_nonce, test_token,
};
use k256::ecdsa::{RecoveryId, SigningKey};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

const DEV0_KEY: [u8; 32] = hex!("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80");
const DEV0_ADDRESS: Address =
    alloy::primitives::address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
const ETHER: u128 = 1_000_000_000_000_000_000;

fn anvil(extra_args: &[&str]) -> AnvilInstance {
    let path = concord_chain::anvil::anvil_binary(|msg| eprintln!("{msg}")).unwrap();
    Anvil::at(path).args(extra_args.iter().copied()).spawn()
}

fn dev0() -> SigningKey {
    SigningKey::from_bytes((&DEV0_KEY).into()).unwrap()
}

fn fresh_key(seed: u64) -> SigningKey {
    SigningKey::random(&mut ChaCha20Rng::seed_from_u64(seed))
}

fn address_of(key: &SigningKey) -> Address {
    evm_address(key.verifying_key().to_encoded_point(true).as_bytes()).unwrap()
}

/// Signs a digest the way the threshold engine's output looks: recoverable prehash ECDSA,
/// s normalized to the lower half (flipping the recovery id), 65 bytes `r || s || v`.
fn sign_like_engine(key: &SigningKey, digest: B256) -> [u8; 65] {
    let (sig, recid) = key.sign_prehash_recoverable(digest.as_slice()).unwrap();
    let (sig, recid) = match sig.normalize_s() {
        Some(low) => (
            low,
            RecoveryId::new(!recid.is_y_odd(), recid.is_x_reduced()),
        ),
        None => (sig, recid),
    };
    let mut out = [0u8; 65];
    out[..64].copy_from_slice(&sig.to_bytes());
    out[64] = recid.to_byte();
    out
}

/// Builds, signs, attaches and broadcasts a transfer from `key`; returns the signed tx.
async fn send(
    client: &EvmClient,
    key: &SigningKey,
    asset: Asset,
    recipient: Address,
    amount: U256,
) -> Result<SignedTransaction, ChainError> {
    let sender = address_of(key);
    let transfer = EvmTransfer {
        chain_id: client.chain_id().await?,
        nonce: next_nonce(client.pending_nonce(sender).await?, None),
        gas_limit: EvmTransfer::default_gas_limit(&asset),
        fees: client.suggest_fees().await?,
        asset,
        recipient,
        amount,
    };
    let signed = transfer.attach(&sign_like_engine(key, transfer.sighash()), sender)?;
    assert_eq!(client.broadcast(&signed).await?, signed.hash);
    Ok(signed)
}

async fn receipt(client: &EvmClient, hash: B256) -> TransactionReceipt {
    client
        .wait_for_confirmations(hash, 1, Duration::from_secs(10))
        .await
        .unwrap();
    client
        .provider()
        .get_transaction_receipt(hash)
        .await
        .unwrap()
        .unwrap()
}

async fn mine(client: &EvmClient, blocks: u64) {
    let _: serde_json::Value = client
        .provider()
        .raw_request("anvil_mine".into(), (U64::from(blocks),))
        .await
        .unwrap();
}

fn transfer_template() -> EvmTransfer {
    EvmTransfer {
        chain_id: 31337,
        nonce: 0,
        gas_limit: 21_000,
        fees: FeeCaps {
            max_fee_per_gas: 2_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
        },
        asset: Asset::Native,
        recipient: Address::repeat_byte(0x42),
        amount: U256::from(12_345u64),
    }
}

#[test]
fn evm_address_of_the_dev_key_compressed_and_uncompressed() {
    let point = dev0().verifying_key().to_encoded_point(false);
    assert_eq!(point.as_bytes().len(), 65);
    assert_eq!(evm_address(point.as_bytes()).unwrap(), DEV0_ADDRESS);
    let compressed = dev0().verifying_key().to_encoded_point(true);
    assert_eq!(compressed.as_bytes().len(), 33);
    assert_eq!(evm_address(compressed.as_bytes()).unwrap(), DEV0_ADDRESS);

    // Raw 64-byte keys, truncated keys and points off the curve are refused.
    assert!(matches!(
        evm_address(&point.as_bytes()[1..]),
        Err(ChainError::InvalidPublicKey { len: 64, .. })
    ));
    let mut off_curve = point.as_bytes().to_vec();
    off_curve[64] ^= 1;
    assert!(matches!(
        evm_address(&off_curve),
        Err(ChainError::InvalidPublicKey { len: 65, .. })
    ));
}

#[tokio::test]
async fn native_transfer_signed_like_the_engine_moves_exactly_amount_plus_fee() {
    let node = anvil(&[]);
    let client = EvmClient::new(&node.endpoint()).unwrap();
    let wallet = fresh_key(1);
    let wallet_address = address_of(&wallet);
    let recipient = address_of(&fresh_key(2));

    // Fund the wallet from dev account 0, through the same path.
    let funding = send(
        &client,
        &dev0(),
        Asset::Native,
        wallet_address,
        U256::from(ETHER),
    )
    .await
    .unwrap();
    assert_eq!(funding.sender, DEV0_ADDRESS);
    assert!(receipt(&client, funding.hash).await.status());
    assert_eq!(
        client.balance(wallet_address).await.unwrap(),
        U256::from(ETHER)
    );

    let amount = U256::from(123_456_789_000_000u64);
    let before_wallet = client.balance(wallet_address).await.unwrap();
    let before_recipient = client.balance(recipient).await.unwrap();
    let signed = send(&client, &wallet, Asset::Native, recipient, amount)
        .await
        .unwrap();
    assert_eq!(signed.sender, wallet_address);
    let receipt = receipt(&client, signed.hash).await;
    assert!(receipt.status());
    assert_eq!(receipt.from, wallet_address);
    assert_eq!(receipt.to, Some(recipient));
    assert_eq!(receipt.gas_used, 21_000);
    let fee = U256::from(receipt.gas_used) * U256::from(receipt.effective_gas_price);
    assert!(fee > U256::ZERO);
    assert_eq!(
        client.balance(wallet_address).await.unwrap(),
        before_wallet - amount - fee
    );
    assert_eq!(
        client.balance(recipient).await.unwrap(),
        before_recipient + amount
    );
    assert_eq!(client.pending_nonce(wallet_address).await.unwrap(), 1);

    // The node's own copy of the transaction is byte-for-byte ours.
    let decoded = SignedTransaction::decode(&signed.raw).unwrap();
    assert_eq!(decoded, signed);
    match client.status(signed.hash).await.unwrap() {
        TxStatus::Included {
            block,
            confirmations,
            success,
        } => {
            assert_eq!(Some(block), receipt.block_number);
            assert_eq!(confirmations, 1);
            assert!(success);
        }
        other => panic!("expected the transfer to be included, got {other:?}"),
    }
}

#[tokio::test]
async fn erc20_transfer_moves_tokens_and_emits_transfer() {
    let node = anvil(&[]);
    let client = EvmClient::new(&node.endpoint()).unwrap();
    let token = test_token::deploy(&node.endpoint(), &DEV0_KEY)
        .await
        .unwrap();
    let supply = U256::from(1_000_000_000u64) * U256::from(ETHER);
    assert_eq!(
        client.token_balance(token, DEV0_ADDRESS).await.unwrap(),
        supply
    );

    let wallet = fresh_key(3);
    let wallet_address = address_of(&wallet);
    let recipient = address_of(&fresh_key(4));
    // Gas money and tokens for the wallet, both sent through the same path from account 0.
    let gas = send(
        &client,
        &dev0(),
        Asset::Native,
        wallet_address,
        U256::from(ETHER),
    )
    .await
    .unwrap();
    let tokens_in = U256::from(500u64) * U256::from(ETHER);
    let funding = send(
        &client,
        &dev0(),
        Asset::Erc20 { token },
        wallet_address,
        tokens_in,
    )
    .await
    .unwrap();
    assert!(receipt(&client, gas.hash).await.status());
    assert!(receipt(&client, funding.hash).await.status());
    assert_eq!(
        client.token_balance(token, wallet_address).await.unwrap(),
        tokens_in
    );

    let amount = U256::from(123u64) * U256::from(ETHER) + U256::from(7u64);
    let eth_before = client.balance(wallet_address).await.unwrap();
    let signed = send(&client, &wallet, Asset::Erc20 { token }, recipient, amount)
        .await
        .unwrap();
    let receipt = receipt(&client, signed.hash).await;
    assert!(receipt.status());
    assert_eq!(receipt.to, Some(token));
    assert!(receipt.gas_used < EvmTransfer::default_gas_limit(&Asset::Erc20 { token }));
    assert_eq!(
        client.token_balance(token, wallet_address).await.unwrap(),
        tokens_in - amount
    );
    assert_eq!(
        client.token_balance(token, recipient).await.unwrap(),
        amount
    );
    assert_eq!(
        client.token_balance(token, DEV0_ADDRESS).await.unwrap(),
        supply - tokens_in
    );
    // No ether moved except the fee.
    let fee = U256::from(receipt.gas_used) * U256::from(receipt.effective_gas_price);
    assert_eq!(
        client.balance(wallet_address).await.unwrap(),
        eth_before - fee
    );
    assert_eq!(client.balance(recipient).await.unwrap(), U256::ZERO);

    let transfers: Vec<_> = receipt
        .logs()
        .iter()
        .map(|log| log.log_decode::<IERC20::Transfer>().unwrap())
        .collect();
    assert_eq!(transfers.len(), 1);
    assert_eq!(transfers[0].address(), token);
    let event = &transfers[0].inner.data;
    assert_eq!(event.from, wallet_address);
    assert_eq!(event.to, recipient);
    assert_eq!(event.value, amount);
}

#[tokio::test]
async fn broadcast_is_idempotent_in_the_pool_and_after_mining() {
    let node = anvil(&["--no-mining"]);
    let client = EvmClient::new(&node.endpoint()).unwrap();
    let recipient = address_of(&fresh_key(5));
    let signed = send(&client, &dev0(), Asset::Native, recipient, U256::from(1u64))
        .await
        .unwrap();
    assert_eq!(client.status(signed.hash).await.unwrap(), TxStatus::Pending);
    // Again while it sits in the pool.
    assert_eq!(client.broadcast(&signed).await.unwrap(), signed.hash);
    assert_eq!(client.broadcast(&signed).await.unwrap(), signed.hash);
    mine(&client, 1).await;
    assert!(matches!(
        client.status(signed.hash).await.unwrap(),
        TxStatus::Included {
            confirmations: 1,
            success: true,
            ..
        }
    ));
    // Again once mined: the node says "nonce too low", but it is this very transaction.
    assert_eq!(client.broadcast(&signed).await.unwrap(), signed.hash);
    assert_eq!(client.balance(recipient).await.unwrap(), U256::from(1u64));
}

#[test]
fn a_signature_by_another_key_is_refused_naming_the_recovered_address() {
    let transfer = transfer_template();
    let wallet = address_of(&fresh_key(6));
    let intruder_key = fresh_key(7);
    let intruder = address_of(&intruder_key);
    let signature = sign_like_engine(&intruder_key, transfer.sighash());
    let err = transfer.attach(&signature, wallet).unwrap_err();
    match &err {
        ChainError::WrongSender {
            expected,
            recovered,
        } => {
            assert_eq!(*expected, wallet);
            assert_eq!(*recovered, intruder);
        }
        other => panic!("expected WrongSender, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains(&intruder.to_string()), "{text}");
    assert!(text.contains(&wallet.to_string()), "{text}");
    assert!(!err.retryable());

    // The right key's signature over another transfer's digest is refused the same way.
    let owner = fresh_key(6);
    let mut other = transfer.clone();
    other.amount += U256::from(1u64);
    let misdirected = sign_like_engine(&owner, other.sighash());
    assert!(matches!(
        transfer.attach(&misdirected, wallet),
        Err(ChainError::WrongSender { .. })
    ));
}

#[test]
fn signature_encodings_high_s_and_v_forms() {
    let transfer = transfer_template();
    let key = fresh_key(8);
    let sender = address_of(&key);
    let signature = sign_like_engine(&key, transfer.sighash());
    let signed = transfer.attach(&signature, sender).unwrap();

    // v as 27/28 gives the same transaction.
    let mut legacy_v = signature;
    legacy_v[64] += 27;
    assert_eq!(transfer.attach(&legacy_v, sender).unwrap(), signed);

    // The high-s twin (s' = n - s, parity flipped) verifies mathematically but is refused.
    let n = U256::from_be_slice(&hex!(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141"
    ));
    let s = U256::from_be_slice(&signature[32..64]);
    let mut high = signature;
    high[32..64].copy_from_slice(&(n - s).to_be_bytes::<32>());
    high[64] ^= 1;
    assert!(matches!(
        transfer.attach(&high, sender),
        Err(ChainError::HighS)
    ));

    // Wrong lengths, bad v, zero r.
    assert!(matches!(
        transfer.attach(&signature[..64], sender),
        Err(ChainError::InvalidSignature { .. })
    ));
    let mut bad_v = signature;
    bad_v[64] = 2;
    assert!(matches!(
        transfer.attach(&bad_v, sender),
        Err(ChainError::InvalidSignature { .. })
    ));
    let mut zero_r = signature;
    zero_r[..32].fill(0);
    assert!(matches!(
        transfer.attach(&zero_r, sender),
        Err(ChainError::InvalidSignature { .. })
    ));

    // Decoding refuses trailing bytes and garbage.
    let mut trailing = signed.raw.clone();
    trailing.push(0);
    assert!(matches!(
        SignedTransaction::decode(&trailing),
        Err(ChainError::Decode { .. })
    ));
    assert!(matches!(
        SignedTransaction::decode(&[0x02, 0xc0]),
        Err(ChainError::Decode { .. })
    ));
}

#[tokio::test]
async fn a_replayed_nonce_is_refused_and_not_retryable() {
    let node = anvil(&[]);
    let client = EvmClient::new(&node.endpoint()).unwrap();
    let key = dev0();
    let first = send(
        &client,
        &key,
        Asset::Native,
        Address::repeat_byte(1),
        U256::from(5u64),
    )
    .await
    .unwrap();
    assert!(receipt(&client, first.hash).await.status());

    // Another transaction with the same nonce (0).
    let mut replay = transfer_template();
    replay.fees = client.suggest_fees().await.unwrap();
    replay.amount = U256::from(6u64);
    let signed = replay
        .attach(&sign_like_engine(&key, replay.sighash()), DEV0_ADDRESS)
        .unwrap();
    assert_ne!(signed.hash, first.hash);
    let err = client.broadcast(&signed).await.unwrap_err();
    assert!(
        matches!(err, ChainError::NonceTooLow { hash, .. } if hash == signed.hash),
        "{err:?}"
    );
    assert!(!err.retryable());
    assert_eq!(client.status(signed.hash).await.unwrap(), TxStatus::Unknown);
}

#[tokio::test]
async fn node_refusals_are_classified() {
    let node = anvil(&[]);
    let client = EvmClient::new(&node.endpoint()).unwrap();
    let fees = client.suggest_fees().await.unwrap();

    let pauper = fresh_key(9);
    let mut transfer = transfer_template();
    transfer.fees = fees;
    let signed = transfer
        .attach(
            &sign_like_engine(&pauper, transfer.sighash()),
            address_of(&pauper),
        )
        .unwrap();
    let err = client.broadcast(&signed).await.unwrap_err();
    assert!(
        matches!(err, ChainError::InsufficientFunds { .. }),
        "{err:?}"
    );
    assert!(!err.retryable());

    // Fees below the base fee: retryable with fresh fees.
    let mut cheap = transfer_template();
    cheap.fees = FeeCaps {
        max_fee_per_gas: 1,
        max_priority_fee_per_gas: 1,
    };
    let signed = cheap
        .attach(&sign_like_engine(&dev0(), cheap.sighash()), DEV0_ADDRESS)
        .unwrap();
    let err = client.broadcast(&signed).await.unwrap_err();
    assert!(matches!(err, ChainError::Underpriced { .. }), "{err:?}");
    assert!(err.retryable());

    // A gas limit below the intrinsic cost: refused for good.
    let mut starved = transfer_template();
    starved.fees = fees;
    starved.gas_limit = 20_000;
    let signed = starved
        .attach(&sign_like_engine(&dev0(), starved.sighash()), DEV0_ADDRESS)
        .unwrap();
    let err = client.broadcast(&signed).await.unwrap_err();
    assert!(matches!(err, ChainError::Rejected { .. }), "{err:?}");
    assert!(!err.retryable());
    assert!(err.to_string().contains("intrinsic gas"), "{err}");

    // A nonce far ahead: anvil queues it (Pending) rather than refusing it; either way it
    // must not be an error that claims the nonce is used.
    transfer.nonce = 5;
    let ahead = transfer
        .attach(&sign_like_engine(&dev0(), transfer.sighash()), DEV0_ADDRESS)
        .unwrap();
    match client.broadcast(&ahead).await {
        Ok(hash) => {
            assert_eq!(hash, ahead.hash);
            assert_eq!(client.status(hash).await.unwrap(), TxStatus::Pending);
        }
        Err(err) => {
            assert!(matches!(err, ChainError::NonceTooHigh { .. }), "{err:?}");
            assert!(err.retryable());
        }
    }
}

#[tokio::test]
async fn a_node_that_is_not_there_is_a_retryable_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = EvmClient::new(&format!("http://127.0.0.1:{port}/secret-api-key")).unwrap();
    let err = client.chain_id().await.unwrap_err();
    assert!(matches!(err, ChainError::Unreachable { .. }), "{err:?}");
    assert!(err.retryable());
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("secret-api-key"), "{text}");

    let transfer = transfer_template();
    let key = fresh_key(10);
    let signed = transfer
        .attach(
            &sign_like_engine(&key, transfer.sighash()),
            address_of(&key),
        )
        .unwrap();
    let err = client.broadcast(&signed).await.unwrap_err();
    assert!(err.retryable(), "{err:?}");

    assert!(matches!(
        EvmClient::new("not a url"),
        Err(ChainError::InvalidUrl { .. })
    ));
    assert!(matches!(
        EvmClient::new("ftp://127.0.0.1:1"),
        Err(ChainError::InvalidUrl { .. })
    ));
}

#[tokio::test]
async fn waits_for_three_confirmations_while_blocks_are_mined() {
    let node = anvil(&[]);
    let client = EvmClient::new(&node.endpoint())
        .unwrap()
        .with_poll_interval(Duration::from_millis(50));
    let signed = send(
        &client,
        &dev0(),
        Asset::Native,
        Address::repeat_byte(2),
        U256::from(9u64),
    )
    .await
    .unwrap();
    let included = client
        .wait_for_confirmations(signed.hash, 1, Duration::from_secs(5))
        .await
        .unwrap();
    let TxStatus::Included { block, .. } = included else {
        panic!("expected inclusion, got {included:?}");
    };

    // Not yet deep enough, and no blocks come: a retryable timeout naming the last status.
    let err = client
        .wait_for_confirmations(signed.hash, 3, Duration::from_millis(300))
        .await
        .unwrap_err();
    match &err {
        ChainError::NotConfirmed { depth, last, .. } => {
            assert_eq!(*depth, 3);
            assert!(matches!(
                last,
                TxStatus::Included {
                    confirmations: 1,
                    ..
                }
            ));
        }
        other => panic!("expected NotConfirmed, got {other:?}"),
    }
    assert!(err.retryable());

    let miner = client.clone();
    let mining = tokio::spawn(async move {
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            mine(&miner, 1).await;
        }
    });
    let start = Instant::now();
    let status = client
        .wait_for_confirmations(signed.hash, 3, Duration::from_secs(10))
        .await
        .unwrap();
    // Two blocks on top were needed, each 150 ms apart.
    assert!(start.elapsed() >= Duration::from_millis(250));
    match status {
        TxStatus::Included {
            block: b,
            confirmations,
            success,
        } => {
            assert_eq!(b, block);
            assert!(confirmations >= 3, "{confirmations}");
            assert!(success);
            assert!(client.block_number().await.unwrap() >= block + 2);
        }
        other => panic!("expected inclusion, got {other:?}"),
    }
    mining.await.unwrap();
}

#[tokio::test]
async fn a_transaction_for_another_chain_is_refused_by_the_node() {
    let node = anvil(&[]);
    let client = EvmClient::new(&node.endpoint()).unwrap();
    assert_eq!(client.chain_id().await.unwrap(), 31337);
    let mut transfer = transfer_template();
    transfer.chain_id = 1;
    transfer.fees = client.suggest_fees().await.unwrap();
    let signed = transfer
        .attach(&sign_like_engine(&dev0(), transfer.sighash()), DEV0_ADDRESS)
        .unwrap();
    let err = client.broadcast(&signed).await.unwrap_err();
    assert!(matches!(err, ChainError::WrongChainId { .. }), "{err:?}");
    assert!(!err.retryable());
    assert_eq!(client.pending_nonce(DEV0_ADDRESS).await.unwrap(), 0);
}

#[test]
fn fee_policy_and_nonce_choice() {
    let policy = FeePolicy {
        max_fee_per_gas: 100,
        max_priority_fee_per_gas: 10,
    };
    let ok = FeeCaps {
        max_fee_per_gas: 100,
        max_priority_fee_per_gas: 10,
    };
    policy.check(&ok).unwrap();
    let err = policy
        .check(&FeeCaps {
            max_fee_per_gas: 101,
            ..ok
        })
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("max_fee_per_gas") && text.contains("101") && text.contains("100"));
    let err = policy
        .check(&FeeCaps {
            max_priority_fee_per_gas: 11,
            ..ok
        })
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("max_priority_fee_per_gas") && text.contains("11") && text.contains("10")
    );
    assert!(matches!(
        policy.check(&FeeCaps {
            max_fee_per_gas: 5,
            max_priority_fee_per_gas: 6
        }),
        Err(ChainError::PriorityAboveMax { .. })
    ));

    assert_eq!(next_nonce(3, None), 3);
    assert_eq!(next_nonce(3, Some(7)), 7);
    assert_eq!(next_nonce(9, Some(7)), 9);
}

#[test]
fn seeded_properties_sighash_binds_every_field_and_decode_round_trips() {
    let mut rng = ChaCha20Rng::seed_from_u64(0x00C0_C02D);
    let random_address = |rng: &mut ChaCha20Rng| {
        let mut bytes = [0u8; 20];
        rng.fill_bytes(&mut bytes);
        Address::from(bytes)
    };
    for round in 0..48 {
        let asset = if rng.next_u32() % 2 == 0 {
            Asset::Native
        } else {
            Asset::Erc20 {
                token: random_address(&mut rng),
            }
        };
        let max_fee = u128::from(rng.next_u64()) + 1;
        let transfer = EvmTransfer {
            chain_id: rng.next_u64() >> 12,
            nonce: rng.next_u64() >> 8,
            gas_limit: EvmTransfer::default_gas_limit(&asset) + u64::from(rng.next_u32() % 1000),
            fees: FeeCaps {
                max_fee_per_gas: max_fee,
                max_priority_fee_per_gas: max_fee / 2,
            },
            asset: asset.clone(),
            recipient: random_address(&mut rng),
            amount: U256::from(rng.next_u64()) << (rng.next_u32() % 128),
        };
        let base = transfer.sighash();
        assert_eq!(base, transfer.clone().sighash(), "sighash is deterministic");

        let mut variants: Vec<EvmTransfer> = Vec::new();
        let mut v = transfer.clone();
        v.chain_id += 1;
        variants.push(v);
        let mut v = transfer.clone();
        v.nonce += 1;
        variants.push(v);
        let mut v = transfer.clone();
        v.gas_limit += 1;
        variants.push(v);
        let mut v = transfer.clone();
        v.fees.max_fee_per_gas += 1;
        variants.push(v);
        let mut v = transfer.clone();
        v.fees.max_priority_fee_per_gas += 1;
        variants.push(v);
        let mut v = transfer.clone();
        v.recipient = random_address(&mut rng);
        variants.push(v);
        let mut v = transfer.clone();
        v.amount += U256::from(1u64);
        variants.push(v);
        let mut v = transfer.clone();
        v.asset = match &asset {
            Asset::Native => Asset::Erc20 {
                token: transfer.recipient,
            },
            Asset::Erc20 { .. } => Asset::Native,
        };
        variants.push(v);
        if let Asset::Erc20 { .. } = asset {
            let mut v = transfer.clone();
            v.asset = Asset::Erc20 {
                token: random_address(&mut rng),
            };
            variants.push(v);
        }
        for variant in &variants {
            assert_ne!(variant.sighash(), base, "round {round}: {variant:?}");
        }

        let key = fresh_key(1000 + round);
        let sender = address_of(&key);
        let signed = transfer
            .attach(&sign_like_engine(&key, base), sender)
            .unwrap();
        let decoded = SignedTransaction::decode(&signed.raw).unwrap();
        assert_eq!(decoded, signed);
        assert_eq!(signed.raw[0], 0x02, "an EIP-1559 envelope");
        assert_eq!(signed.hash, alloy::primitives::keccak256(&signed.raw));

        // Records survive JSON.
        let json = serde_json::to_string(&transfer).unwrap();
        assert_eq!(
            serde_json::from_str::<EvmTransfer>(&json).unwrap(),
            transfer
        );
        let json = serde_json::to_string(&signed).unwrap();
        assert_eq!(
            serde_json::from_str::<SignedTransaction>(&json).unwrap(),
            signed
        );
    }
}
