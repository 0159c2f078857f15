//! Native multisig on EVM against the real anvil and the real Safe 1.5.0 contracts (npm
//! `@safe-global/safe-smart-account`): a 2-of-3 Safe owned by three modules' own keys moves
//! ETH once two owners signed the `SafeTx` hash each computed itself; the hash matches the
//! contract's own `getTransactionHash`; the nonce advances by one; a signature by a
//! non-owner, a single owner's signature and a replay are all refused by the contract.
//!
//! Keys here are made for the test run and worth nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{U256, hex};
use concord_chain::safe::{self, SafeTransaction, pack_signatures};
use concord_chain::{Address, B256, ChainError, EvmClient, evm_address};
use k256::ecdsa::SigningKey;

const DEV0_KEY: [u8; 32] = hex!("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80");
/// anvil's second dev account: the coordinator's gas account here.
const DEV1_KEY: [u8; 32] = hex!("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d");
const ETHER: u128 = 1_000_000_000_000_000_000;

fn anvil() -> AnvilInstance {
    let path = concord_chain::anvil::anvil_binary(|msg| eprintln!("{msg}")).unwrap();
    Anvil::at(path).spawn()
}

fn module_key(i: u8) -> SigningKey {
    SigningKey::from_bytes((&[i + 1; 32]).into()).unwrap()
}

fn address_of(key: &SigningKey) -> Address {
    evm_address(key.verifying_key().to_encoded_point(true).as_bytes()).unwrap()
}

/// A module signs the digest it computed: recoverable prehash ECDSA, `r || s || recovery id`.
fn owner_sign(key: &SigningKey, digest: B256) -> [u8; 65] {
    let (sig, recid) = key.sign_prehash_recoverable(digest.as_slice()).unwrap();
    let mut out = [0u8; 65];
    out[..64].copy_from_slice(&sig.to_bytes());
    out[64] = recid.to_byte();
    out
}

/// Funds an address with ETH from dev account 0 (anvil mines at once).
async fn fund(url: &str, to: Address, wei: u128) {
    let signer =
        alloy::signers::local::PrivateKeySigner::from_bytes(&B256::from(DEV0_KEY)).unwrap();
    use alloy::network::TransactionBuilder;
    use alloy::providers::{Provider, ProviderBuilder};
    let provider = ProviderBuilder::new()
        .wallet(alloy::network::EthereumWallet::from(signer))
        .connect_http(url.parse().unwrap());
    let tx = alloy::rpc::types::TransactionRequest::default()
        .with_to(to)
        .with_value(U256::from(wei));
    let receipt = provider
        .send_transaction(tx)
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
}

#[tokio::test]
async fn a_two_of_three_safe_moves_funds_only_with_two_owner_signatures() {
    let chain = anvil();
    let url = chain.endpoint();
    let client = EvmClient::new(&url).unwrap();
    let chain_id = client.chain_id().await.unwrap();
    let contracts = safe::artifacts(|m| eprintln!("{m}")).unwrap();
    let keys: Vec<SigningKey> = (0..3).map(module_key).collect();
    let owners: Vec<Address> = keys.iter().map(address_of).collect();
    let safe_address = safe::deploy(&url, &DEV0_KEY, &contracts, &owners, 2)
        .await
        .unwrap();
    let (nonce, on_chain_owners, threshold) = safe::state(&url, safe_address).await.unwrap();
    assert_eq!(nonce, U256::ZERO);
    let mut sorted = on_chain_owners.clone();
    sorted.sort();
    let mut expected = owners.clone();
    expected.sort();
    assert_eq!(sorted, expected);
    assert_eq!(threshold, U256::from(2));
    fund(&url, safe_address, 2 * ETHER).await;

    let recipient = Address::repeat_byte(0x77);
    let amount = U256::from(ETHER / 4);
    let tx = SafeTransaction::native(chain_id, safe_address, recipient, amount, nonce);
    // Each module's own computation of the hash is the contract's.
    let hash = tx.hash();
    assert_eq!(safe::contract_hash(&url, &tx).await.unwrap(), hash);
    // And an ERC-20 transfer's too (the contract hashes whatever call it is given).
    let token_tx = SafeTransaction::erc20(
        chain_id,
        safe_address,
        Address::repeat_byte(0x55),
        recipient,
        amount,
        nonce,
    );
    assert_eq!(
        safe::contract_hash(&url, &token_tx).await.unwrap(),
        token_tx.hash()
    );

    // One owner alone: the contract refuses (GS020: signatures too short for the threshold).
    let one = pack_signatures(hash, &[(owners[1], owner_sign(&keys[1], hash))]).unwrap();
    let refused = safe::exec_transaction(&url, &DEV1_KEY, &tx, one)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("GS020"), "{refused}");

    // An owner and a key that is not an owner: refused by the contract (GS026).
    let outsider = SigningKey::from_bytes((&[0x99; 32]).into()).unwrap();
    let mixed = pack_signatures(
        hash,
        &[
            (owners[0], owner_sign(&keys[0], hash)),
            (address_of(&outsider), owner_sign(&outsider, hash)),
        ],
    )
    .unwrap();
    let refused = safe::exec_transaction(&url, &DEV1_KEY, &tx, mixed)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("GS026"), "{refused}");

    // A v the Safe would read as another kind of signature (eth_sign above 30) is refused.
    let mut odd = owner_sign(&keys[0], hash);
    odd[64] = 35;
    assert!(matches!(
        pack_signatures(hash, &[(owners[0], odd)]),
        Err(ChainError::InvalidSignature { .. })
    ));

    // A signature listed under another owner is caught before it is sent.
    let mislabelled = pack_signatures(hash, &[(owners[0], owner_sign(&keys[2], hash))]);
    assert!(matches!(
        mislabelled,
        Err(ChainError::InvalidSignature { .. })
    ));

    // Owners 3 and 1, in any order: executed; the recipient holds the amount; nonce + 1.
    let before = client.balance(recipient).await.unwrap();
    let two = pack_signatures(
        hash,
        &[
            (owners[2], owner_sign(&keys[2], hash)),
            (owners[0], owner_sign(&keys[0], hash)),
        ],
    )
    .unwrap();
    safe::exec_transaction(&url, &DEV1_KEY, &tx, two.clone())
        .await
        .unwrap();
    assert_eq!(client.balance(recipient).await.unwrap() - before, amount);
    let (nonce_after, _, _) = safe::state(&url, safe_address).await.unwrap();
    assert_eq!(nonce_after, nonce + U256::from(1));

    // The same signatures again: the nonce moved, so they sign nothing the Safe will do.
    let replay = safe::exec_transaction(&url, &DEV1_KEY, &tx, two)
        .await
        .unwrap_err();
    assert!(replay.to_string().contains("GS026"), "{replay}");
    assert_eq!(client.balance(recipient).await.unwrap() - before, amount);
}
