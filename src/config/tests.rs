//! The loader's and the rules' unit tests.

use std::path::Path;

use super::units::parse_byte_size;
use super::*;

fn load_toml(text: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).expect("write");
    Config::load_from(Some(&path), &[])
}

#[test]
fn defaults_are_valid() {
    let c = Config::load_from(None, &[]).expect("defaults");
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.auth.access_token_ttl.as_secs(), 900);
    assert_eq!(c.public_url_for(c.server.listen), "http://127.0.0.1:8080");
}

#[test]
fn the_sandbox_is_set_as_a_table_a_shorthand_or_from_the_environment() {
    let c = load_toml("[deploy]\nsandbox = \"off\"\n").expect("shorthand");
    assert_eq!(c.deploy.sandbox.mode, SandboxMode::Off);
    let c =
        load_toml("[deploy.sandbox]\nmode = \"off\"\nread_paths = [\"/srv\"]\n").expect("table");
    assert_eq!(c.deploy.sandbox.mode, SandboxMode::Off);
    for var in ["EZFORGE_DEPLOY__SANDBOX", "EZFORGE_DEPLOY__SANDBOX__MODE"] {
        let c = Config::load_from(None, &[(var.into(), "off".into())]).expect(var);
        assert_eq!(c.deploy.sandbox.mode, SandboxMode::Off, "{var}");
    }
    let err = load_toml("[deploy.sandbox]\nread_paths = [\"relative\"]\n").expect_err("relative");
    assert!(
        err.to_string().contains("deploy.sandbox.read_paths"),
        "{err}"
    );
    let err = load_toml("[deploy]\nrun_as = \" \"\n").expect_err("empty user");
    assert!(err.to_string().contains("deploy.run_as"), "{err}");
}

#[test]
fn run_as_is_per_server_or_a_named_user_and_reads_back_as_written() {
    assert_eq!(Config::default().deploy.run_as, ProgramUser::PerServer);
    let c = load_toml("[deploy]\nrun_as = \" per-server \"\n").expect("per-server");
    assert_eq!(c.deploy.run_as, ProgramUser::PerServer);
    let env = [("EZFORGE_DEPLOY__RUN_AS".to_owned(), "mcp:mcp".to_owned())];
    let c = Config::load_from(None, &env).expect("named");
    assert_eq!(c.deploy.run_as, ProgramUser::Named("mcp:mcp".into()));
    assert!(c.to_redacted_toml().contains("run_as = \"mcp:mcp\""));
    assert!(
        Config::default()
            .to_redacted_toml()
            .contains("run_as = \"per-server\"")
    );
}

#[test]
fn unknown_key_names_key_and_file() {
    let err = load_toml("[server]\nlisen = \"127.0.0.1:1\"\n").expect_err("unknown key");
    let msg = err.to_string();
    assert!(msg.contains("lisen"), "{msg}");
    assert!(msg.contains("c.toml"), "{msg}");
    assert!(msg.contains("did you mean `listen`?"), "{msg}");
}

#[test]
fn bad_duration_names_key() {
    let err = load_toml("[auth]\naccess_token_ttl = \"soon\"\n").expect_err("bad duration");
    let msg = err.to_string();
    assert!(msg.contains("auth.access_token_ttl"), "{msg}");
    assert!(msg.contains("invalid duration"), "{msg}");
}

#[test]
fn durations_and_sizes_parse() {
    let c = load_toml("[auth]\naccess_token_ttl = \"5m\"\n[gateway]\nbody_limit = \"64KiB\"\n")
        .expect("valid");
    assert_eq!(c.auth.access_token_ttl.as_secs(), 300);
    assert_eq!(c.gateway.body_limit.0, 65536);
    assert_eq!(parse_byte_size("4MiB"), Some(4 << 20));
    assert_eq!(parse_byte_size("12"), Some(12));
    assert_eq!(parse_byte_size("1 parsec"), None);
}

#[test]
fn non_loopback_without_tls_is_refused_unless_https_public_url() {
    let err = load_toml("[server]\nlisten = \"0.0.0.0:8080\"\n").expect_err("refused");
    assert!(err.to_string().contains("server.listen"));
    load_toml("[server]\nlisten = \"0.0.0.0:8080\"\npublic_url = \"https://auth.example.com\"\n")
        .expect("proxy terminates TLS");
}

#[test]
fn public_url_rules() {
    let err =
        load_toml("[server]\npublic_url = \"https://x.example.com/sub\"\n").expect_err("path");
    assert!(err.to_string().contains("server.public_url"));
    let c = load_toml("[server]\npublic_url = \"https://x.example.com/\"\n").expect("slash ok");
    assert_eq!(c.public_url_for(c.server.listen), "https://x.example.com");
}

#[test]
fn host_routing_needs_domain() {
    let err = load_toml("[gateway]\nrouting = \"host\"\n").expect_err("domain");
    assert!(err.to_string().contains("gateway.server_domain"));
}

#[test]
fn secrets_are_redacted_in_output() {
    let c = load_toml("[bootstrap]\nadmin_password = \"hunter2hunter2\"\n").expect("valid");
    let out = c.to_redacted_toml();
    assert!(!out.contains("hunter2"), "{out}");
    assert!(out.contains("***"));
}

#[test]
fn missing_file_is_an_error() {
    let err =
        Config::load_from(Some(Path::new("/nonexistent/ezforge.toml")), &[]).expect_err("missing");
    assert!(err.to_string().contains("/nonexistent/ezforge.toml"));
}

#[test]
fn env_overrides_file_and_names_the_variable() {
    let env = vec![
        (
            "EZFORGE_SERVER__LISTEN".to_owned(),
            "127.0.0.1:9999".to_owned(),
        ),
        (
            "EZFORGE_BOOTSTRAP__ADMIN_PASSWORD".to_owned(),
            "123456789012".to_owned(),
        ),
        ("EZFORGE_URL".to_owned(), "http://ignored".to_owned()),
    ];
    let c = Config::load_from(None, &env).expect("valid");
    assert_eq!(c.server.listen.port(), 9999);
    assert_eq!(
        c.bootstrap.admin_password.as_ref().map(Secret::expose),
        Some("123456789012")
    );
    let bad = vec![("EZFORGE_AUTH__SESSION_TTL".to_owned(), "forever".to_owned())];
    let msg = Config::load_from(None, &bad).expect_err("bad").to_string();
    assert!(msg.contains("EZFORGE_AUTH__SESSION_TTL"), "{msg}");
    let unknown = vec![("EZFORGE_SERVER__NOPE".to_owned(), "1".to_owned())];
    let msg = Config::load_from(None, &unknown)
        .expect_err("unknown")
        .to_string();
    assert!(msg.contains("nope"), "{msg}");
}

#[test]
fn one_key_of_a_rate_limit_keeps_the_default_of_the_other() {
    let env = vec![
        (
            "EZFORGE_AUTH__RATE_LIMIT__PER_MINUTE".to_owned(),
            "5".to_owned(),
        ),
        (
            "EZFORGE_CONTROL__RATE_LIMIT__BURST".to_owned(),
            "7".to_owned(),
        ),
    ];
    let c = Config::load_from(None, &env).expect("valid");
    assert_eq!(
        (c.auth.rate_limit.per_minute, c.auth.rate_limit.burst),
        (5, 200)
    );
    assert_eq!(
        (c.control.rate_limit.per_minute, c.control.rate_limit.burst),
        (600, 7)
    );
    assert_eq!(c.gateway.rate_limit, Config::default().gateway.rate_limit);
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[gateway.rate_limit]\nburst = 9\n").expect("write");
    let c = Config::load_from(Some(&path), &[]).expect("valid");
    assert_eq!(
        (c.gateway.rate_limit.per_minute, c.gateway.rate_limit.burst),
        (1200, 9)
    );
    // Zero, and sizes the limiter cannot represent, are refused by name.
    for (key, value) in [
        ("EZFORGE_GATEWAY__RATE_LIMIT__BURST", "0"),
        ("EZFORGE_CONTROL__RATE_LIMIT__BURST", "4294967295"),
        ("EZFORGE_AUTH__RATE_LIMIT__PER_MINUTE", "100000001"),
    ] {
        let env = vec![(key.to_owned(), value.to_owned())];
        let msg = Config::load_from(None, &env).expect_err(key).to_string();
        assert!(msg.contains("between 1 and 100000000"), "{key}: {msg}");
    }
}

#[test]
fn durations_are_at_most_ten_years() {
    let env = vec![("EZFORGE_AUTH__SESSION_TTL".to_owned(), "8000y".to_owned())];
    let msg = Config::load_from(None, &env)
        .expect_err("too long")
        .to_string();
    assert!(msg.contains("at most 10 years"), "{msg}");
    let env = vec![("EZFORGE_AUTH__SESSION_TTL".to_owned(), "3650d".to_owned())];
    assert!(Config::load_from(None, &env).is_ok());
}

#[test]
fn a_declared_byoa_server_needs_an_issuer() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("c.toml");
    let server = "[[servers]]\nproject = \"p\"\nslug = \"s\"\nauth_mode = \"byoa\"\n";
    std::fs::write(&path, server).expect("write");
    let msg = Config::load_from(Some(&path), &[])
        .expect_err("no issuer")
        .to_string();
    assert!(msg.contains("servers[0].byoa"), "{msg}");
    let issuer = "[servers.byoa]\nauthorization_endpoint = \"https://idp.example/authorize\"\n\
        token_endpoint = \"https://idp.example/token\"\njwks_uri = \"https://idp.example/jwks\"\n\
        issuer = \"https://idp.example\"\n";
    std::fs::write(&path, format!("{server}{issuer}")).expect("write");
    Config::load_from(Some(&path), &[]).expect("its own issuer");
}

#[test]
fn a_declared_tool_scope_is_never_an_openid_or_refresh_scope() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("c.toml");
    let server =
        "[[servers]]\nproject = \"p\"\nslug = \"s\"\nupstream = \"http://127.0.0.1:3001/mcp\"\n";
    for reserved in crate::domain::scopes::RESERVED_SCOPES {
        let toml = format!("{server}[servers.tool_scopes]\ndelete_repo = \"{reserved}\"\n");
        std::fs::write(&path, toml).expect("write");
        let msg = Config::load_from(Some(&path), &[])
            .expect_err(reserved)
            .to_string();
        assert!(
            msg.contains("servers[0].tool_scopes.delete_repo") && msg.contains("reserved"),
            "{msg}"
        );
    }
    let toml = format!("{server}[servers.tool_scopes]\ndelete_repo = \"repo:delete\"\n");
    std::fs::write(&path, toml).expect("write");
    Config::load_from(Some(&path), &[]).expect("an ordinary tool scope");
}
#[test]
fn durations_print_in_whole_units() {
    assert_eq!(Duration::secs(90 * 86_400).to_string(), "90d");
    assert_eq!(Duration::secs(900).to_string(), "15m");
    assert_eq!(Duration::secs(7200).to_string(), "2h");
    assert_eq!(Duration::secs(61).to_string(), "61s");
}

#[test]
fn file_suffix_is_only_for_secrets() {
    let env = vec![
        ("EZFORGE_TLS__MODE".to_owned(), "files".to_owned()),
        (
            "EZFORGE_TLS__CERT_FILE".to_owned(),
            "/etc/ssl/cert.pem".to_owned(),
        ),
        (
            "EZFORGE_TLS__KEY_FILE".to_owned(),
            "/etc/ssl/key.pem".to_owned(),
        ),
    ];
    let c = Config::load_from(None, &env).expect("valid");
    assert_eq!(
        c.tls.cert_file.as_deref(),
        Some(Path::new("/etc/ssl/cert.pem"))
    );
}

#[test]
fn secrets_in_the_environment_are_taken_as_written() {
    for value in ["0123456789012", "true", "1.5e3", "[1,2]", "inf"] {
        let env = vec![("EZFORGE_METRICS__BEARER_TOKEN".to_owned(), value.to_owned())];
        let c = Config::load_from(None, &env).expect(value);
        assert_eq!(
            c.metrics.bearer_token.as_ref().map(Secret::expose),
            Some(value)
        );
    }
    for value in ["0123456789012", "[1,2,3,4,5,6]", "1.000000000e3"] {
        let env = vec![(
            "EZFORGE_BOOTSTRAP__ADMIN_PASSWORD".to_owned(),
            value.to_owned(),
        )];
        let c = Config::load_from(None, &env).expect(value);
        assert_eq!(
            c.bootstrap.admin_password.as_ref().map(Secret::expose),
            Some(value)
        );
    }
    // Other values still read as TOML.
    let env = vec![(
        "EZFORGE_SERVER__LISTEN".to_owned(),
        "127.0.0.1:9999".to_owned(),
    )];
    assert!(Config::load_from(None, &env).is_ok());
}

#[test]
fn file_secret_variables_are_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("pw");
    std::fs::write(&secret, "s3cret-pass-phrase\n").expect("write");
    let env = vec![(
        "EZFORGE_BOOTSTRAP__ADMIN_PASSWORD_FILE".to_owned(),
        secret.display().to_string(),
    )];
    let c = Config::load_from(None, &env).expect("valid");
    assert_eq!(
        c.bootstrap.admin_password.as_ref().map(Secret::expose),
        Some("s3cret-pass-phrase")
    );
}

#[test]
fn a_declared_upstream_is_checked_against_the_destination_rules_and_our_listeners() {
    let declared = |upstream: &str, extra: &str| {
        load_toml(&format!(
            "{extra}[[servers]]\nproject = \"p\"\nslug = \"s\"\nupstream = \"{upstream}\"\n"
        ))
    };
    for (upstream, why) in [
        ("http://169.254.169.254/latest", "link-local"),
        ("http://metadata.google.internal/", "metadata"),
        ("http://127.0.0.1:8080/mcp", "own listener"),
        ("http://localhost:8080/mcp", "own listener"),
        ("http://[::ffff:127.0.0.1]:8080/mcp", "own listener"),
        ("http://0.0.0.0:8080/mcp", "own listener"),
        ("http://0.0.0.0:3000/mcp", "unspecified"),
    ] {
        let msg = declared(upstream, "").expect_err(upstream).to_string();
        assert!(
            msg.contains("servers[0].upstream") && msg.contains(why),
            "{upstream}: {msg}"
        );
    }
    declared("http://127.0.0.1:3001/mcp", "").expect("another local port");
    // The metrics listener is ours too, when it is on.
    let metrics = "[metrics]\nenabled = true\nlisten = \"127.0.0.1:9464\"\n";
    let msg = declared("http://127.0.0.1:9464/", metrics)
        .expect_err("metrics")
        .to_string();
    assert!(msg.contains("own listener"), "{msg}");
    declared("http://127.0.0.1:9464/", "").expect("metrics off");
    // The operator's lists apply; a wrong entry is named with its list.
    let deny = "[gateway]\nupstream_deny = [\"10.0.0.0/8\"]\n";
    let msg = declared("http://10.1.2.3/mcp", deny)
        .expect_err("denied")
        .to_string();
    assert!(msg.contains("gateway.upstream_deny (10.0.0.0/8)"), "{msg}");
    let bad = load_toml("[gateway]\nupstream_deny = [\"10.0.0.0/33\"]\n").expect_err("bad");
    assert!(
        bad.to_string()
            .contains("config key `gateway.upstream_deny`"),
        "{bad}"
    );
}

#[test]
fn a_secret_set_to_nothing_is_an_error_not_no_secret() {
    let metrics = |token: (&str, String)| {
        Config::load_from(
            None,
            &[
                ("EZFORGE_METRICS__ENABLED".into(), "true".into()),
                (token.0.into(), token.1),
            ],
        )
    };
    let err = metrics(("EZFORGE_METRICS__BEARER_TOKEN", String::new())).expect_err("empty");
    assert!(err.to_string().contains("metrics.bearer_token"), "{err}");
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("token");
    std::fs::write(&empty, "\n").expect("write");
    let file = empty.display().to_string();
    let err = metrics(("EZFORGE_METRICS__BEARER_TOKEN_FILE", file)).expect_err("an empty file");
    assert!(err.to_string().contains("metrics.bearer_token"), "{err}");
    let err = load_toml("[metrics]\nenabled = true\nbearer_token = \"\"\n")
        .expect_err("empty in the file");
    assert!(err.to_string().contains("metrics.bearer_token"), "{err}");
    let token_mode = |token: &str| {
        Config::load_from(
            None,
            &[
                ("EZFORGE_AUTH__REGISTRATION__MODE".into(), "token".into()),
                (
                    "EZFORGE_AUTH__REGISTRATION__INITIAL_ACCESS_TOKEN".into(),
                    token.into(),
                ),
            ],
        )
    };
    let err = token_mode("").expect_err("empty");
    assert!(
        err.to_string()
            .contains("auth.registration.initial_access_token"),
        "{err}"
    );
    token_mode("a-token").expect("set");
    // Where nothing is guarded by it, an empty one stops nothing: an admin password after the
    // first start (a compose file's unset variable), a token for metrics that are off.
    Config::load_from(None, &[("EZFORGE_ADMIN_PASSWORD".into(), String::new())])
        .expect("an empty admin password is no error here");
    Config::load_from(
        None,
        &[("EZFORGE_METRICS__BEARER_TOKEN".into(), String::new())],
    )
    .expect("metrics are off");
}

#[test]
fn a_syntax_error_names_its_place_but_never_shows_the_line() {
    let err = load_toml(
        "[bootstrap]\nadmin_email = \"a@b.c\"\nadmin_password = \"hunter2\\q-long-enough\"\n",
    )
    .expect_err("an invalid escape");
    let text = err.to_string();
    assert!(text.contains("line 3"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    let err = load_toml("[server]\nlisten = \n").expect_err("no value");
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[test]
fn the_public_url_is_kept_as_browsers_send_origins() {
    for (written, kept) in [
        ("HTTPS://Auth.Example.com", "https://auth.example.com"),
        ("https://auth.example.com:443/", "https://auth.example.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ] {
        let c = Config::load_from(
            None,
            &[("EZFORGE_SERVER__PUBLIC_URL".into(), written.into())],
        )
        .expect(written);
        assert_eq!(c.server.public_url.as_deref(), Some(kept), "{written}");
    }
    let err = Config::load_from(
        None,
        &[(
            "EZFORGE_SERVER__PUBLIC_URL".into(),
            "https://a.example/path".into(),
        )],
    )
    .expect_err("a path");
    assert!(err.to_string().contains("server.public_url"), "{err}");
}
