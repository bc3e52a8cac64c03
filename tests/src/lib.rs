//! Workspace-level end-to-end rehearsals live in `tests/tests/`: they run the real binaries of all
//! four tools, in order, against the loopback doubles in `support::doubles`.
