//! Azure Resource Manager double: not written yet (owned by the cluster-deploy work).
