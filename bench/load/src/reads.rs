//! Reads as other services make them: many members (random ids, most of them present,
//! some withdrawn or absent), many sessions' tokens, several HTTP/2 connections with
//! several calls in flight on each. And what the baselines need: members seeded straight
//! into the identity database, tokens from real log-ins, and a plain read of the same
//! rows on SQLite.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use identity_proto::identity::v1 as pb;
use sqlx::any::AnyPoolOptions;

use crate::stats::Recorder;

/// A small, fast generator of ids (xorshift64*), one per task.
pub struct Draw(u64);

impl Draw {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// A number in `1..=max`.
    pub fn upto(&mut self, max: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % max.max(1) + 1
    }
}

/// The ids read: members `1..=members`, and 5% more that do not exist.
fn id_space(members: u64) -> u64 {
    members + members / 20
}

/// Which call `grpc-reads` makes.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Method {
    Get,
    Batch,
    Verify,
    /// `grpc.health.v1.Health/Check` on the same server: a call that does no work, the
    /// floor of what the gRPC stack itself costs.
    Health,
}

/// A gRPC request message in its frame: no compression, the length, the message.
fn frame(message: &impl prost::Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(0);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Bytes::from(out)
}

/// The requests a run draws from, encoded once (the load tool spends its time sending,
/// not encoding): every id for `get`, 4,096 random batches of 100 for `batch`, every
/// token for `verify`, the one empty request of `health`.
fn requests(method: Method, members: u64, tokens: &[String]) -> Vec<Bytes> {
    let mut draw = Draw::new(0xbadc_0ffe);
    match method {
        Method::Get => (1..=id_space(members) as i64)
            .map(|id| frame(&pb::GetMemberRequest { id }))
            .collect(),
        Method::Batch => (0..4096)
            .map(|_| {
                let ids = (0..100)
                    .map(|_| draw.upto(id_space(members)) as i64)
                    .collect();
                frame(&pb::BatchGetMembersRequest { ids })
            })
            .collect(),
        Method::Verify => tokens
            .iter()
            .map(|t| {
                frame(&pb::VerifyAccessTokenRequest {
                    access_token: t.clone(),
                })
            })
            .collect(),
        // The empty message (the server's overall health) in its frame.
        Method::Health => vec![Bytes::from_static(&[0, 0, 0, 0, 0])],
    }
}

/// One call over `client`: its request frame sent, the answer read to its trailers;
/// whether it succeeded (`grpc-status` 0, or 5 for an absent member).
async fn call(client: &mut h2::client::SendRequest<Bytes>, path: &str, body: Bytes) -> bool {
    let request = http::Request::post(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("a valid request");
    let Ok(ready) = client.clone().ready().await else {
        return false;
    };
    *client = ready;
    let Ok((response, mut send)) = client.send_request(request, false) else {
        return false;
    };
    if send.send_data(body, true).is_err() {
        return false;
    }
    let Ok(response) = response.await else {
        return false;
    };
    let (head, mut recv) = response.into_parts();
    let status_of = |headers: &http::HeaderMap| {
        headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    // A refusal comes without a body, its status in the head.
    let mut status = status_of(&head.headers);
    while let Some(chunk) = recv.data().await {
        let Ok(chunk) = chunk else { return false };
        let _ = recv.flow_control().release_capacity(chunk.len());
    }
    if status.is_none() {
        status = recv
            .trailers()
            .await
            .ok()
            .flatten()
            .as_ref()
            .and_then(status_of);
    }
    head.status == 200 && matches!(status.as_deref(), Some("0") | Some("5"))
}

/// Calls `method` for `seconds` over `connections` HTTP/2 connections with `in_flight`
/// calls in flight on each, each call a random member (or token); prints the figures.
/// Speaks HTTP/2 itself (the h2 crate) with requests encoded beforehand, as h2load
/// does, so that the load tool's own work stays small beside the service's.
pub async fn grpc_reads(
    addr: &str,
    method: Method,
    members: u64,
    tokens: Vec<String>,
    connections: usize,
    in_flight: usize,
    seconds: u64,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !matches!(method, Method::Verify) || !tokens.is_empty(),
        "verify needs --tokens"
    );
    let (path, name) = match method {
        Method::Get => ("/identity.v1.IdentityService/GetMember", "GetMember"),
        Method::Batch => (
            "/identity.v1.IdentityService/BatchGetMembers",
            "BatchGetMembers(100)",
        ),
        Method::Verify => (
            "/identity.v1.IdentityService/VerifyAccessToken",
            "VerifyAccessToken",
        ),
        Method::Health => ("/grpc.health.v1.Health/Check", "Health/Check"),
    };
    let bodies = Arc::new(requests(method, members, &tokens));
    let target = addr.trim_start_matches("http://").to_owned();
    let rec = Arc::new(Recorder::default());
    // Each connection and its callers on a thread and a single-threaded runtime of their
    // own, as h2load runs a connection on one event loop: the calls whose answers came
    // in together send their next requests before the connection writes, in one write,
    // and no wake-up crosses threads. (On the multi-threaded runtime, each call's request
    // left in a write of its own: the load tool took as much CPU as the service.)
    let threads: Vec<_> = (0..connections.max(1))
        .map(|c| {
            let (rec, bodies, target) = (Arc::clone(&rec), Arc::clone(&bodies), target.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    // A warm-up second, not recorded, then the measured run.
                    for (measured, secs) in [(false, 1), (true, seconds)] {
                        let deadline = Instant::now() + Duration::from_secs(secs);
                        let tcp = tokio::net::TcpStream::connect(&target).await?;
                        tcp.set_nodelay(true)?;
                        let (client, connection) = h2::client::handshake(tcp).await?;
                        tokio::spawn(connection);
                        let mut tasks = Vec::new();
                        for f in 0..in_flight.max(1) {
                            let mut client = client.clone();
                            let (rec, bodies) = (Arc::clone(&rec), Arc::clone(&bodies));
                            let mut draw = Draw::new((c * 1000 + f) as u64 * 0x9e37_79b9 + 7);
                            let path = format!("http://{target}{path}");
                            tasks.push(tokio::spawn(async move {
                                while Instant::now() < deadline {
                                    let body =
                                        bodies[draw.upto(bodies.len() as u64) as usize - 1].clone();
                                    let t = Instant::now();
                                    let ok = call(&mut client, &path, body).await;
                                    if measured {
                                        rec.record(t.elapsed(), ok);
                                    }
                                }
                            }));
                        }
                        for t in tasks {
                            t.await?;
                        }
                    }
                    Ok(())
                })
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a connection's thread panicked"))??;
    }
    rec.print(
        &format!("gRPC {name}, {connections} connections x {in_flight} in flight"),
        seconds,
    );
    Ok(())
}

/// Seeds `members` members straight into an empty identity database (ids 1..=members,
/// one in twenty withdrawn, one in three with an image), every one with `password`
/// (hashed once here, cheaply: the service verifies any argon2id parameters and rehashes
/// at log-in), and moves the id sequence past them.
pub async fn seed_members(url: &str, members: u64, password: &str) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let hasher = identity_passwords::Hasher::new(&identity_passwords::PasswordConfig {
        memory_kib: 1024,
        iterations: 1,
        ..identity_passwords::PasswordConfig::default()
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let hash = hasher
        .hash(password)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?;
    let now = 1_764_000_000_000_000_i64;
    let mut tx = pool.begin().await?;
    for id in 1..=members as i64 {
        sqlx::query(
            "INSERT INTO members (id, email, password_hash, nickname, phone_number, profile_image_url, created_at, updated_at, deleted_at) \
             VALUES ($1, $2, $3, $4, NULL, $5, $6, $6, $7)",
        )
        .bind(id)
        .bind(format!("seed-{id}@example.com"))
        .bind(&hash)
        .bind(format!("seed{id}"))
        .bind((id % 3 == 0).then(|| format!("https://img.example.com/{id}.png")))
        .bind(now)
        .bind((id % 20 == 0).then_some(now))
        .execute(&mut *tx)
        .await?;
    }
    if url.starts_with("postgres") {
        sqlx::query("SELECT setval(pg_get_serial_sequence('members', 'id'), $1)")
            .bind(members as i64)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    println!("seeded {members} members");
    Ok(())
}

/// Logs `count` random active members in through REST (password `password`); prints
/// one access token per line.
pub async fn tokens(base: &str, members: u64, count: usize, password: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let mut draw = Draw::new(0x5eed);
    let mut printed = 0;
    while printed < count {
        let id = draw.upto(members);
        if id.is_multiple_of(20) {
            continue; // withdrawn
        }
        let r = http
            .post(format!("{base}/api/v1/sessions"))
            .json(&serde_json::json!({"email": format!("seed-{id}@example.com"), "password": password}))
            .send()
            .await?;
        anyhow::ensure!(
            r.status().as_u16() == 201,
            "log-in of seed-{id}: {}",
            r.status()
        );
        let v: serde_json::Value = r.json().await?;
        println!("{}", v["token"].as_str().unwrap_or_default());
        printed += 1;
    }
    Ok(())
}

/// The baseline on SQLite: the same point reads (and batches of 100) as plain sqlx
/// queries on the database file, `concurrency` at once.
pub async fn sqlite_reads(
    url: &str,
    members: u64,
    concurrency: usize,
    seconds: u64,
) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(concurrency.clamp(1, 16) as u32)
        .connect(url)
        .await?;
    for batch in [false, true] {
        let rec = Arc::new(Recorder::default());
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for t in 0..concurrency.max(1) {
            let (pool, rec) = (pool.clone(), Arc::clone(&rec));
            let mut draw = Draw::new(t as u64 * 0x9e37_79b9 + 11);
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let started = Instant::now();
                    let ok = if batch {
                        let ids: Vec<String> = (0..100)
                            .map(|_| draw.upto(id_space(members)).to_string())
                            .collect();
                        sqlx::query(
                            "SELECT id, email, password_hash, nickname, phone_number, profile_image_url, created_at, updated_at, deleted_at \
                             FROM members WHERE deleted_at IS NULL AND id IN (SELECT value FROM json_each($1)) ORDER BY id",
                        )
                        .bind(format!("[{}]", ids.join(",")))
                        .fetch_all(&pool)
                        .await
                        .is_ok()
                    } else {
                        sqlx::query(
                            "SELECT id, email, password_hash, nickname, phone_number, profile_image_url, created_at, updated_at, deleted_at \
                             FROM members WHERE id = $1",
                        )
                        .bind(draw.upto(id_space(members)) as i64)
                        .fetch_all(&pool)
                        .await
                        .is_ok()
                    };
                    rec.record(started.elapsed(), ok);
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
        rec.print(
            if batch {
                "plain SQLite read of 100 rows"
            } else {
                "plain SQLite point read"
            },
            seconds,
        );
    }
    Ok(())
}
