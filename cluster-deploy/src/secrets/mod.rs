//! The cluster's secrets (issue 10): what cluster-deploy generates and keeps in the cluster's
//! Key Vault, checks when it reads it back, and uploads.
//!
//! - [`pki`]: the TLS CA and the server, client and CLI certificates Nomad's TLS guide
//!   prescribes (rcgen on ring).
//! - [`material`]: the gossip key, the ACL bootstrap token, and all of it as the Key Vault items
//!   of [`support::cluster_secrets::SecretItem`].
//! - [`ca_rotation`]: replacing the CA in three steps a roll carries through (trust both,
//!   switch the signer, drop the old), the phase read from the vault.
//! - [`reconcile`]: what the vault must hold after a run (keep, make, converge, rotate), pure.
//! - [`vault`]: the vault's data plane: tokens, reading the items, uploading new versions.
//! - [`local`]: the operator's copies for the Nomad CLI (`cluster-deploy env`), 0600 under the
//!   user's configuration directory.

pub mod ca_rotation;
pub mod local;
pub mod material;
pub mod pki;
pub mod reconcile;
pub mod vault;
