//! HashiCorp-style release mirror double: not written yet (owned by the install-nomad work).
