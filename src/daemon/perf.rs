//! `perf dump` and `perf schema` on the admin socket, in Ceph's shape, from the same series
//! the Prometheus exporter serves (rendered by the recorder, so both always agree): one
//! logger `rbd_relay` for the daemon-wide series and one per image,
//! `rbd_relay_image_<pool>/[<namespace>/]<image>` (as rbd-mirror names its per-image
//! loggers). A counter is the metric's name without the prefix, other labels' values
//! appended with dots (`notifications_total.journal`); a histogram shows as Ceph's time
//! average (`avgcount`, `sum`, `avgtime`).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

const PREFIX: &str = "rbd_relay_";
const IMAGE_LABELS: [&str; 3] = ["pool", "namespace", "image"];

/// One sample line: name, labels, value.
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

#[derive(Default)]
struct Family {
    kind: String,
    help: String,
}

#[derive(Default)]
struct Parsed {
    families: BTreeMap<String, Family>,
    samples: Vec<Sample>,
}

fn parse(text: &str) -> Parsed {
    let mut out = Parsed::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.families.entry(name.into()).or_default().help = help.into();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            out.families.entry(name.into()).or_default().kind = kind.into();
        } else if !line.starts_with('#')
            && let Some(sample) = parse_sample(line)
        {
            out.samples.push(sample);
        }
    }
    out
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' ']).filter(|&end| end > 0)?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            inner = inner.trim_start_matches(',');
            if let Some(after) = inner.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = inner.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next()? {
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (i, '"') => break i,
                    (_, c) => value.push(c),
                }
            };
            labels.push((key.to_string(), value));
            inner = &after[end + 1..];
        }
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// The family a sample belongs to (a histogram's `_bucket`/`_sum`/`_count` lines).
fn family_of<'a>(parsed: &'a Parsed, name: &'a str) -> (&'a str, Option<&'a str>) {
    for part in ["_sum", "_count", "_bucket"] {
        if let Some(base) = name.strip_suffix(part)
            && parsed
                .families
                .get(base)
                .is_some_and(|f| f.kind == "histogram")
        {
            return (base, Some(part));
        }
    }
    (name, None)
}

/// Logger and counter names of a sample.
fn place(family: &str, labels: &[(String, String)]) -> (String, String) {
    let label = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let short = family.strip_prefix(PREFIX).unwrap_or(family);
    let (logger, short) = match (label("pool"), label("image")) {
        (Some(pool), Some(image)) => {
            let ns = label("namespace").filter(|n| !n.is_empty());
            let spec = match ns {
                Some(ns) => format!("{pool}/{ns}/{image}"),
                None => format!("{pool}/{image}"),
            };
            let short = short.strip_prefix("image_").unwrap_or(short);
            (format!("{PREFIX}image_{spec}"), short)
        }
        _ => ("rbd_relay".to_string(), short),
    };
    let mut counter = short.to_string();
    for (k, v) in labels {
        if !IMAGE_LABELS.contains(&k.as_str()) && k != "le" {
            counter.push('.');
            counter.push_str(v);
        }
    }
    (logger, counter)
}

/// Ceph's value kinds: a real number for seconds, else an integer.
fn is_time(family: &str) -> bool {
    family.ends_with("_seconds")
}

/// Each sample but histogram buckets: (sample, family, histogram part, logger, counter).
fn series(parsed: &Parsed) -> impl Iterator<Item = (&Sample, &str, Option<&str>, String, String)> {
    parsed.samples.iter().filter_map(|s| {
        let (family, part) = family_of(parsed, &s.name);
        let (logger, counter) = place(family, &s.labels);
        (part != Some("_bucket")).then_some((s, family, part, logger, counter))
    })
}

/// `perf dump`, optionally one logger and one counter.
pub fn dump(text: &str, logger: Option<&str>, counter: Option<&str>) -> Value {
    let parsed = parse(text);
    let mut out: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for (s, family, part, l, c) in series(&parsed) {
        if logger.is_some_and(|want| want != l) || counter.is_some_and(|want| want != c) {
            continue;
        }
        let entry = out.entry(l).or_default();
        match part {
            Some(part) => {
                let avg = entry
                    .entry(c)
                    .or_insert_with(|| json!({"avgcount": 0, "sum": 0.0}));
                match part {
                    "_sum" => avg["sum"] = json!(s.value),
                    _ => avg["avgcount"] = json!(s.value as u64),
                }
                let (n, sum) = (avg["avgcount"].as_f64(), avg["sum"].as_f64());
                if let (Some(n), Some(sum)) = (n, sum) {
                    avg["avgtime"] = json!(if n > 0.0 { sum / n } else { 0.0 });
                }
            }
            None if is_time(family) => {
                entry.insert(c, json!(s.value));
            }
            None => {
                entry.insert(c, json!(s.value.max(0.0).round() as u64));
            }
        }
    }
    json!(out)
}

/// `perf schema`: each counter's kind, description and unit, as Ceph describes them.
pub fn schema(text: &str) -> Value {
    let parsed = parse(text);
    let mut out: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for (_, family, _, logger, counter) in series(&parsed) {
        let f = parsed.families.get(family);
        let kind = f.map(|f| f.kind.as_str()).unwrap_or("untyped");
        // Ceph's type bits: 1 time, 2 integer, 4 average, 8 counter.
        let (bits, metric_type, value_type) = match (kind, is_time(family)) {
            ("histogram", _) => (1 | 4, "gauge", "real-integer-pair"),
            ("counter", _) => (2 | 8, "counter", "integer"),
            (_, true) => (1, "gauge", "real"),
            _ => (2, "gauge", "integer"),
        };
        let units = if family.contains("bytes") {
            "bytes"
        } else {
            "none"
        };
        out.entry(logger).or_default().insert(
            counter,
            json!({
                "type": bits, "metric_type": metric_type, "value_type": value_type,
                "description": f.map(|f| f.help.as_str()).unwrap_or(""),
                "nick": "", "priority": 5, "units": units,
            }),
        );
    }
    json!(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP rbd_relay_notifications_total Watch notifications.
# TYPE rbd_relay_notifications_total counter
rbd_relay_notifications_total{source="journal"} 42
# HELP rbd_relay_image_replay_lag_seconds Lag.
# TYPE rbd_relay_image_replay_lag_seconds gauge
rbd_relay_image_replay_lag_seconds{pool="rbd",namespace="",image="a \"b\""} 0.5
rbd_relay_image_replayed_bytes_total{pool="rbd",namespace="ns",image="c"} 4096
# HELP rbd_relay_replay_latency_seconds Latency.
# TYPE rbd_relay_replay_latency_seconds histogram
rbd_relay_replay_latency_seconds_bucket{pool="rbd",namespace="",image="c",le="0.001"} 1
rbd_relay_replay_latency_seconds_sum{pool="rbd",namespace="",image="c"} 0.5
rbd_relay_replay_latency_seconds_count{pool="rbd",namespace="",image="c"} 4
"#;

    #[test]
    fn series_become_loggers_and_counters() {
        let d = dump(TEXT, None, None);
        assert_eq!(d["rbd_relay"]["notifications_total.journal"], 42);
        assert_eq!(d["rbd_relay_image_rbd/a \"b\""]["replay_lag_seconds"], 0.5);
        assert_eq!(d["rbd_relay_image_rbd/ns/c"]["replayed_bytes_total"], 4096);
        let avg = &d["rbd_relay_image_rbd/c"]["replay_latency_seconds"];
        assert_eq!(avg["avgcount"], 4);
        assert_eq!(avg["avgtime"], 0.125);
        let one = dump(TEXT, Some("rbd_relay"), None);
        assert_eq!(one.as_object().unwrap().len(), 1);
    }

    #[test]
    fn the_schema_says_what_each_counter_is() {
        let s = schema(TEXT);
        let n = &s["rbd_relay"]["notifications_total.journal"];
        assert_eq!(n["type"], 10);
        assert_eq!(n["metric_type"], "counter");
        assert_eq!(n["description"], "Watch notifications.");
        let b = &s["rbd_relay_image_rbd/ns/c"]["replayed_bytes_total"];
        assert_eq!(b["units"], "bytes");
        let l = &s["rbd_relay_image_rbd/c"]["replay_latency_seconds"];
        assert_eq!(l["value_type"], "real-integer-pair");
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let d = dump("x{a=\"unterminated 1\nname_only\n{} 1\n", None, None);
        assert_eq!(d, json!({}));
    }
}
