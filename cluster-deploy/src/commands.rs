//! The five commands. Each reads the cluster file, talks to ARM (or not, for an offline plan)
//! and prints text or, with `--json`, one JSON document on stdout. Progress and notes that are
//! not the answer go to the log (stderr).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use support::http::Url;
use support::retry::Policy;

use crate::arm::{ArmClient, Outcome, Progress, Timing};
use crate::auth::{self, AuthChoice, Env, Secret, TokenEndpoints, TokenProvider};
use crate::cli::{AzureArgs, Cli, Command};
use crate::config::{self, ClusterFile};
use crate::model::{Cluster, ResourceSummary, CLUSTER_TAG, SSH_FRONTEND_PORTS};
use crate::template::{self, COMPUTE_API, NETWORK_API};

/// Runs a parsed command line, printing to `out`.
pub fn run(cli: Cli, env: &Env, out: &mut dyn Write, input: &mut dyn BufRead) -> Result<()> {
    let loaded = Loaded::read(&cli.config)?;
    match &cli.command {
        Command::Plan { out: path, offline } => {
            plan(&cli, env, &loaded, path.as_deref(), *offline, out)
        }
        Command::Apply => apply(&cli, env, &loaded, out),
        Command::Outputs => {
            let arm = connect_required(&cli.azure, env)?;
            let outputs = outputs(&arm, &loaded.cluster)?;
            print_outputs(cli.json, &outputs, out)
        }
        Command::Status {
            nomad_address,
            nomad_ca_cert,
        } => status(
            &cli,
            env,
            &loaded,
            nomad_address.as_deref(),
            nomad_ca_cert.as_deref(),
            out,
        ),
        Command::Destroy { yes } => destroy(&cli, env, &loaded, *yes, out, input),
    }
}

/// The cluster file, its model and its template.
struct Loaded {
    path: PathBuf,
    file: ClusterFile,
    cluster: Cluster,
    template: Value,
}

impl Loaded {
    fn read(path: &Path) -> Result<Self> {
        let file = config::load(path)?;
        let cluster = Cluster::from_file(&file);
        for role in [crate::model::Role::Server, crate::model::Role::Client] {
            let size = crate::custom_data::script(&cluster, role).encoded_len();
            if size > crate::custom_data::MAX_CUSTOM_DATA_BASE64 {
                bail!(
                    "cluster file {}: the {role:?} boot script is {size} bytes of base64, over                      Azure's custom data limit of {} (fewer or shorter `nomad.meta` entries)",
                    path.display(),
                    crate::custom_data::MAX_CUSTOM_DATA_BASE64
                );
            }
        }
        let template = template::render(&cluster);
        Ok(Self {
            path: path.to_path_buf(),
            file,
            cluster,
            template,
        })
    }

    /// The deployment parameters (the gossip key, read from its file now).
    fn parameters(&self) -> Result<Value> {
        let key: Option<Secret> = match &self.file.nomad.gossip_key_file {
            Some(file) => Some(config::read_gossip_key(&self.path, file)?),
            None => None,
        };
        Ok(template::parameters(key.as_ref()))
    }
}

fn write_json(out: &mut dyn Write, value: &Value) -> Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

// ---- connecting

fn endpoint(flag: &str, value: &str) -> Result<Url> {
    let url = Url::parse(value).with_context(|| format!("{flag} {value:?} is not a URL"))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if support::http::is_loopback(&url) => Ok(url),
        "http" => {
            bail!("{flag} {value}: plain http is only accepted for a loopback address; use https")
        }
        other => bail!("{flag} {value}: unsupported scheme {other:?}"),
    }
}

fn imds_endpoint(value: &str) -> Result<Url> {
    let url =
        Url::parse(value).with_context(|| format!("--imds-endpoint {value:?} is not a URL"))?;
    let link_local = url.host_str() == Some("169.254.169.254");
    if url.scheme() == "http" && (link_local || support::http::is_loopback(&url)) {
        Ok(url)
    } else {
        bail!(
            "--imds-endpoint {value}: use http://169.254.169.254 (or a loopback address in tests)"
        )
    }
}

fn timing(args: &AzureArgs) -> (Timing, Duration) {
    let mut timing = Timing {
        poll_interval: Duration::from_millis(args.poll_interval_ms),
        ..Timing::default()
    };
    timing.retry.initial_delay = Duration::from_millis(args.retry_delay_ms);
    (timing, Duration::from_millis(args.principal_retry_ms))
}

/// An ARM client, or `None` when there are no credentials.
fn connect(args: &AzureArgs, env: &Env) -> Result<Option<ArmClient>> {
    let arm = endpoint("--arm-endpoint", &args.arm_endpoint)?;
    let login = endpoint("--login-endpoint", &args.login_endpoint)?;
    let imds = imds_endpoint(&args.imds_endpoint)?;
    let Some(method) = auth::choose(args.auth, env, &args.az_program)? else {
        return Ok(None);
    };
    tracing::info!("authenticating as {}", method.describe());
    let audience = args
        .token_audience
        .clone()
        .unwrap_or_else(|| format!("{}/", arm.as_str().trim_end_matches('/')));
    let (timing, _) = timing(args);
    let token_retry = Policy {
        what: "token request",
        max_attempts: 5,
        initial_delay: timing.retry.initial_delay,
        max_delay: Duration::from_secs(30),
        deadline: Some(Duration::from_secs(120)),
    };
    let is_managed = matches!(method, auth::Method::ManagedIdentity { .. });
    let tokens = TokenProvider::new(
        method,
        TokenEndpoints {
            login,
            imds,
            audience,
        },
        token_retry,
    )?;
    // The first token proves the credential and, for the CLI, names its subscription.
    tokens.token().context("getting an Azure token")?;
    let subscription = match &args.subscription {
        Some(s) => s.clone(),
        None => match tokens.cli_subscription() {
            Some(s) => s,
            None if is_managed => tokens
                .imds_subscription()
                .context("reading the VM's subscription from IMDS")?,
            None => bail!("no subscription: set ARM_SUBSCRIPTION_ID or pass --subscription"),
        },
    };
    let subscription_ok = !subscription.is_empty()
        && subscription
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !subscription_ok {
        bail!("subscription {subscription:?} is not a subscription id");
    }
    Ok(Some(ArmClient::new(arm, tokens, subscription, timing)?))
}

fn connect_required(args: &AzureArgs, env: &Env) -> Result<ArmClient> {
    match connect(args, env)? {
        Some(arm) => Ok(arm),
        None => bail!(
            "no Azure credentials: set ARM_TENANT_ID, ARM_CLIENT_ID and ARM_CLIENT_SECRET (and \
             ARM_SUBSCRIPTION_ID), log in with the Azure CLI (`az login`), or use --auth \
             managed-identity on an Azure VM"
        ),
    }
}

fn log_progress(what: &str) -> impl FnMut(&Progress) + '_ {
    let mut last = String::new();
    move |p: &Progress| {
        if p.status != last {
            tracing::info!("{what}: {} ({}s)", p.status, p.elapsed.as_secs());
            last = p.status.clone();
        }
    }
}

// ---- plan

fn plan(
    cli: &Cli,
    env: &Env,
    loaded: &Loaded,
    out_path: Option<&Path>,
    offline: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let cluster = &loaded.cluster;
    // The key is checked even offline, so a bad key file shows up before apply.
    let parameters = loaded.parameters()?;
    if let Some(path) = out_path {
        let text = template::to_pretty(&loaded.template);
        let dir = support::files::parent_dir(path);
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create directory {}", dir.display()))?;
        support::files::write_atomic(path, text.as_bytes(), support::files::FileSpec::mode(0o644))?;
    }
    let summary = cluster.summary();
    let mut notes = Vec::new();
    if cluster.nomad.gossip {
        notes.push(format!(
            "the gossip key from {} is passed to ARM as the securestring parameter `{}` at apply \
             time; it is not in the template",
            loaded
                .file
                .nomad
                .gossip_key_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            template::GOSSIP_KEY_PARAMETER
        ));
    }
    for (name, cidrs) in [
        (
            "allowed_inbound_cidr_blocks",
            &loaded.file.allowed_inbound_cidr_blocks,
        ),
        (
            "allowed_ssh_cidr_blocks",
            &loaded.file.allowed_ssh_cidr_blocks,
        ),
    ] {
        if cidrs.iter().any(|c| c.ends_with("/0")) {
            notes.push(format!("{name} admits the whole internet (a /0 block)"));
        }
    }
    let mut what_if: Option<Value> = None;
    let arm = if offline {
        notes.push("offline (--offline): what-if was not run".to_string());
        None
    } else {
        let arm = match connect(&cli.azure, env) {
            // `auto` found the Azure CLI, but it is not logged in: that is "no credentials"
            // for a plan, not a failure.
            Err(e)
                if cli.azure.auth == AuthChoice::Auto
                    && matches!(
                        e.downcast_ref::<auth::AuthError>(),
                        Some(auth::AuthError::Cli(_))
                    ) =>
            {
                notes.push(format!(
                    "the Azure CLI gave no token ({}): what-if was not run",
                    e.root_cause()
                        .to_string()
                        .lines()
                        .last()
                        .unwrap_or("")
                        .trim()
                ));
                return finish_plan(cli, loaded, out_path, &summary, None, notes, out);
            }
            other => other?,
        };
        if arm.is_none() {
            notes.push(
                "no Azure credentials found (ARM_CLIENT_ID/ARM_CLIENT_SECRET/ARM_TENANT_ID, an \
                 Azure CLI login, or --auth managed-identity): what-if was not run, and the list \
                 above is what the template declares"
                    .to_string(),
            );
        }
        arm
    };
    if let Some(arm) = &arm {
        if arm.resource_group(&cluster.resource_group)?.is_none() {
            notes.push(format!(
                "resource group {} does not exist yet: apply creates it and every resource above",
                cluster.resource_group
            ));
        } else {
            let outcome = arm.what_if(
                &cluster.resource_group,
                &cluster.names.deployment,
                &loaded.template,
                &parameters,
                &mut log_progress("what-if"),
            )?;
            match outcome {
                Outcome::Succeeded(result) => what_if = Some(result),
                Outcome::Failed { code, message, .. } => {
                    bail!(
                        "what-if of deployment {} failed: {code}: {message}",
                        cluster.names.deployment
                    )
                }
            }
        }
    }
    finish_plan(cli, loaded, out_path, &summary, what_if, notes, out)
}

/// Prints the plan: the summary, what-if's changes when there are any, notes.
fn finish_plan(
    cli: &Cli,
    loaded: &Loaded,
    out_path: Option<&Path>,
    summary: &[ResourceSummary],
    what_if: Option<Value>,
    notes: Vec<String>,
    out: &mut dyn Write,
) -> Result<()> {
    let cluster = &loaded.cluster;
    let changes: Vec<Value> = what_if
        .as_ref()
        .and_then(|w| w["properties"]["changes"].as_array().cloned())
        .unwrap_or_default();
    if cli.json {
        return write_json(
            out,
            &json!({
                "cluster": cluster.name,
                "resource_group": cluster.resource_group,
                "location": cluster.location,
                "resources": summary,
                "template": out_path.map(|p| p.display().to_string()),
                "what_if": what_if.as_ref().map(|_| json!({ "changes": changes.iter().map(change_summary).collect::<Vec<_>>() })),
                "notes": notes,
            }),
        );
    }
    writeln!(
        out,
        "Nomad cluster {} in resource group {} ({}): {} resources",
        cluster.name,
        cluster.resource_group,
        cluster.location,
        summary.len()
    )?;
    print_summary(summary, out)?;
    if what_if.is_some() {
        writeln!(
            out,
            "\nWhat-if (ARM's view of the changes, mode Incremental):"
        )?;
        if changes.is_empty() {
            writeln!(out, "  no changes")?;
        }
        for change in &changes {
            let c = change_summary(change);
            writeln!(
                out,
                "  {} {:<10} {}",
                c["symbol"].as_str().unwrap_or("?"),
                c["change"].as_str().unwrap_or(""),
                c["resource"].as_str().unwrap_or("")
            )?;
            for path in c["properties"].as_array().into_iter().flatten() {
                writeln!(out, "        {}", path.as_str().unwrap_or(""))?;
            }
        }
        let count = |kind: &str| changes.iter().filter(|c| c["changeType"] == kind).count();
        writeln!(
            out,
            "  {} to create, {} to modify, {} to delete, {} unchanged",
            count("Create"),
            count("Modify"),
            count("Delete"),
            count("NoChange")
        )?;
    }
    if let Some(path) = out_path {
        writeln!(out, "\nTemplate written to {}", path.display())?;
    }
    for note in &notes {
        writeln!(out, "note: {note}")?;
    }
    Ok(())
}

fn print_summary(summary: &[ResourceSummary], out: &mut dyn Write) -> Result<()> {
    for r in summary {
        writeln!(out, "\n  {} {}", r.kind, r.name)?;
        for d in &r.details {
            writeln!(out, "      {d}")?;
        }
    }
    Ok(())
}

/// One what-if change, reduced to what a reader needs: the change, the resource (type and
/// name from its id) and the changed property paths.
fn change_summary(change: &Value) -> Value {
    let kind = change["changeType"].as_str().unwrap_or("Unsupported");
    let symbol = match kind {
        "Create" => "+",
        "Delete" => "-",
        "Modify" => "~",
        "Deploy" => "!",
        "NoChange" => "=",
        "Ignore" => "*",
        _ => "?",
    };
    let id = change["resourceId"].as_str().unwrap_or("");
    let resource = id
        .split_once("/providers/")
        .map_or(id, |(_, rest)| rest)
        .to_string();
    let paths: Vec<String> = change["delta"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            format!(
                "{} {}",
                match d["propertyChangeType"].as_str().unwrap_or("") {
                    "Create" => "+",
                    "Delete" => "-",
                    "Modify" => "~",
                    "Array" => "~",
                    _ => "?",
                },
                d["path"].as_str().unwrap_or("")
            )
        })
        .collect();
    json!({ "change": kind, "symbol": symbol, "resource": resource, "resourceId": id, "properties": paths })
}

// ---- apply

fn apply(cli: &Cli, env: &Env, loaded: &Loaded, out: &mut dyn Write) -> Result<()> {
    let cluster = &loaded.cluster;
    let parameters = loaded.parameters()?;
    let arm = connect_required(&cli.azure, env)?;
    let (_, principal_retry) = timing(&cli.azure);
    let group = &cluster.resource_group;
    match arm.resource_group(group)? {
        Some(existing) => {
            let location = existing["location"].as_str().unwrap_or_default();
            if !location.eq_ignore_ascii_case(&cluster.location) {
                tracing::warn!(
                    "resource group {group} is in {location}; the cluster's resources go to {}",
                    cluster.location
                );
            }
        }
        None => {
            tracing::info!("creating resource group {group} in {}", cluster.location);
            arm.create_resource_group(
                group,
                &cluster.location,
                &json!({ CLUSTER_TAG: cluster.name }),
            )?;
        }
    }
    let name = &cluster.names.deployment;
    // A new identity may not have replicated when its role assignment is made: ARM answers
    // PrincipalNotFound, and the documented remedy is to try again (REFERENCE.md).
    const PRINCIPAL_ATTEMPTS: u32 = 4;
    let mut attempt = 1;
    loop {
        tracing::info!("deploying {name} to resource group {group} (mode Incremental)");
        let mut seen = std::collections::BTreeSet::new();
        let mut progress = |p: &Progress| {
            tracing::info!("deployment {name}: {} ({}s)", p.status, p.elapsed.as_secs());
            // Name each resource as ARM finishes it.
            if let Ok(ops) = arm.deployment_operations(group, name) {
                for op in ops {
                    let props = &op["properties"];
                    let state = props["provisioningState"].as_str().unwrap_or("");
                    let target = props["targetResource"]["id"].as_str().unwrap_or("");
                    if matches!(state, "Succeeded" | "Failed")
                        && !target.is_empty()
                        && seen.insert(format!("{target}:{state}"))
                    {
                        tracing::info!(
                            "  {} {}",
                            state.to_lowercase(),
                            resource_label(&props["targetResource"])
                        );
                    }
                }
            }
        };
        let outcome = arm.deploy(group, name, &loaded.template, &parameters, &mut progress)?;
        match outcome {
            Outcome::Succeeded(_) => break,
            Outcome::Failed {
                status,
                code,
                message,
            } => {
                let failures = failed_operations(&arm, group, name)?;
                let only_principal =
                    !failures.is_empty() && failures.iter().all(|f| f.code == "PrincipalNotFound");
                if only_principal && attempt < PRINCIPAL_ATTEMPTS {
                    tracing::warn!(
                        "the scale set identities are not visible to role assignments yet \
                         (PrincipalNotFound); deploying again in {}s (attempt {}/{PRINCIPAL_ATTEMPTS})",
                        principal_retry.as_secs(),
                        attempt + 1
                    );
                    std::thread::sleep(principal_retry);
                    attempt += 1;
                    continue;
                }
                let mut text = format!(
                    "deployment {name} {}: {code}: {message}",
                    status.to_lowercase()
                );
                if failures.is_empty() {
                    text.push_str("\n  (the deployment operations name no failed resource)");
                }
                for f in &failures {
                    text.push_str(&format!("\n  {}: {}: {}", f.resource, f.code, f.message));
                }
                if cli.json {
                    write_json(
                        out,
                        &json!({
                            "deployment": name,
                            "status": status,
                            "error": { "code": code, "message": message },
                            "failed_resources": failures.iter().map(|f| json!({
                                "resource": f.resource, "code": f.code, "message": f.message
                            })).collect::<Vec<_>>(),
                        }),
                    )?;
                }
                bail!(text);
            }
        }
    }
    tracing::info!("deployment {name} succeeded");
    let outputs = outputs(&arm, cluster)?;
    print_outputs(cli.json, &outputs, out)
}

fn resource_label(target: &Value) -> String {
    let kind = target["resourceType"].as_str().unwrap_or("");
    let name = target["resourceName"].as_str().unwrap_or("");
    if kind.is_empty() && name.is_empty() {
        target["id"].as_str().unwrap_or("").to_string()
    } else {
        format!("{kind} {name}")
    }
}

/// A resource the deployment failed to create, with the provider's error.
struct FailedResource {
    resource: String,
    code: String,
    message: String,
}

fn failed_operations(arm: &ArmClient, group: &str, name: &str) -> Result<Vec<FailedResource>> {
    let ops = arm
        .deployment_operations(group, name)
        .with_context(|| format!("listing the operations of deployment {name}"))?;
    let mut out = Vec::new();
    for op in ops {
        let props = &op["properties"];
        if props["provisioningState"] != "Failed" {
            continue;
        }
        // statusMessage is usually {"status", "error": {code, message, details}}, sometimes
        // the error object alone, sometimes text.
        let status = &props["statusMessage"];
        let error = if status["error"].is_object() {
            &status["error"]
        } else {
            status
        };
        let mut message = error["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| {
                status
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| status.to_string())
            });
        for detail in error["details"].as_array().into_iter().flatten() {
            message.push_str(&format!(
                " [{}: {}]",
                detail["code"].as_str().unwrap_or(""),
                detail["message"].as_str().unwrap_or("")
            ));
        }
        out.push(FailedResource {
            resource: resource_label(&props["targetResource"]),
            code: error["code"].as_str().unwrap_or("").to_string(),
            message,
        });
    }
    Ok(out)
}

// ---- outputs

/// What the old helper script printed, and a little more.
#[derive(Debug, Clone, serde::Serialize)]
struct Outputs {
    load_balancer_address: Option<String>,
    nomad_api: Option<String>,
    ssh: Option<String>,
    server_scale_set: String,
    client_scale_set: String,
    server_private_ips: Vec<String>,
    nat_gateway_address: Option<String>,
}

fn public_ip_address(arm: &ArmClient, cluster: &Cluster, name: &str) -> Result<Option<String>> {
    let id = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/publicIPAddresses/{name}",
        arm.subscription, cluster.resource_group
    );
    Ok(arm
        .get_resource(&id, NETWORK_API)?
        .and_then(|ip| ip["properties"]["ipAddress"].as_str().map(str::to_string)))
}

fn outputs(arm: &ArmClient, cluster: &Cluster) -> Result<Outputs> {
    let lb_address = match &cluster.load_balancer {
        Some(lb) => public_ip_address(arm, cluster, &lb.public_ip)?,
        None => None,
    };
    let nat_address = match cluster.egress {
        config::Egress::NatGateway => public_ip_address(arm, cluster, &cluster.names.nat_ip)?,
        _ => None,
    };
    let scheme = if cluster.nomad.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let nics = arm
        .scale_set_nics(&cluster.resource_group, &cluster.servers.name)
        .with_context(|| format!("listing the NICs of scale set {}", cluster.servers.name))?;
    let mut ips: Vec<String> = nics
        .iter()
        .flat_map(|nic| {
            nic["properties"]["ipConfigurations"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|ip| {
            ip["properties"]["privateIPAddress"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    ips.sort_by_key(|ip| ip.parse::<std::net::Ipv4Addr>().ok());
    Ok(Outputs {
        nomad_api: lb_address
            .as_ref()
            .map(|a| format!("{scheme}://{a}:{}", cluster.http_port)),
        ssh: lb_address.as_ref().map(|a| {
            format!(
                "ssh -p <{}-{}> {}@{a}  (one port per instance, in order)",
                SSH_FRONTEND_PORTS.0, SSH_FRONTEND_PORTS.1, cluster.admin_user
            )
        }),
        load_balancer_address: lb_address,
        server_scale_set: cluster.servers.name.clone(),
        client_scale_set: cluster.clients.name.clone(),
        server_private_ips: ips,
        nat_gateway_address: nat_address,
    })
}

fn print_outputs(json_out: bool, o: &Outputs, out: &mut dyn Write) -> Result<()> {
    if json_out {
        return write_json(out, &serde_json::to_value(o)?);
    }
    let none = "-".to_string();
    writeln!(
        out,
        "load_balancer_address  {}",
        o.load_balancer_address.as_ref().unwrap_or(&none)
    )?;
    writeln!(
        out,
        "nomad_api              {}",
        o.nomad_api.as_ref().unwrap_or(&none)
    )?;
    writeln!(
        out,
        "ssh                    {}",
        o.ssh.as_ref().unwrap_or(&none)
    )?;
    writeln!(out, "server_scale_set       {}", o.server_scale_set)?;
    writeln!(out, "client_scale_set       {}", o.client_scale_set)?;
    writeln!(
        out,
        "server_private_ips     {}",
        if o.server_private_ips.is_empty() {
            none.clone()
        } else {
            o.server_private_ips.join(" ")
        }
    )?;
    writeln!(
        out,
        "nat_gateway_address    {}",
        o.nat_gateway_address.as_ref().unwrap_or(&none)
    )?;
    Ok(())
}

// ---- status

fn status(
    cli: &Cli,
    env: &Env,
    loaded: &Loaded,
    nomad_address: Option<&str>,
    ca: Option<&Path>,
    out: &mut dyn Write,
) -> Result<()> {
    let cluster = &loaded.cluster;
    let arm = connect_required(&cli.azure, env)?;
    let mut sets = Vec::new();
    for set in cluster.scale_sets() {
        let instances = arm
            .scale_set_instances(&cluster.resource_group, &set.name)
            .with_context(|| format!("listing the instances of scale set {}", set.name))?;
        let rows: Vec<Value> = instances
            .iter()
            .map(|vm| {
                json!({
                    "instance_id": vm["instanceId"],
                    "name": vm["name"],
                    "computer_name": vm["properties"]["osProfile"]["computerName"],
                    "provisioning_state": vm["properties"]["provisioningState"],
                    "latest_model_applied": vm["properties"]["latestModelApplied"],
                })
            })
            .collect();
        sets.push(json!({ "name": set.name, "wanted": set.capacity, "instances": rows }));
    }
    let address = match nomad_address {
        Some(a) => Some(a.to_string()),
        None => match &cluster.load_balancer {
            Some(lb) => public_ip_address(&arm, cluster, &lb.public_ip)?.map(|ip| {
                let scheme = if cluster.nomad.tls.is_some() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{ip}:{}", cluster.http_port)
            }),
            None => None,
        },
    };
    let token = std::env::var("NOMAD_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .map(Secret::new);
    let (nomad, nomad_note) = match &address {
        None => (
            None,
            Some("no Nomad address: the cluster has no public load balancer; pass --nomad-address (e.g. over a VPN)".to_string()),
        ),
        Some(a) => {
            let url = Url::parse(a).with_context(|| format!("--nomad-address {a:?} is not a URL"))?;
            let client = crate::nomad::NomadClient::new(url, ca, token)?;
            match client.health() {
                Ok(h) => (Some(h), None),
                Err(e) => (None, Some(format!("the Nomad API at {a} is not reachable: {e}"))),
            }
        }
    };
    if cli.json {
        return write_json(
            out,
            &json!({ "scale_sets": sets, "nomad": nomad, "notes": nomad_note.into_iter().collect::<Vec<_>>() }),
        );
    }
    for set in &sets {
        let instances = set["instances"].as_array().cloned().unwrap_or_default();
        writeln!(
            out,
            "scale set {} ({} of {} instances)",
            set["name"].as_str().unwrap_or(""),
            instances.len(),
            set["wanted"]
        )?;
        for vm in instances {
            writeln!(
                out,
                "  {:<4} {:<24} {:<12} {}",
                vm["instance_id"].as_str().unwrap_or("?"),
                vm["computer_name"]
                    .as_str()
                    .or(vm["name"].as_str())
                    .unwrap_or("?"),
                vm["provisioning_state"].as_str().unwrap_or("?"),
                match vm["latest_model_applied"].as_bool() {
                    Some(true) => "latest model",
                    Some(false) => "OLD MODEL (roll it: see the README)",
                    None => "",
                }
            )?;
        }
    }
    if let Some(h) = &nomad {
        writeln!(out, "nomad at {}", h.address)?;
        writeln!(
            out,
            "  leader: {}",
            h.leader.as_deref().unwrap_or("NONE (no quorum?)")
        )?;
        for m in &h.servers {
            writeln!(
                out,
                "  server {:<24} {}:{} {}",
                m.name, m.addr, m.port, m.status
            )?;
        }
        for n in &h.nodes {
            writeln!(
                out,
                "  client {:<24} {} {} {}",
                n.name,
                n.status,
                n.scheduling_eligibility,
                if n.node_class.is_empty() {
                    "-"
                } else {
                    &n.node_class
                }
            )?;
        }
    }
    if let Some(note) = nomad_note {
        writeln!(out, "note: {note}")?;
    }
    Ok(())
}

// ---- destroy

/// Deletion order: what uses a resource goes before it (scale sets hold NICs that reference the
/// load balancer, NSG, ASG and subnet; the subnet references the NAT gateway, which holds its
/// public IP).
const DELETE_ORDER: &[&str] = &[
    "microsoft.compute/virtualmachinescalesets",
    "microsoft.network/loadbalancers",
    "microsoft.network/virtualnetworks",
    "microsoft.network/natgateways",
    "microsoft.network/publicipaddresses",
    "microsoft.network/networksecuritygroups",
    "microsoft.network/applicationsecuritygroups",
];

fn destroy(
    cli: &Cli,
    env: &Env,
    loaded: &Loaded,
    yes: bool,
    out: &mut dyn Write,
    input: &mut dyn BufRead,
) -> Result<()> {
    let cluster = &loaded.cluster;
    let arm = connect_required(&cli.azure, env)?;
    let group = &cluster.resource_group;
    let Some(rg) = arm.resource_group(group)? else {
        if cli.json {
            write_json(
                out,
                &json!({ "deleted": [], "resource_group_deleted": false, "kept": [] }),
            )?;
        } else {
            writeln!(
                out,
                "resource group {group} does not exist: nothing to destroy"
            )?;
        }
        return Ok(());
    };
    let mut tagged = arm.resources_tagged(group, CLUSTER_TAG, &cluster.name)?;
    // The filter is ARM's; check the tag ourselves as well, since deleting is not undoable.
    tagged.retain(|r| r["tags"][CLUSTER_TAG] == cluster.name.as_str());
    let rank = |r: &Value| {
        let kind = r["type"].as_str().unwrap_or("").to_ascii_lowercase();
        DELETE_ORDER
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(DELETE_ORDER.len())
    };
    tagged.sort_by_key(|r| rank(r));
    let (deletable, unknown): (Vec<Value>, Vec<Value>) = tagged.into_iter().partition(|r| {
        r["type"]
            .as_str()
            .and_then(ArmClient::api_version_of)
            .is_some()
    });
    // The Reader assignments carry no tags (role assignments cannot); they are found through
    // the identities of the tagged scale sets.
    let mut assignments = Vec::new();
    for r in &deletable {
        if r["type"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case("Microsoft.Compute/virtualMachineScaleSets"))
        {
            let id = r["id"].as_str().unwrap_or_default();
            if let Some(vmss) = arm.get_resource(id, COMPUTE_API)? {
                if let Some(principal) = vmss["identity"]["principalId"].as_str() {
                    assignments.extend(arm.role_assignments_of(group, principal)?);
                }
            }
        }
    }
    let rg_tagged = rg["tags"][CLUSTER_TAG] == cluster.name.as_str();
    let ids: Vec<String> = assignments
        .iter()
        .chain(deletable.iter())
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect();
    if !cli.json {
        writeln!(
            out,
            "Resources in {group} tagged {CLUSTER_TAG}={}:",
            cluster.name
        )?;
        for id in &ids {
            writeln!(out, "  {id}")?;
        }
        for r in &unknown {
            writeln!(
                out,
                "  {} (type {} is not one cluster-deploy makes: left in place)",
                r["id"].as_str().unwrap_or(""),
                r["type"].as_str().unwrap_or("")
            )?;
        }
        if rg_tagged {
            writeln!(
                out,
                "  resource group {group} (created by cluster-deploy: deleted if empty afterwards)"
            )?;
        }
    }
    if ids.is_empty() && !rg_tagged {
        if cli.json {
            write_json(
                out,
                &json!({ "deleted": [], "kept": unknown.iter().map(|r| &r["id"]).collect::<Vec<_>>() }),
            )?;
        } else {
            writeln!(
                out,
                "nothing carries the tag {CLUSTER_TAG}={}",
                cluster.name
            )?;
        }
        return Ok(());
    }
    if !yes {
        eprint!(
            "Type the cluster name ({}) to delete these resources: ",
            cluster.name
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        input
            .read_line(&mut answer)
            .context("reading the confirmation")?;
        if answer.trim() != cluster.name {
            bail!("not confirmed: nothing was deleted (pass --yes to skip the question)");
        }
    }
    let mut deleted = Vec::new();
    for r in assignments.iter().chain(deletable.iter()) {
        let id = r["id"].as_str().unwrap_or_default();
        let kind = r["type"]
            .as_str()
            .unwrap_or("Microsoft.Authorization/roleAssignments");
        let api = ArmClient::api_version_of(kind).unwrap_or(template::AUTHORIZATION_API);
        tracing::info!("deleting {id}");
        match arm.delete_resource(id, api, &mut log_progress(id))? {
            Outcome::Succeeded(_) => deleted.push(id.to_string()),
            Outcome::Failed { code, message, .. } => {
                bail!("deleting {id} failed: {code}: {message}")
            }
        }
    }
    let mut group_deleted = false;
    if rg_tagged {
        let left = arm.list(&arm.url(
            &format!(
                "/subscriptions/{}/resourcegroups/{group}/resources",
                arm.subscription
            ),
            template::RESOURCES_API,
            &[],
        ))?;
        if left.is_empty() {
            tracing::info!("deleting resource group {group}");
            match arm.delete_resource_group(group, &mut log_progress(group))? {
                Outcome::Succeeded(_) => group_deleted = true,
                Outcome::Failed { code, message, .. } => {
                    bail!("deleting resource group {group} failed: {code}: {message}")
                }
            }
        } else {
            tracing::warn!(
                "resource group {group} still holds {} other resources: kept",
                left.len()
            );
        }
    }
    if cli.json {
        return write_json(
            out,
            &json!({
                "deleted": deleted,
                "resource_group_deleted": group_deleted,
                "kept": unknown.iter().map(|r| &r["id"]).collect::<Vec<_>>(),
            }),
        );
    }
    writeln!(
        out,
        "deleted {} resources{}",
        deleted.len(),
        if group_deleted {
            " and the resource group"
        } else {
            ""
        }
    )?;
    Ok(())
}
