//! Azure Instance Metadata Service double: not written yet (owned by the run-nomad work).
