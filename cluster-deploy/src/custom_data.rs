//! The boot script each scale set carries as custom data: it runs once at provisioning (cloud-init
//! runs custom data that starts with `#!`), runs the operator's own boot commands if the cluster
//! file has any, and hands over to run-nomad, which reads everything else from Instance
//! Metadata.
//!
//! Every value on the run-nomad line goes through [`support::shell::quote`]. The operator's boot
//! commands (`custom_data`, `custom_data_file`, a pool's own) are carried base64-encoded inside a
//! quoted here-document and decoded to a root-only file, so no byte of them (quotes, `$`, a line
//! that looks like a delimiter, CRLF) is ever read by our script's shell; the file then runs
//! with its own `#!` interpreter, or `/bin/sh`.
//!
//! No secret is ever part of what this module renders. The cluster's secrets live in its Key
//! Vault, and custom data only names the vault: run-nomad fetches them at boot with the VM's
//! managed identity. The flags, the contract between cluster-deploy and run-nomad:
//!
//! - `--key-vault <NAME>`: the cluster's vault (3-24 of `a-z A-Z 0-9 -`), reached at
//!   `https://<NAME>.vault.azure.net/` (data plane api-version 7.6) with an IMDS token for the
//!   audience `https://vault.azure.net`. Present only when this scale set reads something from
//!   the vault; never alone (one of the next two comes with it).
//! - `--tls-from-key-vault`: TLS for HTTP and RPC with `verify_server_hostname`, from the
//!   vault's `nomad-ca-cert` and this role's `nomad-server-cert`/`nomad-server-key` (servers)
//!   or `nomad-client-cert`/`nomad-client-key` (clients). Excludes `--tls-*-file`.
//! - `--gossip-key-from-key-vault` (servers only): `server.encrypt` from `nomad-gossip-key`.
//!   Excludes `--gossip-key` and `--gossip-key-file`.
//! - `--acl`, as before (the bootstrap token never reaches a VM).
//!
//! The secret names and who may read which are [`support::cluster_secrets::SecretItem`]; each
//! scale set's identity is granted exactly its role's items, one role assignment per secret.
//! The VM may have to wait: a new identity's role assignments take minutes to propagate
//! (403 `ForbiddenByRbac` until then); run-nomad's fetch gives up after
//! [`KEY_VAULT_WAIT_SECS`], and starts nothing then. With every item opted out none of these
//! flags appears and the line is what it was before the vault existed.

use base64::Engine;
use support::shell;

use crate::model::{Cluster, Role, ScaleSet};

/// Where the operator's boot commands are written on the VM (directory 0700, files 0700).
pub const BOOT_COMMANDS_DIR: &str = "/var/lib/cluster-deploy";

/// Azure's limit on custom data: 64 KB of base64 (Compute API, `osProfile.customData`).
pub const MAX_CUSTOM_DATA_BASE64: usize = 65536;

/// How long run-nomad waits for the vault at boot (its default deadline, part of the flag
/// contract above): role assignments of a new scale set identity propagate within minutes.
/// The repairs grace period leaves room for it (`config::check_health`).
pub const KEY_VAULT_WAIT_SECS: u32 = 600;

/// The here-document delimiter around base64 boot commands (base64 never contains `_`).
const COMMANDS_DELIMITER: &str = "CLUSTER_DEPLOY_BOOT_COMMANDS";

/// base64, as `osProfile.customData` wants it.
pub fn encode(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// run-nomad's arguments for a scale set (program first).
pub fn run_nomad_args(cluster: &Cluster, set: &ScaleSet) -> Vec<String> {
    let nomad = &cluster.nomad;
    let mut args = vec![nomad.run_nomad.clone()];
    let mut flag = |name: &str, value: Option<&str>| {
        args.push(name.to_string());
        if let Some(v) = value {
            args.push(v.to_string());
        }
    };
    match set.role {
        Role::Server => {
            flag("--server", None);
            flag("--num-servers", Some(&cluster.servers.capacity.to_string()));
        }
        Role::Client => flag("--client", None),
    }
    // Cloud auto-join of the servers' Uniform scale set; run-nomad takes the resource group
    // and subscription from IMDS, which is why every scale set shares one resource group.
    flag("--scale-set-name", Some(&cluster.servers.name));
    let security = &cluster.security;
    if let Some(vault) = &security.key_vault {
        if !security.items_for(set.role).is_empty() {
            flag("--key-vault", Some(&vault.name));
            if security.tls() {
                flag("--tls-from-key-vault", None);
            }
            if set.role == Role::Server && security.gossip() {
                flag("--gossip-key-from-key-vault", None);
            }
        }
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
    if set.role == Role::Client {
        if let Some(class) = &set.node_class {
            flag("--node-class", Some(class));
        }
        if let Some(pool) = &set.node_pool {
            flag("--node-pool", Some(pool));
        }
        for (key, value) in &set.meta {
            flag("--meta", Some(&format!("{key}={value}")));
        }
    }
    args
}

/// The run-nomad command line, quoted for a POSIX shell.
pub fn run_nomad_line(cluster: &Cluster, set: &ScaleSet) -> String {
    shell::join(run_nomad_args(cluster, set).iter().map(String::as_str))
}

/// Refuses boot commands that cannot work inside our boot script. `Err` says why.
pub fn check_boot_commands(script: &str) -> Result<(), String> {
    if script.contains('\0') {
        return Err("holds a NUL byte: give a shell script".to_string());
    }
    let first = script.trim_start().lines().next().unwrap_or("");
    if first.starts_with("#cloud-config") || first.starts_with("Content-Type: multipart") {
        return Err(
            "is a cloud-init document: cluster-deploy's custom data is its own shell script, \
             which runs these commands as a script before run-nomad; give shell commands"
                .to_string(),
        );
    }
    for (n, line) in script.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with('#') {
            continue;
        }
        let runs_it = code
            .split(|c: char| c.is_whitespace() || matches!(c, ';' | '&' | '|' | '(' | ')' | '`'))
            .map(|word| word.trim_matches(|c| c == '"' || c == '\''))
            .any(|word| word == "run-nomad" || word.ends_with("/run-nomad"));
        if runs_it {
            return Err(format!(
                "runs run-nomad (line {}): cluster-deploy runs run-nomad itself, after these \
                 commands, with the flags the cluster file gives; remove that line (the \
                 module's custom_data had to start Nomad, these only prepare the VM)",
                n + 1
            ));
        }
    }
    Ok(())
}

/// The script lines that write one set of boot commands to a root-only file and run it.
fn boot_commands_block(n: usize, field: &str, script: &str) -> String {
    let path = format!("{BOOT_COMMANDS_DIR}/boot-commands-{n}");
    let encoded = encode(script);
    let mut wrapped = String::new();
    for chunk in encoded.as_bytes().chunks(76) {
        wrapped.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        wrapped.push('\n');
    }
    let runner = if script.starts_with("#!") {
        shell::quote(&path)
    } else {
        format!("/bin/sh {}", shell::quote(&path))
    };
    format!(
        "# Boot commands from `{field}` (cluster.toml), run before run-nomad with umask 022.\n\
         install -d -m 0700 {dir}\n\
         base64 -d > {file} <<'{COMMANDS_DELIMITER}'\n\
         {wrapped}\
         {COMMANDS_DELIMITER}\n\
         chmod 0700 {file}\n\
         (umask 022 && {runner}) || {{\n\
         \x20 echo \"cluster-deploy: the boot commands from {field} failed (exit $?): Nomad is not started\" >&2\n\
         \x20 exit 1\n\
         }}\n",
        dir = shell::quote(BOOT_COMMANDS_DIR),
        file = shell::quote(&path),
    )
}

/// The boot script for a scale set.
pub fn script(cluster: &Cluster, set: &ScaleSet) -> String {
    let mut text = format!(
        "#!/bin/sh\n\
         # Written by cluster-deploy for Nomad cluster {cluster} (scale set {set}).\n\
         # Runs once, at provisioning; run-nomad reads the rest from Instance Metadata and\n\
         # the cluster's secrets from its Key Vault.\n\
         set -eu\n\
         umask 027\n",
        cluster = cluster.name,
        set = set.name,
    );
    for (n, commands) in set.boot_commands.iter().enumerate() {
        text.push_str(&boot_commands_block(
            n + 1,
            &commands.field,
            &commands.script,
        ));
    }
    text.push_str(&format!("exec {}\n", run_nomad_line(cluster, set)));
    text
}

/// The base64 length of a script as custom data.
pub fn encoded_len(script: &str) -> usize {
    script.len().div_ceil(3) * 4
}

/// Every scale set's boot script fits Azure's custom data limit; `Err` names the one that does
/// not, by how much, and what makes it large.
pub fn check_fits(cluster: &Cluster) -> Result<(), String> {
    for set in cluster.scale_sets() {
        let size = encoded_len(&script(cluster, set));
        if size > MAX_CUSTOM_DATA_BASE64 {
            let commands: Vec<String> = set
                .boot_commands
                .iter()
                .map(|c| format!("`{}` ({} bytes)", c.field, c.script.len()))
                .collect();
            return Err(format!(
                "the boot script of scale set {} ({}) is {size} bytes of base64, {} over Azure's \
                 custom data limit of {MAX_CUSTOM_DATA_BASE64}: {}",
                set.name,
                set.label(),
                size - MAX_CUSTOM_DATA_BASE64,
                if commands.is_empty() {
                    "use fewer or shorter `nomad.meta` entries".to_string()
                } else {
                    format!(
                        "shorten the boot commands {} (they travel base64-encoded, 4/3 of their \
                         size) or fetch a larger script from them, or use fewer `meta` entries",
                        commands.join(", ")
                    )
                }
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BootCommands;
    use crate::model::tests::{example, example_with};
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    fn vault(cluster: &Cluster) -> String {
        cluster.security.key_vault.as_ref().unwrap().name.clone()
    }

    #[test]
    fn servers_run_run_nomad_with_the_server_count_and_scale_set() {
        let cluster = example();
        let kv = vault(&cluster);
        assert_eq!(
            run_nomad_line(&cluster, &cluster.servers),
            format!("/opt/nomad/bin/run-nomad --server --num-servers 3 --scale-set-name nomad-test-servers --key-vault {kv} --tls-from-key-vault --gossip-key-from-key-vault --acl")
        );
        assert_eq!(
            run_nomad_line(&cluster, &cluster.client_pools[0]),
            format!("/opt/nomad/bin/run-nomad --client --scale-set-name nomad-test-servers --key-vault {kv} --tls-from-key-vault --acl")
        );
    }

    #[test]
    fn each_pool_gets_its_node_class_node_pool_and_meta() {
        let cluster = example_with(
            "[nomad]\nnode_class = \"general\"\n[nomad.meta]\nteam = \"infra\"\n\
             [[client_pool]]\nname = \"web\"\ncount = 2\n\
             [[client_pool]]\nname = \"gpu\"\ncount = 1\nnode_class = \"gpu\"\nnode_pool = \"accelerated\"\n\
             [client_pool.meta]\nteam = \"ml\"\n",
        );
        let common = format!(
            "/opt/nomad/bin/run-nomad --client --scale-set-name nomad-test-servers --key-vault {} --tls-from-key-vault --acl",
            vault(&cluster)
        );
        assert_eq!(
            run_nomad_line(&cluster, cluster.pool("web").unwrap()),
            format!("{common} --node-class general --meta 'team=infra'")
        );
        assert_eq!(
            run_nomad_line(&cluster, cluster.pool("gpu").unwrap()),
            format!("{common} --node-class gpu --node-pool accelerated --meta 'team=ml'")
        );
    }

    #[test]
    fn every_value_is_shell_quoted() {
        let mut cluster = example();
        let set = &mut cluster.client_pools[0];
        set.meta.insert("team".into(), "a b; reboot".into());
        set.node_class = Some("web".into());
        let set = cluster.client_pools[0].clone();
        let line = run_nomad_line(&cluster, &set);
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
        assert_eq!(words, run_nomad_args(&cluster, &set));
    }

    /// The run-nomad flags of the servers and the first pool, after the scale set name.
    fn flags(cluster: &Cluster) -> (String, String) {
        let after = |set: &ScaleSet| {
            let line = run_nomad_line(cluster, set);
            line.split_once("nomad-test-servers")
                .map(|(_, rest)| rest.trim().to_string())
                .unwrap()
        };
        (after(&cluster.servers), after(&cluster.client_pools[0]))
    }

    #[test]
    fn the_vault_flags_follow_each_opt_out_and_old_lines_stay_without_them() {
        // TLS off: the servers still fetch the gossip key; the clients need nothing from it.
        let c = example_with("[nomad.tls]\nenabled = false\n");
        let kv = vault(&c);
        assert_eq!(
            flags(&c),
            (
                format!("--key-vault {kv} --gossip-key-from-key-vault --acl"),
                "--acl".to_string()
            )
        );
        // Gossip off: TLS for both.
        let c = example_with("[nomad]\ngossip_encryption = false\n");
        let kv = vault(&c);
        assert_eq!(
            flags(&c),
            (
                format!("--key-vault {kv} --tls-from-key-vault --acl"),
                format!("--key-vault {kv} --tls-from-key-vault --acl")
            )
        );
        // Only the ACL token in the vault: no VM reads anything, the line is the old one.
        let c = example_with("[nomad]\ngossip_encryption = false\n[nomad.tls]\nenabled = false\n");
        assert!(c.security.key_vault.is_some());
        assert_eq!(flags(&c), ("--acl".to_string(), "--acl".to_string()));
        let c = example_with(
            "[nomad]\nacl = false\ngossip_encryption = false\n[nomad.tls]\nenabled = false\n",
        );
        assert_eq!(flags(&c), (String::new(), String::new()));
    }

    /// A stand-in run-nomad under `root` that records its arguments in `root/args`.
    fn stand_in_run_nomad(root: &Path) -> String {
        let path = root.join("run-nomad");
        std::fs::write(
            &path,
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$(dirname \"$0\")/args\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    /// Runs a rendered script under `root`, its fixed paths moved there.
    fn run_script(root: &Path, text: &str) -> std::process::Output {
        let text = text.replace(BOOT_COMMANDS_DIR, &root.join("boot").display().to_string());
        std::process::Command::new("sh")
            .args(["-c", &text])
            .output()
            .unwrap()
    }

    #[test]
    fn the_script_names_the_vault_and_runs_run_nomad() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut cluster = example();
        cluster.nomad.run_nomad = stand_in_run_nomad(root);
        let text = script(&cluster, &cluster.servers);
        assert!(!text.contains("-----BEGIN"), "{text}");
        let out = run_script(root, &text);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let args = std::fs::read_to_string(root.join("args")).unwrap();
        assert!(
            args.contains(&format!(
                "--key-vault\n{}\n--tls-from-key-vault\n--gossip-key-from-key-vault\n",
                vault(&cluster)
            )),
            "{args}"
        );
    }

    fn commands(field: &str, script: &str) -> BootCommands {
        BootCommands {
            field: field.into(),
            origin: field.into(),
            script: script.into(),
        }
    }

    #[test]
    fn boot_commands_run_byte_for_byte_before_run_nomad() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut cluster = example();
        cluster.nomad.run_nomad = stand_in_run_nomad(root);
        let marker = root.join("ran");
        // Quotes, a `$`, a line that looks like our delimiter, a here-document of its own and a
        // CRLF-free body: every byte reaches the file as written, and it runs first.
        let tricky = format!(
            "# it's \"quoted\" $HOME `x`\nCLUSTER_DEPLOY_BOOT_COMMANDS\ncat > {m} <<'EOF'\nrun $(this) 'never'\nEOF\ntest ! -e {args}\numask > {m}.umask\n",
            m = marker.display(),
            args = root.join("args").display()
        );
        // The first line above starts with '#', so it is not a shebang: /bin/sh runs it.
        let set = &mut cluster.client_pools[0];
        set.boot_commands = vec![
            commands("custom_data", &tricky),
            commands(
                "client_pool[0].custom_data",
                &format!("#!/bin/sh\necho second >> {}\n", marker.display()),
            ),
        ];
        let set = cluster.client_pools[0].clone();
        let out = run_script(root, &script(&cluster, &set));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read_to_string(&marker).unwrap(),
            "run $(this) 'never'\nsecond\n"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("ran.umask"))
                .unwrap()
                .trim(),
            "0022"
        );
        let stored = std::fs::read_to_string(root.join("boot/boot-commands-1")).unwrap();
        assert_eq!(stored, tricky, "written byte for byte");
        let mode = std::fs::metadata(root.join("boot/boot-commands-1"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(root.join("args").exists(), "run-nomad ran afterwards");
    }

    #[test]
    fn failing_boot_commands_stop_the_boot_before_nomad() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut cluster = example();
        cluster.nomad.run_nomad = stand_in_run_nomad(root);
        cluster.client_pools[0].boot_commands = vec![commands("custom_data", "false\n")];
        let set = cluster.client_pools[0].clone();
        let out = run_script(root, &script(&cluster, &set));
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("the boot commands from custom_data failed (exit 1)"),
            "{stderr}"
        );
        assert!(!root.join("args").exists(), "run-nomad never ran");
    }

    #[test]
    fn boot_commands_that_cannot_work_here_are_refused() {
        assert!(check_boot_commands("apt-get install -y jq\n").is_ok());
        assert!(check_boot_commands("# run-nomad is ours now\necho ok\n").is_ok());
        let text = check_boot_commands(
            "#!/bin/bash\nset -e\n/opt/nomad/bin/run-nomad --server --num-servers 3\n",
        )
        .unwrap_err();
        assert!(text.contains("line 3"), "{text}");
        assert!(check_boot_commands("sudo run-nomad --client").is_err());
        assert!(check_boot_commands("#cloud-config\npackages: [jq]\n")
            .unwrap_err()
            .contains("cloud-init"));
        assert!(check_boot_commands("echo a\0b")
            .unwrap_err()
            .contains("NUL"));
    }

    #[test]
    fn custom_data_fits_azure_limit_and_a_large_script_is_named() {
        let mut cluster = example();
        check_fits(&cluster).unwrap();
        for set in cluster.scale_sets() {
            assert!(encoded_len(&script(&cluster, set)) <= MAX_CUSTOM_DATA_BASE64);
        }
        cluster.client_pools[0].boot_commands =
            vec![commands("custom_data", &"echo x\n".repeat(7000))];
        let text = check_fits(&cluster).unwrap_err();
        assert!(text.contains("scale set nomad-test-clients"), "{text}");
        assert!(text.contains("custom data limit of 65536"), "{text}");
        assert!(text.contains("`custom_data` (49000 bytes)"), "{text}");
    }
}
