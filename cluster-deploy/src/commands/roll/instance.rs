//! One scale-set instance as the roll judges it: ARM's VirtualMachineScaleSetVM (ids, model,
//! creation time) and whether it is to be replaced ([`Instance::current`]).

use anyhow::{bail, Result};
use serde::Serialize;
use serde_json::Value;

/// One scale-set instance as ARM lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    pub scale_set: String,
    pub instance_id: String,
    /// ARM's name, `<scale set>_<instance id>`.
    pub name: String,
    pub vm_id: String,
    pub computer_name: String,
    pub provisioning_state: String,
    /// `properties.latestModelApplied`.
    pub latest_model: bool,
    /// `properties.timeCreated` as ARM wrote it (absent from some answers).
    pub time_created: Option<String>,
    /// The same, parsed.
    #[serde(skip)]
    pub created: Option<time::OffsetDateTime>,
    /// Created before `roll --created-before`: replaced although it may be on the latest model
    /// ([`super::age`]).
    pub created_before_cutoff: bool,
}

impl Instance {
    /// Azure is deleting it (`provisioningState` "Deleting"): it is on its way out.
    pub fn deleting(&self) -> bool {
        self.provisioning_state.eq_ignore_ascii_case("Deleting")
    }

    /// From a VirtualMachineScaleSetVM; `instanceId`, `vmId` and `latestModelApplied` are
    /// required (without them an instance cannot be matched or judged).
    pub fn from_arm(scale_set: &str, value: &Value) -> Result<Self> {
        let text = |v: &Value| v.as_str().unwrap_or("").to_string();
        let instance_id = text(&value["instanceId"]);
        let properties = &value["properties"];
        let vm_id = text(&properties["vmId"]);
        if instance_id.is_empty() || vm_id.is_empty() {
            bail!(
                "scale set {scale_set}: an instance without instanceId or properties.vmId in ARM's answer ({})",
                value["id"]
            );
        }
        let Some(latest_model) = properties["latestModelApplied"].as_bool() else {
            bail!("scale set {scale_set}: instance {instance_id} has no properties.latestModelApplied");
        };
        let time_created = properties["timeCreated"].as_str().map(str::to_string);
        let created = match &time_created {
            None => None,
            Some(text) => Some(super::age::parse_rfc3339(text).map_err(|e| {
                anyhow::anyhow!(
                    "scale set {scale_set}: instance {instance_id}: properties.timeCreated {text:?}: {e}"
                )
            })?),
        };
        Ok(Self {
            scale_set: scale_set.to_string(),
            name: text(&value["name"]),
            computer_name: text(&properties["osProfile"]["computerName"]),
            provisioning_state: text(&properties["provisioningState"]),
            instance_id,
            vm_id,
            latest_model,
            time_created,
            created,
            created_before_cutoff: false,
        })
    }

    /// Needs no replacing: on the latest model, and not created before `--created-before`.
    pub fn current(&self) -> bool {
        self.latest_model && !self.created_before_cutoff
    }

    /// Why a roll replaces it, in words: `OLD MODEL`, or its creation time before the cutoff.
    pub fn model_words(&self) -> String {
        match (self.latest_model, self.created_before_cutoff) {
            (false, _) => "OLD MODEL".to_string(),
            (true, true) => format!(
                "OLD (created {}, before --created-before)",
                self.time_created.as_deref().unwrap_or("?")
            ),
            (true, false) => "latest model".to_string(),
        }
    }

    /// [`Self::label`], with the reason when it is replaced for its age alone.
    pub fn plan_label(&self) -> String {
        if self.latest_model && self.created_before_cutoff {
            format!(
                "{} [created {}, before --created-before]",
                self.label(),
                self.time_created.as_deref().unwrap_or("?")
            )
        } else {
            self.label()
        }
    }

    /// Numeric instance ids sort as numbers ("10" after "9").
    pub fn order_key(&self) -> (u64, String) {
        (
            self.instance_id.parse().unwrap_or(u64::MAX),
            self.instance_id.clone(),
        )
    }

    /// `3 (nomad-s000003, vm 5ca1e5e7-...)`: how messages name an instance.
    pub fn label(&self) -> String {
        if self.computer_name.is_empty() {
            format!("{} (vm {})", self.instance_id, self.vm_id)
        } else {
            format!(
                "{} ({}, vm {})",
                self.instance_id, self.computer_name, self.vm_id
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_instances_need_their_ids_and_model() {
        let value = serde_json::json!({
            "instanceId": "4",
            "properties": { "vmId": "abc", "latestModelApplied": false,
                "timeCreated": "2021-06-27T01:02:38.3138469+00:00",
                "osProfile": { "computerName": "nomad-s000004" }, "provisioningState": "Succeeded" }
        });
        let i = Instance::from_arm("s", &value).unwrap();
        assert_eq!((i.instance_id.as_str(), i.latest_model), ("4", false));
        assert_eq!(i.label(), "4 (nomad-s000004, vm abc)");
        let err = Instance::from_arm(
            "s",
            &serde_json::json!({"instanceId": "4", "properties": {"vmId": "abc"}}),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("latestModelApplied"), "{err}");
        assert!(Instance::from_arm("s", &serde_json::json!({"instanceId": "4"})).is_err());
        assert_eq!(
            i.created.map(|t| t.unix_timestamp()),
            Some(1_624_755_758),
            "timeCreated is read"
        );
        let mut unparsable = value.clone();
        unparsable["properties"]["timeCreated"] = "yesterday".into();
        let err = Instance::from_arm("s", &unparsable)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("instance 4: properties.timeCreated \"yesterday\""),
            "{err}"
        );
        let mut deleting = i.clone();
        deleting.provisioning_state = "Deleting".to_string();
        assert!(deleting.deleting() && !i.deleting());
    }
}
