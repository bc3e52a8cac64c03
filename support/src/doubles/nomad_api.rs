//! Nomad HTTP API double: not written yet (owned by the cluster-deploy work).
