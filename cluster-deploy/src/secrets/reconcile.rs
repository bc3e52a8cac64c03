//! What the vault must hold after a run, from what it holds now: pure, so every rule is tested
//! without a vault. `apply` keeps what is there and valid, makes what is missing, converges
//! what the cluster file changed (the region in the certificates' names, the load balancer's
//! DNS name on the server certificate, an operator's own CA or gossip key), and refuses to
//! guess when something is broken in a way only a rotation should fix. `rotate` asks for new
//! material explicitly ([`Rotation`]).
//!
//! Rules, item by item (see [`reconcile`]):
//! - Gossip key: the operator's own key when given, else the stored one when it is well-formed,
//!   else (none stored) a new one. A malformed stored key is an error: a new key would split
//!   servers that still use the old one (rotation follows Nomad's keyring steps, see the
//!   README).
//! - ACL bootstrap token: kept once made (it is the management token once bootstrap ran).
//! - CA: the operator's own (from its files, never uploaded with its key); else the stored
//!   certificate and key when both are there, current and matching; else, when neither is
//!   there, a new CA. A half-stored or expired CA is an error naming the remedy.
//!   During a CA rotation `nomad-ca-cert` is a bundle of two CAs: it is kept as it is, and the
//!   one `nomad-ca-key` belongs to signs ([`super::ca_rotation`]).
//! - Server, client and CLI certificates: kept while signed by the CA, named for their role in
//!   the cluster's region (the server's also for every wanted extra name), current and matching
//!   their key; otherwise issued anew, with the reason. One that expires within
//!   [`RENEW_WITHIN`] is kept with a note to rotate.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use support::cluster_secrets::SecretItem;
use support::secret::Secret;

use super::ca_rotation::signing_ca;
use super::material::{BootstrapToken, GossipKey, MaterialError};
use super::pki::{CertificateAuthority, ExtraSan, IssuedCertificate, PkiError, PkiSpec, Role};

/// What to do about a CA that cannot be used: it is broken, not old, so no step of a phased
/// rotation fits. A vault keeps earlier versions of every secret.
const CA_REMEDY: &str = "restore the matching versions of nomad-ca-cert and nomad-ca-key from the \
                         vault's history (`az keyvault secret list-versions`), or, to start over \
                         with a new CA, delete both secrets, run apply and roll every node (an \
                         outage: old and new nodes do not trust each other)";

/// A leaf certificate this close to its end is reported (`rotate --certificates`).
pub const RENEW_WITHIN: Duration = Duration::from_secs(30 * 86_400);

/// What `rotate` asks for. A new CA is not one of them: it takes three steps with a roll
/// after each ([`super::ca_rotation`]), which build on [`reconcile`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotation {
    /// New server, client and CLI certificates from the current CA.
    pub certificates: bool,
    /// A new gossip key.
    pub gossip_key: bool,
}

/// Which items the cluster keeps, and where the material comes from.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub gossip: bool,
    pub bootstrap_token: bool,
    pub tls: bool,
    /// The certificates' spec: region, the server certificate's extra names, lifetimes.
    pub pki: PkiSpec,
    /// The operator's own CA, read from its files.
    pub own_ca: Option<CertificateAuthority>,
    /// The operator's own gossip key, read from its file.
    pub own_gossip_key: Option<Secret>,
    pub rotation: Rotation,
    pub now: SystemTime,
}

/// Why the vault's content cannot be used as it is.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("the vault's {item} cannot be used ({reason}); {remedy}")]
    Broken {
        item: &'static str,
        reason: String,
        remedy: String,
    },
    #[error("{what}: {reason}")]
    Refused { what: String, reason: String },
    #[error(transparent)]
    Material(#[from] MaterialError),
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// One item that gets a new version, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub item: SecretItem,
    pub why: String,
}

/// The outcome: every kept item's value, what changes, and notes for the operator.
#[derive(Debug, Clone)]
pub struct Plan {
    pub values: BTreeMap<SecretItem, Secret>,
    pub changes: Vec<Change>,
    pub notes: Vec<String>,
}

impl Plan {
    /// The items to upload with their values, in [`SecretItem::ALL`]'s order: the CA before what
    /// it signs, each certificate just before its key. A run cut between a certificate and its
    /// key leaves a pair that does not match: the next apply finds it so and issues the pair
    /// again (for the CA it stops and asks for `rotate --ca`).
    pub fn uploads(&self) -> Vec<(SecretItem, &Secret, &str)> {
        SecretItem::ALL
            .into_iter()
            .filter_map(|item| {
                let change = self.changes.iter().find(|c| c.item == item)?;
                Some((item, &self.values[&item], change.why.as_str()))
            })
            .collect()
    }

    /// The CA the plan's certificates come from (with TLS).
    pub fn ca_cert(&self) -> Option<&Secret> {
        self.values.get(&SecretItem::CaCertificate)
    }
}

fn broken(item: SecretItem, reason: impl ToString, remedy: &str) -> ReconcileError {
    ReconcileError::Broken {
        item: item.vault_name(),
        reason: reason.to_string(),
        remedy: remedy.to_string(),
    }
}

fn days(d: Duration) -> u64 {
    d.as_secs() / 86_400
}

/// Decides the vault's content (see the module docs for the rules).
pub fn reconcile(
    stored: &BTreeMap<SecretItem, Secret>,
    inputs: &Inputs,
) -> Result<Plan, ReconcileError> {
    let mut plan = Plan {
        values: BTreeMap::new(),
        changes: Vec::new(),
        notes: Vec::new(),
    };
    let set = |plan: &mut Plan, item: SecretItem, value: Secret, why: Option<String>| {
        if let Some(why) = why {
            plan.changes.push(Change { item, why });
        }
        plan.values.insert(item, value);
    };
    let r = &inputs.rotation;

    if inputs.gossip {
        let item = SecretItem::GossipKey;
        match (&inputs.own_gossip_key, stored.get(&item)) {
            (Some(_), _) if r.gossip_key => {
                return Err(ReconcileError::Refused {
                    what: "rotating the gossip key".into(),
                    reason: "the key comes from `nomad.gossip_key_file`: put the new key in \
                             that file and run apply"
                        .into(),
                })
            }
            (Some(own), Some(current)) if own == current => set(&mut plan, item, own.clone(), None),
            (Some(own), current) => {
                GossipKey::parse(own)?;
                let why = if current.is_some() {
                    "the key in nomad.gossip_key_file changed"
                } else {
                    "the key from nomad.gossip_key_file"
                };
                set(&mut plan, item, own.clone(), Some(why.into()))
            }
            (None, _) if r.gossip_key => set(
                &mut plan,
                item,
                GossipKey::generate()?.secret().clone(),
                Some("rotated".into()),
            ),
            (None, Some(current)) => {
                GossipKey::parse(current).map_err(|e| {
                    broken(
                        item,
                        e,
                        "`cluster-deploy rotate --gossip-key` makes a new one",
                    )
                })?;
                set(&mut plan, item, current.clone(), None)
            }
            (None, None) => set(
                &mut plan,
                item,
                GossipKey::generate()?.secret().clone(),
                Some("new".into()),
            ),
        }
    }

    if inputs.bootstrap_token {
        let item = SecretItem::BootstrapToken;
        match stored.get(&item) {
            Some(current) => {
                BootstrapToken::parse(current).map_err(|e| {
                    broken(
                        item,
                        e,
                        "if ACLs were never bootstrapped, delete the secret and run apply; \
                         otherwise store the cluster's management token there",
                    )
                })?;
                set(&mut plan, item, current.clone(), None)
            }
            None => set(
                &mut plan,
                item,
                BootstrapToken::generate()?.secret().clone(),
                Some("new".into()),
            ),
        }
    }

    if inputs.tls {
        tls(stored, inputs, &mut plan)?;
    }
    Ok(plan)
}

fn tls(
    stored: &BTreeMap<SecretItem, Secret>,
    inputs: &Inputs,
    plan: &mut Plan,
) -> Result<(), ReconcileError> {
    let r = &inputs.rotation;
    let now = inputs.now;
    let stored_cert = stored.get(&SecretItem::CaCertificate);
    // The CA, and whether it is new to the vault (everything it signs is then issued anew).
    // What agents trust: the signing CA's certificate, or the stored bundle kept as it is.
    let mut trusted: Option<String> = None;
    let (ca, ca_changed) = match &inputs.own_ca {
        Some(own) => {
            let same = stored_cert.is_some_and(|c| c.expose() == own.cert_pem());
            if !same {
                plan.changes.push(Change {
                    item: SecretItem::CaCertificate,
                    why: if stored_cert.is_some() {
                        "the CA in nomad.tls.ca_cert_file changed".into()
                    } else {
                        "the CA from nomad.tls.ca_cert_file".into()
                    },
                });
            }
            (own.clone(), !same)
        }
        None => match (stored_cert, stored.get(&SecretItem::CaKey)) {
            (Some(cert), Some(key)) => {
                let ca = signing_ca(cert.expose(), key, now)
                    .map_err(|e| broken(SecretItem::CaCertificate, e, CA_REMEDY))?;
                trusted = Some(cert.expose().to_string());
                (ca, false)
            }
            (None, None) => {
                let ca = CertificateAuthority::generate(
                    &inputs.pki.cluster,
                    inputs.pki.lifetimes.ca,
                    now,
                )?;
                for item in [SecretItem::CaKey, SecretItem::CaCertificate] {
                    plan.changes.push(Change {
                        item,
                        why: "new".into(),
                    });
                }
                (ca, true)
            }
            (cert, _) => {
                let (item, missing) = match cert {
                    Some(_) => (SecretItem::CaKey, "its key is missing"),
                    None => (SecretItem::CaCertificate, "the certificate is missing"),
                };
                return Err(broken(
                    item,
                    format!("the CA is half stored: {missing} (an interrupted upload?)"),
                    CA_REMEDY,
                ));
            }
        },
    };
    let until = ca.not_after().duration_since(now).unwrap_or(Duration::ZERO);
    // A bundle of two is a rotation under way: its new CA is the answer already.
    let rotating = trusted
        .as_ref()
        .is_some_and(|t| t.matches("BEGIN CERTIFICATE").count() > 1);
    if until < Duration::from_secs(90 * 86_400) && !rotating {
        plan.notes.push(format!(
            "the cluster's CA expires in {} days: plan a CA rotation (`cluster-deploy rotate --ca start`, three steps each followed by a roll: see the README)",
            days(until)
        ));
    }
    plan.values.insert(
        SecretItem::CaCertificate,
        Secret::new(trusted.unwrap_or_else(|| ca.cert_pem().into())),
    );
    if inputs.own_ca.is_none() {
        plan.values.insert(SecretItem::CaKey, ca.key_pem().clone());
    }

    let region = &inputs.pki.region;
    for (role, cert_item, key_item, sans) in [
        (
            Role::Server,
            SecretItem::ServerCertificate,
            SecretItem::ServerKey,
            inputs.pki.server_sans.as_slice(),
        ),
        (
            Role::Client,
            SecretItem::ClientCertificate,
            SecretItem::ClientKey,
            &[][..],
        ),
        (
            Role::Cli,
            SecretItem::CliCertificate,
            SecretItem::CliKey,
            &[][..],
        ),
    ] {
        let lifetime = match role {
            Role::Cli => inputs.pki.lifetimes.cli,
            _ => inputs.pki.lifetimes.agent,
        };
        let current = match (stored.get(&cert_item), stored.get(&key_item)) {
            (Some(c), Some(k)) => Some((c, k)),
            _ => None,
        };
        let why: Option<String> = if ca_changed {
            Some("issued by the new CA".into())
        } else if r.certificates {
            Some("rotated".into())
        } else {
            match current {
                None => Some("new".into()),
                Some((cert, key)) => match ca.check(role, region, cert.expose(), key, now) {
                    Err(e) => Some(format!("the stored one cannot be used: {e}")),
                    Ok(facts) => {
                        let missing: Vec<String> = sans
                            .iter()
                            .filter(|s| match s {
                                ExtraSan::Dns(d) => !facts.dns_names.contains(d),
                                ExtraSan::Ip(ip) => !facts.ip_addresses.contains(ip),
                            })
                            .map(|s| match s {
                                ExtraSan::Dns(d) => d.clone(),
                                ExtraSan::Ip(ip) => ip.to_string(),
                            })
                            .collect();
                        if !missing.is_empty() {
                            Some(format!("it lacks the name {}", missing.join(", ")))
                        } else {
                            let left = facts
                                .not_after
                                .duration_since(now)
                                .unwrap_or(Duration::ZERO);
                            if left < RENEW_WITHIN {
                                plan.notes.push(format!(
                                    "the {} certificate expires in {} days: `cluster-deploy rotate --certificates`, then roll",
                                    role.as_str(),
                                    days(left)
                                ));
                            }
                            None
                        }
                    }
                },
            }
        };
        match (why, current) {
            (None, Some((cert, key))) => {
                plan.values.insert(cert_item, cert.clone());
                plan.values.insert(key_item, key.clone());
            }
            (why, _) => {
                let why = why.unwrap_or_else(|| "new".into());
                let IssuedCertificate {
                    cert_pem, key_pem, ..
                } = ca.issue(role, region, sans, lifetime, now)?;
                plan.values.insert(cert_item, Secret::new(cert_pem));
                plan.values.insert(key_item, key_pem);
                plan.changes.push(Change {
                    item: cert_item,
                    why: why.clone(),
                });
                plan.changes.push(Change {
                    item: key_item,
                    why,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::pki::Lifetimes;
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            gossip: true,
            bootstrap_token: true,
            tls: true,
            pki: PkiSpec {
                cluster: "c1".into(),
                region: "global".into(),
                server_sans: Vec::new(),
                lifetimes: Lifetimes::default(),
            },
            own_ca: None,
            own_gossip_key: None,
            rotation: Rotation::default(),
            now: SystemTime::now(),
        }
    }

    fn stored_after(plan: &Plan) -> BTreeMap<SecretItem, Secret> {
        plan.values.clone()
    }

    fn changed(plan: &Plan) -> Vec<SecretItem> {
        let mut items: Vec<SecretItem> = plan.changes.iter().map(|c| c.item).collect();
        items.sort();
        items
    }

    #[test]
    fn an_empty_vault_gets_everything_and_a_second_run_changes_nothing() {
        let first = reconcile(&BTreeMap::new(), &inputs()).unwrap();
        assert_eq!(changed(&first), SecretItem::ALL.to_vec());
        let order: Vec<SecretItem> = first.uploads().iter().map(|u| u.0).collect();
        assert_eq!(order, SecretItem::ALL.to_vec(), "CA before what it signs");
        let again = reconcile(&stored_after(&first), &inputs()).unwrap();
        assert!(again.changes.is_empty(), "{:?}", again.changes);
        assert_eq!(again.values, first.values);
        assert!(again.notes.is_empty(), "{:?}", again.notes);
    }

    #[test]
    fn only_the_kept_items_are_made() {
        let plan = reconcile(
            &BTreeMap::new(),
            &Inputs {
                tls: false,
                bootstrap_token: false,
                ..inputs()
            },
        )
        .unwrap();
        assert_eq!(changed(&plan), [SecretItem::GossipKey]);
    }

    #[test]
    fn rotation_renews_what_is_asked_and_keeps_the_rest() {
        let first = reconcile(&BTreeMap::new(), &inputs()).unwrap();
        let stored = stored_after(&first);
        let certs = reconcile(
            &stored,
            &Inputs {
                rotation: Rotation {
                    certificates: true,
                    ..Rotation::default()
                },
                ..inputs()
            },
        )
        .unwrap();
        assert_eq!(
            changed(&certs),
            [
                SecretItem::ServerCertificate,
                SecretItem::ServerKey,
                SecretItem::ClientCertificate,
                SecretItem::ClientKey,
                SecretItem::CliCertificate,
                SecretItem::CliKey
            ]
        );
        assert_eq!(
            certs.values[&SecretItem::CaCertificate],
            stored[&SecretItem::CaCertificate]
        );
        assert_ne!(
            certs.values[&SecretItem::ServerKey],
            stored[&SecretItem::ServerKey]
        );
        let gossip = reconcile(
            &stored,
            &Inputs {
                rotation: Rotation {
                    gossip_key: true,
                    ..Rotation::default()
                },
                ..inputs()
            },
        )
        .unwrap();
        assert_eq!(changed(&gossip), [SecretItem::GossipKey]);
    }

    #[test]
    fn what_the_cluster_file_changed_converges() {
        let first = reconcile(&BTreeMap::new(), &inputs()).unwrap();
        let stored = stored_after(&first);
        // Another region: the agents' and the CLI's names change.
        let mut other = inputs();
        other.pki.region = "eu".into();
        let plan = reconcile(&stored, &other).unwrap();
        assert_eq!(changed(&plan).len(), 6);
        assert!(
            plan.changes[0].why.contains("server.eu.nomad"),
            "{:?}",
            plan.changes
        );
        // A DNS name for the load balancer: only the server certificate.
        let mut named = inputs();
        named.pki.server_sans = vec![ExtraSan::Dns("nomad.westeurope.cloudapp.azure.com".into())];
        let plan = reconcile(&stored, &named).unwrap();
        assert_eq!(
            changed(&plan),
            [SecretItem::ServerCertificate, SecretItem::ServerKey]
        );
        assert!(
            plan.changes[0].why.contains("lacks the name"),
            "{:?}",
            plan.changes
        );
        // An operator's own gossip key replaces the generated one, once.
        let own = Secret::new("kGBHU6u7XuB0vq9Y3zT0l2tZ7yV3p3hKx5m9bJ8rG2c=".into());
        let mut with_key = inputs();
        with_key.own_gossip_key = Some(own.clone());
        let plan = reconcile(&stored, &with_key).unwrap();
        assert_eq!(changed(&plan), [SecretItem::GossipKey]);
        assert_eq!(plan.values[&SecretItem::GossipKey], own);
        assert!(reconcile(&stored_after(&plan), &with_key)
            .unwrap()
            .changes
            .is_empty());
    }

    #[test]
    fn an_own_ca_signs_the_certificates_and_its_key_stays_home() {
        let now = SystemTime::now();
        let own = CertificateAuthority::generate("mine", Lifetimes::default().ca, now).unwrap();
        let mut with_ca = inputs();
        with_ca.own_ca = Some(own.clone());
        let plan = reconcile(&BTreeMap::new(), &with_ca).unwrap();
        assert!(!plan.values.contains_key(&SecretItem::CaKey));
        assert!(!changed(&plan).contains(&SecretItem::CaKey));
        assert_eq!(
            plan.values[&SecretItem::CaCertificate].expose(),
            own.cert_pem()
        );
        own.check(
            Role::Server,
            "global",
            plan.values[&SecretItem::ServerCertificate].expose(),
            &plan.values[&SecretItem::ServerKey],
            now,
        )
        .unwrap();
        // A generated CA stored before is replaced, with everything it signed.
        let generated = stored_after(&reconcile(&BTreeMap::new(), &inputs()).unwrap());
        let plan = reconcile(&generated, &with_ca).unwrap();
        assert!(plan
            .changes
            .iter()
            .any(|c| c.item == SecretItem::CaCertificate && c.why.contains("changed")));
        assert!(changed(&plan).contains(&SecretItem::ClientKey));
        // Rotating an own CA is the operator's job.
        let e = super::super::ca_rotation::plan_step(
            super::super::ca_rotation::CaStep::Start,
            &generated,
            None,
            &with_ca,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("nomad.tls.ca_cert_file"), "{e}");
    }

    #[test]
    fn broken_vault_content_is_an_error_naming_the_item_and_the_remedy() {
        let stored = stored_after(&reconcile(&BTreeMap::new(), &inputs()).unwrap());
        let mut half = stored.clone();
        half.remove(&SecretItem::CaKey);
        let e = reconcile(&half, &inputs()).unwrap_err().to_string();
        assert!(e.contains("nomad-ca-key") && e.contains("restore"), "{e}");
        let mut bad_key = stored.clone();
        bad_key.insert(SecretItem::GossipKey, Secret::new("short".into()));
        let e = reconcile(&bad_key, &inputs()).unwrap_err().to_string();
        assert!(
            e.contains("nomad-gossip-key") && e.contains("rotate --gossip-key"),
            "{e}"
        );
        assert!(!e.contains("short"), "the value stays out: {e}");
        // A missing or broken leaf is simply issued again.
        let mut no_cli = stored.clone();
        no_cli.remove(&SecretItem::CliKey);
        let plan = reconcile(&no_cli, &inputs()).unwrap();
        assert_eq!(
            changed(&plan),
            [SecretItem::CliCertificate, SecretItem::CliKey]
        );
    }

    #[test]
    fn certificates_near_their_end_are_reported() {
        let mut short = inputs();
        short.pki.lifetimes.agent = Duration::from_secs(10 * 86_400);
        let stored = stored_after(&reconcile(&BTreeMap::new(), &short).unwrap());
        let plan = reconcile(&stored, &inputs()).unwrap();
        assert!(plan.changes.is_empty());
        assert!(
            plan.notes
                .iter()
                .any(|n| n.contains("server certificate expires in")),
            "{:?}",
            plan.notes
        );
    }
}
