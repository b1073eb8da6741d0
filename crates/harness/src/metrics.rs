//! `GET /metrics`: the Prometheus text exposition format (0.0.4) parsed into families and samples, the one
//! parser the tests and the bench read scrapes with.

use std::collections::{BTreeMap, HashMap};

/// One sample line: `name{label="value",...} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The sample's own name (a histogram's `_bucket`, `_sum` or `_count` included).
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// The series as written: the name with its labels.
    pub series: String,
}

/// A metric family: its `# HELP` text, its `# TYPE` and its samples.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Family {
    pub help: Option<String>,
    pub kind: Option<String>,
    pub samples: Vec<Sample>,
}

/// A whole scrape, by family name. A sample counts under its family (a histogram's `_bucket`, `_sum` and
/// `_count` under the histogram's name, when its `# TYPE` came first, as the format requires).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scrape {
    pub families: BTreeMap<String, Family>,
}

impl Scrape {
    /// Parses a scrape; a line that is neither a comment nor a sample is an error.
    pub fn parse(text: &str) -> Result<Scrape, String> {
        let mut s = Scrape::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                s.families.entry(name.into()).or_default().help = Some(unescape(help));
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
                s.families.entry(name.into()).or_default().kind = Some(kind.into());
            } else if line.starts_with('#') {
                continue;
            } else {
                let sample = sample(line).ok_or_else(|| format!("not a sample line: {line}"))?;
                let family = s.family_of(&sample.name).to_string();
                s.families.entry(family).or_default().samples.push(sample);
            }
        }
        Ok(s)
    }

    fn family_of<'a>(&self, name: &'a str) -> &'a str {
        ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|suffix| name.strip_suffix(suffix))
            .find(|base| self.families.get(*base).is_some_and(|f| f.kind.as_deref() == Some("histogram")))
            .unwrap_or(name)
    }

    /// Every sample of the scrape.
    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.families.values().flat_map(|f| f.samples.iter())
    }

    /// The value of the unlabelled series `name`.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.samples().find(|s| s.name == name && s.labels.is_empty()).map(|s| s.value)
    }

    /// Each sample name's values summed over their labels.
    pub fn sums(&self) -> HashMap<String, f64> {
        let mut out = HashMap::new();
        for s in self.samples() {
            *out.entry(s.name.clone()).or_insert(0.0) += s.value;
        }
        out
    }
}

/// `name{labels} value [timestamp]`.
fn sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..name_end];
    let (labels, rest) = match line[name_end..].strip_prefix('{') {
        Some(after) => {
            let (labels, used) = labels(after)?;
            (labels, &after[used..])
        }
        None => (Vec::new(), &line[name_end..]),
    };
    let series = line[..line.len() - rest.len()].to_string();
    let value = rest.split_whitespace().next()?.parse().ok()?;
    (!name.is_empty()).then(|| Sample { name: name.into(), labels, value, series })
}

/// The labels after `{`, up to and including the `}`; with the number of bytes they took.
fn labels(s: &str) -> Option<(Vec<(String, String)>, usize)> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if let Some(after) = rest.strip_prefix('}') {
            return Some((out, s.len() - after.len()));
        }
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        out.push((key.trim().to_string(), value));
        rest = &after[end + 1..];
    }
}

/// A HELP text's escapes (`\\` and `\n`).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => out.push('\n'),
                Some(c) => out.push(c),
                None => out.push('\\'),
            },
            (c, false) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP chatmesh_members Members of the view by state.\n\
        # TYPE chatmesh_members gauge\n\
        chatmesh_members{state=\"alive\"} 2\n\
        chatmesh_members{state=\"failed\"} 1\n\
        # HELP chatmesh_term The term.\n\
        # TYPE chatmesh_term gauge\n\
        chatmesh_term 3\n\
        # TYPE chatmesh_commit_seconds histogram\n\
        chatmesh_commit_seconds_bucket{le=\"0.001\"} 4\n\
        chatmesh_commit_seconds_bucket{le=\"+Inf\"} 5\n\
        chatmesh_commit_seconds_sum 0.25\n\
        chatmesh_commit_seconds_count 5\n\
        chatmesh_link_rtt_seconds{peer=\"a \\\"b\\\", c}\",x=\"y\"} 0.5 1700000000000\n";

    #[test]
    fn samples_are_filed_under_their_families_with_labels_and_values() {
        let s = Scrape::parse(TEXT).unwrap();
        assert_eq!(s.value("chatmesh_term"), Some(3.0));
        assert_eq!(s.families["chatmesh_term"].help.as_deref(), Some("The term."));
        let hist = &s.families["chatmesh_commit_seconds"];
        assert_eq!((hist.kind.as_deref(), hist.samples.len()), (Some("histogram"), 4));
        assert_eq!(hist.samples[1].labels, [("le".to_string(), "+Inf".to_string())]);
        let rtt = &s.families["chatmesh_link_rtt_seconds"].samples[0];
        assert_eq!(rtt.labels, [("peer".into(), "a \"b\", c}".into()), ("x".into(), "y".into())]);
        assert_eq!(
            (rtt.value, rtt.series.as_str()),
            (0.5, "chatmesh_link_rtt_seconds{peer=\"a \\\"b\\\", c}\",x=\"y\"}")
        );
        assert_eq!(s.value("chatmesh_members"), None, "only labelled series");
        assert_eq!(s.sums()["chatmesh_members"], 3.0);
    }

    #[test]
    fn a_line_that_is_no_sample_is_refused() {
        assert!(Scrape::parse("chatmesh_term\n").is_err());
        assert!(Scrape::parse("chatmesh_term{state=\"x} 1\n").is_err());
    }
}
