//! Prometheus metrics at `/metrics` (off by default): per-server request counters and latency
//! histograms from the front door, supervised processes, and the usual `process_*` metrics.
//! Served on the main listener or on `metrics.listen`, behind `metrics.bearer_token` if set.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use subtle::ConstantTimeEq;

use crate::config::Config;
use crate::deploy::TargetKind;
use crate::deploy::process::ProcState;
use crate::services::gateway::Gateway;
use crate::services::gateway::counters::{BUCKETS, ServerCounters};
use crate::services::gateway::registry::ServerEntry;
use crate::services::revocations::ReuseCounters;

/// When the process started serving (for `ezforge_uptime_seconds`).
pub struct Started(pub std::time::Instant);

/// What the metrics page reads.
pub struct Sources {
    pub gateway: web::Data<Gateway>,
    pub reuse: web::Data<ReuseCounters>,
    pub started: web::Data<Started>,
}

pub async fn handler(
    req: HttpRequest,
    config: web::Data<Config>,
    gateway: web::Data<Gateway>,
    reuse: web::Data<ReuseCounters>,
    started: web::Data<Started>,
) -> HttpResponse {
    if let Some(token) = &config.metrics.bearer_token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        // An empty token is refused at load; were one here, nothing would match it.
        let expected = token.expose().as_bytes();
        if expected.is_empty() || !bool::from(given.as_bytes().ct_eq(expected)) {
            return HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
                .body("a valid bearer token is required\n");
        }
    }
    // `render` reads /proc: file I/O, so off the worker.
    let sources = Sources {
        gateway,
        reuse,
        started,
    };
    match web::block(move || render(&sources)).await {
        Ok(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(text),
        Err(_) => HttpResponse::ServiceUnavailable().body("metrics could not be gathered\n"),
    }
}

/// A label value, escaped as the text format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The whole page: one function per metric family, in this order.
pub fn render(sources: &Sources) -> String {
    let mut out = String::with_capacity(4096);
    let mut servers = sources.gateway.registry.all();
    servers.sort_by(|a, b| a.slug.cmp(&b.slug));
    build_info(&mut out);
    server_count(&mut out, servers.len());
    requests_by_class(&mut out, &servers);
    challenges(&mut out, &servers);
    request_errors(&mut out, &servers);
    request_durations(&mut out, &servers);
    auth_failures(&mut out, &servers);
    refresh_token_reuse(&mut out, &sources.reuse);
    bytes(&mut out, &servers);
    supervised_processes(&mut out, &servers);
    exposed_processes(&mut out, &servers);
    dropped_log_lines(&mut out);
    process_metrics(&mut out, sources.started.0);
    out
}

/// A family's `# HELP` and `# TYPE` lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn build_info(out: &mut String) {
    family(
        out,
        "ezforge_build_info",
        "gauge",
        "Version of this ezforge.",
    );
    let _ = writeln!(
        out,
        "ezforge_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
}

fn server_count(out: &mut String, n: usize) {
    family(out, "ezforge_servers", "gauge", "MCP servers registered.");
    let _ = writeln!(out, "ezforge_servers {n}");
}

fn requests_by_class(out: &mut String, servers: &[Arc<ServerEntry>]) {
    per_server_counter(
        out,
        servers,
        "ezforge_requests_total",
        "Requests through the front door, by server and status class (4xx includes the challenges of ezforge_challenges_total).",
        "class",
        |c| {
            let by_class = |i: usize| c.by_class[i].load(Relaxed);
            vec![
                ("1xx", by_class(0)),
                ("2xx", by_class(1)),
                ("3xx", by_class(2)),
                ("4xx", by_class(3)),
                ("5xx", by_class(4)),
            ]
        },
    );
}

fn challenges(out: &mut String, servers: &[Arc<ServerEntry>]) {
    per_server_counter(
        out,
        servers,
        "ezforge_challenges_total",
        "Requests answered 401 (a token is needed, or was refused) or 403 (more scope is needed, or the origin is refused): the normal OAuth flow, not errors; also in class 4xx.",
        "status",
        |c| {
            vec![
                ("401", c.challenges[0].load(Relaxed)),
                ("403", c.challenges[1].load(Relaxed)),
            ]
        },
    );
}

fn request_errors(out: &mut String, servers: &[Arc<ServerEntry>]) {
    per_server_counter(
        out,
        servers,
        "ezforge_request_errors_total",
        "Requests that failed, by server and status class: 5xx, and 4xx other than challenges (401, 403).",
        "class",
        |c| {
            vec![
                ("4xx", c.client_errors.load(Relaxed)),
                ("5xx", c.by_class[4].load(Relaxed)),
            ]
        },
    );
}

/// A histogram per server that has served a request.
fn request_durations(out: &mut String, servers: &[Arc<ServerEntry>]) {
    family(
        out,
        "ezforge_request_duration_seconds",
        "histogram",
        "Time the front door took per request.",
    );
    for s in servers {
        let count = s.counters.requests();
        if count == 0 {
            continue;
        }
        let slug = label(&s.slug);
        let mut cumulative = 0;
        for (i, le) in BUCKETS.iter().enumerate() {
            cumulative += s.counters.buckets[i].load(Relaxed);
            let _ = writeln!(
                out,
                "ezforge_request_duration_seconds_bucket{{server=\"{slug}\",le=\"{le}\"}} {cumulative}"
            );
        }
        cumulative += s.counters.buckets[BUCKETS.len()].load(Relaxed);
        let _ = writeln!(
            out,
            "ezforge_request_duration_seconds_bucket{{server=\"{slug}\",le=\"+Inf\"}} {cumulative}"
        );
        let sum = s.counters.latency_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "ezforge_request_duration_seconds_sum{{server=\"{slug}\"}} {sum}"
        );
        let _ = writeln!(
            out,
            "ezforge_request_duration_seconds_count{{server=\"{slug}\"}} {cumulative}"
        );
    }
}

fn auth_failures(out: &mut String, servers: &[Arc<ServerEntry>]) {
    family(
        out,
        "ezforge_auth_failures_total",
        "counter",
        "Tokens refused at the front door, by reason.",
    );
    for s in servers {
        if let Ok(m) = s.counters.auth_failures.lock() {
            let mut reasons: Vec<_> = m.iter().collect();
            reasons.sort();
            for (reason, n) in reasons {
                let _ = writeln!(
                    out,
                    "ezforge_auth_failures_total{{server=\"{}\",reason=\"{}\"}} {n}",
                    label(&s.slug),
                    label(reason)
                );
            }
        }
    }
}

fn refresh_token_reuse(out: &mut String, reuse: &ReuseCounters) {
    family(
        out,
        "ezforge_refresh_token_reuse_total",
        "counter",
        "Refresh tokens presented again after rotation: answered within the grace, or the grant revoked.",
    );
    for (outcome, n) in [("grace", &reuse.grace), ("revoked", &reuse.revoked)] {
        let _ = writeln!(
            out,
            "ezforge_refresh_token_reuse_total{{outcome=\"{outcome}\"}} {}",
            n.load(Relaxed)
        );
    }
}

fn bytes(out: &mut String, servers: &[Arc<ServerEntry>]) {
    family(
        out,
        "ezforge_bytes_total",
        "counter",
        "Request and response bytes through the front door.",
    );
    for s in servers {
        let _ = writeln!(
            out,
            "ezforge_bytes_total{{server=\"{}\"}} {}",
            label(&s.slug),
            s.counters.bytes.load(Relaxed)
        );
    }
}

/// Per server that runs processes: a supervised process running (0 or 1), or a stdio
/// bridge's sessions.
fn supervised_processes(out: &mut String, servers: &[Arc<ServerEntry>]) {
    family(
        out,
        "ezforge_supervised_processes",
        "gauge",
        "Processes ezforge runs for MCP servers.",
    );
    for s in servers {
        let running = match s.target.as_deref().map(|t| &t.kind) {
            Some(TargetKind::Process(p)) => {
                usize::from(matches!(p.state(), ProcState::Running { .. }))
            }
            Some(TargetKind::Stdio(p)) => p.session_count(),
            _ => continue,
        };
        let _ = writeln!(
            out,
            "ezforge_supervised_processes{{server=\"{}\"}} {running}",
            label(&s.slug)
        );
    }
}

fn exposed_processes(out: &mut String, servers: &[Arc<ServerEntry>]) {
    family(
        out,
        "ezforge_process_exposed",
        "gauge",
        "Supervised processes listening beyond loopback (reachable without the front door).",
    );
    for s in servers {
        if let Some(TargetKind::Process(p)) = s.target.as_deref().map(|t| &t.kind) {
            let _ = writeln!(
                out,
                "ezforge_process_exposed{{server=\"{}\"}} {}",
                label(&s.slug),
                u8::from(!p.exposed().is_empty())
            );
        }
    }
}

fn dropped_log_lines(out: &mut String) {
    family(
        out,
        "ezforge_log_lines_dropped_total",
        "counter",
        "Log lines not written: stderr's reader too slow or gone.",
    );
    let _ = writeln!(
        out,
        "ezforge_log_lines_dropped_total {}",
        crate::telemetry::dropped_lines()
    );
}

/// A counter with a series per server and value of `label`; series still at zero are left out.
fn per_server_counter(
    out: &mut String,
    servers: &[Arc<ServerEntry>],
    name: &str,
    help: &str,
    label_name: &str,
    values: impl Fn(&ServerCounters) -> Vec<(&'static str, u64)>,
) {
    family(out, name, "counter", help);
    for s in servers {
        for (value, n) in values(&s.counters) {
            if n > 0 {
                let _ = writeln!(
                    out,
                    "{name}{{server=\"{}\",{label_name}=\"{value}\"}} {n}",
                    label(&s.slug)
                );
            }
        }
    }
}

/// `process_*` from /proc (Linux); nothing elsewhere.
fn process_metrics(out: &mut String, started: std::time::Instant) {
    let uptime = started.elapsed().as_secs_f64();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let _ = writeln!(
        out,
        "# HELP process_start_time_seconds Start time of the process since the Unix epoch."
    );
    let _ = writeln!(out, "# TYPE process_start_time_seconds gauge");
    let _ = writeln!(out, "process_start_time_seconds {:.3}", now - uptime);
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
        && let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r)
    {
        // Fields after the command name; utime and stime are the 12th and 13th of them.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
        if let (Some(u), Some(s)) = (ticks(11), ticks(12)) {
            // USER_HZ is 100 on every Linux architecture ezforge builds for.
            let _ = writeln!(
                out,
                "# HELP process_cpu_seconds_total User and system CPU time spent."
            );
            let _ = writeln!(out, "# TYPE process_cpu_seconds_total counter");
            let _ = writeln!(out, "process_cpu_seconds_total {:.2}", (u + s) / 100.0);
        }
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let kb = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        if let Some(rss) = kb("VmRSS:") {
            let _ = writeln!(
                out,
                "# HELP process_resident_memory_bytes Resident memory size in bytes."
            );
            let _ = writeln!(out, "# TYPE process_resident_memory_bytes gauge");
            let _ = writeln!(out, "process_resident_memory_bytes {}", rss * 1024);
        }
        if let Some(vm) = kb("VmSize:") {
            let _ = writeln!(
                out,
                "# HELP process_virtual_memory_bytes Virtual memory size in bytes."
            );
            let _ = writeln!(out, "# TYPE process_virtual_memory_bytes gauge");
            let _ = writeln!(out, "process_virtual_memory_bytes {}", vm * 1024);
        }
        if let Some(threads) = kb("Threads:") {
            let _ = writeln!(out, "# HELP process_threads Threads in the process.");
            let _ = writeln!(out, "# TYPE process_threads gauge");
            let _ = writeln!(out, "process_threads {threads}");
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let _ = writeln!(out, "# HELP process_open_fds Open file descriptors.");
        let _ = writeln!(out, "# TYPE process_open_fds gauge");
        let _ = writeln!(out, "process_open_fds {}", fds.count());
    }
}
