//! The steps of a CA rotation against an in-memory vault.

use super::super::pki::{Lifetimes, PkiSpec};
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

/// The vault: items and the pending key.
#[derive(Clone)]
struct Vault {
    items: BTreeMap<SecretItem, Secret>,
    pending: Option<Secret>,
}

impl Vault {
    fn new() -> Self {
        let plan = reconcile::reconcile(&BTreeMap::new(), &inputs()).unwrap();
        Self {
            items: plan.values,
            pending: None,
        }
    }

    fn run(&mut self, step: CaStep) -> Result<StepPlan, ReconcileError> {
        let planned = plan_step(step, &self.items, self.pending.as_ref(), &inputs())?;
        self.items = planned.plan.values.clone();
        match &planned.pending {
            PendingChange::Keep => {}
            PendingChange::Set(k) => self.pending = Some(k.clone()),
            PendingChange::Delete => self.pending = None,
        }
        Ok(planned)
    }

    fn phase(&self) -> Phase {
        read_state(&self.items, self.pending.as_ref(), SystemTime::now())
            .unwrap()
            .phase
    }

    fn bundle(&self) -> Vec<String> {
        split_bundle(self.items[&SecretItem::CaCertificate].expose()).unwrap()
    }

    /// Which of the bundle's CAs signed the server certificate (by signature alone).
    fn server_signed_by(&self) -> usize {
        let der = |pem: &str| {
            x509_parser::pem::parse_x509_pem(pem.as_bytes())
                .unwrap()
                .1
                .contents
        };
        let leaf_der = der(self.items[&SecretItem::ServerCertificate].expose());
        let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();
        let signed: Vec<usize> = self
            .bundle()
            .iter()
            .enumerate()
            .filter(|(_, ca)| {
                let ca_der = der(ca);
                let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
                leaf.verify_signature(Some(ca.public_key())).is_ok()
            })
            .map(|(i, _)| i)
            .collect();
        assert_eq!(signed.len(), 1, "one CA of the bundle signed it");
        signed[0]
    }
}

#[test]
fn the_three_steps_go_through_their_phases_and_each_is_idempotent() {
    let mut vault = Vault::new();
    assert_eq!(vault.phase(), Phase::Idle);
    let old_ca = vault.bundle()[0].clone();
    let old_server = vault.items[&SecretItem::ServerCertificate].clone();

    let start = vault.run(CaStep::Start).unwrap();
    assert_eq!((start.before, start.after), (Phase::Idle, Phase::TrustBoth));
    assert_eq!(
        start
            .plan
            .changes
            .iter()
            .map(|c| c.item)
            .collect::<Vec<_>>(),
        [SecretItem::CaCertificate],
        "only the bundle changes; the certificates stay the old CA's"
    );
    assert!(matches!(start.pending, PendingChange::Set(_)));
    assert_eq!(vault.phase(), Phase::TrustBoth);
    let bundle = vault.bundle();
    assert_eq!(bundle.len(), 2);
    assert_eq!(bundle[0], old_ca, "the old CA first, unchanged");
    assert_eq!(vault.items[&SecretItem::ServerCertificate], old_server);
    assert_eq!(vault.server_signed_by(), 0);
    let again = vault.run(CaStep::Start).unwrap();
    assert!(!again.changes_anything(), "{:?}", again.plan.changes);
    assert_eq!(vault.bundle(), bundle, "a second start makes no other CA");

    let switch = vault.run(CaStep::Switch).unwrap();
    assert_eq!(switch.after, Phase::NewSigns);
    let mut items: Vec<SecretItem> = switch.plan.changes.iter().map(|c| c.item).collect();
    items.sort();
    assert_eq!(
        items,
        [
            SecretItem::CaKey,
            SecretItem::ServerCertificate,
            SecretItem::ServerKey,
            SecretItem::ClientCertificate,
            SecretItem::ClientKey,
            SecretItem::CliCertificate,
            SecretItem::CliKey
        ]
    );
    let order: Vec<SecretItem> = switch.plan.uploads().iter().map(|u| u.0).collect();
    assert_eq!(
        order[0],
        SecretItem::CaKey,
        "the signing key before what it signs"
    );
    assert_eq!(switch.pending, PendingChange::Delete);
    assert_eq!(vault.bundle(), bundle, "both CAs still trusted");
    assert_eq!(vault.server_signed_by(), 1);
    assert!(!vault.run(CaStep::Switch).unwrap().changes_anything());

    let finish = vault.run(CaStep::Finish).unwrap();
    assert_eq!(finish.after, Phase::Idle);
    assert_eq!(vault.bundle(), [bundle[1].clone()]);
    assert_eq!(vault.server_signed_by(), 0);
    let again = vault.run(CaStep::Finish).unwrap();
    assert!(!again.changes_anything());
    // Apply in every phase keeps everything as it is (checked above in each phase's
    // re-run, which is apply's reconcile plus nothing).
    let plan = reconcile::reconcile(&vault.items, &inputs()).unwrap();
    assert!(plan.changes.is_empty());
}

#[test]
fn apply_keeps_every_phase_as_it_is() {
    let mut vault = Vault::new();
    for step in [CaStep::Start, CaStep::Switch, CaStep::Finish] {
        vault.run(step).unwrap();
        let plan = reconcile::reconcile(&vault.items, &inputs()).unwrap();
        assert!(plan.changes.is_empty(), "{step:?}: {:?}", plan.changes);
        assert_eq!(plan.values, vault.items);
    }
}

#[test]
fn steps_out_of_order_are_refused_naming_the_phase_and_the_next_step() {
    let mut vault = Vault::new();
    let e = vault.run(CaStep::Switch).unwrap_err().to_string();
    assert!(
        e.contains("out of order") && e.contains("idle") && e.contains("rotate --ca start"),
        "{e}"
    );
    vault.run(CaStep::Start).unwrap();
    let e = vault.run(CaStep::Finish).unwrap_err().to_string();
    assert!(
        e.contains("phase-1")
            && e.contains("cluster-deploy roll")
            && e.contains("rotate --ca switch"),
        "{e}"
    );
    vault.run(CaStep::Switch).unwrap();
    let e = vault.run(CaStep::Start).unwrap_err().to_string();
    assert!(
        e.contains("phase-2") && e.contains("rotate --ca finish"),
        "{e}"
    );
    // Nothing was changed by the refusals.
    assert_eq!(vault.phase(), Phase::NewSigns);
}

#[test]
fn interrupted_steps_are_finished_by_running_them_again() {
    // Start cut after the pending key, before the bundle: a stale key, still idle.
    let mut vault = Vault::new();
    let planned = plan_step(CaStep::Start, &vault.items, None, &inputs()).unwrap();
    let PendingChange::Set(key) = planned.pending else {
        panic!()
    };
    vault.pending = Some(key);
    let state = read_state(&vault.items, vault.pending.as_ref(), SystemTime::now()).unwrap();
    assert_eq!((state.phase, state.stale_pending), (Phase::Idle, true));
    vault.run(CaStep::Start).unwrap();
    assert_eq!(vault.phase(), Phase::TrustBoth);

    // Switch cut after nomad-ca-key, before the certificates: phase 2 with the old CA's
    // certificates and the pending key still there. Finish refuses; switch completes.
    let before = vault.clone();
    let planned = plan_step(
        CaStep::Switch,
        &vault.items,
        vault.pending.as_ref(),
        &inputs(),
    )
    .unwrap();
    vault.items.insert(
        SecretItem::CaKey,
        planned.plan.values[&SecretItem::CaKey].clone(),
    );
    let state = read_state(&vault.items, vault.pending.as_ref(), SystemTime::now()).unwrap();
    assert_eq!((state.phase, state.stale_pending), (Phase::NewSigns, true));
    let e = vault.run(CaStep::Finish).unwrap_err().to_string();
    assert!(
        e.contains("phase 2 did not complete") && e.contains("nomad-server-cert"),
        "{e}"
    );
    let again = vault.run(CaStep::Switch).unwrap();
    assert_eq!(again.pending, PendingChange::Delete);
    assert_eq!(vault.server_signed_by(), 1);
    assert_ne!(
        vault.items[&SecretItem::ServerCertificate],
        before.items[&SecretItem::ServerCertificate]
    );
    vault.run(CaStep::Finish).unwrap();
    assert_eq!(vault.phase(), Phase::Idle);
}

#[test]
fn bundles_split_and_join_and_refuse_what_is_not_a_certificate() {
    let vault = Vault::new();
    let ca = vault.items[&SecretItem::CaCertificate].expose().to_string();
    let two = join_bundle(&[ca.clone(), ca.clone()]);
    assert_eq!(split_bundle(&two).unwrap(), [ca.clone(), ca.clone()]);
    assert_eq!(
        split_bundle(&format!("\n\n{ca}\n")).unwrap(),
        vec![ca.clone()]
    );
    let with_key = format!("{ca}{}", vault.items[&SecretItem::CaKey].expose());
    let e = split_bundle(&with_key).unwrap_err().to_string();
    assert!(
        e.contains("nomad-ca-cert") && e.contains("BEGIN CERTIFICATE"),
        "{e}"
    );
    assert!(
        !e.contains("PRIVATE KEY-----\n"),
        "no key material in the message: {e}"
    );
    assert!(split_bundle("").is_err());
    let fingerprint = fingerprint(&ca);
    assert_eq!(fingerprint.len(), 32 * 3 - 1);
}

#[test]
fn a_key_that_belongs_to_no_ca_of_the_bundle_is_broken_not_a_phase() {
    let mut vault = Vault::new();
    vault.run(CaStep::Start).unwrap();
    let other =
        CertificateAuthority::generate("x", Lifetimes::default().ca, SystemTime::now()).unwrap();
    vault
        .items
        .insert(SecretItem::CaKey, other.key_pem().clone());
    let e = read_state(&vault.items, vault.pending.as_ref(), SystemTime::now())
        .unwrap_err()
        .to_string();
    assert!(e.contains("nomad-ca-key") && e.contains("restore"), "{e}");
    assert!(!e.contains("PRIVATE"), "{e}");
}

#[test]
fn a_pending_key_deleted_by_hand_in_phase_1_is_named_with_its_remedy() {
    let mut vault = Vault::new();
    vault.run(CaStep::Start).unwrap();
    vault.pending = None;
    let e = plan_step(CaStep::Switch, &vault.items, None, &inputs())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("nomad-ca-key-next") && e.contains("secret recover"),
        "{e}"
    );
    // apply still works: the old CA signs, both are trusted.
    let plan = reconcile::reconcile(&vault.items, &inputs()).unwrap();
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
}
