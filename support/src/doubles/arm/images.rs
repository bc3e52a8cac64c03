//! Images: the two reads image-builder makes before it trusts a build record. Both are rows of
//! [`super::spec::EXTRA_OPERATIONS`] (their swagger is not in `shared/` yet; each row names the
//! upstream file and commit), so they are matched, recorded and checked like every operation:
//!
//! - `Images_Get`, a managed image: `.../providers/Microsoft.Compute/images/{imageName}`,
//!   api-version 2024-11-01 (ComputeRP `image.json`). The answer follows the spec's
//!   `Image_Get.json` example: `id`, `name`, `type`, `location`, `properties.storageProfile`
//!   (`osDisk`, `dataDisks`, `zoneResilient`), `properties.provisioningState`, and
//!   `hyperVGeneration` (an `ImageProperties` field the example leaves out).
//! - `GalleryImageVersions_Get`, a Compute Gallery image version:
//!   `.../galleries/{galleryName}/images/{galleryImageName}/versions/{galleryImageVersionName}`,
//!   api-version 2024-03-03 (GalleryRP `GalleryRP.json`). The answer follows
//!   `GalleryImageVersion_Get.json`: `properties.publishingProfile.targetRegions`,
//!   `properties.storageProfile.osDiskImage`, `properties.provisioningState`.
//!
//! The values are what a Linux Packer bake leaves behind (a generalized Linux OS disk, one
//! replica in the image's location). The provisioning state is the test's to choose: a gallery
//! version's is `GalleryProvisioningState` (`Creating`, `Updating`, `Failed`, `Succeeded`,
//! `Deleting`, `Migrating`); a managed image's is a free string ("The provisioning state."),
//! which Microsoft's examples show as `created` (Image_Get.json) and `Creating`
//! (Image_CreateFromAVM.json).
//!
//! A missing image answers 404 `ResourceNotFound` (`ResourceGroupNotFound` when its group is
//! gone too), as every resource read does ([`super::resources`]). An image added in another
//! subscription than [`super::SUBSCRIPTION`] (a gallery shared from another subscription) makes
//! the double serve that subscription too; resource groups stay one namespace across the
//! subscriptions served.

use serde_json::{json, Value};

use super::super::server::Reply;
use super::resources::{self, Stored};
use super::{spec, Call, State};

/// The two operations, by id.
const OPERATIONS: [&str; 2] = ["Images_Get", "GalleryImageVersions_Get"];

/// Matches `id` against the two operations' path templates: the operation and its match.
fn operation_of(id: &str) -> Option<spec::Matched> {
    OPERATIONS.iter().find_map(|operation_id| {
        let op = spec::table()
            .operation(operation_id)
            .expect("an image operation of EXTRA_OPERATIONS");
        spec::resolve("GET", id, &op.api_versions[0])
            .ok()
            .filter(|m| m.operation.operation_id == *operation_id)
    })
}

/// The resource as GET answers it.
fn answer(matched: &spec::Matched, id: &str, location: &str, provisioning_state: &str) -> Value {
    if matched.operation.operation_id == "Images_Get" {
        return json!({
            "id": id,
            "name": matched.param("imageName"),
            "type": "Microsoft.Compute/images",
            "location": location,
            "properties": {
                "storageProfile": {
                    "osDisk": {
                        "osType": "Linux",
                        "osState": "Generalized",
                        "caching": "ReadWrite",
                        "storageAccountType": "Standard_LRS",
                        "diskSizeGB": 30
                    },
                    "dataDisks": [],
                    "zoneResilient": false
                },
                "provisioningState": provisioning_state,
                "hyperVGeneration": "V2"
            }
        });
    }
    json!({
        "id": id,
        "name": matched.param("galleryImageVersionName"),
        "type": "Microsoft.Compute/galleries/images/versions",
        "location": location,
        "properties": {
            "publishingProfile": {
                "targetRegions": [{
                    "name": location,
                    "regionalReplicaCount": 1,
                    "storageAccountType": "Standard_LRS",
                    "excludeFromLatest": false
                }],
                "replicaCount": 1,
                "publishedDate": "2025-01-01T00:00:00Z",
                "storageAccountType": "Standard_LRS"
            },
            "storageProfile": {
                "osDiskImage": { "sizeInGB": 30, "hostCaching": "ReadWrite" }
            },
            "provisioningState": provisioning_state
        }
    })
}

/// Adds (or replaces) the image at `id`; its resource group is made when missing and its
/// subscription served. Panics on an id neither operation matches: this is test set-up.
pub(super) fn add(state: &mut State, id: &str, location: &str, provisioning_state: &str) {
    let matched = operation_of(id).unwrap_or_else(|| {
        panic!("{id} is neither a managed image nor a gallery image version id")
    });
    let group = matched.param("resourceGroupName").to_string();
    state
        .subscriptions
        .insert(matched.param("subscriptionId").to_ascii_lowercase());
    state
        .groups
        .entry(group.to_ascii_lowercase())
        .or_insert_with(|| resources::group_value(&group, location, &Value::Null));
    let value = answer(&matched, id, location, provisioning_state);
    state
        .resources
        .insert(id.to_ascii_lowercase(), Stored::plain(value, group));
}

/// Images_Get and GalleryImageVersions_Get: the stored image, or ARM's 404.
pub(super) fn get(state: &mut State, call: &Call) -> Reply {
    resources::get(state, call)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::super::super::server::test_client as client;
    use super::super::{ArmDouble, Fault, FaultKind, Verdict, SUBSCRIPTION};

    const IMAGES: &str = "2024-11-01";
    const GALLERY: &str = "2024-03-03";
    const OTHER_SUBSCRIPTION: &str = "66666666-7777-8888-9999-000000000000";

    fn image_id(subscription: &str) -> String {
        format!("/subscriptions/{subscription}/resourceGroups/images/providers/Microsoft.Compute/images/nomad-1.10.5")
    }

    fn version_id(subscription: &str) -> String {
        format!("/subscriptions/{subscription}/resourceGroups/images/providers/Microsoft.Compute/galleries/gal/images/nomad/versions/1.10.5")
    }

    fn get(arm: &ArmDouble, path: &str, version: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = client().get(format!("{}{path}?api-version={version}", arm.url()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    #[test]
    fn both_reads_are_spec_operations_answered_as_the_examples() {
        let arm = ArmDouble::start();
        let token = arm.token();
        let image = image_id(SUBSCRIPTION);
        let version = version_id(OTHER_SUBSCRIPTION);
        arm.add_image(&image, "westeurope", "Succeeded");
        arm.add_image(&version, "westeurope", "Failed");

        let (status, body) = get(&arm, &image, IMAGES, Some(&token));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["id"], image.as_str());
        assert_eq!(body["name"], "nomad-1.10.5");
        assert_eq!(body["type"], "Microsoft.Compute/images");
        assert_eq!(body["properties"]["provisioningState"], "Succeeded");
        assert_eq!(
            body["properties"]["storageProfile"]["osDisk"]["osState"],
            "Generalized"
        );
        // The gallery lives in another subscription; ARM paths ignore case.
        let (status, body) = get(
            &arm,
            &version
                .to_ascii_uppercase()
                .replacen("/SUBSCRIPTIONS", "/subscriptions", 1),
            GALLERY,
            Some(&token),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["name"], "1.10.5");
        assert_eq!(body["properties"]["provisioningState"], "Failed");
        assert_eq!(
            body["properties"]["publishingProfile"]["targetRegions"][0]["name"],
            "westeurope"
        );
        assert_eq!(
            arm.operations_used(),
            [
                ("Images_Get".to_string(), IMAGES.to_string()),
                ("GalleryImageVersions_Get".to_string(), GALLERY.to_string())
            ]
        );
        // A subscription no image was added in is not served.
        let unknown = image_id("99999999-0000-0000-0000-000000000000");
        let (status, body) = get(&arm, &unknown, IMAGES, Some(&token));
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("SubscriptionNotFound"))
        );
    }

    #[test]
    fn another_api_version_is_refused_and_recorded_as_no_operation() {
        let arm = ArmDouble::start();
        arm.expect_refusals();
        let token = arm.token();
        let image = image_id(SUBSCRIPTION);
        arm.add_image(&image, "westeurope", "Succeeded");
        let (status, body) = get(&arm, &image, GALLERY, Some(&token));
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("NoRegisteredProviderFound"))
        );
        let r = client()
            .get(format!("{}{image}", arm.url()))
            .bearer_auth(&token)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
        let refused: Vec<String> = arm
            .refused()
            .into_iter()
            .map(|s| match s.verdict {
                Verdict::Refused { code, .. } => code,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            refused,
            ["NoRegisteredProviderFound", "MissingApiVersionParameter"]
        );
    }

    #[test]
    fn tokens_faults_and_deletion_answer_as_arm_does() {
        let arm = ArmDouble::start();
        let token = arm.token();
        let image = image_id(SUBSCRIPTION);
        arm.add_image(&image, "westeurope", "Succeeded");
        assert_eq!(
            get(&arm, &image, IMAGES, None).1["error"]["code"],
            "AuthenticationFailed"
        );
        let (status, body) = get(&arm, &image, IMAGES, Some("another-tenants"));
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("InvalidAuthenticationToken"))
        );
        arm.inject(Fault::any(FaultKind::Throttle {
            retry_after_secs: 3,
        }));
        let r = client()
            .get(format!("{}{image}?api-version={IMAGES}", arm.url()))
            .bearer_auth(&token)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 429);
        assert_eq!(r.headers()["retry-after"], "3");
        arm.inject(Fault::any(FaultKind::ServerError(503)));
        assert_eq!(get(&arm, &image, IMAGES, Some(&token)).0, 503);
        arm.remove_resource(&image);
        let (status, body) = get(&arm, &image, IMAGES, Some(&token));
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("ResourceNotFound"))
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("'Microsoft.Compute/images/nomad-1.10.5' under resource group 'images'"),
            "{body}"
        );
        assert_eq!(arm.requests().len(), 5);
    }

    #[test]
    #[should_panic(expected = "is neither a managed image nor a gallery image version id")]
    fn only_image_ids_can_be_added() {
        let arm = ArmDouble::start();
        arm.add_image(
            &format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/images/providers/Microsoft.Compute/disks/d"),
            "westeurope",
            "Succeeded",
        );
    }
}
