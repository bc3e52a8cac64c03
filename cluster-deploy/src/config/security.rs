//! The cluster file's security settings: TLS, gossip encryption and ACLs are on unless the
//! file opts out item by item, and the cluster's Key Vault (`[key_vault]`) that keeps the
//! material.
//!
//! ```toml
//! [nomad]
//! acl               = true    # default; false opts out (a warning)
//! acl_bootstrap     = true    # default: apply bootstraps ACLs with a token kept in the vault
//! gossip_encryption = true    # default; false opts out (a warning)
//! gossip_key_file   = "..."   # your own key (a file on this machine) instead of a generated one
//!
//! [nomad.tls]
//! enabled      = true         # default; false opts out (a warning)
//! ca_cert_file = "..."        # your own CA (files on this machine): the agents' and the CLI's
//! ca_key_file  = "..."        # certificates are issued from it
//!
//! [key_vault]
//! name                       = "..."  # default: derived from the cluster and resource group
//! allowed_cidr_blocks        = [...]  # default: the public blocks of allowed_inbound_cidr_blocks
//! purge_protection           = false  # true is irreversible (Azure's rule)
//! soft_delete_retention_days = 90     # 7-90, fixed when the vault is created
//! ```
//!
//! [`check`] refuses what cannot work or is unsafe, naming the fields: an API open to the
//! internet (`allowed_inbound_cidr_blocks` with a block shorter than /8, or more than a /8's
//! worth of public addresses together: [`INTERNET_WIDE_ADDRESSES`]) without TLS and ACLs, or with
//! ACLs whose bootstrap is left to whoever calls first; the `[nomad.tls]` paths on the VMs of
//! earlier versions. [`warnings`] lists every opt-out, which `plan` prints.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

use super::{bad, network::parse_cidr, ClusterFile, ConfigError, Problem, Warning};

/// `[nomad.tls]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsOptions {
    /// TLS for Nomad's HTTP API and RPC (on unless set to false).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The operator's own CA certificate (PEM, a file on this machine).
    pub ca_cert_file: Option<PathBuf>,
    /// Its private key (PEM, a file on this machine).
    pub ca_key_file: Option<PathBuf>,
    // Earlier versions' paths ON THE VMS: refused with the way forward (see [`check`]).
    #[doc(hidden)]
    pub ca_file: Option<String>,
    #[doc(hidden)]
    pub cert_file: Option<String>,
    #[doc(hidden)]
    pub key_file: Option<String>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            ca_cert_file: None,
            ca_key_file: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
        }
    }
}

/// `[key_vault]`: the vault that keeps the cluster's secrets.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyVaultOptions {
    /// The vault's (globally unique) name [default: [`default_vault_name`]].
    pub name: Option<String>,
    /// Public IPv4 blocks that may reach the vault's data plane: where `apply`, `rotate` and
    /// `env` run [default: the public blocks of `allowed_inbound_cidr_blocks`].
    pub allowed_cidr_blocks: Option<Vec<String>>,
    /// Purge protection: a deleted vault cannot be purged before its retention ends. Azure
    /// makes turning it on irreversible.
    #[serde(default)]
    pub purge_protection: bool,
    /// Soft-delete retention, 7 to 90 days, fixed when the vault is created.
    pub soft_delete_retention_days: Option<u32>,
}

/// Soft delete's default retention (Key Vault's own default).
pub const DEFAULT_RETENTION_DAYS: u32 = 90;

fn yes() -> bool {
    true
}

/// The vault name cluster-deploy uses when the file gives none: up to 13 characters of the
/// cluster name, `-kv-`, and 6 hex digits of SHA-256 over `<resource group>/<cluster>`: at
/// most 23 characters (Key Vault allows 3-24), deterministic, so every run and every operator
/// finds the same vault, and different for the same cluster name in another resource group.
/// Vault names are global: if another subscription holds it, set `key_vault.name`.
pub fn default_vault_name(cluster: &str, resource_group: &str) -> String {
    // Cluster names allow "--", vault names do not.
    let mut stem = String::new();
    for c in cluster.chars().take(13) {
        if !(c == '-' && stem.ends_with('-')) {
            stem.push(c);
        }
    }
    let stem = stem.trim_end_matches('-');
    let digest = support::hash::sha256_hex(
        format!(
            "{}/{}",
            resource_group.to_ascii_lowercase(),
            cluster.to_ascii_lowercase()
        )
        .as_bytes(),
    );
    format!("{stem}-kv-{}", &digest[..6])
}

/// RFC 1918 ranges, which Key Vault refuses in IP rules ("any IP range inside 10.0.0.0-
/// 10.255.255.255 (private IP addresses) cannot be used to add network rules",
/// Add-AzKeyVaultNetworkRule) and which never reach its public endpoint anyway.
fn is_private(net: &ipnet::Ipv4Net) -> bool {
    let private: [ipnet::Ipv4Net; 3] = [
        "10.0.0.0/8".parse().expect("a CIDR"),
        "172.16.0.0/12".parse().expect("a CIDR"),
        "192.168.0.0/16".parse().expect("a CIDR"),
    ];
    private.iter().any(|p| p.contains(net))
}

/// Whether a block admits every IPv4 address.
pub fn is_everywhere(cidr: &str) -> bool {
    parse_cidr(cidr).is_ok_and(|net| net.prefix_len() == 0)
}

/// The blocks the vault's firewall admits, and whether it is open to every address (a `/0`
/// block: then the firewall's default action is Allow and RBAC alone guards the vault).
pub fn vault_cidrs(f: &ClusterFile) -> (Vec<String>, bool) {
    let given = f.key_vault.allowed_cidr_blocks.is_some();
    let blocks = f
        .key_vault
        .allowed_cidr_blocks
        .clone()
        .unwrap_or_else(|| f.allowed_inbound_cidr_blocks.clone());
    let open = blocks.iter().any(|b| is_everywhere(b));
    let kept = blocks
        .into_iter()
        .filter(|b| {
            parse_cidr(b).is_ok_and(|net| net.prefix_len() > 0 && (given || !is_private(&net)))
        })
        .collect();
    (kept, open)
}

/// Whether the vault holds anything: a generated or own TLS PKI, a gossip key, or the ACL
/// bootstrap token.
pub fn uses_vault(f: &ClusterFile) -> bool {
    f.nomad.tls.enabled || f.nomad.gossip_encryption || (f.nomad.acl && f.nomad.acl_bootstrap)
}

/// Resolves the security settings' relative paths against the cluster file's directory.
pub(super) fn anchor_paths(base: &Path, f: &mut ClusterFile) {
    let anchor = |p: &mut Option<PathBuf>| {
        if let Some(path) = p {
            if path.is_relative() {
                *p = Some(base.join(&*path));
            }
        }
    };
    anchor(&mut f.nomad.gossip_key_file);
    anchor(&mut f.nomad.tls.ca_cert_file);
    anchor(&mut f.nomad.tls.ca_key_file);
}

/// The checks: legacy fields, pairs, the vault's settings, and the internet-facing rule.
pub(super) fn check(f: &ClusterFile) -> Result<(), Problem> {
    let n = &f.nomad;
    let tls = &n.tls;
    for (field, value) in [
        ("nomad.tls.ca_file", &tls.ca_file),
        ("nomad.tls.cert_file", &tls.cert_file),
        ("nomad.tls.key_file", &tls.key_file),
    ] {
        if value.is_some() {
            return Err(bad(
                field,
                "is a path on the VMs, which cluster-deploy no longer uses: it makes the cluster's \
                 TLS CA and certificates itself and keeps them in the cluster's Key Vault, where \
                 each VM fetches its own at boot. Remove ca_file, cert_file and key_file; to use \
                 your own CA, give `nomad.tls.ca_cert_file` and `nomad.tls.ca_key_file` (files on \
                 this machine)",
            ));
        }
    }
    match (&tls.ca_cert_file, &tls.ca_key_file) {
        (Some(_), None) => {
            return Err(bad(
                "nomad.tls.ca_cert_file",
                "needs `nomad.tls.ca_key_file`: cluster-deploy issues the agents' and the CLI's \
                 certificates from your CA, so it needs the CA's key too",
            ))
        }
        (None, Some(_)) => {
            return Err(bad(
                "nomad.tls.ca_key_file",
                "needs `nomad.tls.ca_cert_file` (the CA certificate the key belongs to)",
            ))
        }
        (Some(_), Some(_)) if !tls.enabled => {
            return Err(bad(
                "nomad.tls.ca_cert_file",
                "is set but `nomad.tls.enabled` is false: remove one of them",
            ))
        }
        _ => {}
    }
    if n.gossip_key_file.is_some() && !n.gossip_encryption {
        return Err(bad(
            "nomad.gossip_key_file",
            "is set but `nomad.gossip_encryption` is false: remove one of them",
        ));
    }
    let kv = &f.key_vault;
    if let Some(name) = &kv.name {
        if let Err(e) = support::keyvault::validate_vault_name(name) {
            return Err(bad("key_vault.name", e.to_string()));
        }
    }
    if let Some(days) = kv.soft_delete_retention_days {
        if !(7..=90).contains(&days) {
            return Err(bad(
                "key_vault.soft_delete_retention_days",
                format!("is {days}: Key Vault keeps deleted vaults 7 to 90 days"),
            ));
        }
    }
    for (i, cidr) in kv.allowed_cidr_blocks.iter().flatten().enumerate() {
        let field = format!("key_vault.allowed_cidr_blocks[{i}]");
        let net = parse_cidr(cidr).map_err(|e| bad(&field, e))?;
        if is_private(&net) {
            return Err(bad(
                &field,
                format!(
                    "is {cidr}, a private (RFC 1918) range: Key Vault's firewall takes public \
                     addresses only; machines in a virtual network reach the vault through a \
                     service endpoint of their subnet"
                ),
            ));
        }
    }
    check_internet_facing(f)
}

/// The largest public address space `allowed_inbound_cidr_blocks` may admit without TLS and
/// bootstrapped ACLs: one /8 (16,777,216 addresses). More than that, or any single block
/// shorter than /8, is internet-wide for this rule: `0.0.0.0/0`, but also `0.0.0.0/1` with
/// `128.0.0.0/1`, or a handful of /9s, which admit as much.
pub const INTERNET_WIDE_ADDRESSES: u64 = 1 << 24;

/// Ranges that are not public addresses (RFC 6890's special-purpose registry: "this network",
/// RFC 1918 private, shared address space, loopback, link local, multicast and reserved):
/// blocks inside them do not count towards [`INTERNET_WIDE_ADDRESSES`].
const NOT_PUBLIC: [&str; 8] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/3",
];

/// `[start, end)` of a block, as integers.
fn span(net: &ipnet::Ipv4Net) -> (u64, u64) {
    let start = u64::from(u32::from(net.network()));
    (start, start + (1u64 << (32 - net.prefix_len())))
}

/// How many public addresses the blocks admit together, overlaps counted once. Blocks that do
/// not parse are left out (the network checks name them).
pub fn public_addresses(blocks: &[String]) -> u64 {
    let mut spans: Vec<(u64, u64)> = blocks
        .iter()
        .filter_map(|b| parse_cidr(b).ok())
        .map(|n| span(&n))
        .collect();
    spans.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    let reserved: Vec<(u64, u64)> = NOT_PUBLIC
        .iter()
        .map(|c| span(&c.parse().expect("a CIDR")))
        .collect();
    merged
        .iter()
        .map(|&(start, end)| {
            // The reserved ranges are disjoint, so their overlaps add up.
            let hidden: u64 = reserved
                .iter()
                .map(|&(r0, r1)| r1.min(end).saturating_sub(r0.max(start)))
                .sum();
            (end - start) - hidden
        })
        .sum()
}

/// An internet-wide `allowed_inbound_cidr_blocks` (see [`INTERNET_WIDE_ADDRESSES`]) puts the
/// Nomad API on the internet: only with TLS (no token in clear text), ACLs (no anonymous job
/// submission, which is code execution on every client) and cluster-deploy's bootstrap
/// (otherwise whoever calls `/v1/acl/bootstrap` first owns the cluster).
fn check_internet_facing(f: &ClusterFile) -> Result<(), Problem> {
    let blocks = &f.allowed_inbound_cidr_blocks;
    let wide = blocks
        .iter()
        .position(|c| parse_cidr(c).is_ok_and(|n| n.prefix_len() < 8));
    let total = public_addresses(blocks);
    if wide.is_none() && total <= INTERNET_WIDE_ADDRESSES {
        return Ok(());
    }
    let n = &f.nomad;
    let mut off = Vec::new();
    if !n.tls.enabled {
        off.push("`nomad.tls.enabled = false` (the API and its tokens would cross the internet in clear text)");
    }
    if !n.acl {
        off.push("`nomad.acl = false` (anyone could run jobs, that is code, on every client)");
    } else if !n.acl_bootstrap {
        off.push("`nomad.acl_bootstrap = false` (whoever calls /v1/acl/bootstrap first would own the cluster)");
    }
    if off.is_empty() {
        return Ok(());
    }
    let (field, what) = match wide {
        Some(i) if is_everywhere(&blocks[i]) => (
            format!("allowed_inbound_cidr_blocks[{i}]"),
            format!("is {}, the whole internet,", blocks[i]),
        ),
        Some(i) => (
            format!("allowed_inbound_cidr_blocks[{i}]"),
            format!("is {}, a block shorter than /8 (internet-wide),", blocks[i]),
        ),
        None => (
            "allowed_inbound_cidr_blocks".to_string(),
            format!(
                "is [{}], which together admit {total} public addresses, more than one /8 \
                 ({INTERNET_WIDE_ADDRESSES}: internet-wide),",
                blocks.join(", ")
            ),
        ),
    };
    Err(bad(
        &field,
        format!(
            "{what} while {}: an internet-facing Nomad API needs TLS and ACLs bootstrapped by \
             cluster-deploy; turn them back on, or admit only your own networks (the rule: no \
             block shorter than /8, and at most one /8's worth of public addresses in all, \
             overlaps counted once and private or reserved ranges left out)",
            off.join(" and ")
        ),
    ))
}

/// One warning per opt-out and per setting that weakens the defaults.
pub(super) fn warnings(f: &ClusterFile) -> Vec<Warning> {
    let n = &f.nomad;
    let mut out = Vec::new();
    let mut warn = |field: &str, message: &str| {
        out.push(Warning {
            field: field.to_string(),
            message: message.to_string(),
        })
    };
    if !n.tls.enabled {
        warn(
            "nomad.tls.enabled",
            "is false: the Nomad API and RPC are plain text, ACL tokens cross the network in \
             clear, and nothing proves a server is one of yours (opt-out)",
        );
    }
    if !n.gossip_encryption {
        warn(
            "nomad.gossip_encryption",
            "is false: the servers' gossip (membership, failure detection) is not encrypted \
             (opt-out)",
        );
    }
    if !n.acl {
        warn(
            "nomad.acl",
            "is false: anyone who reaches the Nomad API may submit jobs, that is run code on \
             every client (opt-out)",
        );
    } else if !n.acl_bootstrap {
        warn(
            "nomad.acl_bootstrap",
            "is false: ACLs are on but cluster-deploy does not bootstrap them; until you run \
             `nomad acl bootstrap`, whoever reaches the API first may (opt-out)",
        );
    }
    if n.gossip_key_file.is_some() {
        warn(
            "nomad.gossip_key_file",
            "gives your own gossip key: apply uploads it to the cluster's Key Vault (it never \
             reaches the template or custom data); `rotate --gossip-key` then means replacing \
             that file",
        );
    }
    let (blocks, open) = vault_cidrs(f);
    if uses_vault(f) && open {
        warn(
            "key_vault.allowed_cidr_blocks",
            "admits every address (0.0.0.0/0, given or taken from allowed_inbound_cidr_blocks): \
             the vault's firewall is off and only Azure RBAC guards it",
        );
    } else if uses_vault(f) && blocks.is_empty() {
        warn(
            "key_vault.allowed_cidr_blocks",
            "admits no public address (allowed_inbound_cidr_blocks has none): apply, env and \
             rotate cannot reach the vault from outside the cluster's subnet; list the public \
             addresses they run from",
        );
    }
    out
}

/// Reads and checks a gossip key file: standard base64 of exactly 32 bytes, as Nomad's
/// `server.encrypt` wants it. The key itself never appears in the error.
pub fn read_gossip_key(
    config_path: &Path,
    file: &Path,
) -> Result<crate::auth::Secret, ConfigError> {
    let err = |problem: String| ConfigError::GossipKey {
        path: config_path.to_path_buf(),
        file: file.to_path_buf(),
        problem,
    };
    let text = std::fs::read_to_string(file).map_err(|e| err(e.to_string()))?;
    let key = text.trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| {
            err("is not standard base64 (generate one with `nomad operator gossip keyring generate`, or leave the key to cluster-deploy)"
                .to_string())
        })?;
    if decoded.len() != 32 {
        return Err(err(format!(
            "decodes to {} bytes; Nomad's gossip key is 32 bytes",
            decoded.len()
        )));
    }
    Ok(crate::auth::Secret::new(key.to_string()))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load_text, minimal_with, problem};
    use super::*;

    #[test]
    fn secure_by_default() {
        let f = load_text(&minimal_with("")).unwrap();
        assert!(f.nomad.tls.enabled && f.nomad.gossip_encryption);
        assert!(f.nomad.acl && f.nomad.acl_bootstrap);
        assert!(uses_vault(&f));
        assert!(warnings(&f).is_empty(), "{:?}", warnings(&f));
        assert!(f.warnings.is_empty(), "{:?}", f.warnings);
    }

    #[test]
    fn every_opt_out_is_a_warning_naming_its_field() {
        let f = load_text(&minimal_with(
            "[nomad]\nacl = false\ngossip_encryption = false\n[nomad.tls]\nenabled = false\n",
        ))
        .unwrap();
        let fields: Vec<&str> = f.warnings.iter().map(|w| w.field.as_str()).collect();
        assert_eq!(
            fields,
            ["nomad.tls.enabled", "nomad.gossip_encryption", "nomad.acl"]
        );
        assert!(f.warnings.iter().all(|w| w.message.contains("opt-out")));
        assert!(!uses_vault(&f));
        let f = load_text(&minimal_with("[nomad]\nacl_bootstrap = false\n")).unwrap();
        assert_eq!(f.warnings[0].field, "nomad.acl_bootstrap");
    }

    #[test]
    fn the_whole_internet_needs_tls_and_bootstrapped_acls() {
        let open = "allowed_inbound_cidr_blocks = [\"203.0.113.0/24\", \"0.0.0.0/0\"]\n";
        assert!(load_text(&minimal_with(open)).is_ok());
        for (tables, names) in [
            ("[nomad.tls]\nenabled = false\n", vec!["nomad.tls.enabled"]),
            ("[nomad]\nacl = false\n", vec!["nomad.acl"]),
            (
                "[nomad]\nacl_bootstrap = false\n",
                vec!["nomad.acl_bootstrap"],
            ),
            (
                "[nomad]\nacl = false\n[nomad.tls]\nenabled = false\n",
                vec!["nomad.tls.enabled", "nomad.acl"],
            ),
        ] {
            let text = problem(&minimal_with(&format!("{open}{tables}")));
            assert!(
                text.contains("`allowed_inbound_cidr_blocks[1]` is 0.0.0.0/0"),
                "{text}"
            );
            for name in names {
                assert!(text.contains(name), "{name}: {text}");
            }
        }
    }

    #[test]
    fn internet_wide_is_a_short_block_or_more_than_a_slash_8_of_public_addresses() {
        let v = |b: &[&str]| b.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            public_addresses(&v(&["0.0.0.0/0"])),
            (1 << 32) - 592_576_512
        );
        assert_eq!(
            public_addresses(&v(&["0.0.0.0/1", "128.0.0.0/1"])),
            public_addresses(&v(&["0.0.0.0/0"]))
        );
        // Overlaps count once; private and reserved ranges not at all.
        assert_eq!(
            public_addresses(&v(&["203.0.113.0/24", "203.0.113.0/25", "203.0.113.7"])),
            256
        );
        assert_eq!(
            public_addresses(&v(&["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"])),
            0
        );
        assert_eq!(
            public_addresses(&v(&["11.0.0.0/8"])),
            INTERNET_WIDE_ADDRESSES
        );
        let insecure = "[nomad.tls]\nenabled = false\n";
        for (blocks, field) in [
            (
                r#"["0.0.0.0/1", "128.0.0.0/1"]"#,
                "allowed_inbound_cidr_blocks[0]",
            ),
            (
                r#"["203.0.113.0/24", "64.0.0.0/7"]"#,
                "allowed_inbound_cidr_blocks[1]",
            ),
            (
                r#"["11.0.0.0/9", "11.128.0.0/9", "12.0.0.0/9"]"#,
                "allowed_inbound_cidr_blocks`",
            ),
        ] {
            let text = problem(&minimal_with(&format!(
                "allowed_inbound_cidr_blocks = {blocks}\n{insecure}"
            )));
            assert!(text.contains(field), "{blocks}: {text}");
            assert!(text.contains("nomad.tls.enabled"), "{text}");
            assert!(
                text.contains("no block shorter than /8"),
                "the rule: {text}"
            );
            // With TLS and bootstrapped ACLs, the same blocks are fine.
            assert!(
                load_text(&minimal_with(&format!(
                    "allowed_inbound_cidr_blocks = {blocks}\n"
                )))
                .is_ok(),
                "{blocks}"
            );
        }
        let text = problem(&minimal_with(&format!(
            "allowed_inbound_cidr_blocks = [\"11.0.0.0/9\", \"11.128.0.0/9\", \"12.0.0.0/9\"]\n{insecure}"
        )));
        assert!(text.contains("25165824 public addresses"), "{text}");
        // One /8, or every private range, is not internet-wide.
        for blocks in [
            r#"["11.0.0.0/8"]"#,
            r#"["11.0.0.0/9", "11.128.0.0/9", "10.1.0.0/16"]"#,
            r#"["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"]"#,
        ] {
            assert!(
                load_text(&minimal_with(&format!(
                    "allowed_inbound_cidr_blocks = {blocks}\n{insecure}"
                )))
                .is_ok(),
                "{blocks}"
            );
        }
    }

    #[test]
    fn the_vault_admits_the_operators_public_networks() {
        let f = load_text(&minimal_with(
            "allowed_inbound_cidr_blocks = [\"203.0.113.0/24\", \"10.8.0.0/16\"]\n",
        ))
        .unwrap();
        assert_eq!(vault_cidrs(&f), (vec!["203.0.113.0/24".to_string()], false));
        let f = load_text(&minimal_with(
            "[key_vault]\nallowed_cidr_blocks = [\"198.51.100.7\"]\n",
        ))
        .unwrap();
        assert_eq!(vault_cidrs(&f), (vec!["198.51.100.7".to_string()], false));
        let f = load_text(&minimal_with(
            "[key_vault]\nallowed_cidr_blocks = [\"0.0.0.0/0\"]\n",
        ))
        .unwrap();
        assert_eq!(vault_cidrs(&f), (vec![], true));
        assert_eq!(f.warnings[0].field, "key_vault.allowed_cidr_blocks");
        let f = load_text(&minimal_with(
            "allowed_inbound_cidr_blocks = [\"10.8.0.0/16\"]\n",
        ))
        .unwrap();
        assert!(f.warnings[0].message.contains("admits no public address"));
        let text = problem(&minimal_with(
            "[key_vault]\nallowed_cidr_blocks = [\"192.168.1.0/24\"]\n",
        ));
        assert!(
            text.contains("`key_vault.allowed_cidr_blocks[0]`") && text.contains("RFC 1918"),
            "{text}"
        );
    }

    #[test]
    fn vault_settings_are_checked_by_name() {
        for (table, field) in [
            ("[key_vault]\nname = \"x\"\n", "key_vault.name"),
            ("[key_vault]\nname = \"has_underscore\"\n", "key_vault.name"),
            (
                "[key_vault]\nsoft_delete_retention_days = 3\n",
                "key_vault.soft_delete_retention_days",
            ),
            (
                "[nomad.tls]\nca_cert_file = \"ca.pem\"\n",
                "nomad.tls.ca_cert_file",
            ),
            (
                "[nomad.tls]\nca_key_file = \"ca.key\"\n",
                "nomad.tls.ca_key_file",
            ),
            (
                "[nomad]\ngossip_encryption = false\ngossip_key_file = \"k\"\n",
                "nomad.gossip_key_file",
            ),
        ] {
            let text = problem(&minimal_with(table));
            assert!(text.contains(&format!("`{field}`")), "{table}: {text}");
        }
    }

    #[test]
    fn the_old_paths_on_the_vms_are_refused_with_the_way_forward() {
        let text = problem(&minimal_with(
            "[nomad.tls]\nca_file = \"/opt/nomad/tls/ca.pem\"\ncert_file = \"/c\"\nkey_file = \"/k\"\n",
        ));
        assert!(text.contains("`nomad.tls.ca_file`"), "{text}");
        assert!(text.contains("ca_cert_file"), "{text}");
    }

    #[test]
    fn default_vault_names_are_valid_short_and_stable() {
        let a = default_vault_name("nomad-example", "nomad-example");
        assert_eq!(a, default_vault_name("nomad-example", "nomad-example"));
        assert!(a.starts_with("nomad-example-kv-"), "{a}");
        support::keyvault::validate_vault_name(&a).unwrap();
        let long = default_vault_name("a-very-long-cluster-name-of-forty-chars-x", "rg");
        assert!(long.len() <= 24, "{long}");
        support::keyvault::validate_vault_name(&long).unwrap();
        // A hyphen at the cut does not make a double hyphen.
        for name in ["abcdefghijkl-mnop", "ab--cd"] {
            support::keyvault::validate_vault_name(&default_vault_name(name, "rg")).unwrap();
        }
        assert_ne!(a, default_vault_name("nomad-example", "other-group"));
    }
}
