//! The cluster's secrets (issue 10, groundwork): what cluster-deploy generates and keeps in the
//! cluster's Key Vault, and checks when it reads it back.
//!
//! - [`pki`]: the TLS CA and the server, client and CLI certificates Nomad's TLS guide
//!   prescribes (rcgen on ring).
//! - [`material`]: the gossip key, the ACL bootstrap token, and all of it as the Key Vault items
//!   of [`support::cluster_secrets::SecretItem`] (upload with [`support::keyvault`]).
//!
//! Not wired yet: the cluster file, template, custom data and commands do not use this module.

pub mod material;
pub mod pki;
