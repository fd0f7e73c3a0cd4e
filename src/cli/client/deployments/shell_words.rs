//! A command line split into arguments the way a POSIX shell quotes (`split_command`), and an
//! argument quoted so that it splits back to itself (`quote_arg`).

use anyhow::bail;

/// An argument as `split_command` would read it back: quoted when it holds blanks or quotes.
pub(super) fn quote_arg(a: &str) -> String {
    if !a.is_empty()
        && !a
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '\'' | '"' | '\\'))
    {
        return a.to_owned();
    }
    format!("'{}'", a.replace('\'', r"'\''"))
}

/// Splits a command line into arguments the way a POSIX shell's quoting does, without any
/// expansion: blanks separate arguments; `'…'` keeps everything literally; `"…"` keeps
/// everything but `\"`, `\\`, `` \` `` and `\$`, which lose their backslash; outside quotes a
/// backslash makes the next character literal. `""` is an empty argument.
pub(super) fn split_command(line: &str) -> anyhow::Result<Vec<String>> {
    let mut args = Vec::new();
    let mut current = String::new();
    // Whether an argument has begun: `''` makes an empty one, blanks alone none.
    let mut started = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if started {
                    args.push(std::mem::take(&mut current));
                    started = false;
                }
            }
            '\'' => {
                started = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => current.push(c),
                        None => bail!("unbalanced single quote in {line:?}"),
                    }
                }
            }
            '"' => {
                started = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '`' | '$')) => current.push(c),
                            // A backslash-newline inside double quotes continues the line.
                            Some('\n') => {}
                            Some(c) => {
                                current.push('\\');
                                current.push(c);
                            }
                            None => bail!("unbalanced double quote in {line:?}"),
                        },
                        Some(c) => current.push(c),
                        None => bail!("unbalanced double quote in {line:?}"),
                    }
                }
            }
            '\\' => match chars.next() {
                // A backslash-newline is a line continuation: it vanishes.
                Some('\n') => {}
                Some(c) => {
                    started = true;
                    current.push(c);
                }
                None => bail!("trailing backslash in {line:?}: escape it as \\\\"),
            },
            c => {
                started = true;
                current.push(c);
            }
        }
    }
    if started {
        args.push(current);
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<String> {
        split_command(s).expect("splits")
    }

    #[test]
    fn blanks_separate_arguments() {
        assert_eq!(split("python3 srv.py"), ["python3", "srv.py"]);
        assert_eq!(
            split("  node\tserver.js \n --port  3001 "),
            ["node", "server.js", "--port", "3001"]
        );
        assert!(split("").is_empty());
        assert!(split("   ").is_empty());
    }

    #[test]
    fn quotes_keep_blanks_and_join_with_their_neighbours() {
        assert_eq!(split("echo 'a b' \"c d\""), ["echo", "a b", "c d"]);
        assert_eq!(split("--name='my server'x"), ["--name=my serverx"]);
        assert_eq!(split(r#"a"b"'c'd"#), ["abcd"]);
        assert_eq!(
            split("sh -c 'echo \"$HOME\" | wc'"),
            ["sh", "-c", "echo \"$HOME\" | wc"]
        );
        assert_eq!(split(r#"it"'"s"#), ["it's"]);
    }

    #[test]
    fn empty_quotes_are_empty_arguments() {
        assert_eq!(split("prog '' \"\""), ["prog", "", ""]);
        assert_eq!(split("''"), [""]);
    }

    #[test]
    fn backslashes_escape() {
        assert_eq!(split(r"a\ b c"), ["a b", "c"]);
        assert_eq!(split(r"\'x\' \\"), ["'x'", "\\"]);
        // Inside double quotes only " \ ` $ are escapable; other backslashes stay.
        assert_eq!(split(r#""a\"b" "c\\d" "e\nf""#), ["a\"b", "c\\d", "e\\nf"]);
        // Inside single quotes nothing is.
        assert_eq!(split(r"'a\b'"), ["a\\b"]);
        assert_eq!(split("a\\\nb"), ["ab"]);
    }

    #[test]
    fn no_expansion_happens() {
        assert_eq!(
            split("ls $HOME *.py > out"),
            ["ls", "$HOME", "*.py", ">", "out"]
        );
    }

    #[test]
    fn unbalanced_quotes_and_a_trailing_backslash_are_errors() {
        let err = |s: &str| split_command(s).expect_err(s).to_string();
        assert!(err("echo 'a b").starts_with("unbalanced single quote"));
        assert!(err("echo \"a b").starts_with("unbalanced double quote"));
        assert!(err(r#"echo "a\"#).starts_with("unbalanced double quote"));
        assert!(err("echo a\\").starts_with("trailing backslash"));
    }

    #[test]
    fn quoted_arguments_split_back_to_themselves() {
        let argv = ["prog", "a b", "it's", "", "x\"y", r"c:\dir", "plain"];
        let line = argv
            .iter()
            .map(|a| quote_arg(a))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(split(&line), argv);
    }
}
