//! Issue 17: deployed programs run confined. Real programs (the Python fixtures, started by
//! ezforge through its sandbox) try each way out: ezforge's data, its config and keys, another
//! server's directory, writing elsewhere, signalling, binding another port, forking without
//! end, taking all memory. Each attempt fails, and the deployment itself keeps serving.
//!
//! Landlock features this kernel lacks are named in the output and not asserted.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::deploy::deployments::{deploy, eventually, fixture, poll_get, token, world_with};
use crate::helpers::{TestApp, create_server, get_as, post_as};

/// The kernel's Landlock ABI, or `None` (and a note) when there is none: then nothing here
/// can be checked.
fn landlock(test: &str) -> Option<u32> {
    match ezforge::deploy::sandbox::probe::landlock_abi() {
        Ok(abi) => Some(abi),
        Err(why) => {
            println!("SKIPPED {test}: {why}");
            None
        }
    }
}

/// `sandbox_probe.py` with `plan`, then `then` (a fixture and its arguments).
fn probe_command(plan: &Value, then: &[&str], transport: &str) -> Value {
    let mut argv = vec![
        "python3".to_owned(),
        fixture("sandbox_probe.py"),
        plan.to_string(),
    ];
    argv.extend(then.iter().map(|s| (*s).to_owned()));
    json!({ "command": argv, "transport": transport })
}

/// The probe's report, from the server's log.
async fn report(app: &TestApp, admin: &str, slug: &str) -> Value {
    poll_get(
        app,
        admin,
        &format!("/v1/servers/{slug}/logs?search=SANDBOX-PROBE&limit=5"),
        "the probe's report",
        |r| {
            let entries = r.expect(200)["data"].as_array()?.clone();
            entries.iter().find_map(|e| {
                let line = e["message"].as_str()?;
                serde_json::from_str(line.strip_prefix("SANDBOX-PROBE ")?).ok()
            })
        },
    )
    .await
}

/// A directory the operator lets deployed programs read (`deploy.sandbox.read_paths`),
/// readable by any user.
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

fn world_readable(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
}

fn pid_of(server: &Value) -> Option<u32> {
    server["data"]["process"]["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
}

#[track_caller]
fn denied(results: &Value, what: &str) {
    let r = results.as_object().expect("results");
    assert!(!r.is_empty(), "nothing was tried: {results}");
    for (target, outcome) in r {
        assert_ne!(outcome, "ok", "{what} {target} succeeded: {results}");
    }
}

#[tokio::test]
async fn a_deployed_http_server_reaches_nothing_of_ezforge_or_other_servers() {
    let Some(abi) = landlock("a_deployed_http_server_reaches_nothing…") else {
        return;
    };
    // The config file and a TLS key sit in a directory programs may read: they alone are
    // withheld, a neighbour of theirs is not.
    let etc = shared_dir();
    let config_file = etc.path().join("config.toml");
    let tls_key = etc.path().join("tls.key");
    let neighbour = etc.path().join("public.txt");
    for f in [&config_file, &tls_key, &neighbour] {
        world_readable(f, "x");
    }
    let (etc_path, cf, key) = (
        etc.path().to_path_buf(),
        config_file.clone(),
        tls_key.clone(),
    );
    let (app, admin, server) = world_with("prober", move |c| {
        c.deploy.sandbox.read_paths.push(etc_path);
        c.source_file = Some(cf);
        c.tls.key_file = Some(key);
    })
    .await;
    let data = app.data_dir.canonicalize().expect("data dir");
    let own_dir = data
        .join("servers")
        .join(server["id"].as_str().expect("id"));
    // Something of ezforge's that file permissions alone would not hide.
    let loose = data.join("loose.txt");
    world_readable(&loose, "x");

    // Another project's server, running.
    let project = server["projectId"].as_str().expect("project").to_owned();
    let victim = create_server(&app, &admin, &project, "victim").await;
    let victim_dir = data
        .join("servers")
        .join(victim["id"].as_str().expect("id"));
    let http = ["python3".to_owned(), fixture("http_mcp.py")];
    let r = deploy(
        &app,
        &admin,
        "victim",
        json!({"command": http, "transport": "http"}),
    )
    .await;
    assert_eq!(r.expect(201)["data"]["status"], "running", "{}", r.text);
    world_readable(&victim_dir.join("secret.txt"), "victim's");
    let victim_pid = pid_of(get_as(&app, &admin, "/v1/servers/victim").await.expect(200))
        .expect("the victim's pid");

    let other_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let plan = json!({
        "read": [
            data.join("master.key"), data.join("ezforge.db"), loose, data,
            victim_dir.join("secret.txt"), victim_dir, config_file, tls_key,
            "/root", "/tmp",
        ],
        "write": [
            data.join("planted"), "/tmp/escaped", etc.path().join("planted"),
            own_dir.parent().expect("servers").join("planted"),
        ],
        "link": [[data.join("master.key"), own_dir.join("key-link")]],
        "symlink": [[data.join("master.key"), own_dir.join("key-symlink")]],
        "signal": [std::process::id(), victim_pid],
        "bind": [other_port, 0],
        "prlimit": [victim_pid],
    });
    let body = probe_command(&plan, &["python3", &fixture("http_mcp.py")], "http");
    let r = deploy(&app, &admin, "prober", body).await;
    assert_eq!(r.expect(201)["data"]["status"], "running", "{}", r.text);
    let got = report(&app, &admin, "prober").await;

    denied(&got["read"], "reading");
    denied(&got["write"], "writing");
    denied(&got["link"], "linking");
    denied(&got["symlink"], "following a link to");
    if abi >= 4 {
        denied(&got["bind"], "binding");
    } else {
        println!("NOT CHECKED: binding other ports (Landlock ABI {abi} < 4)");
    }
    if abi >= 6 {
        denied(&got["signal"], "signalling");
    } else {
        println!("NOT CHECKED: signals (Landlock ABI {abi} < 6)");
    }
    // Another process's limits (seccomp): the victim's, which would stop answering.
    denied(&got["prlimit"], "lowering the limits of");
    // What it may do: read system files and those the operator shared, use its own dirs.
    let me = &got["self"];
    assert_eq!(me["cwd"], own_dir.display().to_string(), "{me}");
    assert_eq!(me["home"], own_dir.display().to_string(), "{me}");
    assert_eq!(
        me["tmpdir"],
        data.join("tmp")
            .join(server["id"].as_str().expect("id"))
            .display()
            .to_string()
    );
    assert_ne!(me["uid"], 0, "a deployed program runs as root: {me}");
    if ezforge::deploy::sandbox::probe::is_root() {
        // Each server a uid of its own.
        let victim_uid = std::fs::read_to_string(format!("/proc/{victim_pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            })
            .expect("the victim's uid");
        assert_ne!(me["uid"].as_u64(), Some(victim_uid), "{me}");
    }
    assert_ne!(me["gid"], 0, "{me}");
    assert_eq!(me["groups"], json!([]), "{me}");
    assert_eq!(me["core"], 0, "{me}");
    assert_eq!(me["nofile"], 4096, "{me}");
    assert_eq!(me["data"], 2u64 << 30, "{me}");
    // Standard input, output and error, and the descriptor listing /proc/self/fd: nothing of
    // ezforge's came along.
    assert!(
        me["fds"].as_array().expect("fds").len() <= 4,
        "inherited descriptors: {me}"
    );

    // It serves all the same, and the victim too.
    let t = token(&app, "prober", "mcp:read mcp:write mcp:execute");
    let echoed = app
        .mcp("prober")
        .bearer(&t)
        .tool("echo", json!({"text": "still here"}))
        .await
        .tool_text();
    assert!(echoed.contains("still here"), "{echoed}");
    let t = token(&app, "victim", "mcp:read mcp:write mcp:execute");
    let echoed = app
        .mcp("victim")
        .bearer(&t)
        .tool("echo", json!({"text": "unharmed"}))
        .await
        .tool_text();
    assert!(echoed.contains("unharmed"), "{echoed}");
    assert!(!neighbour.with_file_name("planted").exists());
    assert!(!Path::new("/tmp/escaped").exists());
}

#[tokio::test]
async fn a_deployed_stdio_server_is_confined_alike_and_may_listen_nowhere() {
    let Some(abi) = landlock("a_deployed_stdio_server_is_confined_alike…") else {
        return;
    };
    let (app, admin, server) = world_with("stdio-prober", |_| {}).await;
    let data = app.data_dir.canonicalize().expect("data dir");
    let own_dir = data
        .join("servers")
        .join(server["id"].as_str().expect("id"));
    let plan = json!({
        "read": [data.join("master.key"), data.join("ezforge.db")],
        "write": [data.join("planted"), "/tmp/escaped-stdio"],
        "bind": [0, 8080],
        "listen": true,
    });
    let body = probe_command(&plan, &["python3", &fixture("stdio_mcp.py")], "stdio");
    let r = deploy(&app, &admin, "stdio-prober", body).await;
    assert_eq!(r.expect(201)["data"]["status"], "running", "{}", r.text);
    let got = report(&app, &admin, "stdio-prober").await;
    denied(&got["read"], "reading");
    denied(&got["write"], "writing");
    if abi >= 4 {
        denied(&got["bind"], "listening");
    } else {
        println!("NOT CHECKED: binding (Landlock ABI {abi} < 4)");
    }
    // Nor on a port the kernel would pick (seccomp: no listen at all).
    assert_ne!(got["listen"], "ok", "{got}");
    assert_eq!(got["self"]["cwd"], own_dir.display().to_string());
    assert_ne!(got["self"]["uid"], 0);
    // Its own directory is its to write.
    std::fs::metadata(&own_dir).expect("its directory exists");
}

#[tokio::test]
async fn fork_bombs_and_memory_hogs_hit_their_limits_and_ezforge_goes_on() {
    if landlock("fork_bombs_and_memory_hogs…").is_none() {
        return;
    }
    if !ezforge::deploy::sandbox::probe::is_root() {
        // Without a user of their own or a delegated cgroup, a process limit would count
        // ezforge's own threads: not set, and a fork bomb not tried here.
        println!(
            "SKIPPED fork bomb: ezforge is not root here, so deployed programs share its user and get no process limit without a delegated cgroup"
        );
        return;
    }
    let (app, admin, _) = world_with("hog", |c| {
        c.deploy.sandbox.max_processes = 64;
        c.deploy.sandbox.memory_limit = ezforge::config::ByteSize(256 << 20);
    })
    .await;
    let plan = json!({ "fork": 10_000, "alloc": 1u64 << 30 });
    let body = probe_command(&plan, &["python3", &fixture("http_mcp.py")], "http");
    let r = deploy(&app, &admin, "hog", body).await;
    assert_eq!(r.expect(201)["data"]["status"], "running", "{}", r.text);
    let got = report(&app, &admin, "hog").await;
    let started = got["fork"]["started"].as_u64().expect("started");
    assert!(started < 64, "the fork bomb went past its limit: {got}");
    assert_eq!(got["fork"]["stopped_by"], "EAGAIN", "{got}");
    assert_eq!(got["alloc"], "MemoryError", "{got}");
    // ezforge answers, and the bomb's server still serves.
    let health = app.get("/v1/health").await;
    assert_eq!(health.status(), 200);
    let t = token(&app, "hog", "mcp:read mcp:write mcp:execute");
    let echoed = app
        .mcp("hog")
        .bearer(&t)
        .tool("echo", json!({"text": "alive"}))
        .await
        .tool_text();
    assert!(echoed.contains("alive"), "{echoed}");
    // Deleting the server ends every process it started.
    let pid = pid_of(get_as(&app, &admin, "/v1/servers/hog").await.expect(200)).expect("pid");
    let r = crate::helpers::delete_as(&app, &admin, "/v1/servers/hog").await;
    assert!(r.status < 300, "{}", r.text);
    eventually("the bomb's processes ended", || async {
        (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_process_listening_beyond_loopback_is_reported() {
    if landlock("a_process_listening_beyond_loopback…").is_none() {
        return;
    }
    let (app, admin, _) = world_with("exposed", |c| c.metrics.enabled = true).await;
    let cmd = [
        "python3".to_owned(),
        fixture("http_mcp.py"),
        "--listen-all".into(),
    ];
    let r = deploy(
        &app,
        &admin,
        "exposed",
        json!({"command": cmd, "transport": "http"}),
    )
    .await;
    assert_eq!(r.expect(201)["data"]["status"], "running", "{}", r.text);
    let server = poll_get(
        &app,
        &admin,
        "/v1/servers/exposed",
        "the exposure noticed",
        |r| {
            let v = r.expect(200).clone();
            (!v["data"]["process"]["exposedOn"].as_array()?.is_empty()).then_some(v)
        },
    )
    .await;
    assert_eq!(server["data"]["status"], "error", "{server}");
    assert!(
        server["data"]["process"]["exposedOn"][0]
            .as_str()
            .expect("address")
            .starts_with("0.0.0.0:"),
        "{server}"
    );
    let logs = get_as(
        &app,
        &admin,
        "/v1/servers/exposed/logs?search=beyond%20loopback",
    )
    .await;
    assert!(
        logs.text.contains("reachable without the front door"),
        "{}",
        logs.text
    );
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    assert!(
        metrics.contains("ezforge_process_exposed{server=\"exposed\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn without_a_usable_sandbox_command_deployments_are_refused_unless_turned_off() {
    if !ezforge::deploy::sandbox::probe::is_root() {
        println!(
            "SKIPPED: the refusal is shown here by a run_as of root, which only matters when ezforge runs as root"
        );
        return;
    }
    // A sandbox that cannot be had (programs would run as root): refused, naming why.
    let (app, admin, _) = world_with("nosandbox", |c| c.deploy.run_as = "0:0".into()).await;
    let cmd = ["python3".to_owned(), fixture("http_mcp.py")];
    let r = deploy(
        &app,
        &admin,
        "nosandbox",
        json!({"command": cmd, "transport": "http"}),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("need a sandbox"), "{}", r.text);
    assert!(r.text.contains("root"), "{}", r.text);
    assert!(r.text.contains("deploy.sandbox"), "{}", r.text);
    // URLs still deploy.
    let up = crate::fakes::FakeUpstream::start().await;
    let r = post_as(
        &app,
        &admin,
        "/v1/servers/nosandbox/deployments",
        json!({ "upstreamUrl": up.url }),
    )
    .await;
    assert_eq!(r.expect(201)["data"]["status"], "running", "{}", r.text);

    // Turned off by the operator: commands run, unconfined.
    let (app, admin, _) = world_with("unconfined", |c| {
        c.deploy.run_as = "0:0".into();
        c.deploy.sandbox.mode = ezforge::config::SandboxMode::Off;
    })
    .await;
    let data: PathBuf = app.data_dir.canonicalize().expect("data");
    let plan = json!({ "read": [data.join("master.key")] });
    let body = probe_command(&plan, &["python3", &fixture("http_mcp.py")], "http");
    let r = deploy(&app, &admin, "unconfined", body).await;
    assert_eq!(r.expect(201)["data"]["status"], "running", "{}", r.text);
    let got = report(&app, &admin, "unconfined").await;
    assert_eq!(
        got["read"][data.join("master.key").display().to_string()],
        "ok"
    );
}

/// A listener on a port the kernel picked (`listen` without `bind`, which Landlock's bind rule
/// does not see), held by a child of the server: found by its socket, reported like one beyond
/// loopback.
#[tokio::test]
async fn a_listener_on_another_port_is_found_by_its_socket() {
    if landlock("a_listener_on_another_port…").is_none() {
        return;
    }
    let (app, admin, _) = world_with("held", |_| {}).await;
    let body = probe_command(
        &json!({ "hold": true }),
        &["python3", &fixture("http_mcp.py")],
        "http",
    );
    let r = deploy(&app, &admin, "held", body).await;
    assert_eq!(r.expect(201)["data"]["status"], "running", "{}", r.text);
    let held: u16 = poll_get(
        &app,
        &admin,
        "/v1/servers/held/logs?search=HELD-LISTENER",
        "the held listener's port",
        |r| {
            r.expect(200)["data"].as_array()?.iter().find_map(|e| {
                e["message"]
                    .as_str()?
                    .strip_prefix("HELD-LISTENER ")?
                    .trim()
                    .parse()
                    .ok()
            })
        },
    )
    .await;
    let server = poll_get(
        &app,
        &admin,
        "/v1/servers/held",
        "the listener noticed",
        |r| {
            let v = r.expect(200).clone();
            v["data"]["process"]["exposedOn"]
                .as_array()?
                .iter()
                .any(|a| a.as_str().is_some_and(|a| a.ends_with(&format!(":{held}"))))
                .then_some(v)
        },
    )
    .await;
    assert_eq!(server["data"]["status"], "error", "{server}");
}

/// A process that left its server's process group (a session of its own) is ended with the
/// server when the server has a uid of its own.
#[tokio::test]
async fn what_a_deleted_server_left_running_is_ended() {
    if landlock("what_a_deleted_server_left_running…").is_none() {
        return;
    }
    if !ezforge::deploy::sandbox::probe::is_root() {
        println!(
            "SKIPPED: ezforge is not root here, so servers have no uid of their own to find their processes by (a delegated cgroup does it then)"
        );
        return;
    }
    let (app, admin, _) = world_with("leaver", |_| {}).await;
    let body = probe_command(
        &json!({ "escape": true }),
        &["python3", &fixture("http_mcp.py")],
        "http",
    );
    let r = deploy(&app, &admin, "leaver", body).await;
    assert_eq!(r.expect(201)["data"]["status"], "running", "{}", r.text);
    let pid: u32 = poll_get(
        &app,
        &admin,
        "/v1/servers/leaver/logs?search=ESCAPED",
        "the escaped child's pid",
        |r| {
            r.expect(200)["data"].as_array()?.iter().find_map(|e| {
                e["message"]
                    .as_str()?
                    .strip_prefix("ESCAPED ")?
                    .trim()
                    .parse()
                    .ok()
            })
        },
    )
    .await;
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    let r = crate::helpers::delete_as(&app, &admin, "/v1/servers/leaver").await;
    assert!(r.status < 300, "{}", r.text);
    eventually("the escaped process ended", || async {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting for its (init) parent.
        (state.is_empty() || state.contains(") Z ")).then_some(())
    })
    .await;
}

/// The launcher runs ezforge's code with ezforge's privileges until it has confined itself: the
/// program's variables must not act on it. With a preload that cannot load, the dynamic loader
/// complains once per process that has it: the program only.
#[tokio::test]
async fn the_programs_environment_does_not_reach_the_launcher() {
    let tmp = tempfile::tempdir().expect("tmp");
    let policy = json!({
        "read": ["/usr", "/lib", "/lib64", "/bin", "/etc"],
        "read_data": [], "write": [tmp.path()], "devices": ["/dev/null"],
        "bind_port": null,
        "limits": {"open_files": 256, "data": null, "processes": null},
        "user": null, "cgroup": null,
    });
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ezforge"))
        .args([
            "sandbox-exec",
            "--policy",
            &policy.to_string(),
            "--",
            "/bin/true",
        ])
        .env_clear()
        .env("EZFORGE_PROGRAM_ENV__PATH", "/usr/bin:/bin")
        .env("EZFORGE_PROGRAM_ENV__LD_PRELOAD", "/nonexistent/evil.so")
        .current_dir(tmp.path())
        .output()
        .await
        .expect("run the launcher");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("Landlock") || !out.status.success() {
        // No Landlock here: the launcher refuses, which is the point of another test.
        println!("SKIPPED: the launcher could not confine itself here: {stderr}");
        return;
    }
    assert_eq!(
        stderr.matches("cannot be preloaded").count(),
        1,
        "the launcher itself saw LD_PRELOAD: {stderr}"
    );
}
