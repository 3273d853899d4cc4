//! Synthetic app clients through the proxy: each signs up, logs in, and then reads and
//! changes its profile, refreshes its tokens and logs out and in again, over and over;
//! newcomers sign up all along, and anonymous visitors read public profiles.
//! Every answer is checked against what the contract promises, so that a rollout can be
//! judged: unexpected errors, forced log-outs (a token refused that the client did not
//! end), stale reads (a profile read that misses the client's own last write), sessions
//! that come back (a token that still works after its log-out was answered). Each such
//! answer is also an [`Event`] with its time, so that a rehearsal with faults can tell
//! which fault each came from.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;

/// What the clients saw.
#[derive(Debug, Clone, Default)]
pub struct TrafficReport {
    pub requests: u64,
    pub by_status: BTreeMap<u16, u64>,
    /// Answers the contract does not allow here (5xx, unexpected 4xx).
    pub unexpected: u64,
    /// Tokens refused that the client had not ended.
    pub forced_logouts: u64,
    /// Reads that missed the client's own last write (then seen on a later read).
    pub stale_reads: u64,
    pub writes: u64,
    /// Access tokens that still worked after their log-out was answered.
    pub resurrected: u64,
    /// Refreshes asked again after a lost answer and refused (the first try had
    /// rotated the token: the contract's answer, not a forced log-out).
    pub refresh_retries_refused: u64,
    /// A few unexpected answers (method, path template, status): no personal data.
    pub examples: Vec<String>,
    /// Each client's member: (id, email, nickname last written).
    pub members: Vec<(i64, String, String)>,
    /// Each client's member: (id, the most sessions it may have live at the end). That is
    /// the one the client holds, plus one for each request that could have started or
    /// kept a session but whose answer was lost (a log-in, a refresh try, a log-out). A
    /// member with more live sessions has one nobody asked for: a write applied twice.
    pub sessions_at_most: Vec<(i64, u64)>,
    /// Every answer counted above but writes, with its time (at most `MAX_EVENTS`).
    pub events: Vec<Event>,
}

/// One answer a client did not expect, when it came.
#[derive(Debug, Clone)]
pub struct Event {
    pub at: Instant,
    pub kind: EventKind,
    /// Method, path template and status: no personal data.
    pub what: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventKind {
    /// An answer the contract does not allow (5xx, a failed connection: status 0,
    /// an unexpected 4xx).
    Unexpected,
    ForcedLogout,
    StaleRead,
    Resurrected,
    RefreshRetryRefused,
}

const MAX_EVENTS: usize = 20_000;

impl TrafficReport {
    fn merge(&mut self, other: TrafficReport) {
        self.requests += other.requests;
        for (k, v) in other.by_status {
            *self.by_status.entry(k).or_default() += v;
        }
        self.unexpected += other.unexpected;
        self.forced_logouts += other.forced_logouts;
        self.stale_reads += other.stale_reads;
        self.writes += other.writes;
        self.resurrected += other.resurrected;
        self.refresh_retries_refused += other.refresh_retries_refused;
        let room = MAX_EVENTS.saturating_sub(self.events.len());
        self.events.extend(other.events.into_iter().take(room));
        for e in other.examples {
            if self.examples.len() < 20 {
                self.examples.push(e);
            }
        }
        self.members.extend(other.members);
        self.sessions_at_most.extend(other.sessions_at_most);
    }
}

/// Runs `clients` synthetic clients against `base` until `stop` turns true.
pub struct Traffic;

struct Client {
    http: reqwest::Client,
    base: String,
    report: TrafficReport,
    email: String,
    token: String,
    refresh: String,
    /// Whether the client holds a session it believes live.
    live: bool,
    /// Requests that could have started or kept a session, whose answer was lost.
    unsettled: u64,
    /// The client asked to end the session of the token it still holds (a log-out, then
    /// a log-in that failed; a refresh whose every answer was lost, which may have
    /// rotated it): a refusal of it is that request's doing.
    ending: bool,
    /// The address the gateway in front recorded for this client, if any.
    forwarded_for: Option<String>,
}

impl Client {
    fn new(base: String, email: String) -> Self {
        Self {
            http: reqwest::Client::new(),
            base,
            report: TrafficReport::default(),
            email,
            token: String::new(),
            refresh: String::new(),
            live: false,
            unsettled: 0,
            ending: false,
            forwarded_for: None,
        }
    }

    async fn call(
        &mut self,
        method: &str,
        path: &str,
        template: &str,
        token: Option<&str>,
        body: Option<Value>,
        ok: &[u16],
    ) -> (u16, Value) {
        let mut req = self.http.request(
            method.parse().unwrap_or(reqwest::Method::GET),
            format!("{}{path}", self.base),
        );
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(address) = &self.forwarded_for {
            req = req.header("x-forwarded-for", address);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let (status, value) = match req.send().await {
            Ok(r) => {
                let s = r.status().as_u16();
                (s, r.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        };
        self.report.requests += 1;
        *self.report.by_status.entry(status).or_default() += 1;
        if !ok.contains(&status) && status != 401 {
            self.report.unexpected += 1;
            let what = format!("{method} {template} -> {status}");
            if self.report.examples.len() < 5 {
                self.report.examples.push(what.clone());
            }
            self.event(EventKind::Unexpected, what);
        }
        (status, value)
    }

    fn event(&mut self, kind: EventKind, what: String) {
        if self.report.events.len() < MAX_EVENTS {
            self.report.events.push(Event {
                at: Instant::now(),
                kind,
                what,
            });
        }
    }

    /// Signs up with `nickname` and logs in: the member's id.
    async fn join(&mut self, nickname: &str) -> Option<i64> {
        let user = json!({"user": {"email": self.email, "password": "password-traffic", "nickname": nickname}});
        let (s, v) = self
            .call(
                "POST",
                "/api/v1/users",
                "/api/v1/users",
                None,
                Some(user),
                &[201],
            )
            .await;
        if s != 201 {
            return None;
        }
        self.report.writes += 1;
        let id = v["id"].as_i64().unwrap_or(0);
        self.log_in().await.then_some(id)
    }

    /// A new session: its tokens replace the client's.
    async fn log_in(&mut self) -> bool {
        let credentials = json!({"email": self.email, "password": "password-traffic"});
        let (s, v) = self
            .call(
                "POST",
                "/api/v1/sessions",
                "/api/v1/sessions",
                None,
                Some(credentials),
                &[201],
            )
            .await;
        if s == 201 {
            self.token = v["token"].as_str().unwrap_or("").to_owned();
            self.refresh = v["refresh_token"].as_str().unwrap_or("").to_owned();
            self.live = true;
            self.ending = false;
        } else if lost(s) {
            self.unsettled += 1;
        }
        s == 201
    }

    /// Refreshes its tokens, as an app does: an answer lost (no answer, or a 5xx) is
    /// asked again once with the same refresh token. A retry refused after the first
    /// try was lost is the contract's answer (the first may have rotated the token),
    /// counted apart from forced log-outs; the client logs in again either way.
    async fn refresh(&mut self) {
        let body = json!({"refresh_token": self.refresh});
        let path = "/api/v1/sessions/refresh";
        let mut lost = false;
        for _ in 0..2 {
            let (s, v) = self
                .call("POST", path, path, None, Some(body.clone()), &[201])
                .await;
            match s {
                201 => {
                    self.token = v["token"].as_str().unwrap_or("").to_owned();
                    self.refresh = v["refresh_token"].as_str().unwrap_or("").to_owned();
                    return;
                }
                401 if lost => {
                    self.report.refresh_retries_refused += 1;
                    self.event(
                        EventKind::RefreshRetryRefused,
                        format!("POST {path} -> 401"),
                    );
                    self.live = false;
                    self.log_in().await;
                    return;
                }
                401 => {
                    self.forced_out("POST /api/v1/sessions/refresh").await;
                    return;
                }
                0 | 500..=599 => {
                    lost = true;
                    self.unsettled += 1;
                }
                _ => return,
            }
        }
        // Every try's answer lost: the first may have rotated the pair, and the access
        // token held now is one the client asked to end.
        self.ending = true;
    }

    /// A token refused that the client had not ended nor asked to end: counted; the
    /// client logs in again either way.
    async fn forced_out(&mut self, template: &str) {
        if !self.ending {
            self.report.forced_logouts += 1;
            self.event(EventKind::ForcedLogout, format!("{template} -> 401"));
        }
        self.live = false;
        self.log_in().await;
    }

    /// `GET /api/v1/users/me` with `token`, expecting one of `ok`.
    async fn me_with(&mut self, token: &str, ok: &[u16]) -> (u16, Value) {
        let path = "/api/v1/users/me";
        self.call("GET", path, path, Some(token), None, ok).await
    }

    /// Reads its own profile: a refusal is a forced log-out, a nickname it may not read
    /// now a stale read.
    async fn read_me(&mut self, known: &mut Known) {
        let token = self.token.clone();
        let (s, v) = self.me_with(&token, &[200]).await;
        if s == 401 {
            self.forced_out("GET /api/v1/users/me").await;
        } else if s == 200 && !known.admits(&v["nickname"]) {
            self.report.stale_reads += 1;
            self.event(EventKind::StaleRead, "GET /api/v1/users/me".into());
        }
    }
}

/// What a client knows of its own nickname: the last one written, and one whose write
/// lost its answer (no answer, 502, 504: it may have been applied, now or later).
struct Known {
    nickname: String,
    unsure: Option<String>,
}

impl Known {
    fn new(nickname: String) -> Self {
        Self {
            nickname,
            unsure: None,
        }
    }

    /// Whether the client may read `seen` now; reading the unsure one settles it.
    fn admits(&mut self, seen: &Value) -> bool {
        if *seen == json!(self.nickname) {
            return true;
        }
        match self.unsure.take() {
            Some(unsure) if *seen == json!(unsure) => {
                self.nickname = unsure;
                true
            }
            other => {
                self.unsure = other;
                false
            }
        }
    }
}

async fn one_client(
    base: String,
    n: usize,
    run: String,
    pace: Duration,
    mut stop: watch::Receiver<bool>,
) -> TrafficReport {
    let mut c = Client::new(base, format!("client-{run}-{n}@example.com"));
    let mut known = Known::new(format!("c{n}"));
    let Some(id) = c.join(&known.nickname.clone()).await else {
        return c.report;
    };
    let mut k: u64 = 0;
    while !*stop.borrow() {
        k += 1;
        let me = format!("/api/v1/users/{id}");
        let token = c.token.clone();
        // A member mostly reads; now and then changes a profile field, refreshes the
        // tokens, logs out and in again.
        let step = k % 50;
        if step % 10 == 5 {
            let next = format!("c{n}-{k}");
            let (s, _) = c
                .call(
                    "PATCH",
                    "/api/v1/users/me",
                    "/api/v1/users/me",
                    Some(&token),
                    Some(json!({"user": {"nickname": next}})),
                    &[200],
                )
                .await;
            match s {
                200 => {
                    known = Known::new(next);
                    c.report.writes += 1;
                }
                401 => c.forced_out("PATCH /api/v1/users/me").await,
                0 | 502 | 504 => known.unsure = Some(next),
                _ => {}
            }
        } else if step == 40 {
            c.refresh().await;
        } else if step == 49 {
            let (s, _) = c
                .call(
                    "DELETE",
                    "/api/v1/sessions",
                    "/api/v1/sessions",
                    Some(&token),
                    None,
                    &[204],
                )
                .await;
            if lost(s) {
                c.unsettled += 1;
            }
            c.live = false;
            c.ending = s == 204 || lost(s);
            c.log_in().await;
            // A session whose log-out was answered stays ended, whichever side is asked.
            if s == 204 {
                let (after, _) = c.me_with(&token, &[401]).await;
                if after == 200 {
                    c.report.resurrected += 1;
                    c.event(EventKind::Resurrected, "GET /api/v1/users/me -> 200".into());
                }
            }
        } else if step % 3 == 2 {
            c.call("GET", &me, "/api/v1/users/:id", None, None, &[200])
                .await;
            c.call(
                "GET",
                &format!("/api/v1/users?ids={id},1,2"),
                "/api/v1/users?ids=",
                None,
                None,
                &[200],
            )
            .await;
        } else {
            c.read_me(&mut known).await;
        }
        tokio::select! {
            () = tokio::time::sleep(pace) => {},
            _ = stop.changed() => {},
        }
    }
    // A write whose answer was lost: which nickname is the last one, read once more.
    if known.unsure.is_some() {
        c.read_me(&mut known).await;
    }
    let email = std::mem::take(&mut c.email);
    c.report.members.push((id, email, known.nickname));
    let at_most = u64::from(c.live) + c.unsettled;
    c.report.sessions_at_most.push((id, at_most));
    c.report
}

/// An answer that says nothing of what the request did: none, or a 5xx.
fn lost(status: u16) -> bool {
    status == 0 || (500..=599).contains(&status)
}

/// A client that logs in once and then only reads its profile with that first access
/// token, never refreshing it: an app left open. Started while the legacy serves
/// everyone, it holds a legacy token through the whole rollout and the cutover.
async fn one_sleeper(
    base: String,
    n: usize,
    run: String,
    pace: Duration,
    mut stop: watch::Receiver<bool>,
) -> TrafficReport {
    let mut c = Client::new(base, format!("sleeper-{run}-{n}@example.com"));
    let nickname = format!("s{n}");
    let Some(id) = c.join(&nickname).await else {
        return c.report;
    };
    let mut known = Known::new(nickname.clone());
    while !*stop.borrow() {
        c.read_me(&mut known).await;
        tokio::select! {
            () = tokio::time::sleep(pace * 4) => {},
            _ = stop.changed() => {},
        }
    }
    let email = std::mem::take(&mut c.email);
    c.report.members.push((id, email, nickname));
    c.report
}

/// Newcomers: a member signs up and logs in every few paces, as an app's new users do
/// all day (the sign-up route's evidence); each newcomer is then left alone.
async fn newcomers(
    base: String,
    run: String,
    pace: Duration,
    mut stop: watch::Receiver<bool>,
) -> TrafficReport {
    let mut report = TrafficReport::default();
    let addresses = spread_addresses();
    let mut k = 0;
    while !*stop.borrow() {
        k += 1;
        let mut c = Client::new(base.clone(), format!("newcomer-{run}-{k}@example.com"));
        // From addresses all over the split, as new users come from everywhere (the
        // proxy keys a sign-up by its client address).
        c.forwarded_for = Some(addresses[k % addresses.len()].clone());
        let nickname = format!("n{k}");
        if let Some(id) = c.join(&nickname).await {
            let email = std::mem::take(&mut c.email);
            c.report.members.push((id, email, nickname));
        }
        report.merge(c.report);
        tokio::select! {
            () = tokio::time::sleep(pace * 2) => {},
            _ = stop.changed() => {},
        }
    }
    report
}

/// Visitors' addresses, one in each hundredth of the split's buckets (the proxy keys an
/// anonymous request by its client address): whatever the new side's share, the
/// visitors within it reach the new side, so every step of a rollout is seen to send
/// someone there, even at 1% with a handful of busy clients.
fn spread_addresses() -> Vec<String> {
    let mut by_band: Vec<Option<String>> = vec![None; 100];
    let mut missing = by_band.len();
    for i in 0u32..1_000_000 {
        let address = format!("10.{}.{}.{}", 1 + i / 65_536, i / 256 % 256, i % 256);
        let band = (proxy_routing::Bucket::of(address.as_bytes()).value() / 100) as usize;
        if let Some(slot @ None) = by_band.get_mut(band) {
            *slot = Some(address);
            missing -= 1;
            if missing == 0 {
                break;
            }
        }
    }
    by_band.into_iter().flatten().collect()
}

/// Anonymous visitors reading a public profile, each from its own address, round the
/// hundred addresses of `spread_addresses` again and again.
async fn one_visitor(
    base: String,
    pace: Duration,
    mut stop: watch::Receiver<bool>,
) -> TrafficReport {
    let mut c = Client::new(base, String::new());
    let addresses = spread_addresses();
    let mut k = 0;
    while !*stop.borrow() {
        c.forwarded_for = Some(addresses[k % addresses.len()].clone());
        k += 1;
        c.call(
            "GET",
            "/api/v1/users/1",
            "/api/v1/users/:id",
            None,
            None,
            &[200, 404],
        )
        .await;
        tokio::select! {
            () = tokio::time::sleep(pace / 4) => {},
            _ = stop.changed() => {},
        }
    }
    c.report
}

impl Traffic {
    /// Starts `clients` busy clients, `sleepers` that hold their first session, a
    /// newcomer every few paces and one stream of anonymous visitors; the handle's report is complete once `stop` is set.
    pub fn start(
        base: &str,
        clients: usize,
        sleepers: usize,
        pace: Duration,
        stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<TrafficReport> {
        let mut run = [0u8; 4];
        let _ = getrandom::fill(&mut run);
        let run: String = run.iter().map(|b| format!("{b:02x}")).collect();
        let base = base.to_owned();
        tokio::spawn(async move {
            let total = Arc::new(Mutex::new(TrafficReport::default()));
            let mut tasks = Vec::new();
            for n in 0..clients + sleepers {
                let (base, run, stop, total) =
                    (base.clone(), run.clone(), stop.clone(), Arc::clone(&total));
                tasks.push(tokio::spawn(async move {
                    let r = if n < clients {
                        one_client(base, n, run, pace, stop).await
                    } else {
                        one_sleeper(base, n, run, pace, stop).await
                    };
                    if let Ok(mut t) = total.lock() {
                        t.merge(r);
                    }
                }));
            }
            tasks.push(tokio::spawn({
                let (base, run, stop, total) =
                    (base.clone(), run.clone(), stop.clone(), Arc::clone(&total));
                async move {
                    let r = newcomers(base, run, pace, stop).await;
                    if let Ok(mut t) = total.lock() {
                        t.merge(r);
                    }
                }
            }));
            tasks.push(tokio::spawn({
                let (base, stop, total) = (base.clone(), stop.clone(), Arc::clone(&total));
                async move {
                    let r = one_visitor(base, pace, stop).await;
                    if let Ok(mut t) = total.lock() {
                        t.merge(r);
                    }
                }
            }));
            for t in tasks {
                let _ = t.await;
            }
            total.lock().map(|t| t.clone()).unwrap_or_default()
        })
    }
}
