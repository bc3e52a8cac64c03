//! How the double judged each request against Microsoft's REST specifications ([`spec`]): a
//! spec operation, a poll of an operation it started, or ARM's refusal; the log of requests
//! served with their verdicts, the (operationId, api-version) pairs used, and the conformance
//! check dropping the double makes.

use super::{lock, lro, spec, ArmDouble, RecordedRequest, State};

/// How the double judged one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A spec operation.
    Operation {
        operation_id: String,
        api_version: String,
    },
    /// A status or result URL the double handed out for a long-running operation.
    Poll { of: String },
    /// Not an operation of the specs: ARM's refusal.
    Refused {
        status: u16,
        code: String,
        message: String,
    },
}

/// A request and its verdict.
#[derive(Debug, Clone)]
pub struct Served {
    pub request: RecordedRequest,
    pub verdict: Verdict,
}

impl ArmDouble {
    /// This test sends requests the specs do not have on purpose: dropping the double does not
    /// fail it for them.
    pub fn expect_refusals(&self) {
        lock(&self.state).expect_refusals = true;
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state)
            .served
            .iter()
            .map(|s| s.request.clone())
            .collect()
    }

    /// Every request with its verdict.
    pub fn served(&self) -> Vec<Served> {
        lock(&self.state).served.clone()
    }

    /// The distinct (operationId, api-version) pairs served, in the order first used.
    pub fn operations_used(&self) -> Vec<(String, String)> {
        operations_used_in(lock(&self.state).served.iter().map(|s| &s.verdict))
    }

    /// The requests refused as no operation of the specs.
    pub fn refused(&self) -> Vec<Served> {
        lock(&self.state)
            .served
            .iter()
            .filter(|s| matches!(s.verdict, Verdict::Refused { .. }))
            .cloned()
            .collect()
    }
}

impl Drop for ArmDouble {
    /// The conformance check every test gets: a request that is no operation of the specs fails
    /// the test that made it.
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let state = lock(&self.state);
        if state.expect_refusals {
            return;
        }
        let refused = refusal_lines(state.served.iter().map(|s| (&s.request, &s.verdict)));
        if !refused.is_empty() {
            panic!(
                "the ARM double received requests that are no operation of Microsoft's REST specs (../shared/azure-rest-specs):\n{}",
                refused.join("\n")
            );
        }
    }
}

/// The distinct (operationId, api-version) pairs of a request log, in the order first used
/// (the ARM and Key Vault doubles keep one each).
pub(crate) fn operations_used_in<'a>(
    verdicts: impl Iterator<Item = &'a Verdict>,
) -> Vec<(String, String)> {
    let mut used: Vec<(String, String)> = Vec::new();
    for verdict in verdicts {
        if let Verdict::Operation {
            operation_id,
            api_version,
        } = verdict
        {
            let pair = (operation_id.clone(), api_version.clone());
            if !used.contains(&pair) {
                used.push(pair);
            }
        }
    }
    used
}

/// One line per refused request of a log, for the conformance check a double makes when dropped.
pub(crate) fn refusal_lines<'a>(
    log: impl Iterator<Item = (&'a RecordedRequest, &'a Verdict)>,
) -> Vec<String> {
    log.filter_map(|(request, verdict)| match verdict {
        Verdict::Refused { code, message, .. } => Some(format!(
            "  {} {}?api-version={}: {code}: {message}",
            request.method,
            request.path,
            request.query_param("api-version").unwrap_or("(none)")
        )),
        _ => None,
    })
    .collect()
}

/// Judges the request against the specs (or as a poll of an operation the double started).
pub(super) fn judge(state: &State, request: &RecordedRequest) -> (Verdict, Option<spec::Matched>) {
    let segments: Vec<&str> = request.path.split('/').filter(|s| !s.is_empty()).collect();
    if let Some((id, _)) = lro::is_poll(state, &segments) {
        let of = state.operations[&id].of.clone();
        return (Verdict::Poll { of }, None);
    }
    let Some(version) = request.query_param("api-version") else {
        return (
            Verdict::Refused {
                status: 400,
                code: "MissingApiVersionParameter".into(),
                message:
                    "The api-version query parameter (?api-version=) is required for all requests."
                        .into(),
            },
            None,
        );
    };
    match spec::resolve(&request.method, &request.path, version) {
        Ok(m) => (
            Verdict::Operation {
                operation_id: m.operation.operation_id.clone(),
                api_version: m.api_version.clone(),
            },
            Some(m),
        ),
        Err(r) => (
            Verdict::Refused {
                status: r.status,
                code: r.code.to_string(),
                message: r.message,
            },
            None,
        ),
    }
}
