//! Ceph's command-line conventions, as its daemons parse `CEPH_ARGS` and their arguments:
//! every option is `--name value` or `--name=value`, with `_` and `-` interchangeable in the
//! name; a boolean option alone means true; a handful of short flags (`-c`, `-i`, `-n`, `-k`,
//! `-m`, `-f`, `-d`) stand for long ones. Options are kept by their normalized name
//! (`rbd_mirror_journal_poll_age`), in the order given, so a later one wins. Which options
//! mean something is decided elsewhere ([`super::options`]): unknown ones are kept, not
//! refused, because rbd-mirror's command lines carry many options we have no use for.

/// What a command line held.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Args {
    /// `(normalized name, value)` in the order given.
    pub options: Vec<(String, String)>,
    pub help: bool,
    pub version: bool,
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ArgError {
    #[error("option {0} needs a value")]
    MissingValue(String),
    #[error("unexpected argument '{0}' (see --help)")]
    Unexpected(String),
}

/// Options that are true or false: alone they mean true, and a following word is taken as
/// their value only when it reads as a boolean.
const BOOLEANS: &[&str] = &[
    "daemonize",
    "log_to_stderr",
    "err_to_stderr",
    "log_to_syslog",
    "no_config_file",
    "no_mon_config",
];

/// Ceph's option names compare with spaces, `-` and `_` alike; `_` is the canonical form.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for word in name.split_whitespace() {
        if !out.is_empty() {
            out.push('_');
        }
        out.extend(word.chars().map(|c| if c == '-' { '_' } else { c }));
    }
    out
}

/// `true`/`false` the way Ceph reads booleans (also `1`/`0`, `yes`/`no`).
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// A word that starts a new option rather than being a value (`-5` is a value).
fn is_option(word: &str) -> bool {
    word.starts_with('-') && word.parse::<f64>().is_err()
}

/// Splits `CEPH_ARGS` the way a shell would for plain words (no quoting, as Ceph does).
pub fn split_env(value: &str) -> Vec<String> {
    value.split_whitespace().map(str::to_string).collect()
}

pub fn parse(words: &[String]) -> Result<Args, ArgError> {
    let mut args = Args::default();
    let mut words = words.iter().peekable();
    let set = |args: &mut Args, name: &str, value: &str| {
        args.options.push((name.to_string(), value.to_string()));
    };
    while let Some(word) = words.next() {
        let short_long = match word.as_str() {
            "-h" | "--help" => {
                args.help = true;
                continue;
            }
            "-v" | "--version" => {
                args.version = true;
                continue;
            }
            "-f" | "--foreground" => {
                set(&mut args, "daemonize", "false");
                continue;
            }
            "-d" => {
                set(&mut args, "daemonize", "false");
                set(&mut args, "log_file", "");
                set(&mut args, "log_to_stderr", "true");
                continue;
            }
            "--" => continue,
            "-c" => Some("conf"),
            "-i" => Some("id"),
            "-n" => Some("name"),
            "-k" => Some("keyring"),
            "-m" => Some("mon_host"),
            _ => None,
        };
        let (name, inline) = match (short_long, word.strip_prefix("--")) {
            (Some(long), _) => (long.to_string(), None),
            (None, Some(rest)) if !rest.is_empty() => match rest.split_once('=') {
                Some((n, v)) => (normalize(n), Some(v.to_string())),
                None => (normalize(rest), None),
            },
            _ => return Err(ArgError::Unexpected(word.clone())),
        };
        let value = match inline {
            Some(v) => v,
            None if BOOLEANS.contains(&name.as_str()) => {
                match words.peek().filter(|w| parse_bool(w).is_some()) {
                    Some(w) => {
                        let w = w.to_string();
                        words.next();
                        w
                    }
                    None => "true".into(),
                }
            }
            None => match words.peek() {
                Some(w) if !is_option(w) => {
                    let w = w.to_string();
                    words.next();
                    w
                }
                // An unknown option with no value is a flag; a known one needs its value.
                _ if short_long.is_some() => return Err(ArgError::MissingValue(word.clone())),
                _ => "true".into(),
            },
        };
        set(&mut args, &name, &value);
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    fn opts(s: &str) -> Vec<(String, String)> {
        parse(&words(s)).unwrap().options
    }

    fn pair(n: &str, v: &str) -> (String, String) {
        (n.into(), v.into())
    }

    #[test]
    fn both_spellings_and_both_value_forms() {
        let want = vec![pair("rbd_mirror_journal_poll_age", "0.5")];
        assert_eq!(opts("--rbd-mirror-journal-poll-age 0.5"), want);
        assert_eq!(opts("--rbd_mirror_journal_poll_age=0.5"), want);
        assert_eq!(opts("--rbd-mirror_journal-poll_age=0.5"), want);
        assert_eq!(opts("--admin-socket="), vec![pair("admin_socket", "")]);
    }

    #[test]
    fn short_flags_stand_for_long_options() {
        assert_eq!(
            opts("-c x.conf -i admin -n client.b -k k -m 1.2.3.4 -f"),
            vec![
                pair("conf", "x.conf"),
                pair("id", "admin"),
                pair("name", "client.b"),
                pair("keyring", "k"),
                pair("mon_host", "1.2.3.4"),
                pair("daemonize", "false"),
            ]
        );
        assert_eq!(
            opts("-d"),
            vec![
                pair("daemonize", "false"),
                pair("log_file", ""),
                pair("log_to_stderr", "true")
            ]
        );
        assert_eq!(
            parse(&words("-i")),
            Err(ArgError::MissingValue("-i".into()))
        );
    }

    #[test]
    fn booleans_alone_are_true_and_take_only_boolean_words() {
        assert_eq!(
            opts("--daemonize --cluster b"),
            vec![pair("daemonize", "true"), pair("cluster", "b")]
        );
        assert_eq!(opts("--daemonize false"), vec![pair("daemonize", "false")]);
        assert_eq!(opts("--daemonize=false"), vec![pair("daemonize", "false")]);
    }

    #[test]
    fn unknown_options_are_kept_flags_included() {
        assert_eq!(
            opts("--debug-rbd-mirror 20/20 --some-flag --x -1"),
            vec![
                pair("debug_rbd_mirror", "20/20"),
                pair("some_flag", "true"),
                pair("x", "-1")
            ]
        );
    }

    #[test]
    fn stray_words_are_errors_help_and_version_are_seen() {
        assert_eq!(
            parse(&words("run")),
            Err(ArgError::Unexpected("run".into()))
        );
        assert_eq!(parse(&words("-z")), Err(ArgError::Unexpected("-z".into())));
        let a = parse(&words("--help -v")).unwrap();
        assert!(a.help && a.version);
    }

    #[test]
    fn names_normalize_like_ceph() {
        assert_eq!(normalize("log file"), "log_file");
        assert_eq!(
            normalize("  rbd mirror-journal  poll_age "),
            "rbd_mirror_journal_poll_age"
        );
    }
}
