//! What the deployment parameters need to know about the cluster as it exists: whether its
//! network security group is there already. A PUT of the NSG replaces every rule, so an
//! existing NSG is not declared again; only our rules are, one by one (see
//! [`crate::template`]), and rules others added stay.

use anyhow::{Context, Result};
use serde_json::Value;

use crate::arm::ArmClient;
use crate::model::Cluster;
use crate::template::{self, NETWORK_API};

/// The parameters with `createNetworkSecurityGroup` set from a GET of the cluster's NSG.
pub(super) fn deployment_parameters(
    arm: &ArmClient,
    cluster: &Cluster,
    parameters: Value,
) -> Result<Value> {
    let id = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/networkSecurityGroups/{}",
        arm.subscription, cluster.resource_group, cluster.names.nsg
    );
    let exists = arm
        .get_resource(&id, NETWORK_API)
        .with_context(|| format!("reading network security group {}", cluster.names.nsg))?
        .is_some();
    if exists {
        tracing::info!(
            "network security group {} exists: deploying its rules one by one, so rules \
             added outside cluster-deploy stay",
            cluster.names.nsg
        );
    }
    Ok(template::with_existing_nsg(parameters, exists))
}
