//! Bad input and hostile paths: a 4xx with the error shape, nothing written.

use super::*;

#[tokio::test]
async fn bad_input_is_a_4xx_with_the_error_shape_and_writes_nothing() {
    let app = roomy().await;
    let (admin, project, server) = basics(&app).await;
    let write_endpoints: Vec<(&str, String, Value)> = vec![
        (
            "POST",
            "/v1/projects".into(),
            json!({ "name": "Valid Name" }),
        ),
        (
            "PATCH",
            format!("/v1/projects/{project}"),
            json!({ "name": "Valid Name" }),
        ),
        (
            "POST",
            format!("/v1/projects/{project}/members"),
            json!({ "email": "admin@example.com" }),
        ),
        (
            "POST",
            format!("/v1/projects/{project}/keys"),
            json!({ "name": "k", "scopes": ["servers:read"] }),
        ),
        (
            "POST",
            format!("/v1/projects/{project}/servers"),
            json!({ "name": "Valid Server" }),
        ),
        (
            "PATCH",
            format!("/v1/servers/{server}"),
            json!({ "name": "Valid Server" }),
        ),
        (
            "PATCH",
            format!("/v1/servers/{server}/auth"),
            json!({ "authMode": "ezforge_managed" }),
        ),
        (
            "POST",
            format!("/v1/servers/{server}/clients"),
            json!({ "name": "c", "redirectUris": ["https://a.example.com/cb"] }),
        ),
        (
            "POST",
            format!("/v1/servers/{server}/env"),
            json!({ "name": "OK", "value": "v" }),
        ),
        (
            "PUT",
            format!("/v1/servers/{server}/env/OK"),
            json!({ "value": "v" }),
        ),
        (
            "POST",
            "/v1/users".into(),
            json!({ "email": "valid@example.com" }),
        ),
        (
            "POST",
            "/v1/auth/login".into(),
            json!({ "email": "x@example.com", "password": "y" }),
        ),
        (
            "POST",
            "/v1/auth/invite".into(),
            json!({ "token": "t", "password": "p" }),
        ),
        (
            "POST",
            "/v1/invitations/accept".into(),
            json!({ "token": "t" }),
        ),
    ];
    let counts = table_counts(&app);
    let huge = {
        let mut v = b"{\"name\": \"".to_vec();
        v.extend(std::iter::repeat_n(b'a', 1024 * 1024 + 10));
        v.extend_from_slice(b"\"}");
        v
    };
    let mut failures = Vec::new();
    for (method, path, valid) in &write_endpoints {
        let mut cases: Vec<BadCase> = vec![
            (
                "malformed JSON".into(),
                Some("application/json"),
                b"{\"name\": ".to_vec(),
                vec![400],
            ),
            (
                "trailing garbage".into(),
                Some("application/json"),
                b"{} x".to_vec(),
                vec![400],
            ),
            (
                "a JSON array".into(),
                Some("application/json"),
                b"[]".to_vec(),
                vec![400],
            ),
            (
                "a JSON string".into(),
                Some("application/json"),
                b"\"x\"".to_vec(),
                vec![400],
            ),
            (
                "JSON null".into(),
                Some("application/json"),
                b"null".to_vec(),
                vec![400],
            ),
            (
                "empty body".into(),
                Some("application/json"),
                Vec::new(),
                vec![400],
            ),
            (
                "invalid UTF-8".into(),
                Some("application/json"),
                b"{\"name\": \"\xff\xfe\"}".to_vec(),
                vec![400],
            ),
            (
                "a lone surrogate".into(),
                Some("application/json"),
                br#"{"name": "\ud800"}"#.to_vec(),
                vec![400],
            ),
            (
                "a body over 1 MiB".into(),
                Some("application/json"),
                huge.clone(),
                vec![413],
            ),
            (
                "text/plain".into(),
                Some("text/plain"),
                serde_json::to_vec(valid).expect("json"),
                vec![415],
            ),
            (
                "no content type".into(),
                None,
                serde_json::to_vec(valid).expect("json"),
                vec![415],
            ),
            (
                "form encoded".into(),
                Some("application/x-www-form-urlencoded"),
                b"name=x".to_vec(),
                vec![415],
            ),
        ];
        // An unknown field next to valid ones: 400 naming it.
        let mut unknown = valid.clone();
        unknown["sneakyField"] = json!(true);
        cases.push((
            "unknown field".into(),
            Some("application/json"),
            serde_json::to_vec(&unknown).expect("json"),
            vec![400],
        ));
        // Each known field with the wrong type.
        for (field, v) in valid.as_object().expect("object") {
            for wrong in [json!(12345), json!({ "nested": true }), json!([1, 2])] {
                if wrong == *v {
                    continue;
                }
                let mut b = valid.clone();
                b[field] = wrong.clone();
                cases.push((
                    format!("{field} = {wrong}"),
                    Some("application/json"),
                    serde_json::to_vec(&b).expect("json"),
                    vec![400, 422],
                ));
            }
        }
        for (label, ct, body, mut allowed) in cases {
            if path == "/v1/auth/login" && label.contains(" = ") {
                // A refused login is a 401 whatever the reason; still a 4xx in the error shape.
                allowed.push(401);
            }
            let res = send_raw(&app, method, path, Some(&admin), ct, body).await;
            let cell = format!("{method} {path} with {label}");
            if !allowed.contains(&res.status) {
                failures.push(format!(
                    "{cell}: expected {allowed:?}, got {} {}",
                    res.status,
                    res.text.chars().take(200).collect::<String>()
                ));
                continue;
            }
            let e = &res.body["error"];
            if !(e["code"].is_string() && e["message"].is_string() && e["details"].is_object()) {
                failures.push(format!("{cell}: not the error shape: {}", res.text));
            }
            if label == "unknown field" && !res.text.contains("sneakyField") {
                failures.push(format!(
                    "{cell}: the message must name the field: {}",
                    res.text
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(table_counts(&app), counts, "refused requests wrote nothing");
}

#[tokio::test]
async fn hostile_paths_and_query_strings_are_4xx_not_500() {
    let app = TestApp::spawn().await;
    let (admin, _, server) = basics(&app).await;
    let long = "a".repeat(5000);
    let paths = [
        format!("/v1/projects/{long}"),
        format!("/v1/servers/{long}/env"),
        "/v1/servers/%00".to_owned(),
        "/v1/servers/%FF%FE".to_owned(),
        "/v1/servers/%F0%9F%9A%80".to_owned(),
        "/v1/servers/..%2F..%2Fetc%2Fpasswd".to_owned(),
        "/v1/projects/'%20OR%201=1--".to_owned(),
        "/v1/keys/%E2%80%AE".to_owned(),
        format!("/v1/servers/{server}/clients/%00"),
        format!("/v1/servers/{server}/env/%FF"),
        "/v1/projects?limit=99999999999999999999999".to_owned(),
        format!("/v1/projects?cursor={long}"),
        "/v1/nope".to_owned(),
        "/api/v1/nope".to_owned(),
    ];
    for p in &paths {
        for method in ["GET", "DELETE", "PUT", "PATCH"] {
            let res = call(
                &app,
                method,
                p,
                Some(&admin),
                Some(&json!({ "value": "v" })),
            )
            .await;
            assert!(
                (400..500).contains(&res.status),
                "{method} {p}: expected a 4xx, got {} {}",
                res.status,
                res.text
            );
            res.assert_error_shape();
        }
    }
    // Unsupported methods on known resources: 405 in the same shape.
    let res = call(&app, "PUT", "/v1/projects", Some(&admin), Some(&json!({}))).await;
    assert_eq!(res.status, 405, "{}", res.text);
    res.assert_error_shape();
}
