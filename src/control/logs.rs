//! A server's logs: the front door's access log, process output and deployment events,
//! newest first, and a live tail as server-sent events.

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::ControlState;
use super::auth::{Principal, server_access};
use crate::deploy::Deployer;
use crate::domain::scopes::ApiScope;
use crate::error::ApiError;
use crate::services::gateway::Gateway;
use crate::shared::logs::{entry_json, level_rank};
use crate::store::{self, Store, server_log::LogQuery};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsParams {
    level: Option<String>,
    search: Option<String>,
    limit: Option<i64>,
    before: Option<String>,
}

fn min_level(level: Option<&str>) -> Result<i64, ApiError> {
    match level {
        None | Some("") => Ok(0),
        Some(l) => level_rank(l).ok_or_else(|| {
            ApiError::BadRequest("level: must be debug, info, warn or error".into())
        }),
    }
}

fn search(s: Option<String>) -> Result<Option<String>, ApiError> {
    match s {
        Some(s) if s.len() > 200 => Err(ApiError::BadRequest(
            "search: at most 200 characters".into(),
        )),
        Some(s) if s.is_empty() => Ok(None),
        other => Ok(other),
    }
}

fn cursor(at_ms: i64, key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{at_ms}:{key}"))
}

fn parse_cursor(c: &str) -> Option<(i64, String)> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(c).ok()?).ok()?;
    let (at, key) = text.split_once(':')?;
    Some((at.parse().ok()?, key.to_owned()))
}

pub async fn list(
    store: web::Data<Store>,
    control: web::Data<ControlState>,
    gateway: web::Data<Gateway>,
    deployer: web::Data<Deployer>,
    who: Principal,
    path: web::Path<String>,
    q: web::Query<LogsParams>,
) -> Result<HttpResponse, ApiError> {
    who.require(ApiScope::LogsRead)
        .or_else(|_| who.require(ApiScope::ServersRead))?;
    let q = q.into_inner();
    let limit = match q.limit {
        None => 50,
        Some(n @ 1..=200) => n as u32,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "limit: must be between 1 and 200".into(),
            ));
        }
    };
    let before = match q.before.as_deref() {
        None | Some("") => None,
        Some(c) => Some(parse_cursor(c).ok_or_else(|| {
            ApiError::BadRequest("before: not a cursor this API returned".into())
        })?),
    };
    let min_level = min_level(q.level.as_deref())?;
    let search = search(q.search)?;
    let key = path.into_inner();
    // What just happened (a deployment that failed a moment ago) is in the list.
    futures_util::future::join(deployer.hub.queue().flush(), gateway.log.flush()).await;
    let _turn = control
        .log_scans
        .acquire()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let mut rows = store
        .run(move |c| {
            let (server, _) = server_access(c, &who, &key)?;
            let query = LogQuery {
                server_id: server.id,
                min_level,
                search,
                before,
                limit,
            };
            Ok::<_, ApiError>(store::server_log::query(c, &query)?)
        })
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = if more {
        rows.last().map(|e| cursor(e.at_ms, &e.key))
    } else {
        None
    };
    let items: Vec<_> = rows.iter().map(entry_json).collect();
    Ok(HttpResponse::Ok().json(json!({
        "data": items,
        "meta": { "cursor": next, "hasMore": more },
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    level: Option<String>,
    search: Option<String>,
}

const KEEPALIVE: Duration = Duration::from_secs(15);

pub async fn stream(
    store: web::Data<Store>,
    control: web::Data<ControlState>,
    deployer: web::Data<Deployer>,
    who: Principal,
    path: web::Path<String>,
    q: web::Query<StreamParams>,
) -> Result<HttpResponse, ApiError> {
    who.require(ApiScope::LogsRead)?;
    let q = q.into_inner();
    let min_level = min_level(q.level.as_deref())?;
    let needle = search(q.search)?.map(|s| s.to_ascii_lowercase());
    let key = path.into_inner();
    let caller = who.clone();
    let (server, _) = store.run(move |c| server_access(c, &caller, &key)).await?;
    // Access taken away since the caller was authenticated is noticed by a first check.
    let mut access = control.watch_access();
    access.mark_changed();
    let now = Instant::now();
    let tail = Tail {
        rx: deployer.hub.subscribe(),
        access,
        store: store.clone(),
        who,
        server_id: server.id,
        min_level,
        needle,
        next_check: now + ACCESS_CHECK_EVERY,
        last_check: None,
        last_sent: now,
    };
    let entries = futures_util::stream::unfold(tail, |mut t| async move {
        let frame = t.next_frame().await?;
        Some((Ok::<_, actix_web::Error>(frame), t))
    });
    // An opening comment, so clients see the stream is live before the first entry.
    let opening = futures_util::stream::once(async {
        Ok::<_, actix_web::Error>(Bytes::from_static(b": tailing\n\n"))
    });
    Ok(HttpResponse::build(StatusCode::OK)
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(opening.chain(entries)))
}

/// One caller's tail of one server's log.
struct Tail {
    rx: tokio::sync::broadcast::Receiver<std::sync::Arc<crate::shared::logs::LiveEntry>>,
    access: tokio::sync::watch::Receiver<()>,
    store: web::Data<Store>,
    who: Principal,
    server_id: String,
    min_level: i64,
    needle: Option<String>,
    /// When the caller's access is next checked, whatever the traffic.
    next_check: Instant,
    last_check: Option<Instant>,
    /// When a frame last went out (a keepalive follows `KEEPALIVE` after it).
    last_sent: Instant,
}

/// The caller's access is checked this often, so that an expired session or key is noticed.
const ACCESS_CHECK_EVERY: Duration = KEEPALIVE;
/// Changes that may take access away are checked at most this often per stream.
const ACCESS_CHECK_MIN_GAP: Duration = Duration::from_secs(1);

impl Tail {
    /// The next frame to send; `None` ends the stream (the log closed, or the caller may no
    /// longer read it).
    async fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            let wake = self.next_check.min(self.last_sent + KEEPALIVE);
            let next = tokio::select! {
                next = self.rx.recv() => next,
                changed = self.access.changed() => {
                    changed.ok()?;
                    // Soon, but not more than once a second whatever the rate of changes.
                    let soonest = self
                        .last_check
                        .map_or_else(Instant::now, |t| t + ACCESS_CHECK_MIN_GAP);
                    self.next_check = self.next_check.min(soonest);
                    continue;
                }
                () = tokio::time::sleep_until(wake.into()) => {
                    let now = Instant::now();
                    if now >= self.next_check {
                        self.check().await?;
                    }
                    if now >= self.last_sent + KEEPALIVE {
                        self.last_sent = now;
                        return Some(Bytes::from_static(b": keepalive\n\n"));
                    }
                    continue;
                }
            };
            let frame = match next {
                Err(RecvError::Closed) => return None,
                Err(RecvError::Lagged(n)) => {
                    Bytes::from(format!(": {n} entries skipped (the tail fell behind)\n\n"))
                }
                Ok(e) => {
                    let wanted = e.server_id == self.server_id
                        && e.rank >= self.min_level
                        && self
                            .needle
                            .as_ref()
                            .is_none_or(|n| e.message.to_ascii_lowercase().contains(n));
                    if !wanted {
                        continue;
                    }
                    Bytes::from(format!("event: log\ndata: {}\n\n", e.json))
                }
            };
            self.last_sent = Instant::now();
            return Some(frame);
        }
    }

    /// Checks that the caller's session or key is still live and may still read this server's
    /// log (`None` when not). A busy database is asked again a second later.
    async fn check(&mut self) -> Option<()> {
        let who = self.who.clone();
        let server_id = self.server_id.clone();
        let now = crate::domain::now();
        let allowed = self
            .store
            .run(move |c| {
                let Some(who) = who.reload(c, now)? else {
                    return Ok(false);
                };
                if who.require(ApiScope::LogsRead).is_err() {
                    return Ok(false);
                }
                match server_access(c, &who, &server_id) {
                    Ok(_) => Ok(true),
                    Err(ApiError::NotFound(_) | ApiError::Forbidden { .. }) => Ok(false),
                    Err(e) => Err(e),
                }
            })
            .await;
        let at = Instant::now();
        self.last_check = Some(at);
        match allowed {
            Ok(true) => {
                self.next_check = at + ACCESS_CHECK_EVERY;
                Some(())
            }
            Ok(false) => None,
            Err(_) => {
                self.next_check = at + ACCESS_CHECK_MIN_GAP;
                Some(())
            }
        }
    }
}
