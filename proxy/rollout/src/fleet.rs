//! Every proxy replica of a rollout and the manifest they follow: one admin call to one
//! replica, the same call to all, a weight written into the manifest and reloaded by
//! every replica, and an abort that reaches all it can. Each replica keeps its own
//! guard, overrides and figures, so a rollout acts on all of them (`rollout --admin`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{manifest, status};

/// Why a command did not do what it was asked.
#[derive(Debug)]
pub enum Failure {
    /// Unsafe (the caller may force it).
    Refused(String),
    /// Bad usage, a bad manifest, a refused token.
    Usage(String),
    /// A replica's admin API could not be reached.
    Unreachable(String),
    /// The autopilot aborted a route.
    Aborted(String),
    /// The autopilot waited for evidence past its limit.
    GaveUp(String),
    /// The decommission report does not pass.
    NotPassed(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused(why)
            | Failure::Usage(why)
            | Failure::Unreachable(why)
            | Failure::Aborted(why)
            | Failure::GaveUp(why)
            | Failure::NotPassed(why) => f.write_str(why),
        }
    }
}

/// The data verify of a step, as the identity service answered it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VerifyFigures {
    pub compared: u64,
    pub deviating: u64,
    pub settled: u64,
    /// Differing fields and how many members differ in each (names only).
    pub fields: std::collections::BTreeMap<String, u64>,
}

impl VerifyFigures {
    /// The identity service's answer, read.
    fn from_answer(v: &Value) -> Option<Self> {
        Some(Self {
            compared: v.get("compared")?.as_u64()?,
            deviating: v.get("deviating")?.as_u64()?,
            settled: v.get("settled").and_then(Value::as_u64).unwrap_or(0),
            fields: v
                .get("fields")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, n)| Some((k.clone(), n.as_u64()?)))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// How long one admin call may take: a replica that hangs must not hang an abort.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the data verify of a step's writes may take (the identity service answers
/// within its request deadline).
const VERIFY_TIMEOUT: Duration = Duration::from_secs(40);

/// The replicas' admin API and the manifest.
pub struct Fleet {
    replicas: Vec<String>,
    token: Option<String>,
    http: reqwest::Client,
    /// The VirtualService manifest the proxies read.
    pub manifest: PathBuf,
    pub legacy_host: String,
    pub new_host: String,
}

impl Fleet {
    /// The replicas at `admin` (each once, blanks ignored).
    pub fn new(
        admin: &[String],
        token: Option<String>,
        manifest: PathBuf,
        legacy_host: String,
        new_host: String,
    ) -> Result<Self, Failure> {
        let mut replicas: Vec<String> = Vec::new();
        for url in admin.iter().map(|u| u.trim()).filter(|u| !u.is_empty()) {
            if !replicas.iter().any(|r| r == url) {
                replicas.push(url.to_owned());
            }
        }
        if replicas.is_empty() {
            return Err(Failure::Usage("--admin: no admin URL given".into()));
        }
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| Failure::Usage(format!("HTTP client: {e}")))?;
        Ok(Self {
            replicas,
            token,
            http,
            manifest,
            legacy_host,
            new_host,
        })
    }

    pub fn replicas(&self) -> &[String] {
        &self.replicas
    }

    /// Whether more than one replica is given.
    pub fn several(&self) -> bool {
        self.replicas.len() > 1
    }

    /// What to put before a line about `replica`: nothing when there is only one.
    pub fn label(&self, replica: &str) -> String {
        if self.several() {
            format!("[{replica}] ")
        } else {
            String::new()
        }
    }

    /// One call to one replica's admin API, with a JSON body if given.
    pub async fn admin(
        &self,
        replica: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let timeout = if path.ends_with("/verify") {
            VERIFY_TIMEOUT
        } else {
            ADMIN_TIMEOUT
        };
        let mut req = self
            .http
            .request(method, format!("{}{path}", replica.trim_end_matches('/')))
            .timeout(timeout);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::Unreachable(format!("admin API at {replica}: {e}")))?;
        let code = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if code.as_u16() == 401 || code.as_u16() == 403 {
            return Err(Failure::Usage(format!(
                "admin API at {replica} refused the token ({code}): set ROLLOUT_ADMIN_TOKEN"
            )));
        }
        if !code.is_success() {
            return Err(Failure::Usage(format!(
                "admin API at {replica} answered {code}: {}",
                body["error"].as_str().unwrap_or("")
            )));
        }
        Ok(body)
    }

    /// The same call to every replica, each one tried whatever the others answered.
    pub async fn on_every_replica(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Vec<(String, Result<Value, Failure>)> {
        let mut out = Vec::new();
        for replica in &self.replicas {
            let result = self.admin(replica, method.clone(), path, body).await;
            out.push((replica.clone(), result));
        }
        out
    }

    /// Every route as one replica sees it.
    pub async fn routes(&self, replica: &str) -> Result<Vec<status::RouteStatus>, Failure> {
        Ok(status::parse(
            &self
                .admin(replica, reqwest::Method::GET, "/admin/status", None)
                .await?,
        ))
    }

    /// One route as one replica sees it.
    pub async fn route_status(
        &self,
        replica: &str,
        route: &str,
    ) -> Result<status::RouteStatus, Failure> {
        self.routes(replica)
            .await?
            .into_iter()
            .find(|r| r.name == route)
            .ok_or_else(|| Failure::Usage(format!("the proxy at {replica} has no route `{route}`")))
    }

    /// The data verify of the members written since `since_micros` (both databases,
    /// through the identity service), asked through `route` of the first replica that
    /// answers, those in `skip` left out.
    pub async fn verify(
        &self,
        route: &str,
        since_micros: i64,
        skip: &[&str],
    ) -> Result<VerifyFigures, String> {
        let body = serde_json::json!({ "since_micros": since_micros.max(0) });
        let path = format!("/admin/routes/{route}/verify");
        let mut why = String::from("no replica could be asked");
        for replica in self.replicas.iter().filter(|r| !skip.contains(&r.as_str())) {
            match self
                .admin(replica, reqwest::Method::POST, &path, Some(&body))
                .await
            {
                Ok(answer) => {
                    return VerifyFigures::from_answer(&answer)
                        .ok_or_else(|| "the answer holds no verify report".to_owned());
                }
                Err(e) => why = e.to_string(),
            }
        }
        Err(why)
    }

    /// One replica's Prometheus metrics, as text.
    pub async fn metrics(&self, replica: &str) -> Result<String, Failure> {
        let resp = self
            .http
            .get(format!("{}/metrics", replica.trim_end_matches('/')))
            .timeout(ADMIN_TIMEOUT)
            .send()
            .await
            .map_err(|e| Failure::Unreachable(format!("metrics at {replica}: {e}")))?;
        if !resp.status().is_success() {
            return Err(Failure::Unreachable(format!(
                "metrics at {replica} answered {}",
                resp.status()
            )));
        }
        resp.text()
            .await
            .map_err(|e| Failure::Unreachable(format!("metrics at {replica}: {e}")))
    }

    fn read_manifest(&self) -> Result<String, Failure> {
        std::fs::read_to_string(&self.manifest)
            .map_err(|e| Failure::Usage(format!("{}: {e}", self.manifest.display())))
    }

    /// The new side's weight of `route` in the manifest, in percent.
    pub fn current(&self, route: &str) -> Result<u32, Failure> {
        let text = self.read_manifest()?;
        let (legacy, new) = manifest::weights(&text, route, &self.legacy_host, &self.new_host)
            .map_err(|e| Failure::Usage(e.to_string()))?;
        Ok((new * 100).checked_div(legacy + new).unwrap_or(0))
    }

    /// The manifest's routes that send users to either side.
    pub fn two_sided_routes(&self) -> Result<Vec<String>, Failure> {
        let text = self.read_manifest()?;
        manifest::two_sided_routes(&text, &self.legacy_host, &self.new_host)
            .map_err(|e| Failure::Usage(format!("{}: {e}", self.manifest.display())))
    }

    /// Sets `route`'s identity weight to `percent` in the manifest file.
    pub fn write_weight(&self, route: &str, percent: u32) -> Result<(), Failure> {
        let text = self.read_manifest()?;
        let edited =
            manifest::set_weights(&text, route, &self.legacy_host, &self.new_host, percent)
                .map_err(|e| Failure::Usage(e.to_string()))?;
        manifest::write(&self.manifest, &edited).map_err(|e| Failure::Usage(e.to_string()))
    }

    /// Writes the new weight into the manifest and asks every replica to reload it: the
    /// lines to show. A replica that cannot be reached applies the manifest when it
    /// reloads it.
    pub async fn apply(&self, route: &str, percent: u32) -> Result<Vec<String>, Failure> {
        self.write_weight(route, percent)?;
        let mut lines = vec![format!(
            "{}: {route} → {percent}% identity, {}% legacy",
            self.manifest.display(),
            100 - percent
        )];
        for replica in &self.replicas {
            match self
                .admin(replica, reqwest::Method::POST, "/admin/reload", None)
                .await
            {
                Ok(_) => {
                    let r = self.route_status(replica, route).await?;
                    lines.push(format!(
                        "{}proxy: {route} serves {:.1}% of users from the identity service ({})",
                        self.label(replica),
                        r.share,
                        r.state
                    ));
                }
                Err(Failure::Unreachable(e)) => lines.push(format!(
                    "{}proxy not reachable ({e}); it applies the manifest when it reloads it",
                    self.label(replica)
                )),
                Err(other) => return Err(other),
            }
        }
        Ok(lines)
    }

    /// `route` to 0% on every replica at once (admin API) and in the manifest, even if
    /// some replicas cannot be reached: the lines to show, and the first failure after
    /// everything that could be done was done.
    pub async fn abort(&self, route: &str) -> (Vec<String>, Result<(), Failure>) {
        let mut lines = Vec::new();
        let path = format!("/admin/routes/{route}/abort");
        let mut answers = self
            .on_every_replica(reqwest::Method::POST, &path, None)
            .await;
        // A refused token or an unknown route changes nothing; only a replica that
        // cannot be reached does not stop the others and the manifest.
        if let Some(i) = answers
            .iter()
            .position(|(_, a)| matches!(a, Err(f) if !matches!(f, Failure::Unreachable(_))))
        {
            return (lines, answers.swap_remove(i).1.map(|_| ()));
        }
        for (replica, answer) in &answers {
            if answer.is_ok() {
                lines.push(format!(
                    "{}proxy: {route} aborted: every user on the legacy",
                    self.label(replica)
                ));
            }
        }
        if let Err(e) = self.write_weight(route, 0) {
            return (lines, Err(e));
        }
        lines.push(format!(
            "{}: {route} → 0% identity (commit it)",
            self.manifest.display()
        ));
        // The proxies take the manifest's 0% too, so that a resume does not bring the
        // old weight back.
        let reloads = self
            .on_every_replica(reqwest::Method::POST, "/admin/reload", None)
            .await;
        let missed = |failure| match failure {
            Failure::Unreachable(e) => Failure::Unreachable(format!(
                "{e} (that replica takes the manifest's 0% when it reloads it)"
            )),
            other => other,
        };
        let result = first_failure(answers)
            .map_err(missed)
            .and_then(|()| first_failure(reloads).map_err(missed));
        (lines, result)
    }
}

/// The first failure among the replicas' answers, reported after all were tried.
pub fn first_failure(answers: Vec<(String, Result<Value, Failure>)>) -> Result<(), Failure> {
    for (_, answer) in answers {
        answer?;
    }
    Ok(())
}
