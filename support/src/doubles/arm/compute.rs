//! Scale sets and their instances, the scale-set NIC listing, Compute usages and Resource SKUs.
//!
//! Sources: Compute 2024-11-01 `virtualMachineScaleSet.json` (VirtualMachineScaleSetVMs_List,
//! VirtualMachineScaleSets_Update/DeleteInstances/UpdateInstances; item fields after the spec's
//! `VirtualMachineScaleSetVM_List_MaximumSet_Gen.json` example), `computeRPCommon.json`
//! (Usage_List; `Usage_List_MaximumSet_Gen.json`), Network's `vmssNetworkInterface.json`
//! (2017-03-30), and Resource SKUs 2021-07-01 (`skus.json`, example
//! `ListAvailableResourceSkusForARegion.json`, upstream; see [`super::spec::EXTRA_OPERATIONS`]).
//!
//! - Each scale set holds instances `0, 1, 2...` (ids are never reused), one NIC each, spread
//!   over the scale set's zones. A deployment or a PATCH of `sku.capacity` adds instances with the
//!   current model or deletes the highest ids; DeleteInstances marks the named ones `Deleting`,
//!   and they go, lowering the capacity, when Azure finishes ([`super::deleting`]). Every creation and deletion is told to the installed [`InstanceEvents`]
//!   (deletions `notified` when the model enables the terminate notification).
//! - The model: a deployment that changes the scale set's `virtualMachineProfile` (image, custom
//!   data...) makes a new model; instances made before keep the old one and list with
//!   `latestModelApplied: false` until UpdateInstances (`manualupgrade`) applies it (upgrade
//!   policy Manual, as our template sets).
//! - Usage_List reports, per location, a base usage ([`super::ArmDouble::set_usage`]) plus the
//!   vCPUs of the instances that exist (by the size's family, `cores` for the region,
//!   `lowPriorityCores` for Spot).

use std::time::SystemTime;

use serde_json::{json, Value};

use super::super::server::Reply;
use super::created::time_created;
use super::deleting::{self, Deleting};
use super::lro::Pending;
use super::resources::Stored;
use super::{arm_error, page, resource_id, Call, InstanceInfo, State};

const VMSS: &str = "Microsoft.Compute/virtualMachineScaleSets";

#[derive(Debug, Clone)]
pub(crate) struct Instance {
    pub(crate) instance_id: u32,
    pub(crate) vm_id: String,
    pub(crate) computer_name: String,
    pub(crate) ip: String,
    pub(crate) zone: Option<String>,
    pub(crate) model: u64,
    /// When the double created it, by its clock (`properties.timeCreated`); `None` once a test
    /// made the double forget it ([`super::ArmDouble::forget_time_created`]).
    pub(crate) created: Option<SystemTime>,
    /// Azure is deleting it ([`super::deleting`]): listed as `Deleting` until it goes.
    pub(crate) deleting: Option<Deleting>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ScaleSetState {
    pub(crate) model: u64,
    /// The model as last deployed (virtualMachineProfile with custom data), to see changes.
    pub(crate) profile: Value,
    pub(crate) next_instance: u32,
    pub(crate) instances: Vec<Instance>,
}

/// A Compute usage of a location.
#[derive(Debug, Clone)]
pub(crate) struct Usage {
    pub(crate) location: String,
    pub(crate) name: String,
    pub(crate) current: u64,
    pub(crate) limit: u64,
}

/// Generous defaults, so tests that are not about quota never hit it.
pub(crate) fn default_usages() -> Vec<Usage> {
    Vec::new()
}

const DEFAULT_LIMIT: u64 = 5000;

pub(crate) fn set_usage(state: &mut State, location: &str, name: &str, current: u64, limit: u64) {
    state
        .usages
        .retain(|u| !(u.location.eq_ignore_ascii_case(location) && u.name == name));
    state.usages.push(Usage {
        location: location.to_ascii_lowercase(),
        name: name.to_string(),
        current,
        limit,
    });
}

/// A `ResourceSku` of resource type `virtualMachines`, shaped as the example
/// `ListAvailableResourceSkusForARegion.json` (skus.json 2021-07-01).
pub fn vm_sku(name: &str, family: &str, vcpus: u32, locations: &[&str]) -> Value {
    json!({
        "resourceType": "virtualMachines",
        "name": name,
        "tier": "Standard",
        "size": name.trim_start_matches("Standard_"),
        "family": family,
        "locations": locations,
        "locationInfo": locations.iter().map(|l| json!({ "location": l, "zones": ["1", "2", "3"] })).collect::<Vec<_>>(),
        "capabilities": [
            { "name": "vCPUs", "value": vcpus.to_string() },
            { "name": "MemoryGB", "value": (vcpus * 4).to_string() },
            { "name": "LowPriorityCapable", "value": "True" },
            { "name": "PremiumIO", "value": "True" },
            { "name": "vCPUsAvailable", "value": vcpus.to_string() },
            { "name": "EncryptionAtHostSupported", "value": "True" },
        ],
        "restrictions": [],
    })
}

/// A catalogue of common general-purpose sizes in a few regions.
pub(crate) fn default_skus() -> Vec<Value> {
    let regions = [
        "westeurope",
        "northeurope",
        "eastus",
        "eastus2",
        "westus2",
        "uksouth",
    ];
    let families: &[(&str, &str, &str)] = &[
        ("Standard_D", "s_v5", "standardDSv5Family"),
        ("Standard_D", "as_v5", "standardDASv5Family"),
        ("Standard_D", "ds_v5", "standardDDSv5Family"),
        ("Standard_D", "_v5", "standardDv5Family"),
        ("Standard_E", "s_v5", "standardESv5Family"),
        ("Standard_F", "s_v2", "standardFSv2Family"),
        ("Standard_D", "s_v3", "standardDSv3Family"),
        ("Standard_B", "s", "standardBSFamily"),
        ("Standard_B", "ms", "standardBSFamily"),
    ];
    let mut out = Vec::new();
    for (head, tail, family) in families {
        for vcpus in [1u32, 2, 4, 8, 16, 32, 48, 64] {
            out.push(vm_sku(
                &format!("{head}{vcpus}{tail}"),
                family,
                vcpus,
                &regions,
            ));
        }
    }
    out
}

fn capability(sku: &Value, name: &str) -> Option<u64> {
    sku["capabilities"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)?["value"]
        .as_str()?
        .parse()
        .ok()
}

/// The SKU of a size, by name.
pub(crate) fn sku_of<'a>(state: &'a State, size: &str) -> Option<&'a Value> {
    state.skus.iter().find(|s| {
        s["resourceType"] == "virtualMachines"
            && s["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(size))
    })
}

/// (family, vCPUs) of a size.
pub(crate) fn family_of(state: &State, size: &str) -> Option<(String, u64)> {
    let sku = sku_of(state, size)?;
    Some((
        sku["family"].as_str()?.to_string(),
        capability(sku, "vCPUs")?,
    ))
}

fn is_spot(value: &Value) -> bool {
    value["properties"]["virtualMachineProfile"]["priority"]
        .as_str()
        .is_some_and(|p| p.eq_ignore_ascii_case("Spot") || p.eq_ignore_ascii_case("Low"))
}

/// The usages of a location as Usage_List reports them: base plus existing instances.
pub(crate) fn usage_report(state: &State, location: &str) -> Vec<(String, u64, u64)> {
    let location = location.to_ascii_lowercase();
    let mut report: Vec<(String, u64, u64)> = Vec::new();
    let mut add = |name: &str, current: u64, limit: Option<u64>| match report
        .iter_mut()
        .find(|(n, _, _)| n == name)
    {
        Some(entry) => {
            entry.1 += current;
            if let Some(l) = limit {
                entry.2 = l;
            }
        }
        None => report.push((name.to_string(), current, limit.unwrap_or(DEFAULT_LIMIT))),
    };
    for name in [
        "cores",
        "lowPriorityCores",
        "virtualMachines",
        "virtualMachineScaleSets",
    ] {
        add(name, 0, None);
    }
    let mut families: Vec<String> = state
        .skus
        .iter()
        .filter_map(|s| s["family"].as_str().map(str::to_string))
        .collect();
    families.sort();
    families.dedup();
    for f in &families {
        add(f, 0, None);
    }
    for u in state.usages.iter().filter(|u| u.location == location) {
        add(&u.name, u.current, Some(u.limit));
    }
    for stored in state.resources.values() {
        let Some(set) = &stored.scale_set else {
            continue;
        };
        if !stored.value["location"]
            .as_str()
            .is_some_and(|l| l.eq_ignore_ascii_case(&location))
        {
            continue;
        }
        let size = stored.value["sku"]["name"].as_str().unwrap_or("");
        let Some((family, vcpus)) = family_of(state, size) else {
            continue;
        };
        let count = set.instances.len() as u64;
        if is_spot(&stored.value) {
            add("lowPriorityCores", count * vcpus, None);
        } else {
            add(&family, count * vcpus, None);
            add("cores", count * vcpus, None);
        }
        add("virtualMachines", count, None);
        add("virtualMachineScaleSets", 1, None);
    }
    report
}

/// Usage_List.
pub(super) fn usages(state: &mut State, call: &Call) -> Reply {
    let location = call.param("location").to_string();
    let items: Vec<Value> = usage_report(state, &location)
        .into_iter()
        .map(|(name, current, limit)| {
            json!({
                "unit": "Count",
                "currentValue": current,
                "limit": limit,
                "name": { "value": name, "localizedValue": localized(&name) },
            })
        })
        .collect();
    page(state, call, items)
}

fn localized(name: &str) -> String {
    match name {
        "cores" => "Total Regional vCPUs".into(),
        "lowPriorityCores" => "Total Regional Low-priority vCPUs".into(),
        "virtualMachines" => "Virtual Machines".into(),
        "virtualMachineScaleSets" => "Virtual Machine Scale Sets".into(),
        family => {
            let core = family
                .trim_start_matches("standard")
                .trim_end_matches("Family");
            format!("Standard {core} Family vCPUs")
        }
    }
}

/// ResourceSkus_List (`$filter=location eq '<l>'`, the only filter the spec supports).
pub(super) fn skus(state: &mut State, call: &Call) -> Reply {
    let location = match call.request.query_param("$filter") {
        None => None,
        Some(f) => match f
            .trim()
            .strip_prefix("location eq ")
            .map(|v| v.trim().trim_matches('\''))
        {
            Some(l) => Some(l.to_ascii_lowercase()),
            None => {
                return arm_error(
                    400,
                    "InvalidParameter",
                    &format!("The filter '{f}' is not supported: only a location filter is."),
                )
            }
        },
    };
    let items: Vec<Value> = state
        .skus
        .iter()
        .filter(|s| {
            location.as_deref().is_none_or(|l| {
                s["locations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|x| x.as_str().is_some_and(|x| x.eq_ignore_ascii_case(l)))
            })
        })
        .cloned()
        .collect();
    page(state, call, items)
}

fn scale_set_name(stored: &Stored) -> String {
    stored.value["name"].as_str().unwrap_or("").to_string()
}

fn notified(value: &Value) -> bool {
    value["properties"]["virtualMachineProfile"]["scheduledEventsProfile"]
        ["terminateNotificationProfile"]["enable"]
        == true
}

pub(crate) fn info(stored: &Stored, i: &Instance) -> InstanceInfo {
    InstanceInfo {
        scale_set: scale_set_name(stored),
        instance_id: i.instance_id.to_string(),
        vm_id: i.vm_id.clone(),
        computer_name: i.computer_name.clone(),
        private_ip: i.ip.clone(),
    }
}

/// Azure names instances `<computerNamePrefix><instance id in base 36, 6 digits>`.
fn computer_name(prefix: &str, id: u32) -> String {
    let mut digits = Vec::new();
    let mut n = id;
    loop {
        digits.push(
            std::char::from_digit(n % 36, 36)
                .expect("base 36")
                .to_ascii_uppercase(),
        );
        n /= 36;
        if n == 0 {
            break;
        }
    }
    while digits.len() < 6 {
        digits.push('0');
    }
    format!("{prefix}{}", digits.iter().rev().collect::<String>())
}

/// Applies a new or changed scale set model: the model version and the instance count.
pub(crate) fn apply_model(state: &mut State, stored: &mut Stored, previous: Option<&Stored>) {
    let os = &mut stored.value["properties"]["virtualMachineProfile"]["osProfile"];
    if let Some(data) = os.as_object_mut().and_then(|o| o.remove("customData")) {
        stored.custom_data = data.as_str().and_then(|b| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
        });
    }
    let mut profile = stored.value["properties"]["virtualMachineProfile"].clone();
    profile["customData"] = json!(stored.custom_data);
    let mut set = previous
        .and_then(|p| p.scale_set.clone())
        .unwrap_or_default();
    if previous.is_none() || set.profile != profile {
        if previous.is_some() {
            set.model += 1;
        }
        set.profile = profile;
    }
    stored.scale_set = Some(set);
    let capacity = stored.value["sku"]["capacity"].as_u64().unwrap_or(0) as usize;
    resize(state, stored, capacity);
}

/// Adds instances with the current model, or deletes the highest instance ids.
fn resize(state: &mut State, stored: &mut Stored, capacity: usize) {
    let prefix = stored.value["properties"]["virtualMachineProfile"]["osProfile"]
        ["computerNamePrefix"]
        .as_str()
        .unwrap_or("vm")
        .to_string();
    let zones: Vec<String> = stored.value["zones"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|z| z.as_str().map(str::to_string))
        .collect();
    let events = state.events.clone();
    let notify = notified(&stored.value);
    let mut set = stored.scale_set.take().unwrap_or_default();
    let mut created = Vec::new();
    while set.instances.len() < capacity {
        let id = set.next_instance;
        set.next_instance += 1;
        let ip = format!("10.0.{}.{}", state.next_ip / 250, state.next_ip % 250);
        state.next_ip += 1;
        state.counter += 1;
        let instance = Instance {
            instance_id: id,
            vm_id: format!(
                "{:08x}-{:04x}-4000-8000-{:012x}",
                0x5ca1_e5e7u32, id, state.counter
            ),
            computer_name: computer_name(&prefix, id),
            ip,
            zone: (!zones.is_empty()).then(|| zones[id as usize % zones.len()].clone()),
            model: set.model,
            created: Some((state.clock)()),
            deleting: None,
        };
        created.push(instance.clone());
        set.instances.push(instance);
    }
    let mut deleted = Vec::new();
    while set.instances.len() > capacity {
        deleted.extend(set.instances.pop());
    }
    stored.scale_set = Some(set);
    if let Some(events) = events {
        for i in &created {
            events.instance_created(&info(stored, i));
        }
        for i in &deleted {
            events.instance_deleted(&info(stored, i), notify);
        }
    }
}

/// A scale set was deleted: its instances go with it.
pub(crate) fn removed(state: &State, stored: &Stored) {
    if let (Some(set), Some(events)) = (&stored.scale_set, &state.events) {
        let notify = notified(&stored.value);
        for i in &set.instances {
            events.instance_deleted(&info(stored, i), notify);
        }
    }
}

pub(crate) fn instances_of(state: &State, scale_set: &str) -> Vec<InstanceInfo> {
    state
        .resources
        .values()
        .filter(|s| s.value["name"] == scale_set)
        .filter_map(|s| s.scale_set.as_ref().map(|set| (s, set)))
        .flat_map(|(s, set)| set.instances.iter().map(|i| info(s, i)).collect::<Vec<_>>())
        .collect()
}

fn scale_set_key(call: &Call, name_param: &str) -> String {
    resource_id(
        call.param("resourceGroupName"),
        VMSS,
        &[call.param(name_param)],
    )
    .to_ascii_lowercase()
}

fn missing(call: &Call, name: &str) -> Reply {
    arm_error(
        404,
        "ResourceNotFound",
        &format!(
            "The Resource '{VMSS}/{name}' under resource group '{}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            call.param("resourceGroupName")
        ),
    )
}

fn instance_value(stored: &Stored, set: &ScaleSetState, i: &Instance, expand: bool) -> Value {
    let id = format!(
        "{}/virtualMachines/{}",
        stored.value["id"].as_str().unwrap_or(""),
        i.instance_id
    );
    let profile = &stored.value["properties"]["virtualMachineProfile"];
    let nic_name = profile["networkProfile"]["networkInterfaceConfigurations"][0]["name"]
        .as_str()
        .unwrap_or("nic");
    let mut value = json!({
        "id": id,
        "name": format!("{}_{}", scale_set_name(stored), i.instance_id),
        "type": "Microsoft.Compute/virtualMachineScaleSets/virtualMachines",
        "location": stored.value["location"],
        "instanceId": i.instance_id.to_string(),
        "sku": { "name": stored.value["sku"]["name"], "tier": "Standard" },
        "properties": {
            "latestModelApplied": i.model == set.model,
            "vmId": i.vm_id,
            "provisioningState": if i.deleting.is_some() { "Deleting" } else { "Succeeded" },
            "hardwareProfile": { "vmSize": stored.value["sku"]["name"] },
            "osProfile": {
                "computerName": i.computer_name,
                "adminUsername": profile["osProfile"]["adminUsername"],
                "linuxConfiguration": profile["osProfile"]["linuxConfiguration"],
            },
            "storageProfile": { "imageReference": profile["storageProfile"]["imageReference"] },
            "networkProfile": { "networkInterfaces": [{ "id": format!("{id}/networkInterfaces/{nic_name}") }] },
        },
    });
    if let Some(created) = i.created {
        value["properties"]["timeCreated"] = json!(time_created(created));
    }
    if let Some(zone) = &i.zone {
        value["zones"] = json!([zone]);
    }
    if expand {
        let mut provisioned = json!({ "code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded" });
        if let Some(created) = i.created {
            provisioned["time"] = json!(time_created(created));
        }
        value["properties"]["instanceView"] = json!({
            "computerName": i.computer_name,
            "osName": "ubuntu",
            "statuses": [
                provisioned,
                { "code": "PowerState/running", "level": "Info", "displayStatus": "VM running" },
            ],
        });
    }
    value
}

/// VirtualMachineScaleSetVMs_List, with the `$expand` and `$filter` values the spec allows.
pub(super) fn list_instances(state: &mut State, call: &Call) -> Reply {
    let key = scale_set_key(call, "virtualMachineScaleSetName");
    let name = call.param("virtualMachineScaleSetName").to_string();
    let expand = match call.request.query_param("$expand") {
        None => false,
        Some("instanceView") => true,
        Some(other) => {
            return arm_error(400, "InvalidParameter", &format!("The value '{other}' of parameter '$expand' is invalid. Allowed values are 'instanceView'."))
        }
    };
    let latest: Option<bool> = match call.request.query_param("$filter").map(str::trim) {
        None => None,
        Some("startswith(instanceView/statuses/code, 'PowerState') eq true") => None,
        Some("properties/latestModelApplied eq true") => Some(true),
        Some("properties/latestModelApplied eq false") => Some(false),
        Some(other) => {
            return arm_error(400, "InvalidParameter", &format!("The value '{other}' of parameter '$filter' is invalid. Allowed values are 'startswith(instanceView/statuses/code, 'PowerState') eq true', 'properties/latestModelApplied eq true', 'properties/latestModelApplied eq false'."))
        }
    };
    let Some(stored) = state.resources.get(&key) else {
        return missing(call, &name);
    };
    let set = stored.scale_set.clone().unwrap_or_default();
    let items: Vec<Value> = set
        .instances
        .iter()
        .filter(|i| latest.is_none_or(|want| (i.model == set.model) == want))
        .map(|i| instance_value(stored, &set, i, expand))
        .collect();
    page(state, call, items)
}

/// NetworkInterfaces_ListVirtualMachineScaleSetNetworkInterfaces (Network, 2017-03-30).
pub(super) fn list_nics(state: &mut State, call: &Call) -> Reply {
    let key = scale_set_key(call, "virtualMachineScaleSetName");
    let name = call.param("virtualMachineScaleSetName").to_string();
    let Some(stored) = state.resources.get(&key) else {
        return missing(call, &name);
    };
    let config = &stored.value["properties"]["virtualMachineProfile"]["networkProfile"]
        ["networkInterfaceConfigurations"][0];
    let nic_name = config["name"].as_str().unwrap_or("nic");
    let ip_config = &config["properties"]["ipConfigurations"][0];
    let ip_name = ip_config["name"].as_str().unwrap_or("ipconfig");
    let set = stored.scale_set.clone().unwrap_or_default();
    let items: Vec<Value> = set
        .instances
        .iter()
        .map(|i| {
            let vm = format!(
                "{}/virtualMachines/{}",
                stored.value["id"].as_str().unwrap_or(""),
                i.instance_id
            );
            let nic = format!("{vm}/networkInterfaces/{nic_name}");
            json!({
                "id": nic,
                "name": nic_name,
                "location": stored.value["location"],
                "properties": {
                    "provisioningState": "Succeeded",
                    "primary": true,
                    "virtualMachine": { "id": vm },
                    "networkSecurityGroup": config["properties"]["networkSecurityGroup"],
                    "ipConfigurations": [{
                        "id": format!("{nic}/ipConfigurations/{ip_name}"),
                        "name": ip_name,
                        "properties": {
                            "provisioningState": "Succeeded",
                            "primary": true,
                            "privateIPAddress": i.ip,
                            "privateIPAllocationMethod": "Dynamic",
                            "privateIPAddressVersion": "IPv4",
                            "subnet": ip_config["properties"]["subnet"],
                        },
                    }],
                },
            })
        })
        .collect();
    page(state, call, items)
}

/// VirtualMachineScaleSets_Update (PATCH): `sku.capacity` scales; a profile change is a new
/// model; tags merge.
pub(super) fn update(state: &mut State, call: &Call) -> Reply {
    let key = scale_set_key(call, "vmScaleSetName");
    let name = call.param("vmScaleSetName").to_string();
    let body = match call.body() {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(previous) = state.resources.get(&key).cloned() else {
        return missing(call, &name);
    };
    let mut value = previous.value.clone();
    if let Some(capacity) = body["sku"]["capacity"].as_u64() {
        value["sku"]["capacity"] = json!(capacity);
    }
    if let Some(tags) = body["tags"].as_object() {
        value["tags"] = json!(tags);
    }
    if let Some(profile) = body["properties"]["virtualMachineProfile"].as_object() {
        for (k, v) in profile {
            value["properties"]["virtualMachineProfile"][k] = v.clone();
        }
    }
    let mut stored = Stored {
        value,
        ..previous.clone()
    };
    if body["properties"]["virtualMachineProfile"]["osProfile"]
        .get("customData")
        .is_none()
    {
        // The model keeps its custom data.
        if let Some(data) = &previous.custom_data {
            use base64::Engine;
            stored.value["properties"]["virtualMachineProfile"]["osProfile"]["customData"] =
                json!(base64::engine::general_purpose::STANDARD.encode(data));
        }
    }
    apply_model(state, &mut stored, Some(&previous));
    let answer = stored.value.clone();
    state.resources.insert(key, stored);
    call.long_running(state, 200, &answer, Pending::Done)
}

fn instance_ids(call: &Call) -> Result<Vec<u32>, Reply> {
    let body = call.body()?;
    let ids = body["instanceIds"].as_array().cloned().unwrap_or_default();
    if ids.is_empty() {
        return Err(arm_error(
            400,
            "InvalidParameter",
            "Required parameter 'instanceIds' is missing (null).",
        ));
    }
    ids.iter()
        .map(|v| {
            v.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
                arm_error(
                    400,
                    "InvalidParameter",
                    &format!("The instance id {v} is not valid."),
                )
            })
        })
        .collect()
}

fn with_instances(
    state: &mut State,
    call: &Call,
    work: impl FnOnce(&mut State, &mut Stored, &[u32]) -> Result<(), Reply>,
    pending: impl FnOnce(String, Vec<u32>) -> Pending,
) -> Reply {
    let key = scale_set_key(call, "vmScaleSetName");
    let name = call.param("vmScaleSetName").to_string();
    let ids = match instance_ids(call) {
        Ok(ids) => ids,
        Err(r) => return r,
    };
    let Some(mut stored) = state.resources.get(&key).cloned() else {
        return missing(call, &name);
    };
    let known: Vec<u32> = stored
        .scale_set
        .as_ref()
        .map(|s| s.instances.iter().map(|i| i.instance_id).collect())
        .unwrap_or_default();
    if let Some(bad) = ids.iter().find(|id| !known.contains(id)) {
        return arm_error(
            404,
            "NotFound",
            &format!("The entity was not found in this Azure location: instance {bad} of {name}."),
        );
    }
    if let Err(r) = work(state, &mut stored, &ids) {
        return r;
    }
    state.resources.insert(key.clone(), stored);
    call.long_running(state, 202, &Value::Null, pending(key, ids))
}

/// VirtualMachineScaleSets_DeleteInstances: the named instances turn `Deleting` and go, the
/// capacity dropping, when Azure finishes the delete ([`super::deleting`]).
pub(super) fn delete_instances(state: &mut State, call: &Call) -> Reply {
    with_instances(
        state,
        call,
        |state, stored, ids| {
            let notify = notified(&stored.value);
            let mut set = stored.scale_set.take().unwrap_or_default();
            let mut started = Vec::new();
            for i in set
                .instances
                .iter_mut()
                .filter(|i| ids.contains(&i.instance_id) && i.deleting.is_none())
            {
                // Asking again for an instance already deleting changes nothing.
                i.deleting = Some(deleting::begin(state, &stored.value));
                started.push(i.clone());
            }
            stored.scale_set = Some(set);
            if let Some(events) = state.events.clone() {
                for i in &started {
                    events.instance_deleted(&info(stored, i), notify);
                }
            }
            Ok(())
        },
        |key, ids| Pending::DeleteInstances { key, ids },
    )
}

/// VirtualMachineScaleSets_UpdateInstances (`manualupgrade`): the named instances take the
/// current model.
pub(super) fn update_instances(state: &mut State, call: &Call) -> Reply {
    with_instances(
        state,
        call,
        |_, stored, ids| {
            if let Some(set) = stored.scale_set.as_mut() {
                let model = set.model;
                for i in set
                    .instances
                    .iter_mut()
                    .filter(|i| ids.contains(&i.instance_id))
                {
                    i.model = model;
                }
            }
            Ok(())
        },
        |_, _| Pending::Done,
    )
}

#[cfg(test)]
mod tests {
    use super::computer_name;

    #[test]
    fn computer_names_are_the_prefix_and_six_base36_digits() {
        assert_eq!(computer_name("nomad-s", 0), "nomad-s000000");
        assert_eq!(computer_name("nomad-s", 35), "nomad-s00000Z");
        assert_eq!(computer_name("nomad-s", 36), "nomad-s000010");
    }
}
