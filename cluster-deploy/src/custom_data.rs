//! The boot script each scale set carries as custom data: it runs once at provisioning (cloud-init
//! runs custom data that starts with `#!`), runs the operator's own boot commands if the cluster
//! file has any, and hands over to run-nomad, which reads everything else from Instance
//! Metadata.
//!
//! Every value on the run-nomad line goes through [`support::shell::quote`]. The operator's boot
//! commands (`custom_data`, `custom_data_file`, a pool's own) are carried base64-encoded inside a
//! quoted here-document and decoded to a root-only file, so no byte of them (quotes, `$`, a line
//! that looks like a delimiter, CRLF) is ever read by our script's shell; the file then runs
//! with its own `#!` interpreter, or `/bin/sh`. The gossip key is never part of what this module
//! renders: a server script is split into a head and a tail, and the template joins
//! `head + key + tail` at deployment time from a `securestring` parameter (see
//! [`crate::template`]), so the key is in neither the written template nor the plan.

use base64::Engine;
use support::shell;

use crate::model::{Cluster, Role, ScaleSet};

/// Where the server script writes the gossip key on the VM (0640, directory 0750).
pub const GOSSIP_KEY_PATH: &str = "/opt/nomad/secrets/gossip.key";

/// Where the operator's boot commands are written on the VM (directory 0700, files 0700).
pub const BOOT_COMMANDS_DIR: &str = "/var/lib/cluster-deploy";

/// Azure's limit on custom data: 64 KB of base64 (Compute API, `osProfile.customData`).
pub const MAX_CUSTOM_DATA_BASE64: usize = 65536;

/// A standard gossip key is base64 of 32 bytes: 44 characters.
pub const GOSSIP_KEY_LEN: usize = 44;

/// How long the script waits for TLS files another mechanism (image, VM extension) provides.
pub const TLS_WAIT_SECS: u32 = 600;

/// The here-document delimiter around the gossip key.
const KEY_DELIMITER: &str = "CLUSTER_DEPLOY_GOSSIP_KEY";

/// The here-document delimiter around base64 boot commands (base64 never contains `_`).
const COMMANDS_DELIMITER: &str = "CLUSTER_DEPLOY_BOOT_COMMANDS";

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
    if set.role == Role::Server && nomad.gossip {
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
pub fn script(cluster: &Cluster, set: &ScaleSet) -> Script {
    let mut head = format!(
        "#!/bin/sh\n\
         # Written by cluster-deploy for Nomad cluster {cluster} (scale set {set}).\n\
         # Runs once, at provisioning; run-nomad reads the rest from Instance Metadata.\n\
         set -eu\n\
         umask 027\n",
        cluster = cluster.name,
        set = set.name,
    );
    for (n, commands) in set.boot_commands.iter().enumerate() {
        head.push_str(&boot_commands_block(
            n + 1,
            &commands.field,
            &commands.script,
        ));
    }
    if let Some(tls) = &cluster.nomad.tls {
        // The files come from the image, a VM extension (Key Vault) or the boot commands above;
        // an extension may finish after custom data starts: wait for them rather than start
        // Nomad without TLS.
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
    let run = format!("exec {}\n", run_nomad_line(cluster, set));
    if set.role == Role::Server && cluster.nomad.gossip {
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

/// Every scale set's boot script fits Azure's custom data limit; `Err` names the one that does
/// not, by how much, and what makes it large.
pub fn check_fits(cluster: &Cluster) -> Result<(), String> {
    for set in cluster.scale_sets() {
        let size = script(cluster, set).encoded_len();
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

    #[test]
    fn servers_run_run_nomad_with_the_server_count_and_scale_set() {
        let cluster = example();
        assert_eq!(
            run_nomad_line(&cluster, &cluster.servers),
            "/opt/nomad/bin/run-nomad --server --num-servers 3 --scale-set-name nomad-test-servers"
        );
        assert_eq!(
            run_nomad_line(&cluster, &cluster.client_pools[0]),
            "/opt/nomad/bin/run-nomad --client --scale-set-name nomad-test-servers"
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
        assert_eq!(
            run_nomad_line(&cluster, cluster.pool("web").unwrap()),
            "/opt/nomad/bin/run-nomad --client --scale-set-name nomad-test-servers --node-class general --meta 'team=infra'"
        );
        assert_eq!(
            run_nomad_line(&cluster, cluster.pool("gpu").unwrap()),
            "/opt/nomad/bin/run-nomad --client --scale-set-name nomad-test-servers --node-class gpu --node-pool accelerated --meta 'team=ml'"
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

    #[test]
    fn the_gossip_key_sits_between_head_and_tail() {
        let mut cluster = example();
        cluster.nomad.gossip = true;
        let Script::AroundKey { head, tail } = script(&cluster, &cluster.servers) else {
            panic!("a server with a gossip key needs the key spliced in");
        };
        assert!(head.ends_with("<<'CLUSTER_DEPLOY_GOSSIP_KEY'\n"), "{head}");
        assert!(tail.starts_with("\nCLUSTER_DEPLOY_GOSSIP_KEY\n"), "{tail}");
        assert!(tail.contains("--gossip-key-file /opt/nomad/secrets/gossip.key"));
        // Clients never get the key.
        assert!(matches!(
            script(&cluster, &cluster.client_pools[0]),
            Script::Plain(_)
        ));
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
        let text = text
            .replace(
                "/opt/nomad/secrets",
                &root.join("secrets").display().to_string(),
            )
            .replace(BOOT_COMMANDS_DIR, &root.join("boot").display().to_string());
        std::process::Command::new("sh")
            .args(["-c", &text])
            .output()
            .unwrap()
    }

    #[test]
    fn the_script_writes_the_key_0640_and_runs_run_nomad() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut cluster = example();
        cluster.nomad.gossip = true;
        cluster.nomad.run_nomad = stand_in_run_nomad(root);
        let key = "kGBHU6u7XuB0vq9Y3zT0l2tZ7yV3p3hKx5m9bJ8rG2c=";
        let out = run_script(root, &script(&cluster, &cluster.servers).with_key(key));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
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
        let out = run_script(root, &script(&cluster, &set).with_key(""));
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
        let out = run_script(root, &script(&cluster, &set).with_key(""));
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
            assert!(script(&cluster, set).encoded_len() <= MAX_CUSTOM_DATA_BASE64);
        }
        cluster.client_pools[0].boot_commands =
            vec![commands("custom_data", &"echo x\n".repeat(7000))];
        let text = check_fits(&cluster).unwrap_err();
        assert!(text.contains("scale set nomad-test-clients"), "{text}");
        assert!(text.contains("custom data limit of 65536"), "{text}");
        assert!(text.contains("`custom_data` (49000 bytes)"), "{text}");
    }
}
