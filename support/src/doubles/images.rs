//! Azure Resource Manager double for the two image reads image-builder makes before it trusts a
//! build record: a managed image and a gallery image version, on 127.0.0.1.
//!
//! Shaped after Microsoft's REST specifications (Azure/azure-rest-api-specs), not our client:
//! - `Images_Get`: `GET /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/
//!   providers/Microsoft.Compute/images/{imageName}`, api-version `2024-11-01`
//!   (`specification/compute/resource-manager/Microsoft.Compute/ComputeRP/stable/2024-11-01/image.json`);
//!   the body follows its `Image_Get.json` example (`id`, `name`, `type`, `location`,
//!   `properties.storageProfile`, `properties.provisioningState`).
//! - `GalleryImageVersions_Get`: `GET /subscriptions/{subscriptionId}/resourceGroups/
//!   {resourceGroupName}/providers/Microsoft.Compute/galleries/{galleryName}/images/
//!   {galleryImageName}/versions/{galleryImageVersionName}`, api-version `2024-03-03`
//!   (`.../GalleryRP/stable/2024-03-03/GalleryRP.json`); the body follows
//!   `GalleryImageVersion_Get.json` (`properties.publishingProfile.targetRegions`,
//!   `properties.storageProfile`, `properties.provisioningState`).
//! - Errors are ARM's `CloudError` (`{"error": {"code", "message"}}`): 401
//!   `AuthenticationFailed` / `InvalidAuthenticationToken`, 400 `MissingApiVersionParameter` /
//!   `InvalidApiVersionParameter`, 404 `ResourceNotFound`, plus injected 429 (with
//!   `Retry-After`) and 5xx answers. Path segments are matched without case, as ARM does.
//!
//! This double is separate from [`super::arm`] on purpose: these two operations are all
//! image-builder calls, and neither is in `../shared/azure-rest-specs/` yet.
//!
//! ```no_run
//! use support::doubles::images::{ImageDouble, ImageFault};
//!
//! let arm = ImageDouble::start("the-token");
//! let id = arm.add_managed_image("sub", "rg", "nomad-1.10.5", "westeurope");
//! arm.inject(ImageFault::Throttle { retry_after_secs: 0 });
//! arm.remove(&id);
//! let seen = arm.requests();
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};

pub use super::server::RecordedRequest;
use super::server::{Reply, Server};

/// `Images_Get`'s api-version (ComputeRP 2024-11-01).
pub const IMAGES_API_VERSION: &str = "2024-11-01";
/// `GalleryImageVersions_Get`'s api-version (GalleryRP 2024-03-03).
pub const GALLERY_API_VERSION: &str = "2024-03-03";

/// A failure answered to the next request, before any other handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFault {
    /// 429 `TooManyRequests` with `Retry-After`.
    Throttle { retry_after_secs: u64 },
    /// A server error (500, 503...) with ARM's error body.
    Status(u16),
}

#[derive(Debug, Default)]
struct State {
    token: String,
    /// Lower-cased resource id -> body.
    resources: BTreeMap<String, Value>,
    faults: VecDeque<ImageFault>,
    requests: Vec<RecordedRequest>,
}

/// A running double; dropping it stops the server.
pub struct ImageDouble {
    server: Server,
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl ImageDouble {
    /// Starts the double; `token` is the only bearer token it accepts.
    pub fn start(token: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            token: token.to_string(),
            ..State::default()
        }));
        let handler_state = state.clone();
        let server = Server::start(move |request| {
            let mut state = lock(&handler_state);
            state.requests.push(request.clone());
            handle(&mut state, request)
        });
        Self { server, state }
    }

    /// `http://127.0.0.1:PORT`: pass it as `--arm-endpoint`.
    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// Adds a managed image (provisioning state `Succeeded`) and returns its id.
    pub fn add_managed_image(&self, sub: &str, group: &str, name: &str, location: &str) -> String {
        let id = format!(
            "/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Compute/images/{name}"
        );
        let body = json!({
            "id": id,
            "name": name,
            "type": "Microsoft.Compute/images",
            "location": location,
            "properties": {
                "storageProfile": {
                    "osDisk": {
                        "osType": "Linux",
                        "osState": "Generalized",
                        "storageAccountType": "Standard_LRS",
                        "diskSizeGB": 30
                    },
                    "dataDisks": [],
                    "zoneResilient": false
                },
                "provisioningState": "Succeeded",
                "hyperVGeneration": "V2"
            }
        });
        lock(&self.state)
            .resources
            .insert(id.to_ascii_lowercase(), body);
        id
    }

    /// Adds a gallery image version in `provisioning_state` (`Succeeded`, `Failed`,
    /// `Creating`...) and returns its id.
    #[allow(clippy::too_many_arguments)]
    pub fn add_gallery_image_version(
        &self,
        sub: &str,
        group: &str,
        gallery: &str,
        image: &str,
        version: &str,
        location: &str,
        provisioning_state: &str,
    ) -> String {
        let id = format!(
            "/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Compute/galleries/{gallery}/images/{image}/versions/{version}"
        );
        let body = json!({
            "id": id,
            "name": version,
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
        });
        lock(&self.state)
            .resources
            .insert(id.to_ascii_lowercase(), body);
        id
    }

    /// Deletes a resource (as an operator deleting the image would).
    pub fn remove(&self, id: &str) {
        lock(&self.state).resources.remove(&id.to_ascii_lowercase());
    }

    /// Queues a failure for the next request.
    pub fn inject(&self, fault: ImageFault) {
        lock(&self.state).faults.push_back(fault);
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state).requests.clone()
    }
}

fn arm_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({ "error": { "code": code, "message": message } }),
    )
}

fn handle(state: &mut State, request: &RecordedRequest) -> Reply {
    if let Some(fault) = state.faults.pop_front() {
        return match fault {
            ImageFault::Throttle { retry_after_secs } => arm_error(
                429,
                "TooManyRequests",
                "The request is being throttled as the limit has been reached for operation type - Read.",
            )
            .header("Retry-After", retry_after_secs.to_string()),
            ImageFault::Status(status) => arm_error(
                status,
                "InternalServerError",
                "Encountered internal server error. Diagnostic information: timestamp '20250101T000000Z'.",
            ),
        };
    }
    match request.header("authorization") {
        None => {
            return arm_error(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            )
        }
        Some(value) if value != format!("Bearer {}", state.token) => {
            return arm_error(
                401,
                "InvalidAuthenticationToken",
                "The access token is invalid.",
            )
        }
        Some(_) => {}
    }
    let Some(version) = request.query_param("api-version") else {
        return arm_error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    };
    if request.method != "GET" {
        return arm_error(
            405,
            "MethodNotAllowed",
            "The double serves GET of images and gallery image versions only.",
        );
    }
    let segments: Vec<&str> = request.path.split('/').filter(|s| !s.is_empty()).collect();
    let lower: Vec<String> = segments.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    let (expected, short) = match l.as_slice() {
        ["subscriptions", _, "resourcegroups", _, "providers", "microsoft.compute", "images", name] => {
            (
                IMAGES_API_VERSION,
                format!("Microsoft.Compute/images/{name}"),
            )
        }
        ["subscriptions", _, "resourcegroups", _, "providers", "microsoft.compute", "galleries", g, "images", i, "versions", v] => {
            (
                GALLERY_API_VERSION,
                format!("Microsoft.Compute/galleries/{g}/images/{i}/versions/{v}"),
            )
        }
        _ => {
            return arm_error(
                404,
                "NotFound",
                &format!("No route for {} in this double.", request.path),
            )
        }
    };
    if version != expected {
        return arm_error(
            400,
            "InvalidApiVersionParameter",
            &format!(
                "The api-version '{version}' is invalid. The supported versions for this double are '{expected}'."
            ),
        );
    }
    match state.resources.get(&request.path.to_ascii_lowercase()) {
        Some(body) => Reply::json(200, body),
        None => arm_error(
            404,
            "ResourceNotFound",
            &format!(
                "The Resource '{short}' under resource group '{}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
                segments[3]
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(url: &str, token: Option<&str>) -> (u16, Value) {
        let client = reqwest::blocking::Client::new();
        let mut request = client.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    #[test]
    fn serves_both_operations_with_their_api_versions() {
        let arm = ImageDouble::start("t");
        let image = arm.add_managed_image("s", "rg", "img", "westeurope");
        let version = arm.add_gallery_image_version(
            "s",
            "rg",
            "gal",
            "nomad",
            "1.0.0",
            "westeurope",
            "Succeeded",
        );
        let (status, body) = get(
            &format!("{}{image}?api-version={IMAGES_API_VERSION}", arm.url()),
            Some("t"),
        );
        assert_eq!(
            (status, body["properties"]["provisioningState"].as_str()),
            (200, Some("Succeeded"))
        );
        // Case does not matter in ARM paths.
        let (status, _) = get(
            &format!(
                "{}{}?api-version={GALLERY_API_VERSION}",
                arm.url(),
                version
                    .to_ascii_uppercase()
                    .replace("/SUBSCRIPTIONS", "/subscriptions")
            ),
            Some("t"),
        );
        assert_eq!(status, 200);
        let (status, body) = get(
            &format!("{}{image}?api-version={GALLERY_API_VERSION}", arm.url()),
            Some("t"),
        );
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("InvalidApiVersionParameter"))
        );
        let (status, body) = get(&format!("{}{image}", arm.url()), Some("t"));
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("MissingApiVersionParameter"))
        );
    }

    #[test]
    fn answers_401_404_and_injected_faults_as_arm_does() {
        let arm = ImageDouble::start("t");
        let image = arm.add_managed_image("s", "rg", "img", "westeurope");
        let url = format!("{}{image}?api-version={IMAGES_API_VERSION}", arm.url());
        assert_eq!(get(&url, None).1["error"]["code"], "AuthenticationFailed");
        assert_eq!(
            get(&url, Some("x")).1["error"]["code"],
            "InvalidAuthenticationToken"
        );
        arm.inject(ImageFault::Throttle {
            retry_after_secs: 3,
        });
        assert_eq!(get(&url, Some("t")).0, 429);
        arm.inject(ImageFault::Status(503));
        assert_eq!(get(&url, Some("t")).0, 503);
        arm.remove(&image);
        let (status, body) = get(&url, Some("t"));
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("ResourceNotFound"))
        );
        assert_eq!(arm.requests().len(), 5);
    }
}
