//! The stdio bridge: a stdio MCP server behind Streamable HTTP. Each MCP session is one
//! process, started by `initialize` and ended by DELETE, by idleness, or by its own exit.
//! A POST's requests are written to the process's stdin and answered with the responses
//! bearing their ids; what the process sends on its own (notifications, requests to the
//! client) goes to the session's GET stream when one is open.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpResponse, web::Bytes};
use serde_json::{Value, json};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::process::ChildStdin;
use tokio::sync::{Notify, mpsc, oneshot};

use self::answers::{Answer, Answered, id_key, route};
use super::process::{Launch, OutputLimit, describe_exit, read_line_capped};
use crate::domain;

mod answers;

/// The largest message a stdio server may write (one line).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
const SESSION_HEADER: &str = "mcp-session-id";
/// The most a session's GET stream may have waiting for its reader.
const MAX_QUEUED: usize = 2 * MAX_MESSAGE;

pub struct StdioPool {
    launch: Launch,
    max_sessions: usize,
    pub idle: Duration,
    /// How long a request may wait for its response.
    answer_timeout: Duration,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Bytes of its sessions' answers held for their requests (see [`answers::MAX_HELD`]).
    held: Arc<AtomicUsize>,
    /// Set (under the sessions' lock) once the pool is shut down: no session starts after.
    closed: AtomicBool,
}

struct Session {
    id: String,
    stdin: tokio::sync::Mutex<ChildStdin>,
    pending: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    /// Its pool's budget of held answers.
    held: Arc<AtomicUsize>,
    /// The open GET stream, and the bytes queued for it.
    events: Mutex<Option<(mpsc::Sender<Bytes>, Arc<AtomicUsize>)>>,
    last_used_ms: AtomicI64,
    busy: AtomicUsize,
    end: Notify,
    ended: AtomicBool,
}

impl Session {
    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Answer>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn send(&self, msg: &Value) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut stdin = self.stdin.lock().await;
        stdin.write_all(&line).await?;
        stdin.flush().await
    }
}

/// A request in progress on a session (the count drops when it ends, even if abandoned).
struct Busy<'a>(&'a Session);

impl<'a> Busy<'a> {
    fn enter(session: &'a Session) -> Self {
        session.busy.fetch_add(1, Relaxed);
        Self(session)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Relaxed);
    }
}

/// A request naming a session that is not (or no longer) one of the pool's.
struct NoSession;

impl From<NoSession> for HttpResponse {
    fn from(_: NoSession) -> Self {
        rpc_error(StatusCode::NOT_FOUND, None, -32001, "session not found")
    }
}

/// The ids a request waits answers for; removed from the pending map when it ends.
struct Awaiting<'a> {
    session: &'a Session,
    keys: Vec<String>,
}

impl Drop for Awaiting<'_> {
    fn drop(&mut self) {
        if self.keys.is_empty() {
            return;
        }
        let mut pending = self.session.lock_pending();
        for k in &self.keys {
            pending.remove(k);
        }
    }
}

fn rpc_error(status: StatusCode, id: Option<&Value>, code: i64, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({
        "jsonrpc": "2.0", "id": id.cloned().unwrap_or(Value::Null),
        "error": { "code": code, "message": message }
    }))
}

impl StdioPool {
    pub fn new(
        launch: Launch,
        max_sessions: usize,
        idle: Duration,
        answer_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            launch,
            max_sessions,
            idle,
            answer_timeout,
            sessions: Mutex::new(HashMap::new()),
            held: Arc::new(AtomicUsize::new(0)),
            closed: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last lines its processes printed, oldest first (see [`Launch::last_output`]).
    pub async fn launch_output(&self) -> Vec<String> {
        self.launch.last_output().await
    }

    pub fn session_count(&self) -> usize {
        self.lock().len()
    }

    /// Starts a process and its reader; the session is not yet registered.
    fn start(self: &Arc<Self>) -> Result<Arc<Session>, String> {
        let mut child = self
            .launch
            .spawn(None, true)
            .map_err(|e| format!("could not be started: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.child.stdin.take(), child.child.stdout.take())
        else {
            return Err("its pipes could not be opened".into());
        };
        let session = Arc::new(Session {
            id: crate::crypto::hex(&crate::domain::random_bytes::<16>()),
            stdin: tokio::sync::Mutex::new(stdin),
            pending: Mutex::new(HashMap::new()),
            held: self.held.clone(),
            events: Mutex::new(None),
            last_used_ms: AtomicI64::new(domain::now_ms()),
            busy: AtomicUsize::new(0),
            end: Notify::new(),
            ended: AtomicBool::new(false),
        });
        let pid = child.pid();
        self.launch.log(
            "info",
            format!("stdio process {pid} started for a new MCP session"),
        );
        // Reads the process's messages and routes them.
        let reader = {
            let session = session.clone();
            let launch = self.launch.clone();
            async move {
                let mut r = BufReader::with_capacity(64 * 1024, stdout);
                let mut line = Vec::new();
                let mut junk = OutputLimit::new(launch.lines_per_second);
                loop {
                    line.clear();
                    match read_line_capped(&mut r, &mut line, MAX_MESSAGE + 1).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    if line.len() > MAX_MESSAGE {
                        launch.log("error", format!("stdio process wrote a message over {MAX_MESSAGE} bytes; session ended"));
                        break;
                    }
                    route(&session, &launch, &line, &mut junk);
                }
            }
        };
        let pool = self.clone();
        let s = session.clone();
        self.launch.rt.clone().spawn(async move {
            let ended = tokio::select! {
                () = reader => {
                    // Output closed: the process is ending (or must).
                    match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
                        Ok(status) => describe_exit(status),
                        Err(_) => { child.terminate().await; "closed its output and was stopped".into() }
                    }
                }
                () = s.end.notified() => {
                    child.terminate().await;
                    "was stopped".into()
                }
            };
            s.ended.store(true, Relaxed);
            pool.lock().remove(&s.id);
            s.lock_pending().clear();
            s.events.lock().unwrap_or_else(|p| p.into_inner()).take();
            let level = if ended.starts_with("was stopped") || ended.contains("status 0") {
                "info"
            } else {
                "warn"
            };
            pool.launch
                .log(level, format!("stdio process {pid} {ended}"));
        });
        Ok(session)
    }

    /// Sends requests and waits for their responses.
    async fn exchange(
        &self,
        session: &Session,
        messages: &[Value],
    ) -> Result<Vec<Answer>, (StatusCode, &'static str)> {
        let mut waits = Vec::new();
        // Whatever ends this request, its ids leave the pending map (a timed-out request's
        // answer would otherwise be waited for forever).
        let mut awaiting = Awaiting {
            session,
            keys: Vec::new(),
        };
        for m in messages {
            if m.get("method").is_some()
                && let Some(id) = m.get("id")
            {
                let (tx, rx) = oneshot::channel();
                let key = id_key(id);
                session.lock_pending().insert(key.clone(), tx);
                awaiting.keys.push(key);
                waits.push(rx);
            }
        }
        for m in messages {
            // A process that stops reading its input would hold the write (and the session)
            // forever: the same deadline as for the answers, then the session ends.
            match tokio::time::timeout(self.answer_timeout, session.send(m)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return Err((StatusCode::BAD_GATEWAY, "the MCP server process has ended"));
                }
                Err(_) => {
                    session.end.notify_one();
                    return Err((
                        StatusCode::GATEWAY_TIMEOUT,
                        "the MCP server stopped reading its input; the session was ended",
                    ));
                }
            }
        }
        let mut answers = Vec::with_capacity(waits.len());
        for rx in waits {
            match tokio::time::timeout(self.answer_timeout, rx).await {
                Ok(Ok(v)) => answers.push(v),
                Ok(Err(_)) => {
                    return Err((
                        StatusCode::BAD_GATEWAY,
                        "the MCP server process ended before answering",
                    ));
                }
                Err(_) => {
                    return Err((
                        StatusCode::GATEWAY_TIMEOUT,
                        "the MCP server did not answer in time",
                    ));
                }
            }
        }
        Ok(answers)
    }

    /// One Streamable HTTP request.
    pub async fn handle(
        self: &Arc<Self>,
        method: &Method,
        session_id: Option<&str>,
        body: &Bytes,
    ) -> HttpResponse {
        let Ok(session) = self.session(session_id) else {
            return NoSession.into();
        };
        match *method {
            Method::DELETE => match session {
                Some(s) => {
                    s.end.notify_one();
                    self.lock().remove(&s.id);
                    HttpResponse::Ok().finish()
                }
                None => rpc_error(
                    StatusCode::BAD_REQUEST,
                    None,
                    -32600,
                    "Mcp-Session-Id header required",
                ),
            },
            Method::GET => match session {
                Some(s) => {
                    let (tx, rx) = mpsc::channel::<Bytes>(256);
                    let queued = Arc::new(AtomicUsize::new(0));
                    *s.events.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some((tx, queued.clone()));
                    let stream = futures_util::stream::unfold(rx, move |mut rx| {
                        let queued = queued.clone();
                        async move {
                            let b = rx.recv().await?;
                            queued.fetch_sub(b.len(), Relaxed);
                            Some((Ok::<_, actix_web::Error>(b), rx))
                        }
                    });
                    HttpResponse::Ok()
                        .content_type("text/event-stream")
                        .streaming(stream)
                }
                None => rpc_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    None,
                    -32600,
                    "GET needs an Mcp-Session-Id",
                ),
            },
            Method::POST => match self.post(session, body).await {
                Ok(answered) => answered.into_response(self.answer_timeout),
                Err(refused) => refused,
            },
            _ => rpc_error(
                StatusCode::METHOD_NOT_ALLOWED,
                None,
                -32600,
                "method not allowed",
            ),
        }
    }

    /// How long a client may take before it starts reading an answer (see
    /// [`Answered::into_response`]).
    pub fn patience(&self) -> Duration {
        self.answer_timeout
    }

    /// A POST (see [`Self::post`]), answered: its body can be read before it is sent.
    pub async fn handle_post(
        self: &Arc<Self>,
        session_id: Option<&str>,
        body: &Bytes,
    ) -> Result<Answered, HttpResponse> {
        let session = self.session(session_id).map_err(HttpResponse::from)?;
        self.post(session, body).await
    }

    /// The session a request names, marked used; `Err` when it is not one of this pool's.
    fn session(&self, id: Option<&str>) -> Result<Option<Arc<Session>>, NoSession> {
        let Some(id) = id else {
            return Ok(None);
        };
        let session = self.lock().get(id).cloned().ok_or(NoSession)?;
        session.last_used_ms.store(domain::now_ms(), Relaxed);
        Ok(Some(session))
    }

    /// A POST: its messages sent to the session's process (a new one for `initialize`
    /// without a session), answered with the responses.
    async fn post(
        self: &Arc<Self>,
        session: Option<Arc<Session>>,
        body: &Bytes,
    ) -> Result<Answered, HttpResponse> {
        let Ok(parsed) = serde_json::from_slice::<Value>(body) else {
            return Err(rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                -32700,
                "parse error",
            ));
        };
        let (messages, batch) = match parsed {
            Value::Array(items) => (items, true),
            one => (vec![one], false),
        };
        let first_id = messages.iter().find_map(|m| m.get("id")).cloned();
        let (session, new) = match session {
            Some(s) => (s, false),
            None => match self.open(&messages) {
                Ok(s) => (s, true),
                Err((status, code, message)) => {
                    return Err(rpc_error(status, first_id.as_ref(), code, message));
                }
            },
        };
        let result = {
            // Counted as busy (not reaped) while this request runs, however it ends.
            let _busy = Busy::enter(&session);
            self.exchange(&session, &messages).await
        };
        session.last_used_ms.store(domain::now_ms(), Relaxed);
        let answers = match result {
            Ok(a) => a,
            Err((status, message)) => {
                if new {
                    session.end.notify_one();
                    self.lock().remove(&session.id);
                }
                return Err(rpc_error(status, first_id.as_ref(), -32004, message));
            }
        };
        Ok(Answered::new(
            answers,
            batch,
            new.then(|| (SESSION_HEADER, session.id.clone())),
        ))
    }

    /// A new session for a POST without one: only an `initialize` starts one, within the
    /// pool's limit and while it is open. Refused: the answer's status, error code and message.
    fn open(
        self: &Arc<Self>,
        messages: &[Value],
    ) -> Result<Arc<Session>, (StatusCode, i64, &'static str)> {
        let initialize = messages
            .iter()
            .any(|m| m.get("method").and_then(Value::as_str) == Some("initialize"));
        if !initialize {
            return Err((
                StatusCode::BAD_REQUEST,
                -32600,
                "Mcp-Session-Id header required (start with initialize)",
            ));
        }
        // Counted and registered under one lock: concurrent initializes cannot pass the
        // limit together.
        let mut sessions = self.lock();
        if self.closed.load(Relaxed) {
            // Replaced or removed while this request was on its way.
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                -32002,
                "this MCP server was replaced or removed; retry",
            ));
        }
        if sessions.len() >= self.max_sessions {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                -32005,
                "this MCP server has as many sessions as it may run; retry later",
            ));
        }
        match self.start() {
            Ok(s) => {
                sessions.insert(s.id.clone(), s.clone());
                Ok(s)
            }
            Err(e) => {
                self.launch.log("error", format!("stdio process {e}"));
                Err((
                    StatusCode::BAD_GATEWAY,
                    -32004,
                    "the MCP server could not be started",
                ))
            }
        }
    }

    /// Ends sessions idle longer than `idle`; returns how many processes are running.
    pub fn reap(&self) -> usize {
        let now = domain::now_ms();
        let idle_ms = self.idle.as_millis() as i64;
        let mut sessions = self.lock();
        sessions.retain(|_, s| {
            let keep = s.busy.load(Relaxed) > 0 || now - s.last_used_ms.load(Relaxed) < idle_ms;
            if !keep {
                self.launch
                    .log("info", "stdio MCP session ended after being idle".into());
                s.end.notify_one();
            }
            keep
        });
        sessions.len()
    }

    /// Ends every session.
    pub fn shutdown(&self) {
        let mut sessions = self.lock();
        self.closed.store(true, Relaxed);
        for (_, s) in sessions.drain() {
            s.end.notify_one();
        }
    }

    /// The health check: a process that answers `initialize` and `ping`, then ends.
    pub async fn probe(self: &Arc<Self>, timeout: Duration) -> Result<(), String> {
        let session = self.start().map_err(|e| format!("the command {e}"))?;
        let check = async {
            let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "ezforge-health-check", "version": env!("CARGO_PKG_VERSION")}}});
            let answers = self
                .exchange(&session, &[init])
                .await
                .map_err(|(_, m)| format!("initialize failed: {m}"))?;
            if let Some(e) = answers
                .first()
                .and_then(|a| a.value().get("error").cloned())
            {
                return Err(format!("initialize answered an error: {e}"));
            }
            let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
            let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
            let answers = self
                .exchange(&session, &[note, ping])
                .await
                .map_err(|(_, m)| format!("ping failed: {m}"))?;
            match answers.first() {
                Some(a) if a.value().get("result").is_some() => Ok(()),
                _ => Err("ping was not answered with a result".into()),
            }
        };
        let out = match tokio::time::timeout(timeout, check).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "no answer to initialize and ping within {}",
                humantime::format_duration(timeout)
            )),
        };
        session.end.notify_one();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request that was on its way while its pool was shut down (the server redeployed or
    /// deleted) must not start a process nobody will stop.
    #[tokio::test]
    async fn a_shut_down_pool_starts_no_session() {
        let dir = tempfile::tempdir().expect("tmp");
        let missing = dir.path().join("no-such-command").display().to_string();
        let launch = super::super::process::tests::launch(dir.path(), &[&missing]);
        let pool = StdioPool::new(launch, 4, Duration::from_secs(60), Duration::from_secs(5));
        pool.shutdown();
        let init =
            Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#);
        let res = pool.handle(&Method::POST, None, &init).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(pool.session_count(), 0);
    }
}
