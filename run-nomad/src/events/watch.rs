//! The watcher's loop: poll Scheduled Events, act on a Terminate or Preempt of this VM, approve
//! it, and undo what it did if the event is withdrawn while the VM lives on.
//!
//! - Polling: once per `poll interval` ("we recommend that you poll the service once per
//!   second" [SE, Polling frequency]); a failed request is retried with jittered exponential
//!   backoff from the poll interval up to `max backoff`, honouring `Retry-After`, for as long as
//!   it takes: a watcher that gave up would leave the VM unprotected.
//! - A document is looked at when its `DocumentIncarnation` differs from the last one seen
//!   (documents with the same incarnation hold the same events [SE]); any change counts, not
//!   only an increase.
//! - Acting ([`Watcher::act`]): a client is marked ineligible and drained with a deadline that
//!   ends before `NotBefore` ([`super::timeline`]), and its allocations are waited for with
//!   blocking queries until then; then Nomad is stopped through its service manager (a server
//!   leaves Raft as it stops, `leave_on_interrupt`); then the event is approved, retried until
//!   `NotBefore`, after which Azure goes ahead without it ("the event is automatically approved
//!   when the NotBefore time is reached" [SE]). Every step is bounded by the window, a step
//!   that fails does not keep the next from running, and what was not done is logged.
//! - Once: what was done is recorded in the state file before and after each step, so a
//!   restarted watcher finishes an event it was interrupted in (every step is safe to repeat)
//!   and leaves a finished one alone.
//! - Self-drain: a client with ACLs whose watcher has no token cannot drain through the API.
//!   When its agent has `drain_on_shutdown` ([`Config::self_drain`]), the watcher sends it its
//!   leave signal (SIGTERM, `leave_on_terminate`) instead: the agent drains its own node with
//!   its node identity, which needs no ACL token, and exits; the watcher waits for that within
//!   the same window, then stops the service for good and approves.
//! - Withdrawn: Azure may cancel an event before it starts ("the event is removed from the
//!   Events array, and the impact won't occur" [SE, Event scheduling]), and a Spot VM evicted
//!   with the `Deallocate` policy starts again later. An event the watcher stopped Nomad for
//!   that is missing from [`Config::withdrawn_after`] consecutive documents while the VM still
//!   runs is taken as withdrawn: Nomad is started again and a drained node made eligible.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::retry::Policy;

use super::agent::ServiceControl;
use super::clock::{secs, show, Clock};
use super::document::{decide, Decision, Document, Event, Ignored};
use super::imds::{CallError, EventsClient};
use super::nomad::{is_transient, LocalNomad, NomadError};
use super::state::{Handled, StateFile};
use super::timeline::{plan, DrainDeadline, Margins, Timeline};

/// The longest blocking query the watcher makes.
const MAX_BLOCKING_WAIT: Duration = Duration::from_secs(30);

/// Attempts at one Nomad API call that finds no agent or a 5xx (within the window).
const NOMAD_ATTEMPTS: u32 = 3;

/// How the watcher behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This VM runs a Nomad server.
    pub server: bool,
    /// This VM runs a Nomad client (it is drained).
    pub client: bool,
    pub poll_interval: Duration,
    pub max_backoff: Duration,
    pub margins: Margins,
    /// Consecutive documents without an event Nomad was stopped for, before it counts as
    /// withdrawn.
    pub withdrawn_after: u32,
    /// How long starting Nomad again, and making its node eligible, may take.
    pub restart_timeout: Duration,
    /// The client drains itself when sent SIGTERM (`drain_on_shutdown`): used instead of an
    /// API drain (`--self-drain`, when there is no token).
    pub self_drain: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: false,
            client: false,
            poll_interval: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            margins: Margins::default(),
            withdrawn_after: 3,
            restart_timeout: Duration::from_secs(120),
            self_drain: false,
        }
    }
}

/// Who this VM is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `compute.name`: what `Resources` names.
    pub vm_name: String,
    /// The Nomad agent's name (`compute.vmId`, as run-nomad names it).
    pub agent_name: String,
}

/// The watcher.
pub struct Watcher<'a> {
    config: Config,
    identity: Identity,
    imds: EventsClient,
    nomad: Option<LocalNomad>,
    service: &'a dyn ServiceControl,
    clock: &'a dyn Clock,
    state_file: StateFile,
    state: super::state::State,
    last_incarnation: Option<u64>,
    answered: bool,
    failures: u32,
    /// Events already logged as ignored or already handled.
    noted: HashSet<String>,
    /// Handled events missing from consecutive documents.
    absent: HashMap<String, u32>,
}

impl<'a> Watcher<'a> {
    /// A watcher; `nomad` is the local agent's API (needed to drain a client).
    pub fn new(
        config: Config,
        identity: Identity,
        imds: EventsClient,
        nomad: Option<LocalNomad>,
        service: &'a dyn ServiceControl,
        clock: &'a dyn Clock,
        state_file: StateFile,
    ) -> Self {
        let state = state_file.load();
        Self {
            config,
            identity,
            imds,
            nomad,
            service,
            clock,
            state_file,
            state,
            last_incarnation: None,
            answered: false,
            failures: 0,
            noted: HashSet::new(),
            absent: HashMap::new(),
        }
    }

    fn backoff(&self) -> Policy {
        Policy {
            what: "Scheduled Events request",
            max_attempts: u32::MAX,
            initial_delay: self.config.poll_interval,
            max_delay: self.config.max_backoff,
            deadline: None,
        }
    }

    /// Polls until `keep_going` says stop (checked after every poll and wait).
    pub fn run(&mut self, keep_going: &dyn Fn() -> bool) {
        tracing::info!(
            "watching Scheduled Events at {} for {} (Nomad agent {}, {}), every {}",
            self.imds.url(),
            self.identity.vm_name,
            self.identity.agent_name,
            match (self.config.server, self.config.client) {
                (true, true) => "server and client",
                (true, false) => "server",
                _ => "client",
            },
            secs(self.config.poll_interval)
        );
        while keep_going() {
            let wait = self.poll_once();
            if !keep_going() {
                break;
            }
            self.clock.sleep(wait);
        }
    }

    /// One poll, and whatever it calls for; returns how long to wait before the next.
    pub fn poll_once(&mut self) -> Duration {
        match self.imds.fetch(!self.answered) {
            Ok(document) => {
                if self.failures > 0 {
                    tracing::info!(
                        "Scheduled Events answer again after {} failed request(s)",
                        self.failures
                    );
                }
                self.failures = 0;
                if !self.answered {
                    tracing::info!(
                        "Scheduled Events are enabled for this VM (document {})",
                        document.incarnation
                    );
                    self.answered = true;
                }
                self.process(&document);
                self.config.poll_interval
            }
            Err(error) => {
                self.failures += 1;
                let (wait, permanent) = match &error {
                    CallError::Transient { retry_after, .. } => (
                        self.backoff()
                            .wait_after(self.failures, *retry_after)
                            .min(self.config.max_backoff),
                        false,
                    ),
                    CallError::Permanent(_) => (self.config.max_backoff, true),
                };
                // The first failures and then every tenth: a long outage stays readable.
                if self.failures <= 3 || self.failures % 10 == 0 {
                    if permanent {
                        tracing::error!(
                            "Scheduled Events request failed ({} in a row): {error}; trying \
                             again in {}",
                            self.failures,
                            secs(wait)
                        );
                    } else {
                        tracing::warn!(
                            "Scheduled Events request failed ({} in a row): {error}; trying \
                             again in {}",
                            self.failures,
                            secs(wait)
                        );
                    }
                }
                wait
            }
        }
    }

    fn save(&self) {
        self.state_file.save(&self.state);
    }

    fn process(&mut self, document: &Document) {
        self.check_withdrawn(document);
        if self.last_incarnation == Some(document.incarnation) {
            return;
        }
        tracing::info!(
            "Scheduled Events document {}: {} event(s)",
            document.incarnation,
            document.events.len()
        );
        self.last_incarnation = Some(document.incarnation);
        for event in &document.events {
            match decide(event, &self.identity.vm_name) {
                Decision::Act { approve } => self.act(event, approve),
                Decision::AlreadyStarted => self.already_started(event),
                Decision::Ignore(why) => {
                    if self.noted.insert(event.id.clone()) {
                        let reason = match why {
                            Ignored::OtherVms => "it is for other VMs",
                            Ignored::Type => "this VM comes back from it with Nomad",
                        };
                        tracing::info!(
                            "ignoring {} event {} for [{}] ({}, NotBefore {:?}): {reason}",
                            event.event_type.name(),
                            event.id,
                            event.resources.join(", "),
                            match &event.status {
                                super::document::EventStatus::Scheduled => "Scheduled",
                                super::document::EventStatus::Started => "Started",
                                super::document::EventStatus::Other(s) => s,
                            },
                            event.not_before_text
                        );
                    }
                }
            }
        }
    }

    /// The record of `event`, created (first seen now) when new.
    fn record(&mut self, event: &Event) -> Handled {
        if let Some(existing) = self.state.get(&event.id) {
            return existing.clone();
        }
        let now = self.clock.now();
        let handled = Handled {
            event_id: event.id.clone(),
            event_type: event.event_type.name().to_string(),
            first_seen: now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
            drained_node: None,
            stopped_nomad: false,
            self_drained: false,
            finished: false,
        };
        self.state.handled.push(handled.clone());
        self.save();
        handled
    }

    fn update(&mut self, event_id: &str, change: impl FnOnce(&mut Handled)) {
        if let Some(handled) = self.state.get_mut(event_id) {
            change(handled);
        }
        self.save();
    }

    fn already_done(&mut self, event: &Event) -> bool {
        let finished = self.state.get(&event.id).is_some_and(|h| h.finished);
        if finished && self.noted.insert(event.id.clone()) {
            tracing::info!(
                "{} event {} was handled before (state file {}): nothing more to do",
                event.event_type.name(),
                event.id,
                self.state_file.path().display()
            );
        }
        finished
    }

    /// Takes Nomad out for a scheduled Terminate or Preempt of this VM, then approves it.
    fn act(&mut self, event: &Event, approve: bool) {
        if self.already_done(event) {
            return;
        }
        let kind = event.event_type.name().to_string();
        let id = event.id.clone();
        let resumed = self.state.get(&id).is_some();
        let record = self.record(event);
        let now = self.clock.now();
        let timeline = plan(
            now,
            &event.event_type,
            event.not_before,
            record.first_seen_time(),
            self.config.client,
            self.config.margins,
        );
        tracing::info!(
            "{kind} event {id} for this VM ({}){}: NotBefore {} ({} from now); {}",
            self.identity.vm_name,
            if resumed {
                ", resumed after a restart"
            } else {
                ""
            },
            show(timeline.not_before),
            secs(timeline.left(now)),
            if self.config.client && self.config.self_drain {
                "sending Nomad SIGTERM so this client drains itself (drain_on_shutdown), then \
                 approving"
            } else if self.config.client {
                "draining this client, then stopping Nomad, then approving"
            } else {
                "stopping Nomad (the server leaves Raft), then approving"
            }
        );
        if timeline.assumed {
            tracing::warn!(
                "{kind} event {id}: NotBefore {:?} is blank or unreadable; assuming the least \
                 notice Azure gives a {kind} ({}) from when the event was first seen",
                event.not_before_text,
                secs(event.event_type.minimum_notice())
            );
        }
        let mut not_done = Vec::new();
        if self.config.client && self.config.self_drain {
            if let Err(e) = self.self_drain(&id, &timeline) {
                not_done.push(format!("self-drain: {e}"));
            }
        } else if self.config.client {
            if let Err(e) = self.drain(&id, &kind, &timeline) {
                not_done.push(format!("drain: {e}"));
            }
        }
        if let Err(e) = self.stop_nomad(&id, timeline.stop_timeout) {
            not_done.push(format!("stop: {e}"));
        }
        if approve {
            if let Err(e) = self.approve(&id, &timeline) {
                not_done.push(format!("approval: {e}"));
            }
        } else {
            tracing::warn!(
                "{kind} event {id} also names [{}]: not approving it, since an approval lets \
                 Azure go ahead for every VM it names; Azure goes ahead at NotBefore",
                event.resources.join(", ")
            );
        }
        self.update(&id, |h| h.finished = true);
        self.noted.insert(id.clone());
        let left = secs(timeline.left(self.clock.now()));
        if not_done.is_empty() {
            tracing::info!("{kind} event {id}: Nomad is out, {left} before NotBefore");
        } else {
            tracing::warn!(
                "{kind} event {id}: finished {left} before NotBefore; NOT done: {}",
                not_done.join("; ")
            );
        }
    }

    /// A Terminate or Preempt of this VM that started before the watcher acted: Nomad is
    /// stopped at once (a client's node is first force-drained, so Nomad reschedules its work
    /// now rather than after the node's heartbeat times out).
    fn already_started(&mut self, event: &Event) {
        if self.already_done(event) {
            return;
        }
        let kind = event.event_type.name().to_string();
        let id = event.id.clone();
        tracing::warn!(
            "{kind} event {id} for this VM has already started (it was not seen while \
             scheduled): stopping Nomad now"
        );
        self.record(event);
        let quick = self
            .config
            .margins
            .stop_timeout
            .min(Duration::from_secs(10));
        let until = self.clock.now() + quick;
        // A self-draining client has no token for a force-drain: the stop is all there is.
        if self.config.client && !self.config.self_drain {
            if let Some(nomad) = self.nomad.clone() {
                let agent = self.identity.agent_name.clone();
                let drained = self
                    .nomad_call("find this node", until, || nomad.node_id(&agent))
                    .and_then(|node| {
                        self.nomad_call("force-drain it", until, || {
                            nomad.drain(&node, DrainDeadline::ForceNow, &drain_message(&kind, &id))
                        })
                        .map(|()| node)
                    });
                match drained {
                    Ok(node) => self.update(&id, |h| h.drained_node = Some(node)),
                    Err(e) => tracing::warn!("{kind} event {id}: no force-drain: {e}"),
                }
            }
        }
        if let Err(e) = self.stop_nomad(&id, quick) {
            tracing::warn!("{kind} event {id}: {e}");
        }
        self.update(&id, |h| h.finished = true);
        self.noted.insert(id);
    }

    /// One Nomad API call, tried again while the agent does not answer (or answers 5xx) and the
    /// time allows.
    fn nomad_call<T>(
        &self,
        what: &str,
        until: SystemTime,
        mut call: impl FnMut() -> Result<T, NomadError>,
    ) -> Result<T, String> {
        let mut attempt = 0;
        loop {
            match call() {
                Ok(value) => return Ok(value),
                Err(e) if is_transient(&e) => {
                    attempt += 1;
                    let left = until.duration_since(self.clock.now()).unwrap_or_default();
                    if attempt >= NOMAD_ATTEMPTS || left.is_zero() {
                        return Err(format!("{what}: {e}"));
                    }
                    let wait = (Duration::from_millis(500) * (1 << (attempt - 1))).min(left);
                    tracing::warn!("{what} failed: {e}; trying again in {}", secs(wait));
                    self.clock.sleep(wait);
                }
                Err(e) => return Err(format!("{what}: {e}")),
            }
        }
    }

    /// Marks this client's node ineligible, drains it with the timeline's deadline, and waits
    /// for its allocations to stop.
    fn drain(&mut self, id: &str, kind: &str, timeline: &Timeline) -> Result<(), String> {
        let Some(nomad) = self.nomad.clone() else {
            return Err("no Nomad API to drain through".to_string());
        };
        let until = timeline.allocations_until;
        let agent = self.identity.agent_name.clone();
        let node = self
            .nomad_call("finding this client's node", until, || {
                nomad.node_id(&agent)
            })
            .map_err(|e| format!("{e} (is Nomad stopped already?)"))?;
        if let Err(e) = self.nomad_call("marking the node ineligible", until, || {
            nomad.mark_ineligible(&node)
        }) {
            // The drain marks it ineligible too; carry on.
            tracing::warn!("{e}");
        }
        let deadline = timeline.drain_deadline(self.clock.now());
        self.nomad_call("draining the node", until, || {
            nomad.drain(&node, deadline, &drain_message(kind, id))
        })?;
        self.update(id, |h| h.drained_node = Some(node.clone()));
        match deadline {
            DrainDeadline::After(d) => tracing::info!(
                "draining node {node} with a deadline of {} (Nomad force-stops what is left \
                 then); waiting for its allocations until {}",
                secs(d),
                show(until)
            ),
            DrainDeadline::ForceNow => tracing::warn!(
                "no time for a drain: node {node} is force-drained (its allocations stop now)"
            ),
            // Not a deadline a plan gives; named so the match stays exhaustive.
            DrainDeadline::None => tracing::info!(
                "draining node {node} without a deadline; waiting for its allocations until {}",
                show(until)
            ),
        }
        self.wait_for_allocations(&nomad, &node, until)
    }

    /// Blocking queries until no allocation of the node is pending or running and its drain
    /// is over, or until `until`.
    fn wait_for_allocations(
        &self,
        nomad: &LocalNomad,
        node: &str,
        until: SystemTime,
    ) -> Result<(), String> {
        let (mut alloc_index, mut node_index) = (0, 0);
        let mut live: Option<usize> = None;
        let mut allocations_done = false;
        loop {
            let now = self.clock.now();
            let left = until.duration_since(now).unwrap_or_default();
            if left.is_zero() {
                return Err(match live {
                    Some(n) if n > 0 => format!(
                        "{n} allocation(s) still pending or running on node {node} when the \
                         time for the drain ran out"
                    ),
                    _ => format!("the drain of node {node} had not finished in time"),
                });
            }
            let wait = left.min(MAX_BLOCKING_WAIT);
            let result = if allocations_done {
                nomad.node(node, node_index, wait).map(|seen| {
                    node_index = seen.index;
                    !seen.value.draining
                })
            } else {
                nomad.live_allocations(node, alloc_index, wait).map(|seen| {
                    alloc_index = seen.index;
                    if live != Some(seen.value) {
                        tracing::info!(
                            "{} allocation(s) pending or running on node {node}",
                            seen.value
                        );
                    }
                    live = Some(seen.value);
                    allocations_done = seen.value == 0;
                    false
                })
            };
            match result {
                Ok(true) => {
                    tracing::info!("node {node} is drained");
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) if is_transient(&e) => {
                    let pause = Duration::from_secs(1).min(left);
                    tracing::warn!("watching the drain: {e}; again in {}", secs(pause));
                    self.clock.sleep(pause);
                }
                Err(e) => return Err(format!("watching the drain: {e}")),
            }
        }
    }

    /// Sends the client's agent SIGTERM, so it drains itself (`drain_on_shutdown`) and exits,
    /// and waits for it to have exited until the time for the drain and the allocations' kill
    /// is up. The stop that follows ([`Self::stop_nomad`]) keeps it stopped.
    fn self_drain(&mut self, id: &str, timeline: &Timeline) -> Result<(), String> {
        tracing::info!(
            "no token to drain through the API: sending Nomad SIGTERM ({}), so the client \
             drains itself (drain_on_shutdown) and exits; waiting for it until {}",
            self.service.describe(),
            show(timeline.allocations_until)
        );
        let signalled = self.service.main_pid().unwrap_or_else(|e| {
            tracing::warn!("asking for Nomad's process: {e}");
            None
        });
        self.service.signal_leave()?;
        self.update(id, |h| {
            h.self_drained = true;
            h.stopped_nomad = true;
        });
        loop {
            match self.service.main_pid() {
                // Gone, or another process the service manager started after it exited.
                Ok(pid) if pid.is_none() || pid != signalled => {
                    tracing::info!("Nomad has drained its node and exited");
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("asking whether Nomad still runs: {e}"),
            }
            let left = timeline
                .allocations_until
                .duration_since(self.clock.now())
                .unwrap_or_default();
            if left.is_zero() {
                return Err(
                    "Nomad was still draining itself when the time for the drain ran out"
                        .to_string(),
                );
            }
            self.clock.sleep(self.config.poll_interval.min(left));
        }
    }

    fn stop_nomad(&mut self, id: &str, timeout: Duration) -> Result<(), String> {
        tracing::info!(
            "stopping Nomad ({}), allowing {}",
            self.service.describe(),
            secs(timeout)
        );
        let result = self.service.stop(timeout);
        self.update(id, |h| h.stopped_nomad = true);
        match &result {
            Ok(()) => tracing::info!("Nomad is stopped"),
            Err(e) => tracing::warn!("stopping Nomad: {e}"),
        }
        result
    }

    /// Approves the event, trying again until NotBefore.
    fn approve(&self, id: &str, timeline: &Timeline) -> Result<(), String> {
        let policy = self.backoff();
        let mut attempt = 0;
        loop {
            match self.imds.approve(&[id]) {
                Ok(()) => {
                    tracing::info!(
                        "approved event {id}: Azure may go ahead now ({} before NotBefore)",
                        secs(timeline.left(self.clock.now()))
                    );
                    return Ok(());
                }
                Err(CallError::Permanent(message)) => {
                    return Err(format!("refused: {message}"));
                }
                Err(CallError::Transient {
                    message,
                    retry_after,
                }) => {
                    attempt += 1;
                    let left = timeline.left(self.clock.now());
                    if left.is_zero() {
                        return Err(format!(
                            "{message}; NotBefore has passed, and Azure goes ahead without it"
                        ));
                    }
                    let wait = policy.wait_after(attempt, retry_after).min(left);
                    tracing::warn!("approving event {id}: {message}; again in {}", secs(wait));
                    self.clock.sleep(wait);
                }
            }
        }
    }

    /// Handled events missing from the document: after enough polls, undo.
    fn check_withdrawn(&mut self, document: &Document) {
        let ids: Vec<String> = self
            .state
            .handled
            .iter()
            .map(|h| h.event_id.clone())
            .collect();
        for id in ids {
            if document.event(&id).is_some() {
                self.absent.remove(&id);
                continue;
            }
            let count = self.absent.entry(id.clone()).or_insert(0);
            *count += 1;
            if *count >= self.config.withdrawn_after {
                self.absent.remove(&id);
                self.withdrawn(&id);
            }
        }
    }

    fn withdrawn(&mut self, id: &str) {
        let Some(handled) = self.state.get(id).cloned() else {
            return;
        };
        let kind = &handled.event_type;
        if handled.stopped_nomad || handled.drained_node.is_some() {
            tracing::warn!(
                "{kind} event {id} is no longer listed and this VM is still running: Azure did \
                 not go ahead (the event was withdrawn, or the VM was deallocated and started \
                 again); bringing Nomad back"
            );
        }
        let until = self.clock.now() + self.config.restart_timeout;
        if handled.stopped_nomad {
            match self.service.start(self.config.restart_timeout) {
                Ok(()) => tracing::info!("Nomad started again"),
                Err(e) => tracing::error!("starting Nomad again: {e}"),
            }
        }
        if handled.self_drained {
            tracing::error!(
                "this client drained itself and its node stays ineligible: without an ACL token \
                 the watcher cannot undo that; `nomad node eligibility -enable <node id>` with a \
                 token holding node:write makes it take work again"
            );
        }
        if let (Some(node), Some(nomad)) = (&handled.drained_node, self.nomad.clone()) {
            match self.eligible_again(&nomad, node, until) {
                Ok(()) => tracing::info!("node {node} is eligible again"),
                Err(e) => tracing::error!(
                    "node {node} stays ineligible ({e}): `nomad node eligibility -enable {node}` \
                     makes it take work again"
                ),
            }
        }
        self.state.remove(id);
        self.noted.remove(id);
        self.save();
    }

    /// Ends the drain and marks the node eligible, waiting for the agent to come up.
    fn eligible_again(
        &self,
        nomad: &LocalNomad,
        node: &str,
        until: SystemTime,
    ) -> Result<(), String> {
        loop {
            match nomad.mark_eligible(node) {
                Ok(()) => return Ok(()),
                Err(e) if is_transient(&e) => {
                    let left = until.duration_since(self.clock.now()).unwrap_or_default();
                    if left.is_zero() {
                        return Err(e.to_string());
                    }
                    self.clock.sleep(Duration::from_secs(2).min(left));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

/// The drain's `Meta.message`, which `nomad node status` shows.
fn drain_message(kind: &str, id: &str) -> String {
    let what = if kind == "Preempt" {
        "evicted (Spot)"
    } else {
        "deleted"
    };
    format!("Azure Scheduled Event {kind} {id}: this VM is being {what}")
}
