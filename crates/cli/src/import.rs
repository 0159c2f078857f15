//! `concord wallets import`: splitting an existing key in memory, sealing each shard to its
//! module, and wiping the key.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use concord_tss::{Scheme, Threshold, WalletId};
use concord_wire::identity::{IdentityKey, PublicIdentity, SealingPublicKey};
use concord_wire::messages::{IMPORTER_INDEX, import_session};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::client::Api;

fn read_key(path: &Path) -> Result<Zeroizing<[u8; 32]>> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?,
    );
    let hex_text = text.trim().trim_start_matches("0x");
    let mut key = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(hex_text, &mut *key)
        .map_err(|_| anyhow!("{} must hold exactly 32 bytes, hex-encoded", path.display()))?;
    Ok(key)
}

/// Splits, seals and submits; returns the wallet once every module holds its shard.
pub async fn import(
    api: &Api,
    group_id: &str,
    scheme: &str,
    key_file: &Path,
    signer: &crate::authority::SignerArgs,
    quiet: bool,
) -> Result<Value> {
    let scheme: Scheme = scheme.parse()?;
    let group = api.get(&format!("/v1/groups/{group_id}")).await?;
    let members: Vec<String> = group["members"]
        .as_array()
        .ok_or_else(|| anyhow!("group {group_id} has no member list"))?
        .iter()
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect();
    let t = group["threshold"].as_u64().unwrap_or(0) as u16;
    let engine: concord_tss::EcdsaEngine = match group["engine"].as_str() {
        Some(e) => e.parse()?,
        None => concord_tss::EcdsaEngine::LEGACY,
    };
    let threshold = Threshold::new(t, members.len() as u16)?;
    let modules = api.get("/v1/modules").await?;
    // Each member's sealing key, checked against its identity's signature.
    let mut keys = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let rec = modules
            .as_array()
            .and_then(|l| l.iter().find(|r| r["id"] == m.as_str()))
            .ok_or_else(|| anyhow!("module {m} is not enrolled"))?;
        let identity: PublicIdentity = rec["identity"].as_str().unwrap_or_default().parse()?;
        let sealing: SealingPublicKey = rec["sealing_key"].as_str().unwrap_or_default().parse()?;
        let sig = hex::decode(rec["sealing_key_signature"].as_str().unwrap_or_default())?;
        identity
            .verify_sealing_key(&sealing, &sig)
            .map_err(|_| anyhow!("module {m}'s sealing key is not signed by its identity"))?;
        if !quiet {
            eprintln!(
                "  shard {i} → module {m} (fingerprint {}); compare it with the module's own",
                identity.fingerprint()
            );
        }
        keys.push(sealing);
    }

    let key = read_key(key_file)?;
    let mut rng = rand::rngs::OsRng;
    // Split in memory. Each shard's encoding is a zeroizing buffer; the key is wiped on drop.
    let (public_key, plain_shards): (Vec<u8>, Vec<Zeroizing<Vec<u8>>>) = match scheme {
        // A DKLs23 share carries its pairwise OT state, made here too: a refresh among the
        // members afterwards replaces it.
        Scheme::EcdsaSecp256k1 if engine == concord_tss::EcdsaEngine::Dkls23 => {
            let shares = concord_tss::dkls::import_secret_key(&key, threshold, &mut rng)?;
            let pk = shares
                .first()
                .map(|s| s.public_key().to_vec())
                .unwrap_or_default();
            (pk, shares.iter().map(|s| s.to_bytes()).collect())
        }
        Scheme::EcdsaSecp256k1 => {
            let cores = concord_tss::ecdsa::import_secret_key(&key, threshold, &mut rng)?;
            let pk = cores
                .first()
                .map(|c| c.public_key().to_vec())
                .unwrap_or_default();
            (pk, cores.iter().map(|c| c.to_bytes()).collect())
        }
        Scheme::SchnorrTaproot => {
            let shares = concord_tss::frost::import_taproot_secret_key(&key, threshold, &mut rng)?;
            let pk = shares.first().map(|s| s.public_key()).unwrap_or_default();
            (pk, shares.iter().map(|s| s.to_bytes()).collect())
        }
        // An ES256 exchange key is made by DKG and registered at the exchange: it never
        // exists whole, and nothing outside needs it imported.
        Scheme::EcdsaP256 => bail!(
            "an ecdsa-p256 key is not imported: create it by DKG (`concord wallets create --scheme ecdsa-p256`) and register its public key at the exchange"
        ),
        Scheme::Ed25519 => {
            let shares = concord_tss::frost::import_ed25519_seed(&key, threshold, &mut rng)?;
            let pk = shares.first().map(|s| s.public_key()).unwrap_or_default();
            (pk, shares.iter().map(|s| s.to_bytes()).collect())
        }
    };
    drop(key);
    if plain_shards.len() != keys.len() {
        bail!(
            "the key was split into {} shards for {} members",
            plain_shards.len(),
            keys.len()
        );
    }
    let wallet = WalletId::derive(scheme, &public_key);
    let session = import_session(group_id, &wallet);
    let importer = IdentityKey::generate(&mut rng);
    let mut sealed = Vec::new();
    for (i, (shard, key)) in plain_shards.iter().zip(&keys).enumerate() {
        let s = concord_wire::seal::seal(
            &importer,
            IMPORTER_INDEX,
            key,
            i as u16,
            &session,
            shard,
            &mut rng,
        )?;
        sealed.push(hex::encode(s));
    }
    drop(plain_shards);
    eprintln!(
        "WARNING: this {scheme} key existed whole on this machine. Whoever held it (or this file) can still sign alone; \
         delete {} and prefer wallets created by DKG.",
        key_file.display()
    );
    let intent = signer.sign(concord_wire::authority::Action::Import {
        group: group_id.to_owned(),
        scheme,
        public_key: public_key.clone(),
        importer: importer.public(),
    })?;
    let job = api
        .post(
            "/v1/wallets/import",
            &json!({
                "intent": intent,
                "importer": importer.public().to_string(), "shards": sealed,
            }),
        )
        .await?;
    let id = job["id"].as_str().unwrap_or_default().to_owned();
    let done = api.wait_job(&id, quiet).await?;
    Ok(done.result.unwrap_or_default())
}
