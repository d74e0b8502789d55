//! The gate's verdicts: a row per scenario, the table the release owner
//! reads, the JSON machines read, and the summary kept in the audit log.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Value, json};

use super::run::Findings;
use super::scenario::{Order, Scenario};

/// Findings shown per order; the rest are counted.
const MAX_FINDINGS: usize = 6;

/// The audit action a gate run is recorded under.
pub const RECORDED_ACTION: &str = "qa_gate.completed";

/// PASS or HOLD, as `admit verify` says it.
pub use crate::verify::Verdict;

/// One scenario's result over every order it ran in.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub id: String,
    pub what: String,
    pub verdict: Verdict,
    /// Why it holds: `order (run): finding`.
    pub why: Vec<String>,
    /// The orders it ran in, with their run ids (the shuffle's seed).
    pub orders: Vec<(String, String)>,
}

impl Row {
    pub fn from_runs(
        scenario: &Scenario,
        runs: Vec<(Order, String, anyhow::Result<Findings>)>,
    ) -> Self {
        let mut why = Vec::new();
        let mut orders = Vec::new();
        // (order, findings with the run id blanked): an order that fails
        // exactly like an earlier one is said once.
        let mut seen: Vec<(&'static str, Vec<String>)> = Vec::new();
        for (order, run, outcome) in runs {
            let findings = match outcome {
                Ok(findings) => findings,
                Err(error) => vec![format!("could not run: {error:#}")],
            };
            orders.push((order.as_str().to_owned(), run.clone()));
            if findings.is_empty() {
                continue;
            }
            let blanked: Vec<String> = findings.iter().map(|f| f.replace(&run, "…")).collect();
            if let Some((earlier, _)) = seen.iter().find(|(_, b)| *b == blanked) {
                why.push(format!(
                    "{} ({run}): fails as {earlier} does",
                    order.as_str()
                ));
                continue;
            }
            let shown = findings.len().min(MAX_FINDINGS);
            why.extend(
                findings
                    .iter()
                    .take(shown)
                    .map(|f| format!("{} ({run}): {f}", order.as_str())),
            );
            if findings.len() > shown {
                why.push(format!(
                    "{} ({run}): … and {} more",
                    order.as_str(),
                    findings.len() - shown
                ));
            }
            seen.push((order.as_str(), blanked));
        }
        if orders.is_empty() {
            why.push("no delivery order ran (the file lists no order)".to_owned());
        }
        Self {
            id: scenario.id.clone(),
            what: scenario.what.clone(),
            verdict: if why.is_empty() {
                Verdict::Pass
            } else {
                Verdict::Hold
            },
            why,
            orders,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct GateReport {
    pub started_at: i64,
    pub finished_at: i64,
    /// The running admit it ran against, if not private ones.
    pub against: Option<String>,
    pub plan: String,
    pub price: String,
    /// The catalog it ran with (`catalog_fingerprint`).
    pub catalog: String,
    /// `full` (every built-in scenario on private admits) or `partial`:
    /// only a full run speaks for the memo.
    pub scope: &'static str,
    pub rows: Vec<Row>,
}

impl GateReport {
    pub fn verdict(&self) -> Verdict {
        if !self.rows.is_empty() && self.rows.iter().all(|r| r.verdict == Verdict::Pass) {
            Verdict::Pass
        } else {
            Verdict::Hold
        }
    }

    pub fn held(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.verdict == Verdict::Hold)
            .count()
    }

    /// `QA GATE: PASS` or `QA GATE: HOLD (n of m)`.
    pub fn headline(&self) -> String {
        match self.verdict() {
            Verdict::Pass => "QA GATE: PASS".to_owned(),
            Verdict::Hold => format!("QA GATE: HOLD ({} of {})", self.held(), self.rows.len()),
        }
    }

    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let what_width = self
            .rows
            .iter()
            .map(|r| r.what.chars().count())
            .max()
            .unwrap_or(4)
            .clamp(4, 72);
        let _ = writeln!(
            out,
            "{:<10}  {:<what_width$}  {:<6}  why",
            "scenario", "what", "result"
        );
        for row in &self.rows {
            let what: String = row.what.chars().take(what_width).collect();
            let first = row.why.first().map_or("", String::as_str);
            let _ = writeln!(
                out,
                "{:<10}  {:<what_width$}  {:<6}  {first}",
                row.id,
                what,
                row.verdict.as_str()
            );
            for more in row.why.iter().skip(1) {
                let _ = writeln!(out, "{:<10}  {:<what_width$}  {:<6}  {more}", "", "", "");
            }
        }
        let scope = match &self.against {
            Some(url) => format!("against {url}"),
            None => "on private admits".to_owned(),
        };
        let _ = writeln!(
            out,
            "\n{} scenarios {scope}, plan {} (price {}), catalog {}, {} s",
            self.rows.len(),
            self.plan,
            self.price,
            self.catalog,
            self.finished_at - self.started_at
        );
        let _ = writeln!(out, "{}", self.headline());
        out.lines()
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    }

    pub fn render_json(&self) -> Value {
        json!({
            "result": self.verdict().as_str(),
            "held": self.held(),
            "total": self.rows.len(),
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "against": self.against,
            "plan": self.plan,
            "price": self.price,
            "catalog": self.catalog,
            "scenarios": self.rows.iter().map(|r| json!({
                "id": r.id, "what": r.what, "result": r.verdict.as_str(), "why": r.why,
                "orders": r.orders.iter().map(|(o, run)| json!({"order": o, "run": run})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }

    /// What the audit log keeps: enough for readiness to judge the run.
    pub fn summary(&self) -> Value {
        json!({
            "result": self.verdict().as_str(),
            "held": self.held(),
            "total": self.rows.len(),
            "finished_at": self.finished_at,
            "against": self.against,
            "catalog": self.catalog,
            "scope": self.scope,
            "scenarios": self.rows.iter().map(|r| json!({
                "id": r.id, "result": r.verdict.as_str(), "why": r.why.first(),
            })).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, verdict: Verdict, why: &[&str]) -> Row {
        Row {
            id: id.into(),
            what: format!("{id} situation"),
            verdict,
            why: why.iter().map(|w| (*w).to_owned()).collect(),
            orders: vec![("creation".into(), "r1".into())],
        }
    }

    fn report(rows: Vec<Row>) -> GateReport {
        GateReport {
            started_at: 100,
            finished_at: 112,
            against: None,
            plan: "pro".into(),
            price: "price_Pro".into(),
            catalog: "0123abcd".into(),
            scope: "full",
            rows,
        }
    }

    #[test]
    fn the_gate_passes_only_when_every_row_passes() {
        let pass = report(vec![
            row("S1", Verdict::Pass, &[]),
            row("S2", Verdict::Pass, &[]),
        ]);
        assert_eq!(pass.headline(), "QA GATE: PASS");
        let hold = report(vec![
            row("S1", Verdict::Pass, &[]),
            row(
                "S10",
                Verdict::Hold,
                &["creation (r1): no held case unknown_price"],
            ),
        ]);
        assert_eq!(hold.headline(), "QA GATE: HOLD (1 of 2)");
        assert_eq!(
            report(vec![]).verdict(),
            Verdict::Hold,
            "no row run is no pass"
        );
    }

    #[test]
    fn the_table_names_each_scenario_its_result_and_why() {
        let hold = report(vec![
            row("S1", Verdict::Pass, &[]),
            row("S10", Verdict::Hold, &["first reason", "second reason"]),
        ]);
        insta::assert_snapshot!(hold.render_text());
        let json = hold.render_json();
        assert_eq!(json["result"], "HOLD");
        assert_eq!(json["scenarios"][1]["why"][1], "second reason");
    }
}
