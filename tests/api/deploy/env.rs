//! Issue 17.2: env vars change what runs. Writing them needs `deployments:write`; names that
//! make programs load code are refused; rows stored (or sealed into a deployment) before that
//! stay readable by name and never reach a process.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::helpers::{
    ApiResponse, TestApp, admin_token, create_key, create_project, create_server, delete_as,
    get_as, post_as, put_as, server_log_has,
};

fn http_fixture() -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/http_mcp.py");
    json!({ "command": ["python3", script.display().to_string()], "transport": "http" })
}

/// The value the supervised fixture sees for env var `name` (`"null"` when unset).
async fn env_seen(app: &TestApp, slug: &str, name: &str) -> String {
    let token = crate::gateway::front_door::managed_token(
        app,
        slug,
        "mcp:read mcp:write mcp:execute",
        json!({}),
    );
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "env", "arguments": {"name": name}}});
    let res = app
        .client
        .post(format!("{}/mcp/{slug}", app.address))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(call.to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    body["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {body}"))
        .to_owned()
}

/// Stores an env var row as the API would have before the rules (straight into the store).
async fn store_env_row(app: &TestApp, server_id: &str, name: &str, value: &str) {
    // The context `control::env::seal_context` binds a value to.
    let sealed = app
        .state
        .master_key
        .seal(value.as_bytes(), &format!("env:{server_id}:{name}"));
    let (sid, name) = (server_id.to_owned(), name.to_owned());
    app.state
        .store
        .run(move |c| {
            ezforge::store::env_vars::upsert(
                c,
                &ezforge::domain::new_id("env_"),
                &sid,
                &name,
                &sealed,
                ezforge::domain::now(),
            )
        })
        .await
        .expect("insert");
}

#[tokio::test]
async fn writing_env_vars_needs_deployments_write() {
    let app = TestApp::spawn().await;
    let admin = admin_token(&app).await;
    let project = create_project(&app, &admin, "Env scopes").await;
    let pid = project["id"].as_str().expect("id");
    create_server(&app, &admin, pid, "scoped").await;
    let servers_write = create_key(&app, &admin, pid, &["servers:read", "servers:write"]).await;
    let deployments_write = create_key(&app, &admin, pid, &["deployments:write"]).await;
    let body = json!({ "name": "API_TOKEN", "value": "v" });

    let r = post_as(&app, &servers_write, "/v1/servers/scoped/env", body.clone()).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(
        r.body["error"]["details"]["requiredScope"],
        "deployments:write"
    );
    let r = put_as(
        &app,
        &servers_write,
        "/v1/servers/scoped/env/API_TOKEN",
        json!({"value": "v"}),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);
    post_as(&app, &deployments_write, "/v1/servers/scoped/env", body)
        .await
        .expect(201);
    let r = delete_as(&app, &servers_write, "/v1/servers/scoped/env/API_TOKEN").await;
    assert_eq!(r.status, 403, "{}", r.text);
    // Reading stays with servers:read.
    let list = get_as(&app, &servers_write, "/v1/servers/scoped/env").await;
    assert_eq!(list.expect(200)["data"][0]["name"], "API_TOKEN");
    assert_eq!(list.body["data"][0]["refused"], Value::Null);
    delete_as(&app, &deployments_write, "/v1/servers/scoped/env/API_TOKEN")
        .await
        .expect(204);
}

#[tokio::test]
async fn names_that_load_code_are_refused_naming_the_rule() {
    let app = TestApp::spawn().await;
    let admin = admin_token(&app).await;
    let project = create_project(&app, &admin, "Env names").await;
    create_server(&app, &admin, project["id"].as_str().expect("id"), "names").await;
    for (name, rule) in [
        ("LD_PRELOAD", "dynamic loader"),
        ("LD_LIBRARY_PATH", "dynamic loader"),
        ("LD_AUDIT", "dynamic loader"),
        ("DYLD_INSERT_LIBRARIES", "dynamic loader"),
        ("GCONV_PATH", "dynamic loader"),
        ("GLIBC_TUNABLES", "dynamic loader"),
        ("NODE_OPTIONS", "Node.js"),
        ("NODE_PATH", "Node.js"),
        ("npm_config_registry", "Node.js"),
        ("PYTHONPATH", "Python"),
        ("PYTHONSTARTUP", "Python"),
        ("PYTHONHOME", "Python"),
        ("PYTHONWARNINGS", "Python"),
        ("PIP_INDEX_URL", "Python"),
        ("UV_INDEX_URL", "Python"),
        ("PIP_CONFIG_FILE", "Python"),
        ("uv_python_install_mirror", "Python"),
        ("YARN_YARN_PATH", "Node.js"),
        ("COREPACK_NPM_REGISTRY", "Node.js"),
        ("ERL_AFLAGS", "Erlang"),
        ("ELIXIR_ERL_OPTIONS", "Erlang"),
        ("JULIA_DEPOT_PATH", "Julia"),
        ("R_PROFILE_USER", "R runs"),
        ("R_ENVIRON_USER", "R runs"),
        ("BROWSER", "command it names"),
        ("PERL5OPT", "Perl"),
        ("PERL5LIB", "Perl"),
        ("PERLLIB", "Perl"),
        ("RUBYOPT", "Ruby"),
        ("RUBYLIB", "Ruby"),
        ("BASH_ENV", "shells"),
        ("ENV", "shells"),
        ("SHELLOPTS", "shells"),
        ("PS4", "shells"),
        ("JAVA_TOOL_OPTIONS", "Java"),
        ("_JAVA_OPTIONS", "Java"),
        ("JDK_JAVA_OPTIONS", "Java"),
        ("CLASSPATH", "Java"),
        ("DOTNET_STARTUP_HOOKS", ".NET"),
        ("OPENSSL_CONF", "OpenSSL"),
        ("GIT_SSH_COMMAND", "git"),
        ("GIT_CONFIG_COUNT", "git"),
        ("LESSOPEN", "command it names"),
        ("ld_preload", "dynamic loader"),
    ] {
        let r = post_as(
            &app,
            &admin,
            "/v1/servers/names/env",
            json!({ "name": name, "value": "/tmp/evil" }),
        )
        .await;
        r.assert_invalid("name");
        let message = r.body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(rule) && message.contains(name),
            "{name}: {message}"
        );
        let r = put_as(
            &app,
            &admin,
            &format!("/v1/servers/names/env/{name}"),
            json!({ "value": "x" }),
        )
        .await;
        r.assert_invalid("name");
    }
    // Settings of the same families that load nothing stay allowed.
    for name in [
        "PYTHONUNBUFFERED",
        "NODE_ENV",
        "GIT_AUTHOR_NAME",
        "LDAP_URL",
        "ENVIRONMENT",
        "UV_THREADPOOL_SIZE",
    ] {
        post_as(
            &app,
            &admin,
            "/v1/servers/names/env",
            json!({ "name": name, "value": "1" }),
        )
        .await
        .expect(201);
    }
    let list: ApiResponse = get_as(&app, &admin, "/v1/servers/names/env").await;
    assert_eq!(
        list.expect(200)["data"].as_array().map(Vec::len),
        Some(6),
        "nothing refused was written"
    );
}

#[tokio::test]
async fn refused_names_stored_before_stay_listed_and_never_reach_the_process() {
    let mut app = TestApp::spawn().await;
    let admin = admin_token(&app).await;
    let project = create_project(&app, &admin, "Env legacy").await;
    let server = create_server(&app, &admin, project["id"].as_str().expect("id"), "legacy").await;
    let sid = server["id"].as_str().expect("id").to_owned();
    post_as(
        &app,
        &admin,
        "/v1/servers/legacy/env",
        json!({ "name": "API_TOKEN", "value": "kept" }),
    )
    .await
    .expect(201);
    // Rows written before the rules existed.
    store_env_row(&app, &sid, "LD_PRELOAD", "/nonexistent/evil.so").await;
    store_env_row(&app, &sid, "PYTHONSTARTUP", "/tmp/evil.py").await;

    let list = get_as(&app, &admin, "/v1/servers/legacy/env").await;
    let rows = list.expect(200)["data"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let refused = |name: &str| {
        rows.iter()
            .find(|r| r["name"] == name)
            .map(|r| r["refused"].clone())
            .unwrap_or_else(|| panic!("{name} not listed: {}", list.text))
    };
    assert!(
        refused("LD_PRELOAD")
            .as_str()
            .is_some_and(|s| s.contains("dynamic loader"))
    );
    assert!(
        refused("PYTHONSTARTUP")
            .as_str()
            .is_some_and(|s| s.contains("Python"))
    );
    assert_eq!(refused("API_TOKEN"), Value::Null);

    let d = post_as(
        &app,
        &admin,
        "/v1/servers/legacy/deployments",
        http_fixture(),
    )
    .await;
    assert_eq!(d.expect(201)["data"]["status"], "running", "{}", d.text);
    let deployment_id = d.body["data"]["id"].as_str().expect("id").to_owned();
    assert_eq!(env_seen(&app, "legacy", "API_TOKEN").await, "kept");
    assert_eq!(env_seen(&app, "legacy", "LD_PRELOAD").await, "null");
    assert_eq!(env_seen(&app, "legacy", "PYTHONSTARTUP").await, "null");
    let log = server_log_has(&app, &admin, "legacy", "LD_PRELOAD may not be set").await;
    assert!(log.contains("not passed to the process"), "{log}");
    assert!(!log.contains("evil.so"), "values are never logged: {log}");

    // They can still be deleted (by name), never replaced.
    put_as(
        &app,
        &admin,
        "/v1/servers/legacy/env/PYTHONSTARTUP",
        json!({ "value": "x" }),
    )
    .await
    .assert_invalid("name");
    delete_as(&app, &admin, "/v1/servers/legacy/env/PYTHONSTARTUP")
        .await
        .expect(204);

    // A deployment sealed before the upgrade carries such a name in its own sealed env: it is
    // left out when that deployment starts again (here: at the next start of ezforge).
    let sealed_env = json!({ "API_TOKEN": "kept", "LD_PRELOAD": "/nonexistent/evil.so", "NODE_OPTIONS": "--require /tmp/x.js" });
    let sealed = app.state.master_key.seal(
        sealed_env.to_string().as_bytes(),
        &format!("deployment-env:{deployment_id}"),
    );
    app.state
        .store
        .run(move |c| {
            c.execute(
                "UPDATE deployments SET env_sealed = ?1 WHERE id = ?2",
                [&sealed, &deployment_id],
            )
            .map_err(ezforge::store::StoreError::from)
        })
        .await
        .expect("update");
    let tmp = app.take_tempdir().expect("tmp");
    let dir = app.data_dir.clone();
    app.stop().await;
    let app = TestApp::builder_in(&dir).spawn().await;
    let admin = admin_token(&app).await;
    assert_eq!(env_seen(&app, "legacy", "API_TOKEN").await, "kept");
    assert_eq!(env_seen(&app, "legacy", "LD_PRELOAD").await, "null");
    assert_eq!(env_seen(&app, "legacy", "NODE_OPTIONS").await, "null");
    server_log_has(&app, &admin, "legacy", "NODE_OPTIONS may not be set").await;
    drop(app);
    drop(tmp);
}
