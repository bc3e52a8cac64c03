//! The boot script each scale set carries as custom data: it runs once at provisioning (cloud-init
//! runs custom data that starts with `#!`) and hands over to run-nomad, which reads everything
//! else from Instance Metadata.
//!
//! Every value on the run-nomad line goes through [`support::shell::quote`]. The gossip key is
//! never part of what this module renders: a server script is split into a head and a tail, and
//! the template joins `head + key + tail` at deployment time from a `securestring` parameter
//! (see [`crate::template`]), so the key is in neither the written template nor the plan.

use base64::Engine;
use support::shell;

use crate::model::{Cluster, Role};

/// Where the server script writes the gossip key on the VM (0640, directory 0750).
pub const GOSSIP_KEY_PATH: &str = "/opt/nomad/secrets/gossip.key";

/// Azure's limit on custom data: 64 KB of base64 (Compute API, `osProfile.customData`).
pub const MAX_CUSTOM_DATA_BASE64: usize = 65536;

/// A standard gossip key is base64 of 32 bytes: 44 characters.
pub const GOSSIP_KEY_LEN: usize = 44;

/// How long the script waits for TLS files another mechanism (image, VM extension) provides.
pub const TLS_WAIT_SECS: u32 = 600;

/// The here-document delimiter around the gossip key.
const KEY_DELIMITER: &str = "CLUSTER_DEPLOY_GOSSIP_KEY";

/// A rendered boot script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    /// The whole script: no secret in it.
    Plain(String),
    /// The script around the gossip key, which the deployment puts between `head` and `tail`.
    AroundKey { head: String, tail: String },
}

impl Script {
    /// The script with `key` in place (the deployment does this with ARM functions; tests and
    /// the size check do it here).
    pub fn with_key(&self, key: &str) -> String {
        match self {
            Script::Plain(text) => text.clone(),
            Script::AroundKey { head, tail } => format!("{head}{key}{tail}"),
        }
    }

    /// The base64 length of the final custom data, with a key of standard length.
    pub fn encoded_len(&self) -> usize {
        let len = self.with_key(&"k".repeat(GOSSIP_KEY_LEN)).len();
        len.div_ceil(3) * 4
    }
}

/// base64, as `osProfile.customData` wants it.
pub fn encode(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// run-nomad's arguments for a role (program first).
pub fn run_nomad_args(cluster: &Cluster, role: Role) -> Vec<String> {
    let nomad = &cluster.nomad;
    let mut args = vec![nomad.run_nomad.clone()];
    let mut flag = |name: &str, value: Option<&str>| {
        args.push(name.to_string());
        if let Some(v) = value {
            args.push(v.to_string());
        }
    };
    match role {
        Role::Server => {
            flag("--server", None);
            flag("--num-servers", Some(&cluster.servers.capacity.to_string()));
        }
        Role::Client => flag("--client", None),
    }
    // Cloud auto-join of the servers' Uniform scale set; run-nomad takes the resource group
    // and subscription from IMDS, which is why both scale sets share one resource group.
    flag("--scale-set-name", Some(&cluster.servers.name));
    if role == Role::Server && nomad.gossip {
        flag("--gossip-key-file", Some(GOSSIP_KEY_PATH));
    }
    if let Some(tls) = &nomad.tls {
        flag("--tls-ca-file", Some(&tls.ca_file));
        flag("--tls-cert-file", Some(&tls.cert_file));
        flag("--tls-key-file", Some(&tls.key_file));
    }
    if nomad.acl {
        flag("--acl", None);
    }
    if let Some(dc) = &nomad.datacenter {
        flag("--datacenter", Some(dc));
    }
    if let Some(region) = &nomad.region {
        flag("--region", Some(region));
    }
    if role == Role::Client {
        if let Some(class) = &nomad.node_class {
            flag("--node-class", Some(class));
        }
        for (key, value) in &nomad.meta {
            flag("--meta", Some(&format!("{key}={value}")));
        }
    }
    args
}

/// The run-nomad command line, quoted for a POSIX shell.
pub fn run_nomad_line(cluster: &Cluster, role: Role) -> String {
    shell::join(run_nomad_args(cluster, role).iter().map(String::as_str))
}

/// The boot script for a role.
pub fn script(cluster: &Cluster, role: Role) -> Script {
    let set = match role {
        Role::Server => &cluster.servers,
        Role::Client => &cluster.clients,
    };
    let mut head = format!(
        "#!/bin/sh\n\
         # Written by cluster-deploy for Nomad cluster {cluster} (scale set {set}).\n\
         # Runs once, at provisioning; run-nomad reads the rest from Instance Metadata.\n\
         set -eu\n\
         umask 027\n",
        cluster = cluster.name,
        set = set.name,
    );
    if let Some(tls) = &cluster.nomad.tls {
        // The files come from the image or a VM extension (Key Vault), which may finish after
        // custom data starts: wait for them rather than start Nomad without TLS.
        head.push_str(&format!(
            "waited=0\n\
             for f in {files}; do\n\
             \x20 while [ ! -s \"$f\" ]; do\n\
             \x20   if [ \"$waited\" -ge {TLS_WAIT_SECS} ]; then\n\
             \x20     echo \"cluster-deploy: $f did not appear within {TLS_WAIT_SECS}s\" >&2\n\
             \x20     exit 1\n\
             \x20   fi\n\
             \x20   sleep 5\n\
             \x20   waited=$((waited + 5))\n\
             \x20 done\n\
             done\n",
            files = shell::join([
                tls.ca_file.as_str(),
                tls.cert_file.as_str(),
                tls.key_file.as_str()
            ]),
        ));
    }
    let run = format!("exec {}\n", run_nomad_line(cluster, role));
    if role == Role::Server && cluster.nomad.gossip {
        let dir = GOSSIP_KEY_PATH.rsplit_once('/').map_or("/", |(dir, _)| dir);
        head.push_str(&format!(
            "install -d -m 0750 {dir}\n\
             cat > {path} <<'{KEY_DELIMITER}'\n",
            dir = shell::quote(dir),
            path = shell::quote(GOSSIP_KEY_PATH),
        ));
        let tail = format!(
            "\n{KEY_DELIMITER}\n\
             chmod 0640 {path}\n\
             {run}",
            path = shell::quote(GOSSIP_KEY_PATH),
        );
        Script::AroundKey { head, tail }
    } else {
        head.push_str(&run);
        Script::Plain(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::example;

    #[test]
    fn servers_run_run_nomad_with_the_server_count_and_scale_set() {
        let cluster = example();
        assert_eq!(
            run_nomad_line(&cluster, Role::Server),
            "/opt/nomad/bin/run-nomad --server --num-servers 3 --scale-set-name nomad-test-servers"
        );
        assert_eq!(
            run_nomad_line(&cluster, Role::Client),
            "/opt/nomad/bin/run-nomad --client --scale-set-name nomad-test-servers"
        );
    }

    #[test]
    fn every_value_is_shell_quoted() {
        let mut cluster = example();
        cluster
            .nomad
            .meta
            .insert("team".into(), "a b; reboot".into());
        cluster.nomad.node_class = Some("web".into());
        let line = run_nomad_line(&cluster, Role::Client);
        assert!(
            line.ends_with("--node-class web --meta 'team=a b; reboot'"),
            "{line}"
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("set -- {line}; printf '%s\\n' \"$@\"")])
            .output()
            .unwrap();
        let words: Vec<_> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(words, run_nomad_args(&cluster, Role::Client));
    }

    #[test]
    fn the_gossip_key_sits_between_head_and_tail() {
        let mut cluster = example();
        cluster.nomad.gossip = true;
        let Script::AroundKey { head, tail } = script(&cluster, Role::Server) else {
            panic!("a server with a gossip key needs the key spliced in");
        };
        assert!(head.ends_with("<<'CLUSTER_DEPLOY_GOSSIP_KEY'\n"), "{head}");
        assert!(tail.starts_with("\nCLUSTER_DEPLOY_GOSSIP_KEY\n"), "{tail}");
        assert!(tail.contains("--gossip-key-file /opt/nomad/secrets/gossip.key"));
        // Clients never get the key.
        assert!(matches!(script(&cluster, Role::Client), Script::Plain(_)));
    }

    #[test]
    fn the_script_writes_the_key_0640_and_runs_run_nomad() {
        // Run the rendered script with a stand-in run-nomad under a temporary root.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut cluster = example();
        cluster.nomad.gossip = true;
        cluster.nomad.run_nomad = root.join("run-nomad").display().to_string();
        std::fs::write(
            root.join("run-nomad"),
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$(dirname \"$0\")/args\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            root.join("run-nomad"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let key = "kGBHU6u7XuB0vq9Y3zT0l2tZ7yV3p3hKx5m9bJ8rG2c=";
        let text = script(&cluster, Role::Server).with_key(key).replace(
            "/opt/nomad/secrets",
            &root.join("secrets").display().to_string(),
        );
        let status = std::process::Command::new("sh")
            .args(["-c", &text])
            .status()
            .unwrap();
        assert!(status.success());
        let written = root.join("secrets/gossip.key");
        assert_eq!(
            std::fs::read_to_string(&written).unwrap(),
            format!("{key}\n")
        );
        let mode = std::fs::metadata(&written).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let args = std::fs::read_to_string(root.join("args")).unwrap();
        assert!(args.contains("--gossip-key-file\n"), "{args}");
        assert!(!args.contains(key), "the key is never on a command line");
    }

    #[test]
    fn custom_data_fits_azure_limit() {
        let cluster = example();
        for role in [Role::Server, Role::Client] {
            assert!(script(&cluster, role).encoded_len() <= MAX_CUSTOM_DATA_BASE64);
        }
    }
}
