//! The MCP conformance suite, against the authorization server and through the front door.

use super::*;

/// Every `checks.json` under a conformance output dir: (scenario, check id) -> status.
fn conformance_checks(
    dir: &Path,
    prefix: &str,
) -> std::collections::BTreeMap<(String, String), String> {
    let mut out = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("output dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        // `<prefix><scenario>-<ISO timestamp>`
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let scenario = rest[..timestamp_start(rest).unwrap_or(rest.len())].to_owned();
        let checks: Value = serde_json::from_slice(
            &std::fs::read(entry.path().join("checks.json")).expect("checks.json"),
        )
        .expect("checks JSON");
        for c in checks.as_array().expect("array") {
            out.insert(
                (scenario.clone(), c["id"].as_str().expect("id").to_owned()),
                c["status"].as_str().expect("status").to_owned(),
            );
        }
    }
    out
}

/// Where `-YYYY-MM-DDT` starts in a results folder name.
fn timestamp_start(name: &str) -> Option<usize> {
    let b = name.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    (0..b.len().saturating_sub(11)).find(|&i| {
        b[i] == b'-'
            && digits(i + 1..i + 5)
            && b[i + 5] == b'-'
            && digits(i + 6..i + 8)
            && b[i + 8] == b'-'
            && digits(i + 9..i + 11)
            && b[i + 11] == b'T'
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test]
async fn conformance_authorization_scenarios_pass_against_our_authorization_server() {
    let Some(tc) = toolchain().await else {
        return;
    };
    let app = TestApp::spawn().await;
    let (admin, server) = project_with_server(&app, "conformance", "http://127.0.0.1:9/mcp").await;
    let resource = server["url"].as_str().expect("url").to_owned();
    // A public client registered the dynamic way, for the suite's loopback callback.
    let res = crate::helpers::plain_client()
        .post(app.url("/oauth/register"))
        .json(&json!({"client_name": "MCP conformance suite", "redirect_uris": ["http://127.0.0.1/callback"]}))
        .send()
        .await
        .expect("register");
    assert_eq!(res.status(), 201);
    let client_id = crate::helpers::json(res).await["client_id"]
        .as_str()
        .expect("client_id")
        .to_owned();
    let output = tempfile::tempdir().expect("tmp");
    let port = free_port().to_string();
    let mut cmd = node(tc, "conformance_auth.mjs");
    cmd.args([app.address.as_str(), &client_id, &resource, &port])
        .arg(output.path())
        .env("EZF_EMAIL", ADMIN_EMAIL)
        .env("EZF_PASSWORD", ADMIN_PASSWORD);
    let out = run(cmd, Duration::from_secs(180)).await;
    out.assert_success();
    assert!(
        out.stdout
            .contains("BROWSER authorizations=1 logins=1 consents=1"),
        "{}",
        out.describe()
    );
    let checks = conformance_checks(output.path(), "authorization-server-");
    let scenarios: std::collections::BTreeSet<&str> =
        checks.keys().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        scenarios,
        [
            "authorization-code-grant",
            "authorization-server-metadata-endpoint"
        ]
        .into_iter()
        .collect(),
        "{checks:?}"
    );
    for ((scenario, id), status) in &checks {
        assert_eq!(status, "SUCCESS", "{scenario}/{id}; {}", out.describe());
    }
    // The suite's authorization left a grant behind.
    let grants = grants(&app, &admin).await;
    assert!(
        grants.iter().any(|g| g["clientId"] == client_id.as_str()),
        "{grants:?}"
    );
}

#[tokio::test]
async fn conformance_server_scenarios_give_the_same_result_through_the_front_door() {
    let Some(tc) = toolchain().await else {
        return;
    };
    let (upstream, upstream_url) = server_everything(tc).await;
    let app = TestApp::spawn().await;
    let (admin, server) = project_with_server(&app, "everything", &upstream_url).await;
    let resource = server["url"].as_str().expect("url").to_owned();
    // A machine client: client_credentials for this server, every MCP scope.
    let res = call(
        &app,
        "POST",
        &format!("/v1/servers/{}/clients", server["id"].as_str().expect("id")),
        Some(&admin),
        Some(
            &json!({"name": "Conformance runner", "redirectUris": ["http://127.0.0.1/callback"],
            "scopes": ["mcp:execute"], "confidential": true}),
        ),
    )
    .await;
    let client = res.expect(201)["data"].clone();
    let res = crate::helpers::plain_client()
        .post(app.url("/oauth/token"))
        .basic_auth(
            client["clientId"].as_str().expect("id"),
            client["clientSecret"].as_str(),
        )
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", resource.as_str()),
            ("scope", "mcp:execute"),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(res.status(), 200);
    let token = crate::helpers::json(res).await["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    // The suite cannot send a token: a proxy adds it and passes everything else through.
    let mut cmd = node(tc, "bearer_proxy.mjs");
    cmd.arg(&app.address)
        .env("BEARER_TOKEN", &token)
        .env("PORT", "0");
    let proxy = Service::start("bearer proxy", cmd).await;
    let through = format!(
        "http://127.0.0.1:{}{}",
        proxy.port,
        url::Url::parse(&resource).expect("url").path()
    );

    let suite = |url: String, dir: PathBuf| {
        let mut cmd = node(
            tc,
            "node_modules/@modelcontextprotocol/conformance/dist/index.js",
        );
        cmd.args(["server", "--url", &url, "--output-dir"]).arg(dir);
        run(cmd, Duration::from_secs(240))
    };
    let direct_dir = tempfile::tempdir().expect("tmp");
    let front_dir = tempfile::tempdir().expect("tmp");
    let direct_run = suite(upstream_url.clone(), direct_dir.path().to_path_buf()).await;
    let front_run = suite(through, front_dir.path().to_path_buf()).await;
    let direct = conformance_checks(direct_dir.path(), "server-");
    let front = conformance_checks(front_dir.path(), "server-");
    assert!(
        direct.len() > 40,
        "the suite ran: {direct:?}\n{}",
        direct_run.describe()
    );
    assert_eq!(
        direct.keys().collect::<Vec<_>>(),
        front.keys().collect::<Vec<_>>(),
        "the same checks ran"
    );
    let mut differences = Vec::new();
    for (key, status) in &direct {
        if front[key] != *status {
            differences.push(format!(
                "{}/{}: direct {status}, front door {}",
                key.0, key.1, front[key]
            ));
        }
    }
    // The one expected difference: server-everything itself accepts a foreign Host/Origin (DNS
    // rebinding), the front door refuses a browser Origin that is not ours or loopback.
    let rebinding = (
        "dns-rebinding-protection".to_owned(),
        "localhost-host-rebinding-rejected".to_owned(),
    );
    assert_eq!(front[&rebinding], "SUCCESS", "{}", front_run.describe());
    differences
        .retain(|d| !d.starts_with("dns-rebinding-protection/localhost-host-rebinding-rejected:"));
    assert!(
        differences.is_empty(),
        "results differ through the front door:\n{}\n{}",
        differences.join("\n"),
        front_run.describe()
    );
    let passed = front.values().filter(|s| *s == "SUCCESS").count();
    assert!(passed >= 40, "{front:?}");
    for id in [
        "server-initialize",
        "tools-list",
        "tools-call-simple-text",
        "ping",
    ] {
        assert!(
            front
                .iter()
                .filter(|((s, _), _)| s == id)
                .all(|(_, st)| st == "SUCCESS"),
            "{id} passes through the front door: {front:?}"
        );
    }
    drop(proxy);
    drop(upstream);
}
