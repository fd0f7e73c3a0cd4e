//! Issue 17.3: where upstream URLs may point. Link-local and metadata addresses and names (in
//! every spelling the URL parser accepts), ezforge's own listeners and its supervised
//! processes' ports are refused when the URL is set (422 naming the field and the rule) and
//! again at connect time against what the name resolves to then (DNS rebinding), by the front
//! door and by health checks. Operators widen or narrow this in `[gateway]`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::fakes::FakeUpstream;
use crate::helpers::{
    ApiResponse, TestApp, admin_token, create_project, create_server, get_as, patch_as, post_as,
    server_log_has,
};
use ezforge::shared::destinations::{Lookup, Resolve};

/// A resolver that answers as the test says (`set` changes an answer: what a rebinding DNS
/// server does between a check and the next connection), counting lookups.
#[derive(Default)]
struct Scripted {
    answers: Mutex<HashMap<String, Vec<IpAddr>>>,
    lookups: Mutex<HashMap<String, usize>>,
}

impl Scripted {
    fn new(script: &[(&str, &[&str])]) -> Arc<Scripted> {
        let s = Arc::new(Scripted::default());
        for (name, ips) in script {
            s.set(name, ips);
        }
        s
    }

    fn set(&self, name: &str, ips: &[&str]) {
        let ips = ips.iter().map(|ip| ip.parse().expect("ip")).collect();
        self.answers
            .lock()
            .expect("lock")
            .insert(name.to_owned(), ips);
    }

    fn lookups(&self, name: &str) -> usize {
        self.lookups
            .lock()
            .expect("lock")
            .get(name)
            .copied()
            .unwrap_or(0)
    }
}

impl Resolve for Scripted {
    fn lookup(&self, host: &str, port: u16) -> Lookup {
        *self
            .lookups
            .lock()
            .expect("lock")
            .entry(host.to_owned())
            .or_default() += 1;
        let answer = self.answers.lock().expect("lock").get(host).map(|ips| {
            ips.iter()
                .map(|ip| SocketAddr::new(*ip, port))
                .collect::<Vec<_>>()
        });
        let host = host.to_owned();
        Box::pin(async move {
            answer.ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("no such name {host}"))
            })
        })
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

async fn world(app: &TestApp) -> (String, String) {
    let admin = admin_token(app).await;
    let project = create_project(app, &admin, "Upstreams").await;
    let pid = project["id"].as_str().expect("id").to_owned();
    (admin, pid)
}

fn assert_refused(r: &ApiResponse, rule: &str) {
    r.assert_invalid("upstreamUrl");
    let message = r.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(rule), "{rule:?} in {message}");
}

/// A deployment of `url` at `slug` fails its health check: the destination it resolves to is
/// refused by `rule`.
async fn deployment_refused(app: &TestApp, admin: &str, slug: &str, url: &str, rule: &str) {
    let d = post_as(
        app,
        admin,
        &format!("/v1/servers/{slug}/deployments"),
        json!({ "upstreamUrl": url }),
    )
    .await;
    let data = &d.expect(201)["data"];
    assert_eq!(data["status"], "failed", "{data}");
    let why = data["errorMessage"].as_str().unwrap_or_default();
    assert!(why.contains("refused") && why.contains(rule), "{why}");
}

async fn rpc(app: &TestApp, slug: &str) -> ApiResponse {
    let token = crate::gateway::front_door::managed_token(
        app,
        slug,
        "mcp:read mcp:write mcp:execute",
        json!({}),
    );
    app.mcp(slug).bearer(&token).call("ping", Value::Null).await
}

#[tokio::test]
async fn every_refused_form_is_a_422_on_create_update_and_deploy() {
    let metrics_port = free_port();
    let app = TestApp::builder()
        .config(move |c| {
            c.metrics.enabled = true;
            c.metrics.listen = Some(SocketAddr::from(([127, 0, 0, 1], metrics_port)));
        })
        .spawn()
        .await;
    let (admin, pid) = world(&app).await;
    let own = app.port;
    let forms: Vec<(String, &str)> = vec![
        (
            "http://169.254.169.254/latest/meta-data/".into(),
            "link-local",
        ),
        ("http://169.254.170.2/v2/credentials".into(), "link-local"),
        ("http://2852039166/".into(), "link-local"),
        ("http://0xa9fea9fe/".into(), "link-local"),
        ("http://0251.0376.0251.0376/".into(), "link-local"),
        ("http://169.254.43518/".into(), "link-local"),
        ("http://[fe80::1]/mcp".into(), "link-local"),
        ("http://[::ffff:169.254.169.254]/".into(), "link-local"),
        ("http://[::ffff:a9fe:a9fe]/".into(), "link-local"),
        (
            "http://[::169.254.169.254]/".into(),
            "embeds the IPv4 address 169.254.169.254",
        ),
        (
            "http://[64:ff9b::a9fe:a9fe]/".into(),
            "embeds the IPv4 address 169.254.169.254",
        ),
        (
            "http://[2002:a9fe:a9fe::]/".into(),
            "embeds the IPv4 address 169.254.169.254",
        ),
        ("http://[fd00:ec2::254]/latest".into(), "metadata"),
        // Other clouds' metadata services, and all of AWS's fd00:ec2::/32.
        (
            "http://[fd20:ce::254]/computeMetadata/v1/".into(),
            "metadata",
        ),
        ("http://[fd00:ec2::23]/v1/credentials".into(), "metadata"),
        ("http://[fd00:ec2:1::1]/".into(), "metadata"),
        ("http://[fd00:42::42]/conf".into(), "metadata"),
        ("http://192.0.0.192/opc/v1/".into(), "metadata"),
        ("http://100.100.100.200/latest".into(), "metadata"),
        (
            "http://metadata.google.internal/computeMetadata/v1/".into(),
            "metadata",
        ),
        ("http://Metadata.Google.Internal./".into(), "metadata"),
        ("http://0.0.0.0:3000/mcp".into(), "unspecified"),
        ("http://[::]:3000/mcp".into(), "unspecified"),
        ("http://224.0.0.1/".into(), "multicast"),
        (format!("http://127.0.0.1:{own}/v1/users"), "own listener"),
        (format!("http://localhost:{own}/mcp/other"), "own listener"),
        (format!("http://[::ffff:127.0.0.1]:{own}/"), "own listener"),
        (format!("http://2130706433:{own}/"), "own listener"),
        (
            format!("http://127.0.0.1:{metrics_port}/metrics"),
            "own listener",
        ),
    ];
    let server = create_server(&app, &admin, &pid, "target").await;
    assert_eq!(server["upstreamUrl"], Value::Null);
    for (i, (url, rule)) in forms.iter().enumerate() {
        let r = post_as(
            &app,
            &admin,
            &format!("/v1/projects/{pid}/servers"),
            json!({ "name": format!("s{i}"), "upstreamUrl": url }),
        )
        .await;
        assert_refused(&r, rule);
        let r = patch_as(
            &app,
            &admin,
            "/v1/servers/target",
            json!({ "upstreamUrl": url }),
        )
        .await;
        assert_refused(&r, rule);
        let r = post_as(
            &app,
            &admin,
            "/v1/servers/target/deployments",
            json!({ "upstreamUrl": url }),
        )
        .await;
        assert_refused(&r, rule);
    }
    // Nothing was stored or deployed.
    let list = get_as(&app, &admin, &format!("/v1/projects/{pid}/servers")).await;
    assert_eq!(
        list.expect(200)["data"].as_array().map(Vec::len),
        Some(1),
        "{}",
        list.text
    );
    let deployments = get_as(&app, &admin, "/v1/servers/target/deployments").await;
    assert_eq!(deployments.expect(200)["data"], json!([]));
    // Private and loopback upstreams stay allowed (on-prem MCP servers live there).
    for url in [
        "http://127.0.0.1:3001/mcp",
        "http://localhost:3001/mcp",
        "http://10.20.30.40/mcp",
        "http://192.168.1.10:8000/mcp",
        "https://mcp.example.com/mcp",
    ] {
        patch_as(
            &app,
            &admin,
            "/v1/servers/target",
            json!({ "upstreamUrl": url }),
        )
        .await
        .expect(200);
    }
}

#[tokio::test]
async fn a_name_that_rebinds_is_refused_at_connect_time_in_the_health_check_and_the_front_door() {
    let up = FakeUpstream::start().await;
    let resolver = Scripted::new(&[
        ("rebind.test", &["127.0.0.1"]),
        ("metadata-now.test", &["169.254.169.254"]),
        ("mapped.test", &["::ffff:169.254.169.254"]),
        ("both.test", &["169.254.169.254", "127.0.0.1"]),
        ("self.test", &["127.0.0.1"]),
    ]);
    let app = TestApp::builder().resolver(resolver.clone()).spawn().await;
    let (admin, pid) = world(&app).await;
    for slug in ["rebind", "checked", "mapped", "selfie"] {
        create_server(&app, &admin, &pid, slug).await;
    }

    // A deployment checks health through the same connector: the name answers the fake.
    let url = format!("http://rebind.test:{}/mcp", up.port);
    let d = post_as(
        &app,
        &admin,
        "/v1/servers/rebind/deployments",
        json!({ "upstreamUrl": url }),
    )
    .await;
    assert_eq!(d.expect(201)["data"]["status"], "running", "{}", d.text);
    let seen = up.requests();
    assert!(seen >= 2, "the health check reached the upstream");
    let checked = resolver.lookups("rebind.test");
    // Then the name answers 169.254.169.254: refused at the next connection, before
    // connecting; nothing is sent anywhere.
    resolver.set("rebind.test", &["169.254.169.254"]);
    let res = rpc(&app, "rebind").await;
    assert_eq!(res.status, 502);
    let body = res.json();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("refused"), "{body}");
    assert!(
        !message.contains("169.254"),
        "a client is not told where: {body}"
    );
    assert_eq!(up.requests(), seen);
    assert!(
        resolver.lookups("rebind.test") > checked,
        "looked up again to connect"
    );
    let log = server_log_has(&app, &admin, "rebind", "the upstream's address is refused").await;
    assert!(
        log.contains("169.254.169.254") && log.contains("link-local"),
        "{log}"
    );

    // A health check whose name resolves to a refused address fails, naming the rule.
    for (slug, name, rule) in [
        ("checked", "metadata-now.test", "link-local"),
        ("mapped", "mapped.test", "link-local"),
    ] {
        let url = format!("http://{name}:{}/mcp", up.port);
        deployment_refused(&app, &admin, slug, &url, rule).await;
    }
    // Only the allowed answer of several is used.
    patch_as(
        &app,
        &admin,
        "/v1/servers/checked",
        json!({ "upstreamUrl": format!("http://both.test:{}/mcp", up.port) }),
    )
    .await
    .expect(200);
    assert_eq!(rpc(&app, "checked").await.status, 200);

    // A name that resolves to ezforge's own listener.
    let url = format!("http://self.test:{}/mcp/rebind", app.port);
    let d = post_as(
        &app,
        &admin,
        "/v1/servers/selfie/deployments",
        json!({ "upstreamUrl": url }),
    )
    .await;
    let data = &d.expect(201)["data"];
    assert_eq!(data["status"], "failed", "{data}");
    assert!(
        data["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("own listener"),
        "{data}"
    );
}

#[tokio::test]
async fn a_stored_upstream_refused_by_the_new_rules_is_never_connected_to() {
    // What an upgrade finds: a server pointed at the metadata service before these rules.
    let resolver = Scripted::new(&[]);
    let app = TestApp::builder().resolver(resolver).spawn().await;
    let (admin, pid) = world(&app).await;
    create_server(&app, &admin, &pid, "legacy").await;
    app.store_legacy_upstream("legacy", "http://169.254.169.254/latest")
        .await;
    let res = rpc(&app, "legacy").await;
    assert_eq!(res.status, 502);
    server_log_has(&app, &admin, "legacy", "169.254.169.254 is link-local").await;
}

#[tokio::test]
async fn another_servers_process_port_is_refused() {
    let app = TestApp::spawn().await;
    let (admin, pid) = world(&app).await;
    create_server(&app, &admin, &pid, "runner").await;
    create_server(&app, &admin, &pid, "snoop").await;
    let port = free_port();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/http_mcp.py");
    let d = post_as(
        &app,
        &admin,
        "/v1/servers/runner/deployments",
        json!({ "command": ["python3", script.display().to_string()], "transport": "http", "port": port }),
    )
    .await;
    assert_eq!(d.expect(201)["data"]["status"], "running", "{}", d.text);
    // The process's loopback port, which its server's front door alone may reach.
    for url in [
        format!("http://127.0.0.1:{port}/mcp"),
        format!("http://localhost:{port}/mcp"),
    ] {
        let r = patch_as(
            &app,
            &admin,
            "/v1/servers/snoop",
            json!({ "upstreamUrl": url }),
        )
        .await;
        assert_refused(&r, "a process ezforge runs for a server");
    }
    // The process itself still serves.
    assert_eq!(rpc(&app, "runner").await.status, 200);
}

#[tokio::test]
async fn operators_allow_and_deny_destinations() {
    let up = FakeUpstream::start().await;
    let resolver = Scripted::new(&[
        ("mcp.corp.test", &["127.0.0.1"]),
        ("evil.test", &["127.0.0.1"]),
    ]);
    let app = TestApp::builder()
        .resolver(resolver)
        .config(|c| {
            c.gateway.upstream_allow = vec![
                "127.0.0.0/8".into(),
                "169.254.10.0/24".into(),
                "*.corp.test".into(),
            ];
            c.gateway.upstream_deny = vec!["127.0.0.9".into(), "*.bad.test".into()];
        })
        .spawn()
        .await;
    let (admin, pid) = world(&app).await;
    create_server(&app, &admin, &pid, "t").await;
    let set = |url: String| {
        let (app, admin) = (&app, &admin);
        async move { patch_as(app, admin, "/v1/servers/t", json!({ "upstreamUrl": url })).await }
    };
    assert_refused(
        &set("http://127.0.0.9/mcp".into()).await,
        "gateway.upstream_deny (127.0.0.9)",
    );
    assert_refused(
        &set("http://x.bad.test/mcp".into()).await,
        "gateway.upstream_deny (*.bad.test)",
    );
    assert_refused(
        &set("http://192.168.1.1/mcp".into()).await,
        "not in gateway.upstream_allow",
    );
    assert_refused(&set("http://169.254.169.254/".into()).await, "link-local");
    set("http://169.254.10.20/mcp".into()).await.expect(200);
    // A name the allow list names: allowed; another one resolving to an allowed address too.
    set(format!("http://mcp.corp.test:{}/mcp", up.port))
        .await
        .expect(200);
    assert_eq!(rpc(&app, "t").await.status, 200);
    set(format!("http://evil.test:{}/mcp", up.port))
        .await
        .expect(200);
    assert_eq!(
        rpc(&app, "t").await.status,
        200,
        "127.0.0.1 is in the allow list"
    );
    // Ours stay refused, whatever the allow list says.
    assert_refused(
        &set(format!("http://127.0.0.1:{}/v1", app.port)).await,
        "own listener",
    );
}

/// A strict allow list admits an address as it is: a global IPv6 address whose bits look like
/// an allowed IPv4 address (ISATAP, 6to4, Teredo) is refused when set and, reached through a
/// name, when connecting; a broad allowed range lifts no metadata refusal inside it.
#[tokio::test]
async fn an_allow_list_admits_no_address_by_the_ipv4_it_seems_to_embed() {
    let up = FakeUpstream::start().await;
    let resolver = Scripted::new(&[
        ("isatap.test", &["2600:1f18:abcd:1:0:5efe:a00:1"]),
        ("gcp6.test", &["fd20:ce::254"]),
    ]);
    let app = TestApp::builder()
        .resolver(resolver)
        .config(|c| {
            c.gateway.upstream_allow = vec!["10.0.0.0/8".into(), "fd00::/8".into()];
        })
        .spawn()
        .await;
    let (admin, pid) = world(&app).await;
    create_server(&app, &admin, &pid, "t").await;
    for (url, rule) in [
        (
            "http://[2600:1f18:abcd:1:0:5efe:a00:1]/mcp",
            "not in gateway.upstream_allow",
        ),
        (
            "http://[2002:a00:1::1]/mcp",
            "not in gateway.upstream_allow",
        ),
        (
            "http://[2001:0:1:2:3:4:f5ff:fffe]/mcp",
            "not in gateway.upstream_allow",
        ),
        ("http://[fd00:ec2::254]/latest", "metadata"),
        ("http://[fd00:42::42]/", "metadata"),
    ] {
        let r = patch_as(&app, &admin, "/v1/servers/t", json!({ "upstreamUrl": url })).await;
        assert_refused(&r, rule);
    }
    // Through names, decided on the address they resolve to when connecting.
    for (name, rule) in [
        ("isatap.test", "not in gateway.upstream_allow"),
        ("gcp6.test", "metadata"),
    ] {
        let url = format!("http://{name}:{}/mcp", up.port);
        deployment_refused(&app, &admin, "t", &url, rule).await;
    }
    assert_eq!(up.requests(), 0, "nothing was sent anywhere");
}

#[tokio::test]
async fn config_declared_upstreams_and_bad_lists_are_refused_at_load() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("c.toml");
    for (toml, key, why) in [
        (
            "[[servers]]\nproject = \"p\"\nslug = \"s\"\nupstream = \"http://169.254.169.254/\"\n",
            "servers[0].upstream",
            "link-local",
        ),
        (
            "[[servers]]\nproject = \"p\"\nslug = \"s\"\nupstream = \"http://127.0.0.1:8080/mcp\"\n",
            "servers[0].upstream",
            "own listener",
        ),
        (
            "[gateway]\nupstream_allow = [\"10.0.0.0/33\"]\n",
            "gateway.upstream_allow",
            "prefix",
        ),
        (
            "[gateway]\nupstream_deny = [\"not a host\"]\n",
            "gateway.upstream_deny",
            "neither a CIDR",
        ),
    ] {
        std::fs::write(&path, toml).expect("write");
        let err = ezforge::Config::load_from(Some(&path), &[])
            .expect_err(toml)
            .to_string();
        assert!(err.contains(key) && err.contains(why), "{toml}: {err}");
    }
    std::fs::write(
        &path,
        "[gateway]\nupstream_allow = [\"169.254.169.254/32\"]\n[[servers]]\nproject = \"p\"\nslug = \"s\"\nupstream = \"http://169.254.169.254/\"\n",
    )
    .expect("write");
    ezforge::Config::load_from(Some(&path), &[]).expect("an operator may allow it");
}
