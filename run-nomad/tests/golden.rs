//! Golden files: the complete output of run-nomad for each role, discovery mode and security
//! option, run through the binary against a fake install (`--root`, `--metadata-file`,
//! `--no-start`). `UPDATE_GOLDEN=1 cargo test -p run-nomad --test golden` rewrites them;
//! review the diff.

mod common;

use common::{assert_golden, instance, FakeRoot};

/// Runs run-nomad with `args` against a fresh fake root and returns it.
fn generate(args: &[&str]) -> FakeRoot {
    let root = FakeRoot::new();
    common::generate(&root, &instance(), args);
    root
}

/// The watcher's unit or program with the test binary's path and the tests' IMDS address put
/// back to their production values, so the golden file shows what a VM gets.
fn watcher_as_on_a_vm(text: &str) -> String {
    text.replace(env!("CARGO_BIN_EXE_run-nomad"), "/opt/nomad/bin/run-nomad")
        .replace("http://127.0.0.1:9", "http://169.254.169.254")
}

fn check(case: &str, args: &[&str]) {
    let root = generate(args);
    assert_golden(
        &format!("{case}/default.hcl"),
        &root.read("/opt/nomad/config/default.hcl"),
    );
    if args.contains(&"supervisor") {
        assert_golden(
            &format!("{case}/run-nomad.conf"),
            &root.read("/etc/supervisor/conf.d/run-nomad.conf"),
        );
        assert!(!root.at("/etc/systemd/system/nomad.service").exists());
        assert_golden(
            &format!("{case}/nomad-scheduled-events.conf"),
            &watcher_as_on_a_vm(&root.read("/etc/supervisor/conf.d/nomad-scheduled-events.conf")),
        );
    } else {
        assert_golden(
            &format!("{case}/nomad.service"),
            &root.read("/etc/systemd/system/nomad.service"),
        );
        assert_golden(
            &format!("{case}/run-nomad.env"),
            &root.read("/opt/nomad/config/run-nomad.env"),
        );
        assert!(!root.at("/etc/supervisor/conf.d/run-nomad.conf").exists());
        assert_golden(
            &format!("{case}/nomad-scheduled-events.service"),
            &watcher_as_on_a_vm(&root.read("/etc/systemd/system/nomad-scheduled-events.service")),
        );
    }
}

#[test]
fn operations_flags() {
    check(
        "operations",
        &[
            "--client",
            "--scale-set-name",
            "nomad-servers",
            "--node-pool",
            "gpu",
            "--log-level",
            "debug",
            "--log-json",
            "--disable-update-check",
            "--prometheus-metrics",
            "--publish-allocation-metrics",
            "--publish-node-metrics",
            "--leave-on-interrupt",
            "true",
            "--environment",
            "ARM_CLIENT_SECRET=not-a-real-secret",
        ],
    );
}

#[test]
fn server() {
    check("server", &["--server", "--num-servers", "3"]);
}

#[test]
fn client() {
    check("client", &["--client"]);
}

#[test]
fn server_and_client() {
    check(
        "server-client",
        &[
            "--server",
            "--client",
            "--num-servers",
            "1",
            "--scale-set-name",
            "nomad-servers",
        ],
    );
}

#[test]
fn discovery_retry_join() {
    check(
        "retry-join",
        &[
            "--client",
            "--retry-join",
            "10.10.1.4",
            "--retry-join",
            "provider=azure tag_name=role tag_value=nomad-server",
        ],
    );
}

#[test]
fn discovery_scale_set() {
    check(
        "scale-set",
        &[
            "--server",
            "--num-servers",
            "3",
            "--scale-set-name",
            "nomad-servers",
        ],
    );
}

#[test]
fn discovery_scale_set_in_another_resource_group() {
    check(
        "scale-set-other-rg",
        &[
            "--client",
            "--scale-set-name",
            "nomad-servers",
            "--scale-set-resource-group",
            "nomad-shared-rg",
        ],
    );
}

#[test]
fn discovery_tag() {
    check("tag", &["--client", "--cluster-tag-key", "cluster"]);
}

#[test]
fn discovery_consul() {
    check(
        "consul",
        &["--client", "--consul-address", "10.10.0.9:8500"],
    );
}

#[test]
fn security_tls_gossip_acl() {
    check(
        "security",
        &[
            "--server",
            "--num-servers",
            "3",
            "--scale-set-name",
            "nomad-servers",
            "--gossip-key-file",
            "/opt/nomad/config/gossip.key",
            "--tls-ca-file",
            "/opt/nomad/tls/ca.pem",
            "--tls-cert-file",
            "/opt/nomad/tls/server.pem",
            "--tls-key-file",
            "/opt/nomad/tls/server-key.pem",
            "--acl",
        ],
    );
}

#[test]
fn client_with_class_meta_and_overrides() {
    check(
        "client-options",
        &[
            "--client",
            "--scale-set-name",
            "nomad-servers",
            "--node-class",
            "web",
            "--node-pool",
            "frontend",
            "--meta",
            "rack=r1",
            "--meta",
            "team=payments",
            "--datacenter",
            "dc1",
            "--region",
            "europe",
            "--environment",
            "ARM_ENVIRONMENT=AzurePublicCloud",
            "--systemd-stdout",
            "journal",
            "--systemd-stderr",
            "append:/opt/nomad/log/nomad-error.log",
        ],
    );
}

#[test]
fn supervisor_program() {
    check(
        "supervisor",
        &[
            "--server",
            "--num-servers",
            "3",
            "--init",
            "supervisor",
            "--environment",
            "ARM_ENVIRONMENT=AzurePublicCloud",
        ],
    );
}
