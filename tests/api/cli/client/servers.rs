//! Servers, their auth mode and clients from the CLI; error messages.

use super::*;

#[tokio::test]
async fn servers_their_auth_mode_and_clients_are_managed_end_to_end() {
    let app = TestApp::spawn().await;
    let sh = Shell::new(&app);
    sh.login().await;
    let token = sh.token();
    sh.json(&["project", "create", "Demo", "--slug", "demo"])
        .await;

    // create, list, get
    let s = sh
        .json(&[
            "servers",
            "create",
            "Weather",
            "--project",
            "demo",
            "--slug",
            "weather",
        ])
        .await;
    let server_id = s["id"].as_str().expect("id").to_owned();
    assert!(server_id.starts_with("srv_"), "{s}");
    assert_eq!(s["slug"], "weather");
    assert_eq!(s["authMode"], "ezforge_managed");

    let list = sh.json(&["servers", "list"]).await;
    assert!(ids(&list, "id").contains(&server_id), "{list}");
    let list = sh.json(&["servers", "list", "--project", "demo"]).await;
    assert_eq!(ids(&list, "id"), [server_id.as_str()]);
    let table = sh.ok(&["servers", "list"]).await;
    assert!(
        table.lines().next().expect("header").contains("SLUG"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains(&server_id) && l.contains("weather")),
        "{table}"
    );
    let got = sh.json(&["servers", "get", "weather"]).await;
    assert_eq!(got["id"], server_id.as_str());
    let shown = sh.ok(&["servers", "get", &server_id]).await;
    assert!(shown.contains("weather"), "{shown}");

    // update: general fields, then the auth mode with the hosted CLI's flags
    let renamed = sh
        .json(&["servers", "update", "weather", "--name", "Weather Two"])
        .await;
    assert_eq!(renamed["name"], "Weather Two");
    let switched = sh
        .run(&[
            "servers",
            "update",
            "weather",
            "--auth-mode",
            "byoa",
            "--byoa-issuer",
            "https://idp.example.com",
            "--byoa-jwks-uri",
            "https://idp.example.com/.well-known/jwks.json",
            "--byoa-authorization-endpoint",
            "https://idp.example.com/oauth2/authorize",
            "--byoa-token-endpoint",
            "https://idp.example.com/oauth2/token",
        ])
        .await;
    assert!(switched.success, "{}{}", switched.stdout, switched.stderr);
    // The issuer cannot be reached from here: switched, with the warnings printed.
    assert!(
        switched
            .stderr
            .contains("warning: the issuer's keys cannot be fetched"),
        "{}",
        switched.stderr
    );
    let got = sh.json(&["servers", "get", "weather"]).await;
    assert_eq!(got["authMode"], "byoa");
    let auth = json(
        app.client
            .get(app.url(&format!("/v1/servers/{server_id}/auth")))
            .bearer_auth(&token)
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(auth["data"]["authMode"], "byoa");
    let cfg = &auth["data"]["byoaConfig"];
    assert_eq!(cfg["issuer"], "https://idp.example.com");
    assert_eq!(
        cfg["jwksUri"],
        "https://idp.example.com/.well-known/jwks.json"
    );
    assert_eq!(
        cfg["authorizationEndpoint"],
        "https://idp.example.com/oauth2/authorize"
    );
    assert_eq!(cfg["tokenEndpoint"], "https://idp.example.com/oauth2/token");

    // The API refuses a plain-http issuer (422); the CLI prints that and fails.
    sh.fails(&[
        "servers",
        "update",
        "weather",
        "--auth-mode",
        "byoa",
        "--byoa-issuer",
        "http://idp.example.com",
        "--byoa-jwks-uri",
        "https://idp.example.com/jwks",
        "--byoa-authorization-endpoint",
        "https://idp.example.com/authorize",
        "--byoa-token-endpoint",
        "https://idp.example.com/token",
    ])
    .await;
    let got = sh.json(&["servers", "get", "weather"]).await;
    assert_eq!(got["authMode"], "byoa", "a refused change changes nothing");

    // OAuth clients: add, list, remove
    let c = sh
        .json(&[
            "servers",
            "clients",
            "add",
            "weather",
            "--name",
            "Test Client",
            "--redirect-uri",
            "http://127.0.0.1:3000/callback",
            "--redirect-uri",
            "https://app.example.com/callback",
            "--scopes",
            "mcp:read,mcp:execute",
            "--trusted",
        ])
        .await;
    let client_id = c["id"].as_str().expect("id").to_owned();
    assert!(client_id.starts_with("oac_"), "{c}");
    assert_eq!(
        c["redirectUris"],
        serde_json::json!([
            "http://127.0.0.1:3000/callback",
            "https://app.example.com/callback"
        ])
    );
    assert_eq!(c["scopes"], serde_json::json!(["mcp:read", "mcp:execute"]));
    assert_eq!(c["trusted"], true);
    assert!(c.get("clientSecret").is_none_or(Value::is_null), "{c}");

    let conf = sh
        .ok(&[
            "servers",
            "clients",
            "add",
            "weather",
            "--name",
            "Backend",
            "--redirect-uri",
            "https://backend.example.com/cb",
            "--confidential",
        ])
        .await;
    assert!(conf.contains("client_secret"), "{conf}");
    assert!(conf.to_lowercase().contains("save"), "{conf}");

    let clients = sh.json(&["servers", "clients", "list", "weather"]).await;
    assert!(ids(&clients, "id").contains(&client_id), "{clients}");
    assert_eq!(clients.as_array().map(Vec::len), Some(2));
    let table = sh.ok(&["servers", "clients", "list", "weather"]).await;
    assert!(table.contains("Test Client"), "{table}");
    sh.ok(&["servers", "clients", "remove", "weather", &client_id])
        .await;
    let clients = sh.json(&["servers", "clients", "list", "weather"]).await;
    assert!(!ids(&clients, "id").contains(&client_id), "{clients}");

    // An API key reaches the servers of its project, but not the session-only auth settings.
    let key = sh
        .json(&[
            "project",
            "create-key",
            "demo",
            "--name",
            "deploy",
            "--scopes",
            "servers:read,servers:write",
        ])
        .await;
    let keyed = Shell::with_api_key(&app, key["key"].as_str().expect("key"));
    let list = keyed.json(&["servers", "list"]).await;
    assert_eq!(ids(&list, "id"), [server_id.as_str()]);
    let err = keyed
        .fails(&[
            "servers",
            "update",
            "weather",
            "--auth-mode",
            "ezforge_managed",
        ])
        .await;
    assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1);
    let got = sh.json(&["servers", "get", "weather"]).await;
    assert_eq!(got["authMode"], "byoa", "the key could not change it");
    // With a rename too: refused before the rename (it used to rename, then fail).
    let before = got["name"].clone();
    let err = keyed
        .fails(&[
            "servers",
            "update",
            "weather",
            "--name",
            "Renamed",
            "--auth-mode",
            "ezforge_managed",
        ])
        .await;
    assert!(err.contains("nothing was changed"), "{err}");
    let got = sh.json(&["servers", "get", "weather"]).await;
    assert_eq!(got["name"], before, "{got}");

    // delete
    sh.ok(&["servers", "delete", "weather"]).await;
    let err = sh.fails(&["servers", "get", "weather"]).await;
    let message = api_message(&app, &token, &format!("/v1/servers/{server_id}")).await;
    assert!(err.contains(&message), "{err} vs {message}");
    let list = sh.json(&["servers", "list"]).await;
    assert!(!ids(&list, "id").contains(&server_id), "{list}");
}

#[tokio::test]
async fn errors_print_the_api_message_or_name_the_problem() {
    let app = TestApp::spawn().await;
    let sh = Shell::new(&app);

    // Not logged in: say how to log in, without asking the server.
    let err = sh.fails(&["project", "list"]).await;
    assert!(err.contains("auth login"), "{err}");

    sh.login().await;
    let token = sh.token();
    let err = sh.fails(&["servers", "get", "nope"]).await;
    let message = api_message(&app, &token, "/v1/servers/nope").await;
    assert_eq!(err.trim_end(), format!("error: {message}"));

    // Nobody listening: one line naming the URL.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let offline = Shell {
        url: dead.clone(),
        ..Shell::with_api_key(&app, "ezf_live_whatever")
    };
    let err = offline.fails(&["servers", "list"]).await;
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&dead), "{err}");
}
