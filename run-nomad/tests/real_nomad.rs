//! With `NOMAD_BIN` pointing at a real Nomad binary (DESIGN.md: tests that can run the real
//! binary pick it up from there), `nomad config validate` must accept the configuration
//! run-nomad writes. The real binary cannot be downloaded here, so without `NOMAD_BIN` this
//! test says so on stderr and checks nothing else; everything it would catch about syntax is
//! also checked by tests/hcl_parse_back.rs with Nomad's own HCL parser.

mod common;

use std::process::Command;

use common::{instance, output, run_nomad, LiveInstall};

#[test]
fn a_real_nomad_validates_the_generated_configuration() {
    let Some(nomad) = std::env::var_os("NOMAD_BIN") else {
        eprintln!("NOMAD_BIN is not set: `nomad config validate` was not run");
        return;
    };
    let cases: &[&[&str]] = &[
        &["--server", "--num-servers", "3"],
        &[
            "--client",
            "--scale-set-name",
            "nomad-servers",
            "--meta",
            "rack=r1",
        ],
        &[
            "--server",
            "--client",
            "--num-servers",
            "1",
            "--cluster-tag-key",
            "cluster",
            "--gossip-key",
            common::GOSSIP_KEY,
            "--acl",
            "--node-class",
            "web",
        ],
    ];
    for args in cases {
        let live = LiveInstall::new("real");
        let metadata = live.path("imds.json");
        std::fs::write(&metadata, instance().to_string()).unwrap();
        let mut cmd = run_nomad();
        cmd.arg("--metadata-file")
            .arg(&metadata)
            .arg("--no-start")
            .args(live.args("real"))
            .args(*args);
        let (ok, stdout, stderr) = output(&mut cmd);
        assert!(ok, "{stdout}\n{stderr}");
        let out = Command::new(&nomad)
            .args(["config", "validate"])
            .arg(live.path("config").join("default.hcl"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: nomad config validate refused it:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
