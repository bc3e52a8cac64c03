//! Node endpoints: list, read (with blocking queries), allocations, eligibility, drain.

use std::collections::BTreeMap;

use reqwest::Method;

use super::{Call, NomadClient, NomadError, QueryMeta, QueryOptions};
use crate::nomad::types::{
    Allocation, AllocationListStub, DrainDeadline, DrainRequest, DrainSpec, EligibilityRequest,
    Node, NodeListStub, NodeUpdateResponse,
};

impl NomadClient {
    /// `GET /v1/nodes` (node:read): every client node.
    pub fn nodes(&self) -> Result<Vec<NodeListStub>, NomadError> {
        Ok(self.nodes_with(&QueryOptions::default())?.0)
    }

    /// `GET /v1/nodes` with blocking/consistency options and the answer's index.
    pub fn nodes_with(
        &self,
        options: &QueryOptions,
    ) -> Result<(Vec<NodeListStub>, QueryMeta), NomadError> {
        self.json_meta(Call::get("v1/nodes").options(options), true)
    }

    /// `GET /v1/node/:id` (node:read); `None` for an unknown id (404 "node not found").
    pub fn node(&self, id: &str) -> Result<Option<Node>, NomadError> {
        Ok(self.node_with(id, &QueryOptions::default())?.0)
    }

    /// `GET /v1/node/:id` with blocking/consistency options: with `wait_index`, Nomad answers
    /// once the node changes past that index or `wait` runs out.
    pub fn node_with(
        &self,
        id: &str,
        options: &QueryOptions,
    ) -> Result<(Option<Node>, QueryMeta), NomadError> {
        let path = node_path(id, "")?;
        match self.json_meta(Call::get(&path).options(options), true) {
            Ok((node, meta)) => Ok((Some(node), meta)),
            Err(e) if e.status() == Some(404) => Ok((None, QueryMeta::default())),
            Err(e) => Err(e),
        }
    }

    /// `GET /v1/node/:id/allocations` (node:read; allocations in namespaces the token cannot
    /// read are left out). Terminal ones stay listed until garbage collection: see
    /// [`Allocation::is_live`].
    pub fn node_allocations(&self, id: &str) -> Result<Vec<Allocation>, NomadError> {
        Ok(self.node_allocations_with(id, &QueryOptions::default())?.0)
    }

    /// `GET /v1/node/:id/allocations` with blocking/consistency options: with `wait_index`,
    /// Nomad answers once an allocation of the node changes past that index or `wait` runs out.
    pub fn node_allocations_with(
        &self,
        id: &str,
        options: &QueryOptions,
    ) -> Result<(Vec<Allocation>, QueryMeta), NomadError> {
        let path = node_path(id, "/allocations")?;
        self.json_meta(Call::get(&path).options(options), true)
    }

    /// `GET /v1/allocations` in `namespace` (`"*"` for all the token can read; Nomad's
    /// default is `default` only).
    pub fn allocations(&self, namespace: &str) -> Result<Vec<AllocationListStub>, NomadError> {
        self.json(
            Call::get("v1/allocations").query("namespace", namespace),
            true,
        )
    }

    /// `POST /v1/node/:id/eligibility` (node:write). Nomad refuses to make a draining node
    /// eligible (500), and answers all zeros when nothing changed.
    pub fn set_eligibility(
        &self,
        id: &str,
        eligible: bool,
    ) -> Result<NodeUpdateResponse, NomadError> {
        let path = node_path(id, "/eligibility")?;
        let body = EligibilityRequest {
            eligibility: if eligible { "eligible" } else { "ineligible" }.to_string(),
        };
        self.json(Call::write(Method::POST, &path).json(&body), true)
    }

    /// `POST /v1/node/:id/drain` (node:write): starts (or updates) a drain. The node becomes
    /// ineligible and stays so after the drain completes. `meta` lands in `LastDrain.Meta`.
    pub fn drain(
        &self,
        id: &str,
        deadline: DrainDeadline,
        ignore_system_jobs: bool,
        meta: BTreeMap<String, String>,
    ) -> Result<NodeUpdateResponse, NomadError> {
        let path = node_path(id, "/drain")?;
        let Some(nanos) = deadline.nanos() else {
            return Err(NomadError::Refused {
                action: format!("drain node {id}"),
                reason: format!(
                    "{deadline:?} is not a deadline Nomad takes (a zero duration means no deadline: use DrainDeadline::None)"
                ),
            });
        };
        let body = DrainRequest {
            drain_spec: Some(DrainSpec {
                deadline: nanos,
                ignore_system_jobs,
            }),
            mark_eligible: false,
            meta,
        };
        self.json(Call::write(Method::POST, &path).json(&body), true)
    }

    /// `POST /v1/node/:id/drain` with no DrainSpec: cancels a drain, and with `mark_eligible`
    /// makes the node eligible again.
    pub fn cancel_drain(
        &self,
        id: &str,
        mark_eligible: bool,
    ) -> Result<NodeUpdateResponse, NomadError> {
        let path = node_path(id, "/drain")?;
        let body = DrainRequest {
            drain_spec: None,
            mark_eligible,
            meta: BTreeMap::new(),
        };
        self.json(Call::write(Method::POST, &path).json(&body), true)
    }
}

/// `v1/node/<id><suffix>`; an id that would change the path is refused.
fn node_path(id: &str, suffix: &str) -> Result<String, NomadError> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(NomadError::Settings(format!(
            "{id:?} is not a Nomad node id (a UUID)"
        )));
    }
    Ok(format!("v1/node/{id}{suffix}"))
}
