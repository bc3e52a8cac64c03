//! The Scheduled Events document and what each event means for this VM: pure functions.
//!
//! Facts from Microsoft's "Azure Metadata Service: Scheduled Events for Linux VMs" ([SE],
//! learn.microsoft.com/azure/virtual-machines/linux/scheduled-events) and "Terminate
//! notification for Azure Virtual Machine Scale Set instances" ([TN]):
//! - the document is `{"DocumentIncarnation": n, "Events": [...]}`; each event has `EventId`,
//!   `EventType` (`Freeze`, `Reboot`, `Redeploy`, `Preempt`, `Terminate`), `ResourceType`,
//!   `Resources` (VM names), `EventStatus` (`Scheduled`, `Started`), `NotBefore` (an HTTP date,
//!   e.g. `Mon, 19 Sep 2016 18:29:47 GMT`, "blank ... after the event starts"), `Description`,
//!   `EventSource`, `DurationInSeconds` [SE, Query for events / Event properties];
//! - events reach every VM of a scale set's placement group, so "check the `Resources` field in
//!   the event to identify which VMs are affected" [SE, Scope]; a scale-set VM's name is
//!   `compute.name` of the instance metadata, `{scale-set-name}_{instance-id}` [TN, Respond
//!   to events];
//! - "Acknowledging an event allows the event to proceed for all `Resources` in the event, not
//!   just the VM that acknowledges the event" [SE, Start an event], and [TN] asks every VM to
//!   approve "only the EventID relevant for that VM": so this VM approves an event only when it
//!   is the event's only resource.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::Value;

/// The event types [SE, Event properties]; unknown future ones are kept by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventType {
    Freeze,
    Reboot,
    Redeploy,
    /// "The Spot Virtual Machine is being deleted"; 30 seconds of notice [SE, Event scheduling].
    Preempt,
    /// "The virtual machine is scheduled to be deleted"; the scale set's notice, 5 to 15 minutes.
    Terminate,
    Other(String),
}

impl EventType {
    fn parse(text: &str) -> Self {
        match text {
            "Freeze" => EventType::Freeze,
            "Reboot" => EventType::Reboot,
            "Redeploy" => EventType::Redeploy,
            "Preempt" => EventType::Preempt,
            "Terminate" => EventType::Terminate,
            other => EventType::Other(other.to_string()),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            EventType::Freeze => "Freeze",
            EventType::Reboot => "Reboot",
            EventType::Redeploy => "Redeploy",
            EventType::Preempt => "Preempt",
            EventType::Terminate => "Terminate",
            EventType::Other(name) => name,
        }
    }

    /// Whether this VM goes away for good: the events the watcher acts on.
    pub fn removes_the_vm(&self) -> bool {
        matches!(self, EventType::Preempt | EventType::Terminate)
    }

    /// The least notice Azure gives for this type ([SE, Event scheduling]: Preempt 30 seconds,
    /// Terminate 5 to 15 minutes as configured): the window assumed when `NotBefore` is blank
    /// or unreadable on a scheduled event.
    pub fn minimum_notice(&self) -> Duration {
        match self {
            EventType::Preempt => Duration::from_secs(30),
            EventType::Redeploy => Duration::from_secs(600),
            _ => Duration::from_secs(300),
        }
    }
}

/// `Scheduled` or `Started` [SE]; no completed status exists (the event is removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventStatus {
    Scheduled,
    Started,
    Other(String),
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub event_type: EventType,
    pub resources: Vec<String>,
    pub status: EventStatus,
    /// `None` when blank (started) or unreadable ([`Event::not_before_text`] says which).
    pub not_before: Option<SystemTime>,
    pub not_before_text: String,
    pub description: String,
    pub source: String,
}

/// The whole document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub incarnation: u64,
    pub events: Vec<Event>,
}

impl Document {
    /// The event with this id (ids are GUIDs: compared without regard to case).
    pub fn event(&self, id: &str) -> Option<&Event> {
        self.events.iter().find(|e| e.id.eq_ignore_ascii_case(id))
    }
}

#[derive(Deserialize)]
struct RawDocument {
    #[serde(rename = "DocumentIncarnation")]
    incarnation: Value,
    #[serde(rename = "Events", default)]
    events: Option<Vec<RawEvent>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawEvent {
    #[serde(rename = "EventId")]
    id: String,
    #[serde(rename = "EventType")]
    event_type: String,
    #[serde(rename = "Resources")]
    resources: Option<Vec<String>>,
    #[serde(rename = "EventStatus")]
    status: String,
    #[serde(rename = "NotBefore")]
    not_before: String,
    #[serde(rename = "Description")]
    description: String,
    #[serde(rename = "EventSource")]
    source: String,
}

/// Parses a document. An event without an `EventId` cannot be approved or remembered and
/// makes the document invalid (it says so); everything else is tolerated.
pub fn parse(body: &str) -> Result<Document, String> {
    let raw: RawDocument =
        serde_json::from_str(body).map_err(|e| format!("not a Scheduled Events document: {e}"))?;
    // An integer in the documentation; a numeric string is read the same.
    let incarnation = match &raw.incarnation {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("DocumentIncarnation {} is not a number", raw.incarnation))?;
    let mut events = Vec::new();
    for (i, e) in raw.events.unwrap_or_default().into_iter().enumerate() {
        if e.id.trim().is_empty() {
            return Err(format!("Events[{i}] has no EventId"));
        }
        let not_before = parse_not_before(&e.not_before).ok().flatten();
        events.push(Event {
            id: e.id,
            event_type: EventType::parse(&e.event_type),
            resources: e.resources.unwrap_or_default(),
            status: match e.status.as_str() {
                "Scheduled" => EventStatus::Scheduled,
                "Started" => EventStatus::Started,
                other => EventStatus::Other(other.to_string()),
            },
            not_before,
            not_before_text: e.not_before,
            description: e.description,
            source: e.source,
        });
    }
    Ok(Document {
        incarnation,
        events,
    })
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `NotBefore`: blank is `None`; otherwise an RFC 1123 date in GMT (`Mon, 19 Sep 2016 18:29:47
/// GMT`, [SE]). The weekday is not checked: the documentation's own example pairs a date with
/// the wrong one (`Mon, 11 Apr 2026`), and the date is what counts.
pub fn parse_not_before(text: &str) -> Result<Option<SystemTime>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let bad = || format!("NotBefore {text:?} is not an HTTP date");
    let date = text.split_once(',').map_or(text, |(_, rest)| rest).trim();
    let parts: Vec<&str> = date.split_whitespace().collect();
    let [day, month, year, time, zone] = parts.as_slice() else {
        return Err(bad());
    };
    if !matches!(*zone, "GMT" | "UTC" | "Z" | "+0000") {
        return Err(bad());
    }
    let day: u32 = day.parse().map_err(|_| bad())?;
    let month = MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(month))
        .ok_or_else(bad)? as u32
        + 1;
    let year: i64 = year.parse().map_err(|_| bad())?;
    let hms: Vec<u32> = time
        .split(':')
        .map(|p| p.parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let [h, m, s] = hms.as_slice() else {
        return Err(bad());
    };
    if !(1..=31).contains(&day) || *h > 23 || *m > 59 || *s > 60 || year < 1970 {
        return Err(bad());
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + i64::from(*h) * 3600 + i64::from(*m) * 60 + i64::from(*s);
    let seconds = u64::try_from(seconds).map_err(|_| bad())?;
    Ok(Some(UNIX_EPOCH + Duration::from_secs(seconds)))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the standard civil-from-days inverse).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Why an event is left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    /// It names other VMs only.
    OtherVms,
    /// A type this VM rides through (Freeze, Reboot, Redeploy, unknown): Nomad comes back with
    /// the VM, and approving would only hurry Azure.
    Type,
}

/// What this VM does about one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A scheduled Terminate or Preempt of this VM: take Nomad out, then approve when `approve`
    /// (this VM is the only resource; an approval would hurry the others too).
    Act {
        approve: bool,
    },
    /// A Terminate or Preempt of this VM that has already started: what is left is to stop
    /// Nomad at once.
    AlreadyStarted,
    Ignore(Ignored),
}

/// Whether `event` concerns the VM named `vm_name` (`compute.name`), and how.
pub fn decide(event: &Event, vm_name: &str) -> Decision {
    let ours = event
        .resources
        .iter()
        .any(|r| r.trim().eq_ignore_ascii_case(vm_name));
    if !ours {
        return Decision::Ignore(Ignored::OtherVms);
    }
    if !event.event_type.removes_the_vm() {
        return Decision::Ignore(Ignored::Type);
    }
    match event.status {
        EventStatus::Scheduled => Decision::Act {
            approve: event.resources.len() == 1,
        },
        // Started, or a status this version does not know: no approval is possible or needed.
        _ => Decision::AlreadyStarted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documentation's example document for the Freeze of two VMs ([SE, Example
    /// responses]), data only.
    const FREEZE: &str = r#"{
        "DocumentIncarnation": 2,
        "Events": [{
            "EventId": "C7061BAC-AFDC-4513-B24B-AA5F13A16123",
            "EventStatus": "Scheduled",
            "EventType": "Freeze",
            "ResourceType": "VirtualMachine",
            "Resources": ["WestNO_0", "WestNO_1"],
            "NotBefore": "Mon, 11 Apr 2026 22:26:58 GMT",
            "Description": "Virtual machine is being paused because of a memory-preserving Live Migration operation.",
            "EventSource": "Platform",
            "DurationInSeconds": 5
        }]
    }"#;

    fn event(event_type: &str, status: &str, resources: &[&str]) -> Event {
        let doc = serde_json::json!({
            "DocumentIncarnation": 7,
            "Events": [{
                "EventId": "602d9444-d2cd-49c7-8624-8643e7171297",
                "EventType": event_type,
                "ResourceType": "VirtualMachine",
                "Resources": resources,
                "EventStatus": status,
                "NotBefore": if status == "Started" { "" } else { "Mon, 19 Sep 2016 18:29:47 GMT" },
            }]
        });
        parse(&doc.to_string()).unwrap().events.remove(0)
    }

    #[test]
    fn the_documentations_example_parses() {
        let doc = parse(FREEZE).unwrap();
        assert_eq!(doc.incarnation, 2);
        let e = &doc.events[0];
        assert_eq!(e.event_type, EventType::Freeze);
        assert_eq!(e.resources, ["WestNO_0", "WestNO_1"]);
        assert_eq!(e.status, EventStatus::Scheduled);
        // 2026-04-11T22:26:58Z, whatever weekday the example claims.
        assert_eq!(
            e.not_before,
            Some(UNIX_EPOCH + Duration::from_secs(1_775_946_418))
        );
        assert!(doc.event("c7061bac-afdc-4513-b24b-aa5f13a16123").is_some());
        let empty = parse(r#"{"DocumentIncarnation": 1, "Events": []}"#).unwrap();
        assert!(empty.events.is_empty());
        let null = parse(r#"{"DocumentIncarnation": "4", "Events": null}"#).unwrap();
        assert_eq!((null.incarnation, null.events.len()), (4, 0));
    }

    #[test]
    fn bad_documents_say_why() {
        assert!(parse("<html>")
            .unwrap_err()
            .contains("not a Scheduled Events"));
        assert!(parse(r#"{"DocumentIncarnation": true}"#)
            .unwrap_err()
            .contains("DocumentIncarnation"));
        assert!(
            parse(r#"{"DocumentIncarnation": 1, "Events": [{"EventType": "Terminate"}]}"#)
                .unwrap_err()
                .contains("no EventId")
        );
    }

    #[test]
    fn not_before_is_an_http_date_or_blank() {
        assert_eq!(parse_not_before(""), Ok(None));
        assert_eq!(
            parse_not_before("Mon, 19 Sep 2016 18:29:47 GMT"),
            Ok(Some(UNIX_EPOCH + Duration::from_secs(1_474_309_787)))
        );
        assert_eq!(
            parse_not_before("Thu, 01 Jan 1970 00:00:00 GMT"),
            Ok(Some(UNIX_EPOCH))
        );
        assert_eq!(
            parse_not_before("Tue, 29 Feb 2028 12:00:00 GMT"),
            Ok(Some(UNIX_EPOCH + Duration::from_secs(1_835_438_400)))
        );
        for bad in [
            "tomorrow",
            "Mon, 19 Sep 2016 18:29 GMT",
            "Mon, 19 Sept 2016 18:29:47 GMT",
            "Mon, 19 Sep 2016 18:29:47 PST",
            "Mon, 32 Sep 2016 18:29:47 GMT",
        ] {
            assert!(parse_not_before(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_terminate_and_preempt_of_this_vm_are_acted_on() {
        let me = "nomad-clients_3";
        assert_eq!(
            decide(&event("Terminate", "Scheduled", &[me]), me),
            Decision::Act { approve: true }
        );
        assert_eq!(
            decide(&event("Preempt", "Scheduled", &["NOMAD-CLIENTS_3"]), me),
            Decision::Act { approve: true },
            "Azure names are not case-sensitive"
        );
        assert_eq!(
            decide(&event("Terminate", "Scheduled", &["nomad-clients_4"]), me),
            Decision::Ignore(Ignored::OtherVms)
        );
        assert_eq!(
            decide(&event("Terminate", "Scheduled", &["nomad-clients_33"]), me),
            Decision::Ignore(Ignored::OtherVms)
        );
        for kind in ["Freeze", "Reboot", "Redeploy", "SomethingNew"] {
            assert_eq!(
                decide(&event(kind, "Scheduled", &[me]), me),
                Decision::Ignore(Ignored::Type),
                "{kind}"
            );
        }
        assert_eq!(
            decide(&event("Terminate", "Started", &[me]), me),
            Decision::AlreadyStarted
        );
    }

    #[test]
    fn an_event_shared_with_other_vms_is_acted_on_but_not_approved() {
        let me = "nomad-clients_3";
        assert_eq!(
            decide(
                &event("Terminate", "Scheduled", &["nomad-clients_2", me]),
                me
            ),
            Decision::Act { approve: false }
        );
    }
}
