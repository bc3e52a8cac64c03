//! Who may do what on a vault's data plane: Azure RBAC data actions and the vault firewall.
//!
//! - Each operation needs one data action (Microsoft's "Azure permissions for Security":
//!   `Microsoft.KeyVault/vaults/secrets/getSecret/action`, `.../setSecret/action`,
//!   `.../readMetadata/action`, `.../delete`, `.../recover/action`, `.../purge/action`,
//!   `.../backup/action`, `.../restore/action`, `.../update/action`), on the secret's own
//!   resource id (`<vault id>/secrets/<name>`) or, for vault-wide listings, on the vault.
//! - A role assignment grants its role's data actions at its scope and below: a subscription,
//!   a resource group, the vault, or one secret ("Secret scope role assignment", Key Vault
//!   RBAC guide). Built-in roles (learn.microsoft.com, "Azure built-in roles", and the RBAC
//!   guide's table): Key Vault Administrator `Microsoft.KeyVault/vaults/*`, Key Vault Secrets
//!   Officer `Microsoft.KeyVault/vaults/secrets/*`, Key Vault Secrets User `getSecret` and
//!   `readMetadata`, Key Vault Reader `readMetadata`. Owner and Contributor have no data actions,
//!   so they read no secret ("The Key Vault Contributor role is for control plane operations
//!   only").
//! - Network rules (`networkAcls`, keyvault.json 2025-05-01): with `defaultAction: Deny` a
//!   caller passes only from an address in `ipRules` (IPv4, CIDR) or from a subnet in
//!   `virtualNetworkRules`; `publicNetworkAccess: Disabled` refuses every public caller. The
//!   refusal is 403 `ForbiddenByFirewall` "Client address is not authorized and caller is not a
//!   trusted service" (Key Vault REST error codes).

use std::net::{IpAddr, Ipv4Addr};

use serde_json::Value;

use super::super::arm::rbac;

/// A built-in Key Vault data-plane role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyVaultRole {
    Administrator,
    SecretsOfficer,
    SecretsUser,
    Reader,
}

impl KeyVaultRole {
    /// The role definition id (the GUID of the built-in role).
    pub fn definition_id(self) -> &'static str {
        match self {
            KeyVaultRole::Administrator => "00482a5a-887f-4fb3-b363-3b7fe8e74483",
            KeyVaultRole::SecretsOfficer => "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
            KeyVaultRole::SecretsUser => "4633458b-17de-408a-b874-0445c86b69e6",
            KeyVaultRole::Reader => "21090545-7ca7-4776-b22c-e363652d74d2",
        }
    }
}

/// The data actions of a role definition (by GUID, or a full `.../roleDefinitions/<guid>` id).
pub fn data_actions(role_definition: &str) -> &'static [&'static str] {
    let guid = role_definition
        .rsplit('/')
        .next()
        .unwrap_or(role_definition);
    match guid.to_ascii_lowercase().as_str() {
        "00482a5a-887f-4fb3-b363-3b7fe8e74483" => &["Microsoft.KeyVault/vaults/*"],
        "b86a8fe4-44ce-4948-aee5-eccb2c155cd7" => &["Microsoft.KeyVault/vaults/secrets/*"],
        "4633458b-17de-408a-b874-0445c86b69e6" => &[
            "Microsoft.KeyVault/vaults/secrets/getSecret/action",
            "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
        ],
        "21090545-7ca7-4776-b22c-e363652d74d2" => &[
            "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
            "Microsoft.KeyVault/vaults/keys/read",
            "Microsoft.KeyVault/vaults/certificates/read",
        ],
        // Owner, Contributor, Reader, Key Vault Contributor...: management actions only.
        _ => &[],
    }
}

/// Whether a role grants `action`.
pub fn grants(role_definition: &str, action: &str) -> bool {
    data_actions(role_definition)
        .iter()
        .any(|pattern| rbac::pattern_matches(pattern, action))
}

/// The data action an operation needs.
pub fn action_of(operation_id: &str) -> Option<&'static str> {
    Some(match operation_id {
        "SetSecret" => "Microsoft.KeyVault/vaults/secrets/setSecret/action",
        "GetSecret" => "Microsoft.KeyVault/vaults/secrets/getSecret/action",
        "GetSecrets" | "GetSecretVersions" | "GetDeletedSecret" | "GetDeletedSecrets" => {
            "Microsoft.KeyVault/vaults/secrets/readMetadata/action"
        }
        "UpdateSecret" => "Microsoft.KeyVault/vaults/secrets/update/action",
        "DeleteSecret" => "Microsoft.KeyVault/vaults/secrets/delete",
        "RecoverDeletedSecret" => "Microsoft.KeyVault/vaults/secrets/recover/action",
        "PurgeDeletedSecret" => "Microsoft.KeyVault/vaults/secrets/purge/action",
        "BackupSecret" => "Microsoft.KeyVault/vaults/secrets/backup/action",
        "RestoreSecret" => "Microsoft.KeyVault/vaults/secrets/restore/action",
        _ => return None,
    })
}

/// Whether an assignment at `scope` covers `target` (the same id or one below it).
pub fn covers(scope: &str, target: &str) -> bool {
    let scope = scope.trim_end_matches('/').to_ascii_lowercase();
    let target = target.trim_end_matches('/').to_ascii_lowercase();
    target == scope || target.starts_with(&format!("{scope}/"))
}

/// Where a caller's requests come from, for the firewall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub address: IpAddr,
    /// The subnet (resource id) the caller sits in, reaching the vault through a service
    /// endpoint.
    pub subnet: Option<String>,
}

impl Default for Origin {
    fn default() -> Self {
        Self {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            subnet: None,
        }
    }
}

fn in_ipv4_rule(rule: &str, address: IpAddr) -> bool {
    let IpAddr::V4(address) = address else {
        return false;
    };
    let (net, bits) = rule.split_once('/').unwrap_or((rule, "32"));
    let (Ok(net), Ok(bits)) = (net.trim().parse::<Ipv4Addr>(), bits.trim().parse::<u32>()) else {
        return false;
    };
    if bits > 32 {
        return false;
    }
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    u32::from(net) & mask == u32::from(address) & mask
}

/// Whether the vault's network rules keep `origin` out.
pub fn firewall_refuses(
    network_acls: &Value,
    public_network_access: &str,
    origin: &Origin,
) -> bool {
    if public_network_access.eq_ignore_ascii_case("disabled") {
        return true;
    }
    if !network_acls["defaultAction"]
        .as_str()
        .is_some_and(|a| a.eq_ignore_ascii_case("deny"))
    {
        return false;
    }
    let by_ip = network_acls["ipRules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["value"].as_str())
        .any(|r| in_ipv4_rule(r, origin.address));
    let by_subnet = origin.subnet.as_deref().is_some_and(|subnet| {
        network_acls["virtualNetworkRules"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_str())
            .any(|id| id.eq_ignore_ascii_case(subnet))
    });
    !(by_ip || by_subnet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn roles_grant_their_documented_data_actions_only() {
        let get = action_of("GetSecret").unwrap();
        let set = action_of("SetSecret").unwrap();
        let purge = action_of("PurgeDeletedSecret").unwrap();
        let user = KeyVaultRole::SecretsUser.definition_id();
        assert!(grants(user, get) && !grants(user, set) && !grants(user, purge));
        let officer = format!(
            "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/{}",
            KeyVaultRole::SecretsOfficer.definition_id()
        );
        assert!(grants(&officer, get) && grants(&officer, set) && grants(&officer, purge));
        assert!(grants(KeyVaultRole::Administrator.definition_id(), purge));
        assert!(!grants(KeyVaultRole::Reader.definition_id(), get));
        // Owner (8e3af657-...) has every management action and no data action.
        assert!(!grants("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", get));
    }

    #[test]
    fn scopes_cover_themselves_and_below() {
        let vault = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v";
        assert!(covers(vault, &format!("{vault}/secrets/x")));
        assert!(covers("/subscriptions/s/resourcegroups/RG", vault));
        assert!(!covers(&format!("{vault}/secrets/x"), vault));
        assert!(!covers(
            &format!("{vault}/secrets/x"),
            &format!("{vault}/secrets/xy")
        ));
        assert!(!covers(&format!("{vault}2"), vault));
    }

    #[test]
    fn the_firewall_follows_ip_and_subnet_rules() {
        let origin = |ip: &str, subnet: Option<&str>| Origin {
            address: ip.parse().unwrap(),
            subnet: subnet.map(str::to_string),
        };
        let open = json!({ "defaultAction": "Allow" });
        assert!(!firewall_refuses(
            &open,
            "Enabled",
            &origin("203.0.113.9", None)
        ));
        assert!(firewall_refuses(
            &open,
            "Disabled",
            &origin("203.0.113.9", None)
        ));
        let acls = json!({
            "defaultAction": "Deny",
            "bypass": "AzureServices",
            "ipRules": [{ "value": "198.51.100.0/24" }, { "value": "203.0.113.7/32" }],
            "virtualNetworkRules": [{ "id": "/subscriptions/s/resourcegroups/rg/providers/microsoft.network/virtualnetworks/vnet/subnets/servers" }],
        });
        assert!(!firewall_refuses(
            &acls,
            "Enabled",
            &origin("198.51.100.42", None)
        ));
        assert!(!firewall_refuses(
            &acls,
            "Enabled",
            &origin("203.0.113.7", None)
        ));
        assert!(firewall_refuses(
            &acls,
            "Enabled",
            &origin("203.0.113.8", None)
        ));
        assert!(!firewall_refuses(
            &acls,
            "Enabled",
            &origin(
                "10.0.1.4",
                Some("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/vnet/subnets/servers")
            )
        ));
        assert!(firewall_refuses(
            &acls,
            "Enabled",
            &origin(
                "10.0.2.4",
                Some("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/vnet/subnets/clients")
            )
        ));
    }
}
