//! The demo's operator view: the metrics of the coordinator and of every module move as a
//! deposit runs (read with the Prometheus text parser), every module's audit trail verifies
//! and holds the very entries the coordinator recorded with the job, a trail with one byte
//! changed fails at that entry, and the HSM module's keys are in its token.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use concord_wire::authority::AgreementRule;
use serde_json::{Value, json};

use crate::demo::Demo;
use crate::devnet::ModuleEntry;

/// A scrape, summed by metric name and the label values asked for.
struct Scrape(prometheus_parse::Scrape);

impl Scrape {
    fn parse(text: &str) -> Result<Scrape> {
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        prometheus_parse::Scrape::parse(lines)
            .map(Scrape)
            .map_err(|e| anyhow!("the metrics are not in the Prometheus text format: {e}"))
    }

    /// The sum of `metric`'s samples whose labels include `labels` (a histogram counts its
    /// observations).
    fn sum(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == metric)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                prometheus_parse::Value::Histogram(buckets) => {
                    buckets.iter().map(|b| b.count).fold(0.0, f64::max)
                }
                prometheus_parse::Value::Summary(_) => 0.0,
            })
            .sum()
    }
}

async fn coordinator_metrics(d: &Demo) -> Result<Scrape> {
    Scrape::parse(&d.api.get_text("/metrics").await?)
}

async fn module_metrics(m: &ModuleEntry) -> Result<Scrape> {
    let text = reqwest::get(&m.metrics_url)
        .await
        .with_context(|| format!("cannot read module {}'s metrics at {}", m.id, m.metrics_url))?
        .text()
        .await?;
    Scrape::parse(&text)
}

/// `concord module audit --config DIR --json` of a module: its entries, each with its hash.
fn audit_entries(config: &Path) -> Result<Vec<Value>> {
    let exe = std::env::current_exe()?;
    let out = std::process::Command::new(&exe)
        .args(["module", "audit", "--json", "--config"])
        .arg(config)
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    if !out.status.success() {
        anyhow::bail!(
            "`concord module audit --config {}` failed: {}",
            config.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}

/// `concord module audit --verify` of a module directory: the outcome's words.
fn audit_verify(config: &Path) -> Result<(bool, String)> {
    let exe = std::env::current_exe()?;
    let out = std::process::Command::new(&exe)
        .args(["module", "audit", "--verify", "--config"])
        .arg(config)
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    let words = if out.status.success() {
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    } else {
        String::from_utf8_lossy(&out.stderr).trim().to_owned()
    };
    Ok((out.status.success(), words))
}

/// The operator's view; `wallet` is the trader's threshold wallet.
pub(crate) async fn run(d: &mut Demo, wallet: &str) -> Result<()> {
    let modules = d.info.modules.clone();
    let before = coordinator_metrics(d).await?;
    let mut modules_before = HashMap::new();
    for m in &modules {
        modules_before.insert(m.id.clone(), module_metrics(m).await?);
    }
    let intent = d.deposit(wallet, "ETH", "0.1", AgreementRule::All, &[])?;
    let t = d.transfer("/v1/transfers/deposits", &intent).await?;
    let after = coordinator_metrics(d).await?;

    // The coordinator's counts moved by this deposit.
    let moved = |s: &Scrape, b: &Scrape, metric: &str, labels: &[(&str, &str)]| {
        s.sum(metric, labels) - b.sum(metric, labels)
    };
    let approvals = moved(
        &after,
        &before,
        "concord_coordinator_module_answers_total",
        &[("answer", "approved")],
    );
    let signed = moved(&after, &before, "concord_coordinator_signing_seconds", &[]);
    let credited = moved(
        &after,
        &before,
        "concord_coordinator_transfers",
        &[("status", "credited")],
    );
    let links = after.sum("concord_coordinator_module_links", &[]);
    let held = t["status"] == "credited"
        && approvals >= modules.len() as f64
        && signed >= 1.0
        && credited >= 1.0
        && links >= modules.len() as f64;
    let refusals: serde_json::Map<String, Value> = [
        "outside",
        "limit",
        "policy",
        "intent",
        "mismatch",
        "replay",
        "destination",
    ]
    .iter()
    .map(|c| {
        let n = after.sum(
            "concord_coordinator_module_answers_total",
            &[("answer", "refused"), ("code", c)],
        );
        (c.to_string(), json!(n))
    })
    .collect();
    d.record(
        "coordinator /metrics (parsed as Prometheus text) moved with a 0.1 ETH deposit: module approvals, a signing latency observation, one more transfer credited; every module linked",
        held,
        json!({
            "approvals": approvals,
            "signing_observations": signed,
            "credited": credited,
            "module_links": links,
            "dissents_total": after.sum("concord_coordinator_dissents_total", &[]),
            "refusals_by_code": refusals,
        }),
    );

    // Every module's counts moved, its trail verifies, and holds the entries the coordinator
    // recorded with the job.
    let job = t["sign_job_id"].as_str().map(str::to_owned);
    let events = match &job {
        Some(id) => d.api.get(&format!("/v1/jobs/{id}")).await?["events"].clone(),
        None => json!([]),
    };
    let mut signers = 0usize;
    let mut forged = serde_json::Map::new();
    for m in &modules {
        let now = module_metrics(m).await?;
        forged.insert(
            m.id.clone(),
            json!(now.sum(
                "concord_module_decisions_total",
                &[("decision", "refused"), ("code", "destination")]
            )),
        );
        let was = &modules_before[&m.id];
        let decided = moved(
            &now,
            was,
            "concord_module_decisions_total",
            &[("decision", "approved")],
        );
        let seen = moved(&now, was, "concord_module_proposals_total", &[]);
        let (intact, words) = audit_verify(&m.dir)?;
        let entries = audit_entries(&m.dir)?;
        // The coordinator's record of this module's approval names an entry of its trail.
        // Each of its events the coordinator recorded with an audit reference (`kind`) names
        // an entry of its trail recording that (`event`).
        let links = |kind: &str, event: &str| -> (usize, bool) {
            let refs: Vec<&str> = events
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["module_id"] == m.id.as_str() && e["kind"] == kind)
                .filter_map(|e| e["audit"].as_str())
                .collect();
            let all = refs.iter().all(|r| {
                let (seq, hash) = r.split_once(':').unwrap_or_default();
                entries.iter().any(|e| {
                    e["seq"].as_u64().is_some_and(|n| n.to_string() == seq)
                        && e["hash"] == hash
                        && e["event"] == event
                })
            });
            (refs.len(), all)
        };
        let (approvals, approvals_linked) = links("approval", "approved");
        let (releases, releases_linked) = links("progress", "signature_released");
        let linked = approvals >= 1 && approvals_linked && releases_linked;
        signers += usize::from(releases >= 1);
        d.record(
            &format!(
                "module {}: /metrics moved (proposal seen, approved); audit trail intact ({} entries) and holding the approval entry the coordinator recorded with the job",
                m.id,
                entries.len()
            ),
            seen >= 1.0 && decided >= 1.0 && intact && linked,
            json!({"module": m.id, "proposals_seen": seen, "approved": decided, "verify": words, "linked": linked, "share_releases": releases}),
        );
    }
    // The forged-address attacks above were refused as such (operators alert on this code),
    // not as outages: by the module whose exchange answer was forged.
    let total: f64 = forged.values().filter_map(Value::as_f64).sum();
    d.record(
        "the modules counted the forged-address attacks above as refusals coded destination (module /metrics), apart from outages (outside)",
        total >= 1.0,
        json!({"destination_refusals_by_module": forged}),
    );
    // The signers' share releases are in the job's record, each naming its trail entry.
    d.record(
        "the job's record names, for each module whose signature share left it, the audit entry that recorded the release",
        signers >= 2,
        json!({"job": job, "signers_with_linked_release": signers}),
    );

    // A trail with one byte changed fails at that entry (on a copy: the module's own trail
    // stays as it is).
    if let Some(m) = modules.first() {
        let (held, detail) = tampered_copy(m)?;
        d.record(
            "a copy of m1's audit trail with one byte changed in entry 3: `concord module audit --verify` fails at entry 3",
            held,
            detail,
        );
    }

    // The HSM module: its vault key, identity key and multisig key are in its SoftHSM token.
    if let Some(label) = &d.info.hsm_token {
        let cfg = concord_module::Config::load(
            &d.info
                .modules
                .iter()
                .find(|m| m.id == crate::devnet::HSM_MODULE)
                .map(|m| m.dir.join("module.toml"))
                .unwrap_or_default(),
        )?;
        let keys = cfg.vault.keys()?;
        let token = keys
            .token
            .ok_or_else(|| anyhow!("module {} has no HSM", crate::devnet::HSM_MODULE))?;
        let listed = token.list_keys()?;
        let kek = listed.iter().any(|k| {
            matches!(k.kind, concord_vault::HsmKeyKind::Aes256) && k.sensitive && !k.extractable
        });
        let own = listed.iter().any(|k| {
            matches!(k.kind, concord_vault::HsmKeyKind::Secp256k1) && k.sensitive && !k.extractable
        });
        // The identity the coordinator pinned for the module (its TLS certificate, its
        // approvals and sealed messages) is the token's Ed25519 key.
        let modules = d.api.get("/v1/modules").await?;
        let pinned = modules
            .as_array()
            .and_then(|l| {
                l.iter()
                    .find(|m| m["id"] == crate::devnet::HSM_MODULE)
                    .and_then(|m| m["identity"].as_str())
            })
            .unwrap_or_default()
            .to_owned();
        let mut identity_in_token = false;
        for k in &listed {
            if matches!(k.kind, concord_vault::HsmKeyKind::Ed25519) && k.sensitive && !k.extractable
            {
                let public = hex::encode(token.ed25519_key(&k.label)?.public_key());
                identity_in_token |= public == pinned;
            }
        }
        d.record(
            &format!(
                "module {} keeps its vault key (AES-256, wraps the vault's key inside the token), its identity key (Ed25519, the key the coordinator pinned: its TLS handshakes, sealed messages and approvals above were signed in the token) and its multisig key (secp256k1, signed the P2WSH and Safe spends above) in SoftHSM token {label}: sensitive, never extractable",
                crate::devnet::HSM_MODULE
            ),
            kek && own && identity_in_token,
            json!({"token": label, "pinned_identity": pinned, "keys": listed.iter().map(|k| json!({"label": k.label, "kind": format!("{:?}", k.kind), "sensitive": k.sensitive, "extractable": k.extractable})).collect::<Vec<_>>()}),
        );
    }
    Ok(())
}

/// A copy of module `m`'s vault with one byte of its trail's entry 3 changed, verified.
fn tampered_copy(m: &ModuleEntry) -> Result<(bool, Value)> {
    let cfg = concord_module::Config::load(&m.dir.join("module.toml"))?;
    let copy = m
        .dir
        .with_file_name(format!("{}-audit-tampered-copy", m.id));
    let _ = std::fs::remove_dir_all(&copy);
    let vault = copy.join("vault");
    copy_dir(&cfg.vault.dir, &vault)?;
    let trail = vault.join(concord_module::audit::AUDIT_FILE);
    let text = std::fs::read_to_string(&trail)?;
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    if lines.len() < 3 {
        return Ok((
            false,
            json!({"error": "the trail has fewer than 3 entries"}),
        ));
    }
    let mut bytes = lines[2].clone().into_bytes();
    let at = bytes.len() - 8;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    lines[2] = String::from_utf8(bytes)?;
    std::fs::write(&trail, lines.join("\n") + "\n")?;
    let mut copied = cfg.clone();
    copied.vault.dir = vault;
    copied.save(&copy.join("module.toml"))?;
    let (intact, words) = audit_verify(&copy)?;
    let _ = std::fs::remove_dir_all(&copy);
    let held = !intact && words.contains("broken at entry 3");
    Ok((held, json!({"verify": words})))
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
