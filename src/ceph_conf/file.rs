//! ceph.conf, read the way Ceph reads it: `[section]` headers, `key = value` lines, `#` and
//! `;` comments (whole-line or after a value), `"quoted"` values, a trailing `\` continuing
//! a line, key names compared with spaces, `-` and `_` alike. A daemon named `client.admin`
//! takes each option from `[client.admin]`, else `[client]`, else `[global]`.

use std::collections::BTreeMap;
use std::path::Path;

use super::args::normalize;

#[derive(Debug, Default, Clone)]
pub struct ConfFile {
    /// section → normalized key → raw value (metavariables not yet expanded).
    sections: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Syntax {
        path: String,
        line: usize,
        reason: &'static str,
    },
}

impl ConfFile {
    pub fn load(path: &Path) -> Result<Self, ConfError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|(line, reason)| ConfError::Syntax {
            path: shown,
            line,
            reason,
        })
    }

    /// Parses conf text; an error names the (1-based) line.
    pub fn parse(text: &str) -> Result<Self, (usize, &'static str)> {
        let mut conf = ConfFile::default();
        let mut section: Option<String> = None;
        let mut pending = String::new();
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            if let Some(head) = raw.strip_suffix('\\') {
                pending.push_str(head);
                continue;
            }
            pending.push_str(raw);
            let line = std::mem::take(&mut pending);
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let name = strip_comment(rest)
                    .trim_end()
                    .strip_suffix(']')
                    .ok_or((line_no, "section header without ']'"))?;
                section = Some(name.trim().to_string());
                conf.sections.entry(name.trim().to_string()).or_default();
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or((line_no, "expected 'key = value'"))?;
            let section = section
                .as_ref()
                .ok_or((line_no, "option outside of any section"))?;
            let value = unquote(strip_comment(value.trim()).trim())
                .ok_or((line_no, "unterminated quoted value"))?;
            conf.sections
                .entry(section.clone())
                .or_default()
                .insert(normalize(key), value);
        }
        Ok(conf)
    }

    /// Every option that applies to `name` (e.g. `client.admin`), the most specific
    /// section winning.
    pub fn options_for(&self, name: &str) -> BTreeMap<String, String> {
        let kind = name.split('.').next().unwrap_or(name);
        let mut out = BTreeMap::new();
        for section in ["global", kind, name] {
            if let Some(values) = self.sections.get(section) {
                out.extend(values.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        out
    }
}

/// Drops a `#` or `;` comment that follows a value (not one inside quotes).
fn strip_comment(s: &str) -> &str {
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' | ';' if !quoted => return &s[..i],
            _ => {}
        }
    }
    s
}

/// `"a b"` → `a b` (with `\"` and `\\` escapes); unquoted values are kept as written.
fn unquote(s: &str) -> Option<String> {
    let Some(inner) = s.strip_prefix('"') else {
        return Some(s.to_string());
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return Some(out),
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
# a comment
[global]
mon host = 127.0.0.1:6789   ; trailing comment
log file = /var/log/$cluster-$name.log
admin-socket = "/run/a b#c.asok"
rbd_mirror_journal_poll_age = 5
[client]
rbd mirror journal poll age = 1 # client wins over global
long value = one \
two
[client.admin]
rbd-mirror-journal-poll-age = 0.5
[client.other]
keyring = /other
"#;

    #[test]
    fn most_specific_section_wins() {
        let c = ConfFile::parse(TEXT).unwrap();
        let admin = c.options_for("client.admin");
        assert_eq!(admin["rbd_mirror_journal_poll_age"], "0.5");
        assert_eq!(admin["mon_host"], "127.0.0.1:6789");
        assert_eq!(admin["admin_socket"], "/run/a b#c.asok");
        assert_eq!(admin["log_file"], "/var/log/$cluster-$name.log");
        assert_eq!(admin["long_value"], "one two");
        assert!(!admin.contains_key("keyring"));
        let b = c.options_for("client.b");
        assert_eq!(b["rbd_mirror_journal_poll_age"], "1");
        assert_eq!(c.options_for("osd.0")["rbd_mirror_journal_poll_age"], "5");
    }

    #[test]
    fn bad_lines_name_their_line() {
        assert_eq!(ConfFile::parse("[global\n").unwrap_err().0, 1);
        assert_eq!(ConfFile::parse("x = 1\n").unwrap_err().0, 1);
        assert_eq!(ConfFile::parse("[global]\n\njunk\n").unwrap_err().0, 3);
        assert!(ConfFile::parse("[global]\na = \"open\n").is_err());
    }
}
