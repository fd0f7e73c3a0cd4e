//! The real binary: nothing secret in its output.

use super::*;

const BIN: &str = env!("CARGO_BIN_EXE_ezforge");

#[tokio::test]
async fn secrets_never_appear_in_the_logs_or_the_database_of_the_binary() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let data_dir = dir.path().join("data");
    let out_path = dir.path().join("stdout.log");
    let err_path = dir.path().join("stderr.log");
    let mut child = tokio::process::Command::new(BIN)
        .arg("serve")
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("EZFORGE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("EZFORGE_SERVER__DATA_DIR", &data_dir)
        .env("EZFORGE_ADMIN_EMAIL", ADMIN_EMAIL)
        .env("EZFORGE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("EZFORGE_LOGGING__LEVEL", "debug")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let base = format!("http://127.0.0.1:{port}");
    let client = plain_client();
    let mut up = false;
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("{base}/v1/health")).send().await
            && r.status() == 200
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        up,
        "server did not start: {}",
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    let send = |method: reqwest::Method,
                path: &str,
                token: Option<&str>,
                body: Option<serde_json::Value>| {
        let mut req = client.request(method, format!("{base}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move { ApiResponse::read(req.send().await.expect("request")).await }
    };
    use reqwest::Method;
    let res = send(
        Method::POST,
        "/v1/auth/login",
        None,
        Some(json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD })),
    )
    .await;
    let session = res.expect(200)["data"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let res = send(
        Method::POST,
        "/v1/projects",
        Some(&session),
        Some(json!({ "name": "Logs" })),
    )
    .await;
    let project = res.expect(201)["data"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let res = send(
        Method::POST,
        &format!("/v1/projects/{project}/keys"),
        Some(&session),
        Some(json!({ "name": "k", "scopes": ["servers:read", "servers:write", "deployments:write"] })),
    )
    .await;
    let key = res.expect(201)["data"]["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let res = send(
        Method::POST,
        &format!("/v1/projects/{project}/servers"),
        Some(&key),
        Some(json!({ "name": "Logged" })),
    )
    .await;
    let server = res.expect(201)["data"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let env_value = "env-secret-value-Hq3Lm9Tt";
    send(
        Method::PUT,
        &format!("/v1/servers/{server}/env/SECRET"),
        Some(&key),
        Some(json!({ "value": env_value })),
    )
    .await
    .expect(201);
    let res = send(
        Method::POST,
        &format!("/v1/servers/{server}/clients"),
        Some(&session),
        Some(json!({ "name": "c", "redirectUris": ["https://c.example.com/cb"], "confidential": true })),
    )
    .await;
    let client_secret = res.expect(201)["data"]["clientSecret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let res = send(
        Method::POST,
        "/v1/users",
        Some(&session),
        Some(json!({ "email": "inv@example.com" })),
    )
    .await;
    let invite = res.expect(201)["data"]["inviteToken"]
        .as_str()
        .expect("invite")
        .to_owned();
    send(Method::GET, "/v1/servers", Some(&key), None)
        .await
        .expect(200);
    // Failures log too: a wrong password, an unknown key, a refused scope, a bad body.
    let wrong_password = "wrong-password-Xy7Vb2";
    send(
        Method::POST,
        "/v1/auth/login",
        None,
        Some(json!({ "email": ADMIN_EMAIL, "password": wrong_password })),
    )
    .await
    .expect(401);
    let bogus_key = "ezf_live_bogus-key-value-Pq4Rs8Uv";
    send(Method::GET, "/v1/servers", Some(bogus_key), None)
        .await
        .expect(401);
    send(Method::GET, "/v1/audit", Some(&key), None)
        .await
        .expect(403);
    send(
        Method::POST,
        "/v1/projects",
        Some(&session),
        Some(json!({ "name": "x", "password": wrong_password })),
    )
    .await
    .expect(400);
    // A session cookie is a credential too.
    let res = client
        .get(format!("{base}/v1/auth/session"))
        .header("cookie", format!("ezf_session={session}"))
        .send()
        .await
        .expect("cookie request");
    assert_eq!(res.status(), 200);
    send(Method::POST, "/v1/auth/logout", Some(&session), None)
        .await
        .expect(204);

    let pid = child.id().expect("pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stops promptly")
        .expect("wait");
    assert!(exit.success(), "clean exit");

    let mut logs = std::fs::read(&out_path).expect("stdout");
    logs.extend(std::fs::read(&err_path).expect("stderr"));
    let text = String::from_utf8_lossy(&logs).into_owned();
    assert!(text.contains("is ready"), "the banner was captured: {text}");
    assert!(
        text.lines().count() > 5,
        "debug logging produced output: {text}"
    );
    assert!(
        text.contains("/v1/auth/login") && text.contains("/keys"),
        "requests were logged: {text}"
    );
    let database = db_bytes(&data_dir);
    assert!(!database.is_empty());
    for (what, secret) in [
        ("session token", session.as_str()),
        ("API key", key.as_str()),
        ("env value", env_value),
        ("client secret", client_secret.as_str()),
        ("invite token", invite.as_str()),
        ("admin password", ADMIN_PASSWORD),
        ("wrong password", wrong_password),
        ("unknown key", bogus_key),
    ] {
        assert!(!text.contains(secret), "the {what} appears in the logs");
        assert!(
            !contains_bytes(&database, secret),
            "the {what} appears in the database"
        );
    }
    // The key's random part is not logged either (only its prefix may be).
    let tail = &key[key.len() - 20..];
    assert!(
        !text.contains(tail),
        "part of the API key appears in the logs"
    );
    let tail = &session[session.len() - 20..];
    assert!(
        !text.contains(tail),
        "part of the session token appears in the logs"
    );
}
