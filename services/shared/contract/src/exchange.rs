//! One request of the contract as both of its servers (the identity service's REST
//! surface and the legacy simulator) set it up and answer it, so that neither writes
//! Rails' request handling again: the request id, the route, the facts the answer's
//! headers depend on, the parameters (body, then query, as Rails merges them), and the
//! rendering of an answer or of a refusal with Rails' headers.
//!
//! ```
//! use member_contract::exchange::{Exchange, Outcome};
//! use member_contract::errors::Flavor;
//!
//! let header = |name: &str| (name == "accept").then(|| "application/json".to_owned());
//! let mut exchange = Exchange::set_up("GET", "//api/v1/users/7.json", header, || [7; 16]);
//! assert!(exchange.endpoint.is_some() && exchange.facts.has_format);
//! let params = exchange.read_params("GET", None, Some("x=1"), b"").unwrap();
//! assert_eq!(params.get("x").and_then(|v| v.as_str()), Some("1"));
//! let outcome: Outcome = Ok((200, Some("{}".into()), None));
//! let (rendered, retry_after) = exchange.render(outcome, Flavor::Legacy, std::time::Duration::ZERO);
//! assert_eq!((rendered.status, retry_after), (200, None));
//! ```

use std::time::Duration;

use crate::errors::Flavor;
use crate::headers::{self, Rendered, RequestFacts};
use crate::{ContractError, Endpoint, Params, parse_body, parse_query, route};

/// An endpoint's answer (status, JSON body or none, `Retry-After` seconds), or the
/// contract's refusal.
pub type Outcome = Result<(u16, Option<String>, Option<u64>), ContractError>;

/// A request, set up.
#[derive(Debug, Clone)]
pub struct Exchange<'a> {
    /// The endpoint Rails routes it to, if any.
    pub endpoint: Option<Endpoint<'a>>,
    /// What its answer's headers depend on.
    pub facts: RequestFacts,
}

impl<'a> Exchange<'a> {
    /// Routes `path` and reads the headers that matter (`header(name)` gives a
    /// request header's value); a request id of the client's, if sane, else a new one
    /// from `random`.
    pub fn set_up(
        method: &str,
        path: &'a str,
        header: impl Fn(&str) -> Option<String>,
        random: impl FnOnce() -> [u8; 16],
    ) -> Self {
        let request_id = header("x-request-id")
            .and_then(|v| headers::sanitize_request_id(&v))
            .unwrap_or_else(|| headers::new_request_id(random()));
        let endpoint = route(method, path);
        let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        let facts = RequestFacts {
            is_get: method == "GET" || method == "HEAD",
            accept: header("accept"),
            has_format: endpoint.is_some() && last.contains('.'),
            if_none_match: header("if-none-match"),
            request_id,
        };
        Self { endpoint, facts }
    }

    /// The parameters: the body's (JSON or form, by `content_type`), then the query's
    /// merged in. A `format` parameter negotiates as a path suffix does.
    pub fn read_params(
        &mut self,
        method: &str,
        content_type: Option<&str>,
        query: Option<&str>,
        body: &[u8],
    ) -> Result<Params, ContractError> {
        let mut params = parse_body(method, content_type, body)?;
        if let Some(q) = query {
            params.merge_query(parse_query(q)?);
        }
        self.facts.has_format |= params.get("format").is_some();
        Ok(params)
    }

    /// The answer with Rails' headers (a controller's, or its exception handling's for
    /// a refusal that is one), and the `Retry-After` seconds it carries.
    pub fn render(
        &self,
        outcome: Outcome,
        flavor: Flavor,
        elapsed: Duration,
    ) -> (Rendered, Option<u64>) {
        let runtime = headers::runtime(elapsed);
        match outcome {
            Ok((status, body, retry_after)) => (
                headers::render_controller(status, body, &self.facts, &runtime),
                retry_after,
            ),
            Err(e) => {
                let a = e.answer(flavor);
                if a.exception {
                    (
                        headers::render_exception(
                            a.status,
                            &self.facts,
                            self.facts.has_format,
                            &runtime,
                        ),
                        None,
                    )
                } else {
                    (
                        headers::render_controller(a.status, a.body, &self.facts, &runtime),
                        a.retry_after_secs,
                    )
                }
            }
        }
    }
}
