//! The double's state, behind one mutex: what ARM holds (subscriptions, groups, resources,
//! deployments, long-running operations, vaults), what the test set up (token, polls, paging,
//! permissions, usages, SKUs, policies, faults, clock), and the log of requests served.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

use super::deploy::Deployment;
use super::{
    compute, keyvault, lro, rbac, resources, Clock, Fault, InstanceEvents, OperationFailure,
    Policy, Served, SUBSCRIPTION,
};

pub(crate) struct State {
    pub(super) token: String,
    pub(super) polls: u32,
    /// Requests an un-notified DeleteInstances takes ([`super::deleting`]).
    pub(crate) delete_requests: u32,
    pub(super) retry_after: u64,
    pub(super) page_size: usize,
    /// Lower-cased subscription ids: [`SUBSCRIPTION`], and those [`images::add`] adds.
    pub(crate) subscriptions: BTreeSet<String>,
    pub(crate) groups: BTreeMap<String, Value>,
    /// By lower-cased id.
    pub(crate) resources: BTreeMap<String, resources::Stored>,
    pub(crate) deployments: Vec<Deployment>,
    pub(super) operations: BTreeMap<String, lro::Operation>,
    pub(super) faults: VecDeque<Fault>,
    pub(super) failures: VecDeque<Vec<OperationFailure>>,
    pub(super) served: Vec<Served>,
    pub(crate) counter: u64,
    pub(crate) next_ip: u32,
    /// Permissions_ListForResourceGroup's answer for the caller (`Permission` objects).
    pub(crate) permissions: Vec<Value>,
    pub(crate) usages: Vec<compute::Usage>,
    pub(crate) skus: Vec<Value>,
    pub(crate) policies: Vec<Policy>,
    /// Tags an Azure Policy "inherit a tag from the resource group" assignment adds.
    pub(crate) inherited_tags: bool,
    pub(crate) events: Option<Arc<dyn InstanceEvents>>,
    /// Where Azure's times come from (`timeCreated` of new instances): the wall clock unless a
    /// test installs another ([`ArmDouble::set_clock`]).
    pub(crate) clock: Clock,
    pub(crate) key_vaults: keyvault::KeyVaults,
    pub(super) expect_refusals: bool,
}

impl State {
    pub(super) fn new() -> Self {
        State {
            token: "arm-double-token-3f9c".to_string(),
            polls: 1,
            delete_requests: 2,
            retry_after: 0,
            page_size: 100,
            subscriptions: BTreeSet::from([SUBSCRIPTION.to_ascii_lowercase()]),
            groups: BTreeMap::new(),
            resources: BTreeMap::new(),
            deployments: Vec::new(),
            operations: BTreeMap::new(),
            faults: VecDeque::new(),
            failures: VecDeque::new(),
            served: Vec::new(),
            counter: 0,
            next_ip: 4,
            permissions: rbac::owner(),
            usages: compute::default_usages(),
            skus: compute::default_skus(),
            policies: Vec::new(),
            inherited_tags: false,
            events: None,
            clock: Arc::new(std::time::SystemTime::now),
            key_vaults: keyvault::KeyVaults::default(),
            expect_refusals: false,
        }
    }
}

pub(crate) fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}
