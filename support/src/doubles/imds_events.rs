//! Scheduled Events in the IMDS double ([`super::imds`]): `GET` and `POST` on
//! `/metadata/scheduledevents`, shaped after Microsoft's documentation, never after our watcher.
//!
//! Sources (cited beside each behaviour below):
//! - [SE] "Azure Metadata Service: Scheduled Events for Linux VMs",
//!   learn.microsoft.com/azure/virtual-machines/linux/scheduled-events
//!   (MicrosoftDocs/azure-compute-docs `articles/virtual-machines/linux/scheduled-events.md`).
//! - [TN] "Terminate notification for Azure Virtual Machine Scale Set instances",
//!   learn.microsoft.com/azure/virtual-machine-scale-sets/virtual-machine-scale-sets-terminate-notification.
//! - [SPOT] "Azure Spot Virtual Machines for Virtual Machine Scale Sets",
//!   learn.microsoft.com/azure/virtual-machine-scale-sets/use-spot.
//!
//! Microsoft's REST specifications (`Azure/azure-rest-api-specs`, `specification/imds`) have no
//! scheduledevents operation, so the documentation is the only source.
//!
//! # API
//!
//! ```no_run
//! use std::time::{Duration, SystemTime};
//! use support::doubles::imds::{self, ImdsDouble, Reply};
//! use support::doubles::imds_events::Event;
//!
//! let imds = ImdsDouble::start(imds::fixture("instance.json"));
//! let events = imds.scheduled_events();
//! let not_before = SystemTime::now() + Duration::from_secs(300);
//! events.schedule(Event::terminate("6a0b...", "nomad-clients_3", not_before));
//! events.script([Reply::Status(500)]); // the next events request fails once
//! // ... the tool polls and approves ...
//! let approvals = events.approvals(); // every accepted POST, with the IDs it approved
//! ```
//!
//! # What it does, as the documentation says
//!
//! - Methods `GET` (read) and `POST` (approve); others get 405. `Metadata: true` is required on
//!   both ("The `Metadata:true` header is required for all scheduled events requests. Failure
//!   to include the header in the request results in a "Bad Request" response" [SE, Headers]).
//! - `api-version` is required ("Versions are mandatory; the current version is `2020-07-01`"
//!   [SE, Version and region availability]); the versions are that table's, not the instance
//!   endpoint's. What a version shows follows the table's release notes: `Preempt` from
//!   2017-11-01, `Terminate` from 2019-01-01 ([TN, Troubleshoot]: "Metadata Service API
//!   version 2019-01-01 or higher is required for Terminate events"), `Description` from
//!   2019-04-01, `EventSource` from 2019-08-01, `DurationInSeconds` from 2020-07-01.
//! - The document: `{"DocumentIncarnation": n, "Events": [...]}`, each event with `EventId`,
//!   `EventType`, `ResourceType` (`VirtualMachine`), `Resources` (VM names), `EventStatus`
//!   (`Scheduled` or `Started`), `NotBefore` (an HTTP date such as `Mon, 19 Sep 2016 18:29:47
//!   GMT`, blank once the event has started), `Description`, `EventSource` and
//!   `DurationInSeconds` [SE, Query for events / Event properties]. "An empty array means that
//!   currently no events are scheduled."
//! - `DocumentIncarnation` "increases when the events array changes"; documents with the same
//!   incarnation hold the same events [SE, Event properties]. Every change below bumps it.
//! - A `Scheduled` event moves to `Started` (NotBefore blanked) "after it's been approved or the
//!   `NotBefore` time passes" [SE, Event scheduling], judged by the double's clock
//!   ([`ScheduledEvents::set_clock`]) whenever a request arrives; [`ScheduledEvents::complete`]
//!   and [`ScheduledEvents::cancel`] remove it ("When the event reaches a terminal state, it's
//!   removed"; "in rare cases, the operation is canceled by Azure before it starts. In that case
//!   the event is removed from the Events array" [SE]).
//! - Approval: `POST` with `{"StartRequests": [{"EventId": "..."}]}` [SE, Start an event]. "The
//!   service always returns a 200 success code if it's passed a valid event ID, even if another
//!   VM already approved the event. A 400 error code indicates that the request header or
//!   payload was malformed." A body that is not that shape is a 400. An EventId the service does
//!   not list is not documented; the double answers 400 (the only failure the page names), so a
//!   client must not count on a 200 for it. Every accepted approval is recorded
//!   ([`ScheduledEvents::approvals`]); by default it starts the event, since "Acknowledging an
//!   event allows the event to proceed for all `Resources` in the event"
//!   ([`ScheduledEvents::set_start_on_approval`] turns that off, for an event that waits for
//!   other VMs' approvals: "In some cases Azure requires the approval of all the VMs").
//! - The first request enables the service: "You should expect a delayed response in your first
//!   call of up to two minutes" [SE, Enabling and disabling]. [`ScheduledEvents::set_first_answer_delay`]
//!   delays the first answer by that much real time (tests use milliseconds). Not modelled:
//!   the up-to-5-minute wait for the first events and the 24-hour disabling.
//! - Faults: [`ScheduledEvents::script`] queues replies for this endpoint only (after the
//!   method, header and version checks, as on the instance endpoint), with the statuses IMDS
//!   documents (404, 410, 429 with `Retry-After`, 500...).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value};

use super::imds::{Reply, MISSING_HEADER_ERROR};
use super::server::{self, RecordedRequest};

/// The path of the Scheduled Events endpoint.
pub const PATH: &str = "/metadata/scheduledevents";

/// The Scheduled Events api-versions of the documentation's table, newest first [SE].
pub const API_VERSIONS: &[&str] = &[
    "2020-07-01",
    "2019-08-01",
    "2019-04-01",
    "2019-01-01",
    "2017-11-01",
    "2017-08-01",
    "2017-03-01",
];

/// The event types [SE, Event properties].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Freeze,
    Reboot,
    Redeploy,
    /// A Spot VM is evicted; "30 seconds" of notice [SE, Event scheduling; SPOT].
    Preempt,
    /// A scale-set VM is deleted; the scale set's `notBeforeTimeout`, 5 to 15 minutes [TN].
    Terminate,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Freeze => "Freeze",
            EventType::Reboot => "Reboot",
            EventType::Redeploy => "Redeploy",
            EventType::Preempt => "Preempt",
            EventType::Terminate => "Terminate",
        }
    }

    /// The first api-version that lists this type (the release notes of [SE]).
    fn since(self) -> &'static str {
        match self {
            EventType::Preempt => "2017-11-01",
            EventType::Terminate => "2019-01-01",
            _ => "2017-03-01",
        }
    }
}

/// `Scheduled` or `Started`; there is no completed status [SE, Event properties].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    Scheduled,
    Started,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Scheduled => "Scheduled",
            EventStatus::Started => "Started",
        }
    }
}

/// One event as the double serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub event_type: EventType,
    /// VM names (`compute.name`: `<scale set>_<instance id>` in a Uniform scale set [TN]).
    pub resources: Vec<String>,
    pub status: EventStatus,
    /// `None` is served as `""` (a started event).
    pub not_before: Option<SystemTime>,
    pub description: String,
    /// `Platform` or `User`.
    pub source: String,
    /// `-1` when unknown [SE].
    pub duration_secs: i64,
}

impl Event {
    fn new(id: &str, event_type: EventType, vm: &str, not_before: SystemTime) -> Self {
        Self {
            id: id.to_string(),
            event_type,
            resources: vec![vm.to_string()],
            status: EventStatus::Scheduled,
            not_before: Some(not_before),
            description: String::new(),
            source: "Platform".to_string(),
            duration_secs: -1,
        }
    }

    /// A scale-in or delete of `vm` [TN: "All delete operations (manual delete or
    /// Autoscale-initiated scale-in) will generate Terminate events"], user-initiated.
    pub fn terminate(id: &str, vm: &str, not_before: SystemTime) -> Self {
        Self {
            source: "User".to_string(),
            ..Self::new(id, EventType::Terminate, vm, not_before)
        }
    }

    /// A Spot eviction of `vm`.
    pub fn preempt(id: &str, vm: &str, not_before: SystemTime) -> Self {
        Self::new(id, EventType::Preempt, vm, not_before)
    }

    /// A memory-preserving pause of these VMs (the documentation's example shape).
    pub fn freeze(id: &str, vms: &[&str], not_before: SystemTime) -> Self {
        Self {
            resources: vms.iter().map(|v| v.to_string()).collect(),
            description: "Virtual machine is being paused because of a memory-preserving Live \
                          Migration operation."
                .to_string(),
            duration_secs: 5,
            ..Self::new(
                id,
                EventType::Freeze,
                vms.first().copied().unwrap_or(""),
                not_before,
            )
        }
    }

    /// A reboot of `vm` requested by its owner.
    pub fn reboot(id: &str, vm: &str, not_before: SystemTime) -> Self {
        Self {
            source: "User".to_string(),
            description: "Virtual machine is going to be restarted as requested by authorized \
                          user."
                .to_string(),
            ..Self::new(id, EventType::Reboot, vm, not_before)
        }
    }

    /// The event as the documentation shows it, for `version`.
    fn to_json(&self, version: &str) -> Value {
        let mut out = Map::new();
        out.insert("EventId".into(), json!(self.id));
        out.insert("EventStatus".into(), json!(self.status.as_str()));
        out.insert("EventType".into(), json!(self.event_type.as_str()));
        out.insert("ResourceType".into(), json!("VirtualMachine"));
        out.insert("Resources".into(), json!(self.resources));
        let not_before = match (self.status, self.not_before) {
            (EventStatus::Scheduled, Some(t)) => httpdate::fmt_http_date(t),
            _ => String::new(),
        };
        out.insert("NotBefore".into(), json!(not_before));
        if version >= "2019-04-01" {
            out.insert("Description".into(), json!(self.description));
        }
        if version >= "2019-08-01" {
            out.insert("EventSource".into(), json!(self.source));
        }
        if version >= "2020-07-01" {
            out.insert("DurationInSeconds".into(), json!(self.duration_secs));
        }
        Value::Object(out)
    }
}

/// One accepted approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// The EventIds of its `StartRequests`, in order.
    pub event_ids: Vec<String>,
    /// The double's clock when it arrived.
    pub at: SystemTime,
    /// The body as sent.
    pub body: String,
}

type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

struct State {
    incarnation: u64,
    events: Vec<Event>,
    script: VecDeque<Reply>,
    approvals: Vec<Approval>,
    clock: Clock,
    start_on_approval: bool,
    /// Set by the first request ([SE, Enabling and disabling]).
    enabled: bool,
    first_answer_delay: Duration,
}

/// The Scheduled Events of one IMDS double (from [`super::imds::ImdsDouble::scheduled_events`]);
/// clones share it.
#[derive(Clone)]
pub struct ScheduledEvents {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for ScheduledEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduledEvents").finish_non_exhaustive()
    }
}

impl Default for ScheduledEvents {
    fn default() -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                // The documentation's first example document has incarnation 1 and no events.
                incarnation: 1,
                events: Vec::new(),
                script: VecDeque::new(),
                approvals: Vec::new(),
                clock: Arc::new(SystemTime::now),
                start_on_approval: true,
                enabled: false,
                first_answer_delay: Duration::ZERO,
            })),
        }
    }
}

impl ScheduledEvents {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an event (the document's incarnation goes up).
    pub fn schedule(&self, event: Event) {
        let mut state = self.lock();
        state.events.retain(|e| e.id != event.id);
        state.events.push(event);
        state.incarnation += 1;
    }

    /// The event starts now (approved elsewhere, or Azure went ahead).
    pub fn start(&self, id: &str) {
        let mut state = self.lock();
        start(&mut state, id);
    }

    /// The event reached its terminal state and is removed.
    pub fn complete(&self, id: &str) {
        self.remove(id);
    }

    /// Azure cancelled the event before it started: it is removed.
    pub fn cancel(&self, id: &str) {
        self.remove(id);
    }

    fn remove(&self, id: &str) {
        let mut state = self.lock();
        let before = state.events.len();
        state.events.retain(|e| e.id != id);
        if state.events.len() != before {
            state.incarnation += 1;
        }
    }

    /// The events now (after any NotBefore that passed has started its event).
    pub fn events(&self) -> Vec<Event> {
        let mut state = self.lock();
        start_due(&mut state);
        state.events.clone()
    }

    /// The current `DocumentIncarnation`.
    pub fn incarnation(&self) -> u64 {
        self.lock().incarnation
    }

    /// Every accepted approval, in order.
    pub fn approvals(&self) -> Vec<Approval> {
        self.lock().approvals.clone()
    }

    /// Whether a request has enabled the service yet.
    pub fn enabled(&self) -> bool {
        self.lock().enabled
    }

    /// Queues replies for this endpoint (see [`Reply`]); each request that passes the checks
    /// takes the next one, then the normal answers resume.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.lock().script.extend(replies);
    }

    /// The time NotBefore is judged by (default: the system clock), e.g. a test's virtual clock.
    pub fn set_clock(&self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) {
        self.lock().clock = Arc::new(clock);
    }

    /// Whether an approval starts the event (default true).
    pub fn set_start_on_approval(&self, starts: bool) {
        self.lock().start_on_approval = starts;
    }

    /// How long the first request (the one that enables the service) takes to answer.
    pub fn set_first_answer_delay(&self, delay: Duration) {
        self.lock().first_answer_delay = delay;
    }

    /// Answers one request to [`PATH`] (called by the IMDS double).
    pub(crate) fn answer(&self, request: &RecordedRequest) -> server::Reply {
        let delay = {
            let mut state = self.lock();
            let first = !state.enabled;
            state.enabled = true;
            if first {
                state.first_answer_delay
            } else {
                Duration::ZERO
            }
        };
        if !delay.is_zero() {
            // Outside the lock: other requests are not held up by the slow first one.
            std::thread::sleep(delay);
        }
        let mut state = self.lock();
        answer(&mut state, request)
    }
}

fn error(status: u16, message: &str) -> server::Reply {
    server::Reply::json(status, &json!({ "error": message }))
}

fn start(state: &mut State, id: &str) {
    if let Some(event) = state.events.iter_mut().find(|e| e.id == id) {
        if event.status == EventStatus::Scheduled {
            event.status = EventStatus::Started;
            // "Will be blank if the event after the event starts" [SE, Event properties].
            event.not_before = None;
            state.incarnation += 1;
        }
    }
}

/// Events whose NotBefore has passed start [SE, Event scheduling].
fn start_due(state: &mut State) {
    let now = (state.clock)();
    let due: Vec<String> = state
        .events
        .iter()
        .filter(|e| e.status == EventStatus::Scheduled && e.not_before.is_some_and(|t| t <= now))
        .map(|e| e.id.clone())
        .collect();
    for id in due {
        start(state, &id);
    }
}

fn answer(state: &mut State, request: &RecordedRequest) -> server::Reply {
    let method = request.method.as_str();
    if method != "GET" && method != "POST" {
        return error(405, "Method not allowed");
    }
    let has_metadata_header = request
        .header("metadata")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if !has_metadata_header || request.header("x-forwarded-for").is_some() {
        return error(400, MISSING_HEADER_ERROR);
    }
    let mut names: Vec<&str> = request.query.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return error(400, "Bad request. Duplicate query parameter names");
    }
    let Some(version) = request
        .query_param("api-version")
        .filter(|v| API_VERSIONS.contains(v))
    else {
        return server::Reply::json(
            400,
            &json!({
                "error": super::imds::BAD_API_VERSION_ERROR,
                "newest-versions": &API_VERSIONS[..3],
            }),
        );
    };
    if let Some(reply) = state.script.pop_front() {
        match reply {
            Reply::Instance => {}
            Reply::Status(status) => return error(status, status_message(status)),
            Reply::Throttled { retry_after_secs } => {
                return error(429, status_message(429))
                    .header("Retry-After", retry_after_secs.to_string())
            }
            Reply::Body { status, body } => {
                return server::Reply::new(status)
                    .header("Content-Type", "application/json; charset=utf-8")
                    .body(body)
            }
        }
    }
    start_due(state);
    if method == "POST" {
        return approve(state, request);
    }
    let events: Vec<Value> = state
        .events
        .iter()
        .filter(|e| version >= e.event_type.since())
        .map(|e| e.to_json(version))
        .collect();
    server::Reply::json(
        200,
        &json!({ "DocumentIncarnation": state.incarnation, "Events": events }),
    )
}

/// `{"StartRequests": [{"EventId": "..."}, ...]}` [SE, Start an event].
fn approve(state: &mut State, request: &RecordedRequest) -> server::Reply {
    let malformed = || error(400, "Bad request. The request payload is malformed");
    let Ok(body) = serde_json::from_str::<Value>(&request.body) else {
        return malformed();
    };
    let Some(requests) = body.get("StartRequests").and_then(Value::as_array) else {
        return malformed();
    };
    if requests.is_empty() {
        return malformed();
    }
    let mut ids = Vec::new();
    for item in requests {
        match item.get("EventId").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => ids.push(id.to_string()),
            _ => return malformed(),
        }
    }
    // Event IDs are GUIDs; the documentation's samples write them in either case.
    let known = |id: &str| state.events.iter().any(|e| e.id.eq_ignore_ascii_case(id));
    if let Some(unknown) = ids.iter().find(|id| !known(id)) {
        return error(400, &format!("Bad request. Unknown EventId {unknown}"));
    }
    let at = (state.clock)();
    state.approvals.push(Approval {
        event_ids: ids.clone(),
        at,
        body: request.body.clone(),
    });
    if state.start_on_approval {
        for id in &ids {
            let event_id = state
                .events
                .iter()
                .find(|e| e.id.eq_ignore_ascii_case(id))
                .map(|e| e.id.clone());
            if let Some(event_id) = event_id {
                start(state, &event_id);
            }
        }
    }
    server::Reply::new(200)
}

fn status_message(status: u16) -> &'static str {
    match status {
        404 => "Not found",
        410 => "Gone. Retry after some time for a max of 70 seconds",
        429 => "Too many requests",
        500 => "Internal server error. Retry after some time",
        503 => "Service unavailable",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doubles::imds::{fixture, ImdsDouble};

    fn client() -> reqwest::blocking::Client {
        crate::doubles::server::test_client()
    }

    fn url(imds: &ImdsDouble, version: &str) -> String {
        format!("{}{PATH}?api-version={version}", imds.url())
    }

    fn get(imds: &ImdsDouble, version: &str) -> (u16, Value) {
        let response = client()
            .get(url(imds, version))
            .header("Metadata", "true")
            .send()
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    fn post(imds: &ImdsDouble, body: &str) -> u16 {
        client()
            .post(url(imds, "2020-07-01"))
            .header("Metadata", "true")
            .body(body.to_string())
            .send()
            .unwrap()
            .status()
            .as_u16()
    }

    fn in_five_minutes() -> SystemTime {
        SystemTime::now() + Duration::from_secs(300)
    }

    #[test]
    fn an_empty_document_first_then_the_scheduled_event() {
        let imds = ImdsDouble::start(fixture("instance.json"));
        let events = imds.scheduled_events();
        let (status, doc) = get(&imds, "2020-07-01");
        assert_eq!(status, 200);
        assert_eq!(doc, json!({ "DocumentIncarnation": 1, "Events": [] }));
        assert!(events.enabled());
        let not_before = SystemTime::UNIX_EPOCH + Duration::from_secs(1_775_946_418);
        events.set_clock(move || not_before - Duration::from_secs(300));
        events.schedule(Event::terminate("e1", "vmss_3", not_before));
        let (_, doc) = get(&imds, "2020-07-01");
        assert_eq!(doc["DocumentIncarnation"], 2);
        assert_eq!(
            doc["Events"][0],
            json!({
                "EventId": "e1",
                "EventStatus": "Scheduled",
                "EventType": "Terminate",
                "ResourceType": "VirtualMachine",
                "Resources": ["vmss_3"],
                "NotBefore": "Sat, 11 Apr 2026 22:26:58 GMT",
                "Description": "",
                "EventSource": "User",
                "DurationInSeconds": -1,
            })
        );
    }

    #[test]
    fn older_versions_show_fewer_fields_and_types() {
        let imds = ImdsDouble::start(fixture("instance.json"));
        let events = imds.scheduled_events();
        events.schedule(Event::terminate("t", "vm_1", in_five_minutes()));
        events.schedule(Event::preempt("p", "vm_1", in_five_minutes()));
        let (_, doc) = get(&imds, "2017-11-01");
        let listed = doc["Events"].as_array().unwrap();
        assert_eq!(listed.len(), 1, "no Terminate before 2019-01-01: {doc}");
        assert_eq!(listed[0]["EventType"], "Preempt");
        assert!(listed[0].get("Description").is_none());
        let (_, doc) = get(&imds, "2019-04-01");
        assert_eq!(doc["Events"].as_array().unwrap().len(), 2);
        assert!(doc["Events"][0].get("Description").is_some());
        assert!(doc["Events"][0].get("EventSource").is_none());
    }

    #[test]
    fn the_header_and_a_scheduled_events_version_are_required() {
        let imds = ImdsDouble::start(fixture("instance.json"));
        let response = client().get(url(&imds, "2020-07-01")).send().unwrap();
        assert_eq!(response.status().as_u16(), 400);
        assert!(response.text().unwrap().contains(MISSING_HEADER_ERROR));
        // The instance endpoint's versions are not this endpoint's.
        let (status, doc) = get(&imds, "2025-04-07");
        assert_eq!(status, 400);
        assert_eq!(doc["newest-versions"][0], "2020-07-01");
        let response = client()
            .put(url(&imds, "2020-07-01"))
            .header("Metadata", "true")
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 405);
    }

    #[test]
    fn an_approval_is_recorded_and_starts_the_event() {
        let imds = ImdsDouble::start(fixture("instance.json"));
        let events = imds.scheduled_events();
        events.schedule(Event::terminate("E-1", "vm_1", in_five_minutes()));
        let body = r#"{"StartRequests": [{"EventId": "e-1"}]}"#;
        assert_eq!(post(&imds, body), 200);
        assert_eq!(events.approvals()[0].event_ids, ["e-1"]);
        assert_eq!(events.approvals()[0].body, body);
        let (_, doc) = get(&imds, "2020-07-01");
        assert_eq!(doc["Events"][0]["EventStatus"], "Started");
        assert_eq!(doc["Events"][0]["NotBefore"], "");
        // Approving again is still a 200 (another VM may have approved it already).
        assert_eq!(post(&imds, body), 200);
        events.complete("E-1");
        let (_, doc) = get(&imds, "2020-07-01");
        assert_eq!(doc["Events"], json!([]));
    }

    #[test]
    fn malformed_and_unknown_approvals_are_400() {
        let imds = ImdsDouble::start(fixture("instance.json"));
        let events = imds.scheduled_events();
        events.schedule(Event::terminate("e1", "vm_1", in_five_minutes()));
        for body in [
            "",
            "{",
            r#"{"StartRequests": []}"#,
            r#"{"StartRequests": [{"EventID": "e1"}]}"#,
            r#"{"StartRequest": [{"EventId": "e1"}]}"#,
            r#"{"StartRequests": [{"EventId": "nope"}]}"#,
        ] {
            assert_eq!(post(&imds, body), 400, "{body}");
        }
        assert!(events.approvals().is_empty());
        assert_eq!(events.events()[0].status, EventStatus::Scheduled);
    }

    #[test]
    fn not_before_passing_starts_the_event_by_the_doubles_clock() {
        let imds = ImdsDouble::start(fixture("instance.json"));
        let events = imds.scheduled_events();
        let now = Arc::new(Mutex::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1000),
        ));
        let clock = now.clone();
        events.set_clock(move || *clock.lock().unwrap());
        events.schedule(Event::preempt(
            "p",
            "vm_1",
            SystemTime::UNIX_EPOCH + Duration::from_secs(1030),
        ));
        assert_eq!(
            get(&imds, "2020-07-01").1["Events"][0]["EventStatus"],
            "Scheduled"
        );
        *now.lock().unwrap() += Duration::from_secs(30);
        let (_, doc) = get(&imds, "2020-07-01");
        assert_eq!(doc["Events"][0]["EventStatus"], "Started");
        assert_eq!(doc["DocumentIncarnation"], 3);
    }

    #[test]
    fn scripted_faults_apply_to_this_endpoint_only() {
        let imds = ImdsDouble::start(fixture("instance.json"));
        let events = imds.scheduled_events();
        events.script([Reply::Throttled {
            retry_after_secs: 2,
        }]);
        let instance = client()
            .get(format!(
                "{}/metadata/instance?api-version=2025-04-07",
                imds.url()
            ))
            .header("Metadata", "true")
            .send()
            .unwrap();
        assert_eq!(instance.status().as_u16(), 200);
        let response = client()
            .get(url(&imds, "2020-07-01"))
            .header("Metadata", "true")
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 429);
        assert_eq!(response.headers()["retry-after"], "2");
        assert_eq!(get(&imds, "2020-07-01").0, 200);
    }

    #[test]
    fn cancelled_events_disappear_and_the_incarnation_moves() {
        let imds = ImdsDouble::start(fixture("instance.json"));
        let events = imds.scheduled_events();
        events.schedule(Event::reboot("r", "vm_1", in_five_minutes()));
        let before = events.incarnation();
        events.cancel("r");
        assert_eq!(events.incarnation(), before + 1);
        assert_eq!(get(&imds, "2020-07-01").1["Events"], json!([]));
    }
}
