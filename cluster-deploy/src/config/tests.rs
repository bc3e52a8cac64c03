use super::*;

pub const KEY: &str = ssh_key::tests::ED25519;

pub fn minimal() -> String {
    format!(
        r#"
location = "westeurope"
resource_group_name = "nomad-rg"
cluster_name = "nomad-test"
image_id = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/images/providers/Microsoft.Compute/images/nomad"
instance_size = "Standard_D2s_v5"
key_data = "{KEY}"
allowed_inbound_cidr_blocks = ["203.0.113.0/24"]
allowed_ssh_cidr_blocks = ["198.51.100.7/32"]
address_space = "10.0.0.0/16"
subnet_address = "10.0.1.0/24"
"#
    )
}

/// The minimal file with `extra`: its top-level `key = value` lines replace the minimal
/// file's (`key = DROP` removes one), and its tables (from the first `[` line on) follow.
pub fn minimal_with(extra: &str) -> String {
    let first_table = if extra.starts_with('[') {
        Some(0)
    } else {
        extra.find("\n[").map(|i| i + 1)
    };
    let (top, tables) = match first_table {
        Some(i) => extra.split_at(i),
        None => (extra, ""),
    };
    let keys: Vec<&str> = top
        .lines()
        .filter_map(|l| l.split_once(" =").map(|(k, _)| k.trim()))
        .collect();
    let base: Vec<String> = minimal()
        .lines()
        .filter(|l| !keys.iter().any(|k| l.starts_with(&format!("{k} ="))))
        .map(str::to_string)
        .collect();
    let top: Vec<&str> = top.lines().filter(|l| !l.ends_with("= DROP")).collect();
    format!("{}\n{}\n{tables}", top.join("\n"), base.join("\n"))
}

pub(crate) fn load_text(text: &str) -> Result<ClusterFile, ConfigError> {
    parse(Path::new("/etc/cluster.toml"), text)
}

pub(crate) fn problem(text: &str) -> String {
    load_text(text).unwrap_err().to_string()
}

fn with(line: &str) -> String {
    format!("{line}\n{}", minimal())
}

fn without(key: &str) -> String {
    minimal()
        .lines()
        .filter(|l| !l.starts_with(&format!("{key} =")))
        .collect::<Vec<_>>()
        .join("\n")
}

fn replace(key: &str, line: &str) -> String {
    format!("{line}\n{}", without(key))
}

#[test]
fn the_minimal_file_loads_with_the_terraform_defaults() {
    let f = load_text(&minimal()).unwrap();
    assert_eq!(f.cluster_size, 3);
    assert_eq!(f.num_clients, 6);
    assert_eq!(
        (f.http_port, f.rpc_port, f.serf_port, f.ssh_port),
        (4646, 4647, 4648, 22)
    );
    assert!(!f.associate_public_ip_address_load_balancer);
    assert_eq!(f.nomad.run_nomad, "/opt/nomad/bin/run-nomad");
}

#[test]
fn unknown_keys_are_refused() {
    let text = problem(&with("instance_type = \"t2.micro\""));
    assert!(text.contains("instance_type"), "{text}");
    assert!(text.contains("/etc/cluster.toml"), "{text}");
    let text = problem(&format!("{}\n[nomad]\nacls = true\n", minimal()));
    assert!(text.contains("acls"), "{text}");
}

#[test]
fn server_counts_must_be_odd_and_non_zero() {
    for n in [0, 2, 4] {
        let text = problem(&with(&format!("cluster_size = {n}")));
        assert!(text.contains("`cluster_size`"), "{text}");
        assert!(text.contains("odd"), "{text}");
    }
    assert!(load_text(&with("cluster_size = 5")).is_ok());
    assert!(load_text(&with("cluster_size = 1")).is_ok());
}

#[test]
fn bad_cidrs_name_the_field_and_index() {
    let text = problem(&replace(
        "allowed_ssh_cidr_blocks",
        "allowed_ssh_cidr_blocks = [\"10.0.0.0/8\", \"300.1.2.3/32\"]",
    ));
    assert!(text.contains("`allowed_ssh_cidr_blocks[1]`"), "{text}");
    let text = problem(&replace(
        "allowed_inbound_cidr_blocks",
        "allowed_inbound_cidr_blocks = [\"10.0.0.1/8\"]",
    ));
    assert!(text.contains("`allowed_inbound_cidr_blocks[0]`"), "{text}");
    assert!(text.contains("host bits"), "{text}");
    let text = problem(&replace(
        "subnet_address",
        "subnet_address = \"10.1.0.0/24\"",
    ));
    assert!(text.contains("`subnet_address`"), "{text}");
    assert!(text.contains("not inside"), "{text}");
}

#[test]
fn the_key_must_be_present_and_a_public_key() {
    let text = problem(&without("key_data"));
    assert!(text.contains("key_data"), "{text}");
    let text = problem(&replace("key_data", "key_data = \"\""));
    assert!(text.contains("`key_data` is empty"), "{text}");
    let text = problem(&replace(
        "key_data",
        "key_data = \"-----BEGIN OPENSSH PRIVATE KEY-----\"",
    ));
    assert!(text.contains("PRIVATE"), "{text}");
    let text = problem(&replace(
            "key_data",
            "key_data = \"ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIHX0tMHyMQi6JXZ7bS7WlOnrqbzYL1U5Xg6aQfqHk2Zx\"",
        ));
    assert!(text.contains("not a ssh-rsa key"), "{text}");
    // ECDSA is what Azure refuses at deployment; a 1024-bit RSA key too.
    let text = problem(&replace(
        "key_data",
        &format!("key_data = \"{}\"", ssh_key::tests::ECDSA_256),
    ));
    assert!(text.contains("`key_data` is an ECDSA key"), "{text}");
    let text = problem(&replace(
        "key_data",
        &format!("key_data = \"{}\"", ssh_key::tests::RSA_1024),
    ));
    assert!(text.contains("1024-bit RSA key"), "{text}");
    assert!(load_text(&replace(
        "key_data",
        &format!("key_data = \"{}\"", ssh_key::tests::RSA_2048),
    ))
    .is_ok());
}

#[test]
fn the_network_is_an_existing_subnet_or_a_new_one() {
    let text = problem(&without("address_space"));
    assert!(text.contains("`address_space` is missing"), "{text}");
    let subnet = "/subscriptions/s/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/v/subnets/nodes";
    let existing = format!(
        "subnet_id = \"{subnet}\"\n{}",
        without("address_space")
            .lines()
            .filter(|l| !l.starts_with("subnet_address"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let text = problem(&existing);
    assert!(text.contains("`egress` must be set"), "{text}");
    assert!(load_text(&format!("egress = \"existing\"\n{existing}")).is_ok());
    let text = problem(&format!("egress = \"nat-gateway\"\n{existing}"));
    assert!(text.contains("`egress`"), "{text}");
    let text = problem(&format!("egress = \"load-balancer\"\n{existing}"));
    assert!(
        text.contains("associate_public_ip_address_load_balancer"),
        "{text}"
    );
    let text = problem(&format!("subnet_id = \"{subnet}\"\n{}", minimal()));
    assert!(text.contains("`subnet_id` cannot be combined"), "{text}");
    let text = problem(&format!(
        "subnet_id = \"/subscriptions/x\"\negress = \"existing\"\n{}",
        without("address_space")
            .lines()
            .filter(|l| !l.starts_with("subnet_address"))
            .collect::<Vec<_>>()
            .join("\n")
    ));
    assert!(text.contains("`subnet_id`"), "{text}");
}

#[test]
fn other_fields_are_checked_by_name() {
    for (line, field) in [
        ("location = \"West Europe\"", "location"),
        ("cluster_name = \"Nomad_Prod\"", "cluster_name"),
        ("image_id = \"ami-abcd1234\"", "image_id"),
        ("instance_size = \"t2.micro\"", "instance_size"),
        ("admin_user_name = \"root\"", "admin_user_name"),
        (
            "computer_name_prefix = \"much-too-long\"",
            "computer_name_prefix",
        ),
        ("root_volume_size = 10", "root_volume_size"),
        ("ssh_port = 4646", "ssh_port"),
        ("zones = [\"4\"]", "zones[0]"),
    ] {
        let key = line.split(' ').next().unwrap();
        let text = problem(&replace(key, line));
        assert!(text.contains(&format!("`{field}`")), "{line}: {text}");
    }
    let text = problem(&format!(
        "{}\n[nomad]\ndatacenter = \"dc 1; reboot\"\n",
        minimal()
    ));
    assert!(text.contains("`nomad.datacenter`"), "{text}");
    let text = problem(&format!(
        "{}\n[nomad.tls]\nca_file = \"ca.pem\"\ncert_file = \"/c\"\nkey_file = \"/k\"\n",
        minimal()
    ));
    assert!(text.contains("`nomad.tls.ca_file`"), "{text}");
    let text = problem(&format!("{}\n[nomad.tls]\nenable = true\n", minimal()));
    assert!(text.contains("enable"), "{text}");
}

#[test]
fn gossip_keys_are_checked_and_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let good = "kGBHU6u7XuB0vq9Y3zT0l2tZ7yV3p3hKx5m9bJ8rG2c=";
    let path = dir.path().join("gossip.key");
    std::fs::write(&path, format!("{good}\n")).unwrap();
    let key = read_gossip_key(Path::new("c.toml"), &path).unwrap();
    assert_eq!(key.expose(), good);
    assert!(!format!("{key:?}").contains(good));
    let short = "c2hvcnQ=";
    std::fs::write(&path, short).unwrap();
    let text = read_gossip_key(Path::new("c.toml"), &path)
        .unwrap_err()
        .to_string();
    assert!(text.contains("5 bytes"), "{text}");
    assert!(!text.contains(short), "{text}");
    assert!(text.contains("nomad.gossip_key_file"), "{text}");
}

#[test]
fn relative_key_files_are_relative_to_the_cluster_file() {
    let f = parse(
            Path::new("/srv/clusters/prod.toml"),
            &format!(
                "{}\n[nomad]\ngossip_key_file = \"secrets/gossip.key\"\n\
                 [nomad.tls]\nca_cert_file = \"pki/ca.pem\"\nca_key_file = \"/etc/pki/ca-key.pem\"\n",
                minimal()
            ),
        )
        .unwrap();
    assert_eq!(
        f.nomad.gossip_key_file.unwrap(),
        PathBuf::from("/srv/clusters/secrets/gossip.key")
    );
    assert_eq!(
        f.nomad.tls.ca_cert_file.unwrap(),
        PathBuf::from("/srv/clusters/pki/ca.pem")
    );
    assert_eq!(
        f.nomad.tls.ca_key_file.unwrap(),
        PathBuf::from("/etc/pki/ca-key.pem")
    );
}

#[test]
fn the_cluster_tag_is_reserved() {
    let text = problem(&format!("{}\n[tags]\nnomad-cluster = \"x\"\n", minimal()));
    assert!(text.contains("`tags.nomad-cluster`"), "{text}");
}

#[test]
fn health_settings_are_checked() {
    let f = load_text(&minimal()).unwrap();
    assert_eq!(
        f.health,
        HealthOptions {
            automatic_repairs: true,
            repair_grace_period_minutes: 30
        }
    );
    for minutes in [5, 91] {
        let text = problem(&minimal_with(&format!(
            "[health]\nrepair_grace_period_minutes = {minutes}\n"
        )));
        assert!(
            text.contains("`health.repair_grace_period_minutes`"),
            "{text}"
        );
        assert!(text.contains("10 to 90"), "{text}");
    }
    // The VMs fetch their secrets at boot: the grace period covers the vault's wait.
    let text = problem(&minimal_with(
        "[health]\nrepair_grace_period_minutes = 15\n",
    ));
    assert!(text.contains("at least 20"), "{text}");
    assert!(text.contains("Key Vault"), "{text}");
    assert!(load_text(&minimal_with(
        "[health]\nrepair_grace_period_minutes = 20\n"
    ))
    .is_ok());
    // Without anything to fetch, Azure's floor is the only one.
    assert!(load_text(&minimal_with(
        "[health]\nrepair_grace_period_minutes = 15\n\
             [nomad]\ngossip_encryption = false\n[nomad.tls]\nenabled = false\n"
    ))
    .is_ok());
}
