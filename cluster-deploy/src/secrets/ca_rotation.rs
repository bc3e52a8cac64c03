//! Replacing the cluster's CA without cutting nodes off from each other: three steps, each
//! followed by a roll, with the phase read back from the vault every time (no local state).
//!
//! Why steps: Nomad's mutual TLS makes each side verify the other's certificate against its
//! own `ca_file`. An agent that trusts only the old CA rejects a certificate of the new one and
//! the other way round, so swapping the CA and the certificates at once splits a cluster that
//! is rolled one node at a time (the first new server can never join the old ones). Instead:
//!
//! | phase | `nomad-ca-cert` (what agents trust) | signs the certificates | `nomad-ca-key-next` |
//! |---|---|---|---|
//! | idle | the CA | the CA | - |
//! | 1 (`rotate --ca start`) | old + new | old | the new CA's key |
//! | 2 (`rotate --ca switch`) | old + new | new (`nomad-ca-key` is the new key) | - |
//! | idle (`rotate --ca finish`) | new | new | - |
//!
//! After phase 1's roll every node trusts both CAs while every certificate is still the old
//! CA's; after phase 2's roll every certificate is the new CA's and every node still trusts
//! both; only then may the old CA go. At every moment of every roll, any two nodes (one
//! booted before the step, one after) accept each other's certificate. Nomad reads a
//! `ca_file` with several certificates (Go's `x509.CertPool.AppendCertsFromPEM`), run-nomad
//! writes the bundle as it is, and the CLI's `NOMAD_CACERT` is the same bundle.
//!
//! Which phase: the bundle's certificates (one, or old then new), which of them `nomad-ca-key`
//! belongs to, and which the pending key belongs to. A step interrupted between two uploads
//! leaves a state the same step finishes when run again; a step run again after it finished
//! changes nothing; a step out of order is refused, saying the phase and the next step.
//! `nomad-ca-key-next` is an operator-only secret (no VM's identity is granted it, as for
//! `nomad-ca-key`). The old CA's key remains only as an earlier version of `nomad-ca-key`
//! (as every rotated secret's earlier versions do); once no node trusts the old CA it signs
//! nothing anyone accepts.

use std::collections::BTreeMap;
use std::time::SystemTime;

use support::cluster_secrets::SecretItem;
use support::secret::Secret;

use super::pki::{self, CertificateAuthority, PkiError};
use super::reconcile::{self, Change, Inputs, Plan, ReconcileError, Rotation};

/// The Key Vault secret that holds the new CA's key during phase 1.
pub const PENDING_KEY: &str = "nomad-ca-key-next";

/// How to replace every node after a step when its time is not at hand: a change in the vault
/// alone leaves the scale sets' model as it was, so `roll` selects the nodes by creation time
/// (each step prints the exact command with its time).
pub const ROLL: &str = "`cluster-deploy roll --created-before <the time the step printed>`, \
                        which replaces every instance created before the step, servers first";

/// One step of a CA rotation (`rotate --ca <step>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaStep {
    /// Phase 1: a new CA, trusted alongside the current one, not signing yet.
    Start,
    /// Phase 2: the new CA issues the server, client and CLI certificates.
    Switch,
    /// Back to one CA: the old one is no longer trusted.
    Finish,
}

impl CaStep {
    pub fn command(self) -> &'static str {
        match self {
            CaStep::Start => "cluster-deploy rotate --ca start",
            CaStep::Switch => "cluster-deploy rotate --ca switch",
            CaStep::Finish => "cluster-deploy rotate --ca finish",
        }
    }
}

/// Where a CA rotation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// One CA, trusted by every node and signing every certificate.
    Idle,
    /// Both CAs trusted, the old one signs.
    TrustBoth,
    /// Both CAs trusted, the new one signs.
    NewSigns,
}

impl Phase {
    /// The name in `--json` output.
    pub fn id(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::TrustBoth => "phase-1",
            Phase::NewSigns => "phase-2",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Phase::Idle => "no CA rotation in progress: one CA, trusted by every node and signing every certificate",
            Phase::TrustBoth => "CA rotation phase 1: nodes booted from now on trust the old and the new CA; the old CA still signs every certificate",
            Phase::NewSigns => "CA rotation phase 2: nodes booted from now on trust both CAs and get certificates of the new CA",
        }
    }

    /// What the operator does next, in this phase.
    pub fn next(self) -> String {
        self.next_with(ROLL)
    }

    /// [`Self::next`] naming `roll` as the command that replaces every node.
    pub fn next_with(self, roll: &str) -> String {
        match self {
            Phase::Idle => format!(
                "nothing is pending; to replace the CA, `{}`",
                CaStep::Start.command()
            ),
            Phase::TrustBoth => format!(
                "replace every server and client ({roll}) so that every node trusts both CAs; \
                 only then `{}`",
                CaStep::Switch.command()
            ),
            Phase::NewSigns => format!(
                "replace every server and client again ({roll}) so that every node has a \
                 certificate of the new CA, and refresh the CLI's files (`cluster-deploy env`); \
                 only then `{}`",
                CaStep::Finish.command()
            ),
        }
    }
}

/// A CA certificate in the bundle, as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TrustedCa {
    pub subject: String,
    /// SHA-256 of the DER, upper-case hex pairs joined by colons (as `openssl x509
    /// -fingerprint -sha256` prints it).
    pub sha256: String,
    pub not_after: String,
    pub signs: bool,
    pub pending: bool,
}

/// The phase and what it is made of.
#[derive(Debug, Clone)]
pub struct CaState {
    pub phase: Phase,
    /// The bundle's certificates, in order (the old CA first).
    pub certificates: Vec<String>,
    pub trusted: Vec<TrustedCa>,
    /// A pending key left by an interrupted step (it belongs to no CA of the bundle, or it is
    /// already `nomad-ca-key`): the next step removes it.
    pub stale_pending: bool,
}

fn rotation_error(reason: impl Into<String>) -> ReconcileError {
    ReconcileError::Refused {
        what: "rotating the CA".into(),
        reason: reason.into(),
    }
}

/// The certificates of a PEM bundle, each as its own PEM text ending in a newline. Anything
/// but CERTIFICATE blocks (and whitespace between them) is refused.
pub fn split_bundle(pem: &str) -> Result<Vec<String>, PkiError> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let bad = |reason: String| PkiError::Parse {
        what: SecretItem::CaCertificate.vault_name().into(),
        expected: "certificate bundle",
        reason,
    };
    let mut rest = pem.trim_start();
    let mut certificates = Vec::new();
    while !rest.is_empty() {
        if !rest.starts_with(BEGIN) {
            let line = rest.lines().next().unwrap_or_default();
            return Err(bad(format!(
                "expected {BEGIN}, found {:?}",
                line.chars().take(40).collect::<String>()
            )));
        }
        let end = rest
            .find(END)
            .ok_or_else(|| bad(format!("a certificate without {END}")))?
            + END.len();
        let block = format!("{}\n", &rest[..end]);
        pki::inspect(&block, SecretItem::CaCertificate.vault_name())?;
        certificates.push(block);
        rest = rest[end..].trim_start();
    }
    if certificates.is_empty() {
        return Err(bad("no certificate".into()));
    }
    Ok(certificates)
}

/// Certificates joined into one bundle.
pub fn join_bundle(certificates: &[String]) -> String {
    certificates
        .iter()
        .map(|c| format!("{}\n", c.trim_end()))
        .collect()
}

/// The CA `key` belongs to among the bundle's certificates (index, and the CA).
fn owner(
    certificates: &[String],
    key: &Secret,
    now: SystemTime,
) -> Option<(usize, CertificateAuthority)> {
    certificates.iter().enumerate().find_map(|(i, c)| {
        CertificateAuthority::from_pem(c, key, now)
            .ok()
            .map(|ca| (i, ca))
    })
}

/// The CA that signs, from the stored bundle and `nomad-ca-key`: the bundle's certificate the
/// key belongs to, current.
pub fn signing_ca(
    bundle: &str,
    key: &Secret,
    now: SystemTime,
) -> Result<CertificateAuthority, PkiError> {
    let certificates = split_bundle(bundle)?;
    if certificates.len() == 1 {
        return CertificateAuthority::from_pem(&certificates[0], key, now);
    }
    owner(&certificates, key, now)
        .map(|(_, ca)| ca)
        .ok_or_else(|| PkiError::KeyMismatch {
            what: format!(
                "{} (none of its {} CA certificates is current and belongs to {})",
                SecretItem::CaCertificate.vault_name(),
                certificates.len(),
                SecretItem::CaKey.vault_name()
            ),
        })
}

fn fingerprint(pem: &str) -> String {
    let der = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map(|(_, p)| p.contents)
        .unwrap_or_default();
    let hex = support::hash::sha256_hex(&der).to_ascii_uppercase();
    hex.as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// Reads the phase from the vault's CA items and the pending key.
pub fn read_state(
    stored: &BTreeMap<SecretItem, Secret>,
    pending: Option<&Secret>,
    now: SystemTime,
) -> Result<CaState, ReconcileError> {
    let (Some(bundle), Some(key)) = (
        stored.get(&SecretItem::CaCertificate),
        stored.get(&SecretItem::CaKey),
    ) else {
        return Err(rotation_error(
            "the vault holds no CA certificate and key (nomad-ca-cert, nomad-ca-key): run \
             `cluster-deploy apply` first",
        ));
    };
    let certificates = split_bundle(bundle.expose())?;
    let Some((signs, _)) = owner(&certificates, key, now) else {
        return Err(ReconcileError::Broken {
            item: SecretItem::CaKey.vault_name(),
            reason: "it belongs to no current CA certificate of nomad-ca-cert".into(),
            remedy: "restore the matching versions of nomad-ca-cert and nomad-ca-key (the \
                     vault keeps earlier versions)"
                .into(),
        });
    };
    let pending_of = pending.and_then(|p| owner(&certificates, p, now).map(|(i, _)| i));
    let (phase, pending_index) = match (certificates.len(), signs, pending_of) {
        (1, _, _) => (Phase::Idle, None),
        (2, 0, Some(1)) => (Phase::TrustBoth, Some(1)),
        (2, 1, _) => (Phase::NewSigns, None),
        (n, _, _) => {
            return Err(ReconcileError::Broken {
                item: SecretItem::CaCertificate.vault_name(),
                reason: format!(
                    "it holds {n} CA certificates, nomad-ca-key belongs to number {} and {} \
                     belongs to {}: no phase of a CA rotation looks like this",
                    signs + 1,
                    PENDING_KEY,
                    pending_of.map_or("none".to_string(), |i| format!("number {}", i + 1))
                ),
                remedy: "if nomad-ca-key-next was deleted by hand, recover it (`az keyvault \
                         secret recover --vault-name <vault> --name nomad-ca-key-next`); \
                         otherwise restore earlier versions of nomad-ca-cert, nomad-ca-key and \
                         nomad-ca-key-next that belong together"
                    .into(),
            })
        }
    };
    let stale_pending = pending.is_some() && pending_index.is_none();
    let trusted = certificates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let facts = pki::inspect(c, SecretItem::CaCertificate.vault_name());
            TrustedCa {
                subject: facts
                    .as_ref()
                    .map(|f| f.common_name.clone())
                    .unwrap_or_default(),
                sha256: fingerprint(c),
                not_after: facts
                    .map(|f| time::OffsetDateTime::from(f.not_after).to_string())
                    .unwrap_or_default(),
                signs: i == signs,
                pending: pending_index == Some(i),
            }
        })
        .collect();
    Ok(CaState {
        phase,
        certificates,
        trusted,
        stale_pending,
    })
}

/// What happens to [`PENDING_KEY`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingChange {
    Keep,
    Set(Secret),
    Delete,
}

/// A step's outcome: the items' values and changes ([`Plan`], uploaded in its order, so the
/// CA items come before what they sign), the pending key, and the phases.
#[derive(Debug, Clone)]
pub struct StepPlan {
    pub plan: Plan,
    pub pending: PendingChange,
    pub before: Phase,
    pub after: Phase,
}

impl StepPlan {
    /// Whether the step changes anything in the vault.
    pub fn changes_anything(&self) -> bool {
        !self.plan.changes.is_empty() || self.pending != PendingChange::Keep
    }
}

fn with(
    stored: &BTreeMap<SecretItem, Secret>,
    item: SecretItem,
    value: Secret,
) -> BTreeMap<SecretItem, Secret> {
    let mut copy = stored.clone();
    copy.insert(item, value);
    copy
}

fn leaf_items() -> [SecretItem; 6] {
    [
        SecretItem::ServerCertificate,
        SecretItem::ServerKey,
        SecretItem::ClientCertificate,
        SecretItem::ClientKey,
        SecretItem::CliCertificate,
        SecretItem::CliKey,
    ]
}

/// Plans `step` from what the vault holds. Refuses out of order, saying the phase and the
/// next step; a step that already happened plans nothing new (apart from finishing an
/// interrupted run of the same step).
pub fn plan_step(
    step: CaStep,
    stored: &BTreeMap<SecretItem, Secret>,
    pending: Option<&Secret>,
    inputs: &Inputs,
) -> Result<StepPlan, ReconcileError> {
    if !inputs.tls {
        return Err(rotation_error("TLS is off (`nomad.tls.enabled = false`)"));
    }
    if inputs.own_ca.is_some() {
        return Err(rotation_error(
            "the CA comes from `nomad.tls.ca_cert_file` and `ca_key_file`: rotating it is \
             yours (put old and new CA in ca_cert_file to trust both, roll, then switch the \
             key file, roll, then drop the old CA, roll)",
        ));
    }
    let inputs = Inputs {
        rotation: Rotation::default(),
        ..inputs.clone()
    };
    let now = inputs.now;
    let state = read_state(stored, pending, now)?;
    let before = state.phase;
    let out_of_order = |why: &str| {
        rotation_error(format!(
            "`{}` is out of order: {why}. The vault is in {}. Next: {}",
            step.command(),
            before.id(),
            before.next()
        ))
    };
    let drop_stale = if state.stale_pending {
        PendingChange::Delete
    } else {
        PendingChange::Keep
    };
    let outcome = match (step, before) {
        (CaStep::Start, Phase::Idle) => {
            let new =
                CertificateAuthority::generate(&inputs.pki.cluster, inputs.pki.lifetimes.ca, now)?;
            let bundle = join_bundle(&[state.certificates[0].clone(), new.cert_pem().to_string()]);
            let mut plan = reconcile::reconcile(
                &with(stored, SecretItem::CaCertificate, Secret::new(bundle)),
                &inputs,
            )?;
            plan.changes.insert(
                0,
                Change {
                    item: SecretItem::CaCertificate,
                    why: "CA rotation phase 1: the new CA is trusted alongside the current one"
                        .into(),
                },
            );
            StepPlan {
                plan,
                pending: PendingChange::Set(new.key_pem().clone()),
                before,
                after: Phase::TrustBoth,
            }
        }
        (CaStep::Start, Phase::TrustBoth) => StepPlan {
            plan: reconcile::reconcile(stored, &inputs)?,
            pending: PendingChange::Keep,
            before,
            after: before,
        },
        (CaStep::Start, Phase::NewSigns) => {
            return Err(out_of_order(
                "a CA rotation is under way and the new CA signs already",
            ))
        }
        (CaStep::Switch, Phase::Idle) => {
            return Err(out_of_order(
                "the vault trusts a single CA (no rotation was started, or one was finished)",
            ))
        }
        (CaStep::Switch, Phase::TrustBoth) => {
            let new_key = pending.expect("phase 1 has a pending key").clone();
            let mut plan = reconcile::reconcile(
                &with(stored, SecretItem::CaKey, new_key),
                &Inputs {
                    rotation: Rotation {
                        certificates: true,
                        ..Rotation::default()
                    },
                    ..inputs.clone()
                },
            )?;
            for change in &mut plan.changes {
                if leaf_items().contains(&change.item) {
                    change.why = "CA rotation phase 2: issued by the new CA".into();
                }
            }
            plan.changes.insert(
                0,
                Change {
                    item: SecretItem::CaKey,
                    why: "CA rotation phase 2: the new CA signs from now on".into(),
                },
            );
            StepPlan {
                plan,
                pending: PendingChange::Delete,
                before,
                after: Phase::NewSigns,
            }
        }
        (CaStep::Switch, Phase::NewSigns) => StepPlan {
            // Run again, or after an interruption: reconcile issues from the new CA whatever
            // it did not sign yet.
            plan: reconcile::reconcile(stored, &inputs)?,
            pending: drop_stale,
            before,
            after: before,
        },
        (CaStep::Finish, Phase::Idle) => StepPlan {
            plan: reconcile::reconcile(stored, &inputs)?,
            pending: drop_stale,
            before,
            after: before,
        },
        (CaStep::Finish, Phase::TrustBoth) => {
            return Err(out_of_order(
                "the old CA still signs every certificate: without it no node would accept \
                 another",
            ))
        }
        (CaStep::Finish, Phase::NewSigns) => {
            let now_plan = reconcile::reconcile(stored, &inputs)?;
            let unfinished: Vec<&str> = now_plan
                .changes
                .iter()
                .filter(|c| leaf_items().contains(&c.item))
                .map(|c| c.item.vault_name())
                .collect();
            if !unfinished.is_empty() || state.stale_pending {
                return Err(rotation_error(format!(
                    "`{}` is out of order: phase 2 did not complete ({}); run `{}` again, \
                     roll, then finish",
                    step.command(),
                    if unfinished.is_empty() {
                        format!("{PENDING_KEY} is still there")
                    } else {
                        format!("{} not issued by the new CA", unfinished.join(", "))
                    },
                    CaStep::Switch.command()
                )));
            }
            let newest = state.certificates[1].clone();
            let mut plan = reconcile::reconcile(
                &with(stored, SecretItem::CaCertificate, Secret::new(newest)),
                &inputs,
            )?;
            plan.changes.insert(
                0,
                Change {
                    item: SecretItem::CaCertificate,
                    why: "CA rotation finished: the old CA is no longer trusted".into(),
                },
            );
            StepPlan {
                plan,
                pending: PendingChange::Keep,
                before,
                after: Phase::Idle,
            }
        }
    };
    Ok(outcome)
}

#[cfg(test)]
mod tests;
