//! Env var names a server may not set: those that make a program load or run code other than
//! its own (a preloaded library, an interpreter's startup file or module path, an agent, a
//! package index), so that a value is always data. Refused when written (422 naming the rule);
//! rows stored before these rules stay listed by name and are never passed to a process.
//! Names are compared case-insensitively (npm reads `npm_config_*` too, and no one needs
//! `ld_preload`).

/// (pattern, rule). A pattern ending in `*` is a prefix.
const REFUSED: &[(&str, &str)] = &[
    // The dynamic loader and the C library, in every program.
    ("LD_*", LOADER),
    ("DYLD_*", LOADER),
    ("GCONV_PATH", LOADER),
    ("GETCONF_DIR", LOADER),
    ("GLIBC_TUNABLES", LOADER),
    ("LOCPATH", LOADER),
    ("NLSPATH", LOADER),
    ("OPENSSL_CONF", OPENSSL),
    ("OPENSSL_ENGINES", OPENSSL),
    ("OPENSSL_MODULES", OPENSSL),
    // Shells.
    ("BASH_ENV", SHELL),
    ("ENV", SHELL),
    ("BASH_FUNC_*", SHELL),
    ("SHELLOPTS", SHELL),
    ("BASHOPTS", SHELL),
    ("PS4", SHELL),
    ("PROMPT_COMMAND", SHELL),
    ("ZDOTDIR", SHELL),
    // Interpreters and runtimes.
    ("NODE_OPTIONS", NODE),
    ("NODE_PATH", NODE),
    ("NODE_REPL_EXTERNAL_MODULE", NODE),
    ("NPM_CONFIG_*", NODE),
    // Package managers that read every setting of theirs from `{PREFIX}_{SETTING}` (a config
    // file, an index, a mirror, the package manager itself to download and run): by prefix,
    // as each release adds settings.
    ("YARN_*", NODE),
    ("COREPACK_*", NODE),
    ("PYTHON*", PYTHON),
    ("PIP_*", PYTHON),
    ("UV_*", PYTHON),
    ("PERL5OPT", PERL),
    ("PERL5LIB", PERL),
    ("PERLLIB", PERL),
    ("PERL5DB", PERL),
    ("PERLIO", PERL),
    ("RUBYOPT", RUBY),
    ("RUBYLIB", RUBY),
    ("GEM_HOME", RUBY),
    ("GEM_PATH", RUBY),
    ("BUNDLE_GEMFILE", RUBY),
    ("JAVA_TOOL_OPTIONS", JAVA),
    ("_JAVA_OPTIONS", JAVA),
    ("JDK_JAVA_OPTIONS", JAVA),
    ("CLASSPATH", JAVA),
    ("DOTNET_STARTUP_HOOKS", DOTNET),
    ("DOTNET_ADDITIONAL_DEPS", DOTNET),
    ("DOTNET_SHARED_STORE", DOTNET),
    ("CORECLR_*", DOTNET),
    ("GOFLAGS", GO),
    ("GOTOOLCHAIN", GO),
    ("GOPROXY", GO),
    ("LUA_INIT*", LUA),
    ("LUA_PATH*", LUA),
    ("LUA_CPATH*", LUA),
    ("PHPRC", PHP),
    ("PHP_INI_SCAN_DIR", PHP),
    ("ERL_AFLAGS", ERLANG),
    ("ERL_FLAGS", ERLANG),
    ("ERL_ZFLAGS", ERLANG),
    ("ERL_LIBS", ERLANG),
    ("ELIXIR_ERL_OPTIONS", ERLANG),
    ("JULIA_DEPOT_PATH", JULIA),
    ("JULIA_LOAD_PATH", JULIA),
    ("R_PROFILE*", R),
    ("R_ENVIRON*", R),
    ("R_LIBS*", R),
    // Programs that run other programs named in a variable.
    ("GIT_*", GIT),
    ("SSH_ASKPASS", HELPER),
    ("BROWSER", HELPER),
    ("LESSOPEN", HELPER),
    ("LESSCLOSE", HELPER),
];

/// Names a prefix rule above would catch that only hold plain settings.
const HARMLESS: &[&str] = &[
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONUTF8",
    "PYTHONHASHSEED",
    "PYTHONFAULTHANDLER",
    "PYTHONNOUSERSITE",
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
    "PIP_NO_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",
    // libuv's (Node.js's thread pool and io_uring), not uv's.
    "UV_THREADPOOL_SIZE",
    "UV_USE_IO_URING",
    "UV_NO_CACHE",
    "UV_NO_PROGRESS",
    "YARN_ENABLE_TELEMETRY",
    "COREPACK_ENABLE_DOWNLOAD_PROMPT",
];

const LOADER: &str = "the dynamic loader or the C library loads code or data with it";
const OPENSSL: &str = "OpenSSL loads modules with it";
const SHELL: &str = "shells run code from it";
const NODE: &str = "Node.js or its package managers load code with it";
const PYTHON: &str = "Python or its package installers load code with it";
const PERL: &str = "Perl loads code with it";
const RUBY: &str = "Ruby loads code with it";
const JAVA: &str = "the Java VM loads code with it";
const DOTNET: &str = ".NET loads code with it";
const GO: &str = "the Go toolchain runs or downloads code with it";
const LUA: &str = "Lua loads or runs code with it";
const PHP: &str = "PHP reads code-loading settings with it";
const ERLANG: &str = "the Erlang VM runs or loads code with it";
const JULIA: &str = "Julia loads code with it";
const R: &str = "R runs or loads code with it";
const GIT: &str = "git runs programs and reads configuration with it";
const HELPER: &str = "programs run the command it names";

/// Why `name` may not be set, if it may not: the message for a 422.
pub fn refusal(name: &str) -> Option<String> {
    let upper = name.to_ascii_uppercase();
    if HARMLESS.contains(&upper.as_str()) {
        return None;
    }
    REFUSED
        .iter()
        .find(|(pattern, _)| match pattern.strip_suffix('*') {
            Some(prefix) => upper.starts_with(prefix),
            None => upper == *pattern,
        })
        .map(|(pattern, rule)| {
            format!("{name} may not be set: {rule} (names matching {pattern} are refused)")
        })
}

/// Every refused pattern with its rule, for documentation and tests.
pub fn patterns() -> impl Iterator<Item = (&'static str, &'static str)> {
    REFUSED.iter().copied()
}

/// Context binding a sealed value to its server and name.
pub fn seal_context(server_id: &str, name: &str) -> String {
    format!("env:{server_id}:{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_is_refused_and_names_its_rule() {
        for (pattern, rule) in patterns() {
            let name = pattern.replace('*', "X_1");
            let why = refusal(&name).unwrap_or_else(|| panic!("{name} allowed"));
            assert!(why.contains(rule), "{why}");
            assert!(why.contains(pattern), "{why}");
            assert!(refusal(&name.to_ascii_lowercase()).is_some(), "{name}");
        }
    }

    #[test]
    fn the_issues_list_is_refused() {
        for name in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "LD_AUDIT",
            "DYLD_INSERT_LIBRARIES",
            "NODE_OPTIONS",
            "NODE_PATH",
            "PYTHONPATH",
            "PYTHONSTARTUP",
            "PYTHONHOME",
            "PYTHONWARNINGS",
            "PYTHONBREAKPOINT",
            "PERL5OPT",
            "PERL5LIB",
            "RUBYOPT",
            "BASH_ENV",
            "ENV",
            "JAVA_TOOL_OPTIONS",
            "_JAVA_OPTIONS",
            "GCONV_PATH",
            "npm_config_registry",
            "GIT_SSH_COMMAND",
            "GIT_CONFIG_COUNT",
            "BASH_FUNC_ls",
            // Found in review: the Erlang VM's -eval, package managers' config files,
            // indexes, mirrors and self-downloads, a browser command, Julia's and R's startup.
            "ERL_AFLAGS",
            "ERL_ZFLAGS",
            "ELIXIR_ERL_OPTIONS",
            "YARN_YARN_PATH",
            "YARN_RC_FILENAME",
            "COREPACK_NPM_REGISTRY",
            "PIP_CONFIG_FILE",
            "PIP_TRUSTED_HOST",
            "UV_CONFIG_FILE",
            "UV_PYTHON_INSTALL_MIRROR",
            "BROWSER",
            "JULIA_DEPOT_PATH",
            "R_PROFILE_USER",
            "R_ENVIRON_USER",
        ] {
            assert!(refusal(name).is_some(), "{name}");
        }
    }

    #[test]
    fn ordinary_names_pass() {
        for name in [
            "API_KEY",
            "GITHUB_TOKEN",
            "DATABASE_URL",
            "PATH",
            "HOME",
            "LANG",
            "NODE_ENV",
            "PYTHONUNBUFFERED",
            "pythonunbuffered",
            "GIT_AUTHOR_NAME",
            "ENVIRONMENT",
            "LDAP_URL",
            "PS1",
            "PORT",
            "JAVA_HOME",
            "OPENAI_API_KEY",
            "GITHUB_PERSONAL_ACCESS_TOKEN",
            "PIP_NO_CACHE_DIR",
            "COREPACK_ENABLE_DOWNLOAD_PROMPT",
            "UV_THREADPOOL_SIZE",
            "ERLANG_COOKIE",
            "RUST_LOG",
            "BROWSERSTACK_KEY",
        ] {
            assert_eq!(refusal(name), None, "{name}");
        }
    }
}
