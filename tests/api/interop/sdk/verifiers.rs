//! The documented verifiers of `X-Ezforge-Assertion`, run as programs.

use super::*;

/// The server id the documented verifiers pin, as an example.
const DOCUMENTED_SERVER_ID: &str = "srv_example0server0id0here";

/// The code block of `lang` that the upstream-verification section of the docs shows
/// (docs/front-door.md), with its example URL pointed at `address` and its example server id
/// replaced by `server_id`.
fn documented_verifier(lang: &str, address: &str, server_id: &str) -> String {
    let page = "docs/front-door.md";
    let text = std::fs::read_to_string(manifest_dir().join(page)).expect(page);
    let section = text
        .split_once("# Verifying the front door's identity at the upstream\n")
        .unwrap_or_else(|| panic!("the section in {page}"))
        .1;
    let block = section
        .split_once(&format!("```{lang}\n"))
        .and_then(|(_, rest)| rest.split_once("```"))
        .unwrap_or_else(|| panic!("no {lang} block in the section"))
        .0;
    assert!(block.contains("https://ezforge.example.com"), "{block}");
    assert!(block.contains(DOCUMENTED_SERVER_ID), "{block}");
    block
        .replace("https://ezforge.example.com", address)
        .replace(DOCUMENTED_SERVER_ID, server_id)
}

/// Removes a file when dropped (also when the test fails).
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The documented Python (PyJWT) and TypeScript (jose) verifiers, run as written, accept the
/// assertion an upstream receives and refuse one for another server, one for a new server its
/// project gave the same URL, a tampered one, and an access token.
#[tokio::test]
async fn the_documented_verifiers_accept_ezforge_assertions_and_refuse_others() {
    let Some(tc) = toolchain().await else {
        return;
    };
    let app = TestApp::spawn().await;
    let up = FakeUpstream::start().await;
    let (admin, server) = project_with_server(&app, "weather", &up.url).await;
    let project = server["projectId"].as_str().expect("projectId").to_owned();
    add_server(&app, &admin, &project, "other", &up.url).await;
    let assertion_for = async |slug: &str| {
        let token = crate::gateway::front_door::managed_token(&app, slug, "mcp:read", json!({}));
        let (status, _, body) = rpc(
            &app.url(&format!("/mcp/{slug}")),
            Some(&token),
            json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        up.last_headers()
            .into_iter()
            .find(|(k, _)| k == "x-ezforge-assertion")
            .map(|(_, v)| v)
            .expect("an assertion")
    };
    let good = assertion_for("weather").await;
    let other = assertion_for("other").await;
    // The project deletes weather and makes a new server at the same URL: the same `aud`.
    let server_id = server["id"].as_str().expect("id").to_owned();
    crate::helpers::delete_as(&app, &admin, "/v1/servers/weather")
        .await
        .expect(204);
    add_server(&app, &admin, &project, "weather", &up.url).await;
    let recreated = assertion_for("weather").await;
    let mut tampered = good.clone();
    tampered.truncate(good.len() - 4);
    tampered.push_str("AAAA");
    let access = crate::gateway::front_door::managed_token(&app, "weather", "mcp:read", json!({}));
    let cases = [
        ("good", &good),
        ("other", &other),
        ("recreated", &recreated),
        ("tampered", &tampered),
        ("access", &access),
    ];

    let dir = tempfile::tempdir().expect("tmp");
    let py = dir.path().join("verify.py");
    let mut script = documented_verifier("python", &app.address, &server_id);
    script.push_str(
        "\nimport json, sys\ntry:\n    print('RESULT ' + json.dumps(identity({'X-Ezforge-Assertion': sys.argv[1]})))\nexcept Exception as e:\n    print('REFUSED ' + type(e).__name__ + ': ' + str(e))\n",
    );
    std::fs::write(&py, script).expect("write");
    // In tests/interop, where `jose` resolves; type annotations stripped by Node itself.
    let ts = TempFile(
        tc.dir
            .join(format!(".documented-verifier-{}.mts", std::process::id())),
    );
    let mut script = documented_verifier("ts", &app.address, &server_id);
    script.push_str(
        "\ntry {\n  const claims = await identity(new Headers({ \"x-ezforge-assertion\": process.argv[2] }));\n  console.log(\"RESULT \" + JSON.stringify(claims));\n} catch (e) {\n  console.log(\"REFUSED \" + e);\n}\n",
    );
    std::fs::write(&ts.0, script).expect("write");

    let command = |lang: &str, token: &str| {
        let mut cmd = if lang == "python" {
            let mut cmd = Command::new(&tc.python);
            cmd.arg(&py);
            cmd
        } else {
            let mut cmd = Command::new(&tc.node);
            cmd.current_dir(&tc.dir)
                .args(["--experimental-strip-types", "--no-warnings"])
                .arg(&ts.0);
            cmd
        };
        cmd.arg(token);
        cmd
    };
    for lang in ["python", "typescript"] {
        for (case, token) in &cases {
            let out = run(command(lang, token), Duration::from_secs(60)).await;
            out.assert_success();
            eprintln!("{lang} {case}: {}", out.stdout.trim());
            if *case == "good" {
                let claims = out.result();
                assert_eq!(claims["sub"], "usr_alice", "{lang}: {}", out.describe());
                assert_eq!(claims["aud"], app.url("/mcp/weather"), "{lang}");
                assert_eq!(claims["scope"], "mcp:read", "{lang}");
                assert_eq!(claims["server_id"], server_id, "{lang}");
            } else {
                assert!(
                    out.stdout.starts_with("REFUSED "),
                    "{lang} accepted the {case} token: {}",
                    out.describe()
                );
            }
        }
    }
}
