//! Percentiles and the shape of a benchmark's report: figures, each with the goal beside it.

use serde_json::{json, Value};
use std::time::Duration;

/// The nearest-rank percentile `p` (0..=100) of `xs` (sorted here; `chatmesh_sim::percentile`, the one
/// definition the simulator uses too); NaN when empty.
pub fn percentile(xs: &[f64], p: f64) -> f64 {
    let mut v: Vec<f64> = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    chatmesh_sim::percentile(&v, p).unwrap_or(f64::NAN)
}

pub fn median(xs: &[f64]) -> f64 {
    percentile(xs, 50.0)
}

pub fn max(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::NAN, f64::max)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p50, p99, max and the number of samples, as JSON.
pub fn dist(xs: &[f64]) -> Value {
    json!({ "n": xs.len(), "p50": num(percentile(xs, 50.0)), "p99": num(percentile(xs, 99.0)), "max": num(max(xs)) })
}

/// A JSON number, or null for NaN and infinities.
pub fn num(x: f64) -> Value {
    if x.is_finite() {
        json!((x * 1000.0).round() / 1000.0)
    } else {
        Value::Null
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cmp {
    /// The figure must be at most the limit.
    AtMost,
    /// The figure must be at least the limit.
    AtLeast,
}

#[derive(Clone, Debug)]
pub struct Goal {
    pub cmp: Cmp,
    pub limit: f64,
}

impl Goal {
    pub fn met(&self, value: f64) -> Option<bool> {
        if !value.is_finite() {
            return None;
        }
        Some(match self.cmp {
            Cmp::AtMost => value <= self.limit,
            Cmp::AtLeast => value >= self.limit,
        })
    }
}

/// One figure of a report.
#[derive(Clone, Debug)]
pub struct Figure {
    /// Machine-readable name, e.g. `kill_p50_ms`.
    pub key: String,
    /// What it is, for people.
    pub label: String,
    pub value: f64,
    pub unit: &'static str,
    pub goal: Option<Goal>,
}

impl Figure {
    pub fn text(&self) -> String {
        fmt_value(self.value, self.unit)
    }

    pub fn goal_text(&self) -> String {
        match &self.goal {
            None => String::new(),
            Some(g) => {
                let op = if g.cmp == Cmp::AtMost { "≤" } else { "≥" };
                format!("{op} {}", fmt_value(g.limit, self.unit))
            }
        }
    }

    pub fn met(&self) -> Option<bool> {
        self.goal.as_ref().and_then(|g| g.met(self.value))
    }

    pub fn json(&self) -> Value {
        let mut v = json!({ "key": self.key, "label": self.label, "value": num(self.value), "unit": self.unit });
        if let Some(g) = &self.goal {
            v["goal"] = json!({
                "cmp": if g.cmp == Cmp::AtMost { "at_most" } else { "at_least" },
                "limit": g.limit,
                "text": self.goal_text(),
            });
            v["met"] = json!(self.met());
        }
        v
    }
}

pub fn fmt_value(v: f64, unit: &str) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let n = if v == v.trunc() && v.abs() < 1e15 {
        group_digits(v as i64)
    } else if v.abs() >= 100.0 {
        group_digits(v.round() as i64)
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if unit.is_empty() {
        n
    } else {
        format!("{n} {unit}")
    }
}

fn group_digits(v: i64) -> String {
    let s = v.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// What one scenario measured.
#[derive(Debug, Default)]
pub struct Section {
    pub figures: Vec<Figure>,
    /// Everything else worth keeping (distributions, steps, conditions), for --json.
    pub details: serde_json::Map<String, Value>,
    /// Parts of the scenario that failed to complete (the rest is still reported).
    pub errors: Vec<String>,
    /// Remarks printed under the table (e.g. how a run was shortened).
    pub notes: Vec<String>,
}

impl Section {
    pub fn fig(&mut self, key: &str, label: &str, value: f64, unit: &'static str) {
        self.figures.push(Figure { key: key.into(), label: label.into(), value, unit, goal: None });
    }

    pub fn goal(&mut self, key: &str, label: &str, value: f64, unit: &'static str, cmp: Cmp, limit: f64) {
        self.figures.push(Figure {
            key: key.into(),
            label: label.into(),
            value,
            unit,
            goal: Some(Goal { cmp, limit }),
        });
    }

    pub fn detail(&mut self, key: &str, v: Value) {
        self.details.insert(key.into(), v);
    }

    pub fn json(&self) -> Value {
        let figures: serde_json::Map<String, Value> =
            self.figures.iter().map(|f| (f.key.clone(), num(f.value))).collect();
        json!({
            "figures": figures,
            "table": self.figures.iter().map(|f| f.json()).collect::<Vec<_>>(),
            "details": self.details,
            "errors": self.errors,
            "notes": self.notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let xs: Vec<f64> = (1..=100).map(|x| x as f64).collect();
        assert_eq!(percentile(&xs, 50.0), 50.0);
        assert_eq!(percentile(&xs, 99.0), 99.0);
        assert_eq!(percentile(&xs, 100.0), 100.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
        assert_eq!(percentile(&[1.0, 2.0], 50.0), 1.0);
        assert!(percentile(&[], 50.0).is_nan());
        assert_eq!(fmt_value(20000.0, "msg/s"), "20,000 msg/s");
        assert_eq!(fmt_value(1.234, "ms"), "1.23 ms");
    }
}
