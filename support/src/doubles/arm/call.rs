//! What a handler gets: the matched request ([`Call`]: its path parameters, its JSON body, an
//! answer in its operation's long-running style) and [`page`] for list answers.

use serde_json::{json, Value};

use super::super::server::Reply;
use super::{arm_error, lro, spec, RecordedRequest, State};

/// One matched request, for the handlers.
pub(crate) struct Call<'a> {
    pub(crate) base: &'a str,
    pub(crate) request: &'a RecordedRequest,
    pub(crate) matched: spec::Matched,
}

impl Call<'_> {
    pub(crate) fn op(&self) -> &'static spec::SpecOperation {
        self.matched.operation
    }

    /// A path parameter; `resourceGroupName` also from a `{scope}` that is a resource group.
    pub(crate) fn param(&self, name: &str) -> &str {
        let value = self.matched.param(name);
        if value.is_empty() && name == "resourceGroupName" {
            let scope = self.matched.param("scope");
            let segments: Vec<&str> = scope.split('/').collect();
            if let [s, _, g, group] = segments.as_slice() {
                if s.eq_ignore_ascii_case("subscriptions")
                    && g.eq_ignore_ascii_case("resourcegroups")
                {
                    return group;
                }
            }
        }
        value
    }

    pub(crate) fn body(&self) -> Result<Value, Reply> {
        if self.request.body.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&self.request.body).map_err(|e| {
            arm_error(
                400,
                "InvalidRequestContent",
                &format!("The request content was invalid and could not be deserialized: '{e}'."),
            )
        })
    }

    /// A long-running answer in this operation's style.
    pub(crate) fn long_running(
        &self,
        state: &mut State,
        status: u16,
        body: &Value,
        pending: lro::Pending,
    ) -> Reply {
        lro::reply(
            state,
            self.base,
            self.op(),
            self.request.path.trim_end_matches('/'),
            &self.matched.api_version,
            status,
            body,
            pending,
        )
    }
}

/// Pages `items` after `$skiptoken`, with a `nextLink` when more remain.
pub(crate) fn page(state: &State, call: &Call, items: Vec<Value>) -> Reply {
    let request = call.request;
    let skip: usize = request
        .query_param("$skiptoken")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let end = (skip + state.page_size).min(items.len());
    let mut body = json!({ "value": items.get(skip..end).unwrap_or(&[]) });
    if end < items.len() {
        let mut url =
            url::Url::parse(&format!("{}{}", call.base, request.path)).expect("base URL parses");
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &request.query {
                if k != "$skiptoken" {
                    pairs.append_pair(k, v);
                }
            }
            pairs.append_pair("$skiptoken", &end.to_string());
        }
        body["nextLink"] = json!(url.to_string());
    }
    Reply::json(200, &body)
}
