//! `cloister audit report DIR --html FILE`: one self-contained HTML page a person can open
//! offline — summary and verification result, privacy budget spent per tenant over time,
//! requests and refusals over time, refusals by reason, and per tenant/model figures.
//!
//! Why it looks the way it does:
//! - **No script, no network.** The charts are inline SVG computed here; the page carries a
//!   Content-Security-Policy (`default-src 'none'`, inline styles only), so even a string that
//!   escaped the escaping could neither run nor fetch anything — the browser would refuse it
//!   and log a console error, which the headless-Chromium test treats as a failure.
//! - **Everything from the log is hostile.** Tenant names, model ids (a client chooses the model
//!   id it asks for, and refusals of unknown models are recorded as asked), error codes and
//!   request ids are attacker-influenced; every one goes through [`escape`] before it touches
//!   the page, in text and in attributes alike.
//! - **Data points are marked** (`class="point"`, `class="bar"` with `data-*` attributes) so a
//!   test — or an auditor's script — can check the charts against the records.
//!
//! The report reads the log with the same verifier as `cloister audit verify`; a log that does
//! not verify still gets a page (with the records read before the fault and the failure in red),
//! and the command exits 1.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use cloister_audit::{for_each_entry, verify_dir_with, Outcome, VerifyOptions, VerifyReport};

use crate::audit_cli::format_time;

/// The parts of one record the report uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Entry index.
    pub index: u64,
    /// Decision time, Unix ms.
    pub time_unix_ms: u64,
    /// Tenant (`-` when authentication did not get that far).
    pub tenant: String,
    /// Model asked for (`-` when none).
    pub model: String,
    /// The outcome.
    pub outcome: Outcome,
    /// Privacy cost charged, nano-ρ.
    pub cost_nano_rho: u64,
    /// Enclave latency, µs.
    pub latency_us: u64,
}

/// Everything the page shows.
#[derive(Debug, Clone)]
pub struct ReportInput {
    /// The directory, as named on the command line.
    pub dir: String,
    /// The records read (all of them when verification passed).
    pub rows: Vec<Row>,
    /// The verification result.
    pub verification: Result<VerifyReport, String>,
    /// Whether the checkpoint keys were pinned (`--key` / `--evidence`).
    pub keys_pinned: bool,
    /// When the report was made, Unix ms.
    pub generated_unix_ms: u64,
}

/// Reads and verifies `dir` and collects what the report needs.
pub fn collect(dir: &Path, opts: &VerifyOptions) -> Result<ReportInput> {
    let mut rows = Vec::new();
    // Records are read even when the log fails verification, so the page can show what was
    // there before the fault; the verification result says whether to trust them.
    let read = for_each_entry(dir, |e| {
        let r = &e.entry.record;
        rows.push(Row {
            index: e.entry.index,
            time_unix_ms: r.time_unix_ms,
            tenant: r.tenant.clone().unwrap_or_else(|| "-".into()),
            model: r.model.clone().unwrap_or_else(|| "-".into()),
            outcome: r.outcome.clone(),
            cost_nano_rho: r.privacy.as_ref().map_or(0, |p| p.cost_nano_rho),
            latency_us: r.latency_us,
        });
    });
    let verification = match read {
        Err(e) => Err(e.to_string()),
        Ok(_) => verify_dir_with(dir, opts).map_err(|e| e.to_string()),
    };
    Ok(ReportInput {
        dir: dir.display().to_string(),
        rows,
        verification,
        keys_pinned: !opts.trusted_keys.is_empty(),
        generated_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0),
    })
}

/// Writes the report for `dir` to `out`; returns whether the log verified.
pub fn write_report(dir: &Path, opts: &VerifyOptions, out: &Path) -> Result<bool> {
    let input = collect(dir, opts)?;
    let html = render(&input);
    std::fs::write(out, html).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(input.verification.is_ok())
}

/// HTML-escapes `s` for text and for double- or single-quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters have no business on the page; show them as U+FFFD.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

fn rho(nano: u64) -> String {
    let r = nano as f64 / 1e9;
    let s = format!("{r:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() {
        "0".into()
    } else {
        s.to_string()
    }
}

const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
];

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:72em}\
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;\
text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.ok{color:#1a7f37;font-weight:bold}.bad{color:#b00020;font-weight:bold}\
.warn{color:#9a6700}code{font-size:.9em;word-break:break-all}\
svg{border:1px solid #ddd;background:#fff}.legend span{display:inline-block;margin-right:1.5em}\
.sw{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:middle}";

/// Renders the page.
pub fn render(input: &ReportInput) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'\">\
         <title>Cloister audit report: {}</title><style>{STYLE}</style></head><body>\n",
        escape(&input.dir)
    );
    let _ = writeln!(h, "<h1>Cloister audit report</h1>");
    summary(&mut h, input);
    h.push_str("<h2>Privacy budget spent per tenant</h2>\n");
    budget_chart(&mut h, &input.rows);
    h.push_str("<h2>Requests and refusals over time</h2>\n");
    requests_chart(&mut h, &input.rows);
    h.push_str("<h2>Refusals and errors by reason</h2>\n");
    reasons_table(&mut h, &input.rows);
    h.push_str("<h2>Per tenant and model</h2>\n");
    groups_table(&mut h, &input.rows);
    let _ = write!(
        h,
        "<p><small>Generated {} by <code>cloister audit report</code>. Records hold \
         identifiers and keyed digests only, never inputs or outputs.</small></p>\n\
         </body></html>\n",
        format_time(input.generated_unix_ms)
    );
    h
}

fn summary(h: &mut String, input: &ReportInput) {
    let rows = &input.rows;
    h.push_str("<table id=\"summary\">\n");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(h, "<tr><th>{k}</th><td>{v}</td></tr>");
    };
    row("Directory", format!("<code>{}</code>", escape(&input.dir)));
    match &input.verification {
        Ok(r) => {
            row(
                "Verification",
                format!(
                    "<span class=\"ok\" id=\"verification\" data-passed=\"true\">PASSED</span> \
                     — hash chain intact, {} checkpoint signature(s) valid, every signed root \
                     matches the log{}",
                    r.checkpoints,
                    if input.keys_pinned {
                        "; keys pinned".to_string()
                    } else {
                        "; <span class=\"warn\">keys NOT PINNED (pass --key or --evidence)\
                         </span>"
                            .to_string()
                    }
                ),
            );
            row(
                "Records",
                format!(
                    "{} in {} segment(s){}",
                    r.entries,
                    r.segments,
                    if r.unsigned_entries > 0 {
                        format!(
                            " — <span class=\"warn\">{} after the latest checkpoint are not \
                             signed</span>",
                            r.unsigned_entries
                        )
                    } else {
                        String::new()
                    }
                ),
            );
            if let Some(p) = &r.pruned {
                row(
                    "Pruned by retention",
                    format!(
                        "records 0 to {} (segments 1 to {}); verification starts from the \
                         signed anchor of segment {}",
                        p.first_index.saturating_sub(1),
                        p.first_segment.saturating_sub(1),
                        p.first_segment
                    ),
                );
            }
            row(
                "Checkpoints",
                match &r.latest {
                    Some(c) => format!(
                        "{} — latest covers {} record(s), signed {}, root <code>{}</code>",
                        r.checkpoints,
                        c.tree_size,
                        format_time(c.time_unix_ms),
                        hex::encode(c.root)
                    ),
                    None => "none".into(),
                },
            );
            row(
                "Signing keys",
                r.keys
                    .iter()
                    .map(|k| format!("<code>{}</code>", escape(k)))
                    .collect::<Vec<_>>()
                    .join("<br>"),
            );
        }
        Err(e) => {
            row(
                "Verification",
                format!(
                    "<span class=\"bad\" id=\"verification\" data-passed=\"false\">FAILED</span>: \
                     {}. The figures below cover the {} record(s) read before the fault and \
                     must not be trusted.",
                    escape(e),
                    rows.len()
                ),
            );
        }
    }
    let span = match (rows.first(), rows.last()) {
        (Some(a), Some(b)) => format!(
            "{} to {}",
            format_time(a.time_unix_ms),
            format_time(b.time_unix_ms)
        ),
        _ => "no records".into(),
    };
    row("Time span", span);
    let refused = rows
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Refused { .. }))
        .count();
    let errors = rows
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Error { .. }))
        .count();
    row(
        "Decisions",
        format!(
            "{} served, {} refused, {} failed",
            rows.len() - refused - errors,
            refused,
            errors
        ),
    );
    row(
        "Privacy budget spent",
        format!(
            "{} ρ (zCDP) in total",
            rho(rows.iter().map(|r| r.cost_nano_rho).sum())
        ),
    );
    h.push_str("</table>\n");
}

/// Chart geometry: the plot area inside an SVG of `W`×`H`.
const W: f64 = 800.0;
const H: f64 = 280.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 15.0;
const BOTTOM: f64 = 40.0;

fn axes(h: &mut String, t0: u64, t1: u64, y_max_label: &str, y_title: &str) {
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, H - BOTTOM, TOP);
    let _ = write!(
        h,
        "<g class=\"axes\" stroke=\"#444\"><line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\"/>\
         <line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x0}\" y2=\"{y1}\"/></g>\
         <g font-size=\"11\" fill=\"#444\">\
         <text x=\"{x0}\" y=\"{}\">{}</text>\
         <text x=\"{x1}\" y=\"{}\" text-anchor=\"end\">{}</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>\
         <text x=\"12\" y=\"{}\" transform=\"rotate(-90 12 {})\" text-anchor=\"middle\">{}</text>\
         </g>",
        y0 + 16.0,
        format_time(t0),
        y0 + 16.0,
        format_time(t1),
        x0 - 4.0,
        y1 + 10.0,
        escape(y_max_label),
        x0 - 4.0,
        y0,
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0,
        escape(y_title),
    );
}

fn x_of(t: u64, t0: u64, t1: u64) -> f64 {
    let span = (t1.saturating_sub(t0)).max(1) as f64;
    LEFT + (t.saturating_sub(t0)) as f64 / span * (W - LEFT - RIGHT)
}

fn y_of(v: f64, max: f64) -> f64 {
    let max = if max > 0.0 { max } else { 1.0 };
    (H - BOTTOM) - v / max * (H - BOTTOM - TOP)
}

fn budget_chart(h: &mut String, rows: &[Row]) {
    // Cumulative spend per tenant, one point per charged record.
    let mut series: BTreeMap<&str, Vec<(u64, u64, u64)>> = BTreeMap::new();
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.cost_nano_rho > 0) {
        let total = totals.entry(&r.tenant).or_default();
        *total = total.saturating_add(r.cost_nano_rho);
        series
            .entry(&r.tenant)
            .or_default()
            .push((r.time_unix_ms, *total, r.index));
    }
    let t0 = rows.first().map_or(0, |r| r.time_unix_ms);
    let t1 = rows.last().map_or(0, |r| r.time_unix_ms).max(t0 + 1);
    let max = totals.values().copied().max().unwrap_or(0);
    let _ = write!(
        h,
        "<svg id=\"budget-chart\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" \
         width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" \
         aria-label=\"cumulative privacy budget spent per tenant over time\">"
    );
    axes(
        h,
        t0,
        t1,
        &format!("{} ρ", rho(max)),
        "ρ spent (cumulative)",
    );
    for (i, (tenant, points)) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let tenant = escape(tenant);
        // A step line from the chart's start at 0 to each charge.
        let mut path = format!("{:.1},{:.1}", x_of(t0, t0, t1), y_of(0.0, max as f64));
        let mut prev = 0u64;
        for &(t, total, _) in points {
            let x = x_of(t, t0, t1);
            let _ = write!(
                path,
                " {x:.1},{:.1} {x:.1},{:.1}",
                y_of(prev as f64, max as f64),
                y_of(total as f64, max as f64)
            );
            prev = total;
        }
        let _ = write!(
            h,
            "<g class=\"series\" data-tenant=\"{tenant}\"><polyline fill=\"none\" \
             stroke=\"{color}\" stroke-width=\"2\" points=\"{path}\"/>"
        );
        for &(t, total, index) in points {
            let _ = write!(
                h,
                "<circle class=\"point budget-point\" data-tenant=\"{tenant}\" \
                 data-index=\"{index}\" data-time=\"{t}\" data-rho=\"{}\" cx=\"{:.1}\" \
                 cy=\"{:.1}\" r=\"3\" fill=\"{color}\"><title>{tenant}: {} ρ by record {index} \
                 ({})</title></circle>",
                rho(total),
                x_of(t, t0, t1),
                y_of(total as f64, max as f64),
                rho(total),
                format_time(t)
            );
        }
        h.push_str("</g>");
    }
    if series.is_empty() {
        let _ = write!(
            h,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#888\">no privacy budget \
             was spent</text>",
            (LEFT + W - RIGHT) / 2.0,
            H / 2.0
        );
    }
    h.push_str("</svg>\n<p class=\"legend\">");
    for (i, (tenant, _)) in series.iter().enumerate() {
        let _ = write!(
            h,
            "<span><i class=\"sw\" style=\"background:{}\"></i>{} — {} ρ</span>",
            PALETTE[i % PALETTE.len()],
            escape(tenant),
            rho(totals[tenant])
        );
    }
    h.push_str("</p>\n");
}

fn requests_chart(h: &mut String, rows: &[Row]) {
    let t0 = rows.first().map_or(0, |r| r.time_unix_ms);
    let t_last = rows.last().map_or(0, |r| r.time_unix_ms);
    // At most 60 buckets of whole milliseconds, covering [t0, t_last].
    let span = t_last.saturating_sub(t0) + 1;
    let width = span.div_ceil(60).max(1);
    let buckets = span.div_ceil(width).max(1);
    let mut counts = vec![[0u64; 3]; buckets as usize];
    for r in rows {
        let b = ((r.time_unix_ms.saturating_sub(t0)) / width).min(buckets - 1) as usize;
        let k = match r.outcome {
            Outcome::Ok => 0,
            Outcome::Refused { .. } => 1,
            Outcome::Error { .. } => 2,
        };
        counts[b][k] += 1;
    }
    let max = counts
        .iter()
        .map(|c| c.iter().sum::<u64>())
        .max()
        .unwrap_or(0);
    let t1 = t0 + buckets * width;
    let _ = write!(
        h,
        "<svg id=\"requests-chart\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" \
         width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" \
         aria-label=\"requests per interval: served, refused, failed\">"
    );
    axes(
        h,
        t0,
        t1,
        &max.to_string(),
        &format!("decisions per {}", duration_text(width)),
    );
    let bar_w = ((W - LEFT - RIGHT) / buckets as f64 - 1.0).max(1.0);
    let kinds = [
        ("ok", "#2ca02c"),
        ("refused", "#ff7f0e"),
        ("error", "#d62728"),
    ];
    for (b, c) in counts.iter().enumerate() {
        let start = t0 + b as u64 * width;
        let x = x_of(start, t0, t1) + 0.5;
        let mut stacked = 0u64;
        for (k, (kind, color)) in kinds.iter().enumerate() {
            if c[k] == 0 {
                continue;
            }
            let y_top = y_of((stacked + c[k]) as f64, max as f64);
            let y_bottom = y_of(stacked as f64, max as f64);
            let _ = write!(
                h,
                "<rect class=\"bar bar-{kind}\" data-kind=\"{kind}\" data-start=\"{start}\" \
                 data-count=\"{}\" x=\"{x:.1}\" y=\"{y_top:.1}\" width=\"{bar_w:.1}\" \
                 height=\"{:.1}\" fill=\"{color}\"><title>{} {kind} from {}</title></rect>",
                c[k],
                (y_bottom - y_top).max(0.5),
                c[k],
                format_time(start)
            );
            stacked += c[k];
        }
    }
    h.push_str("</svg>\n<p class=\"legend\">");
    for (kind, color) in kinds {
        let _ = write!(
            h,
            "<span><i class=\"sw\" style=\"background:{color}\"></i>{kind}</span>"
        );
    }
    h.push_str("</p>\n");
}

fn duration_text(ms: u64) -> String {
    match ms {
        ms if ms % 3_600_000 == 0 => format!("{} h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{} min", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{} s", ms / 1000),
        ms => format!("{ms} ms"),
    }
}

fn reasons_table(h: &mut String, rows: &[Row]) {
    // (kind, code) → (count, per tenant)
    type PerTenant<'a> = (u64, BTreeMap<&'a str, u64>);
    let mut reasons: BTreeMap<(&str, &str), PerTenant<'_>> = BTreeMap::new();
    for r in rows {
        let (kind, code) = match &r.outcome {
            Outcome::Ok => continue,
            Outcome::Refused { code } => ("refused", code.as_str()),
            Outcome::Error { code } => ("error", code.as_str()),
        };
        let e = reasons.entry((kind, code)).or_default();
        e.0 += 1;
        *e.1.entry(&r.tenant).or_default() += 1;
    }
    if reasons.is_empty() {
        h.push_str("<p id=\"reasons\">No request was refused or failed.</p>\n");
        return;
    }
    h.push_str(
        "<table id=\"reasons\"><tr><th>outcome</th><th>reason</th><th>count</th>\
         <th>tenants</th></tr>\n",
    );
    let mut sorted: Vec<_> = reasons.into_iter().collect();
    sorted.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(&b.0)));
    for ((kind, code), (count, tenants)) in sorted {
        let tenants: Vec<String> = tenants
            .iter()
            .map(|(t, n)| format!("{} ({n})", escape(t)))
            .collect();
        let _ = writeln!(
            h,
            "<tr class=\"reason\"><td>{kind}</td><td><code>{}</code></td><td class=\"n\">{count}\
             </td><td>{}</td></tr>",
            escape(code),
            tenants.join(", ")
        );
    }
    h.push_str("</table>\n");
}

#[derive(Default)]
struct Group {
    requests: u64,
    ok: u64,
    refused: u64,
    errors: u64,
    spent: u64,
    latencies: Vec<u64>,
}

fn groups_table(h: &mut String, rows: &[Row]) {
    let mut groups: BTreeMap<(&str, &str), Group> = BTreeMap::new();
    for r in rows {
        let g = groups.entry((&r.tenant, &r.model)).or_default();
        g.requests += 1;
        match r.outcome {
            Outcome::Ok => g.ok += 1,
            Outcome::Refused { .. } => g.refused += 1,
            Outcome::Error { .. } => g.errors += 1,
        }
        g.spent = g.spent.saturating_add(r.cost_nano_rho);
        g.latencies.push(r.latency_us);
    }
    h.push_str(
        "<table id=\"groups\"><tr><th>tenant</th><th>model</th><th>requests</th><th>served</th>\
         <th>refused</th><th>failed</th><th>ρ spent</th><th>median latency</th>\
         <th>max latency</th></tr>\n",
    );
    for ((tenant, model), g) in &mut groups {
        g.latencies.sort_unstable();
        let median = g.latencies[g.latencies.len() / 2];
        let max = g.latencies.last().copied().unwrap_or(0);
        let _ = writeln!(
            h,
            "<tr class=\"group\"><td>{}</td><td>{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{:.3} ms</td><td class=\"n\">{:.3} ms</td></tr>",
            escape(tenant),
            escape(model),
            g.requests,
            g.ok,
            g.refused,
            g.errors,
            rho(g.spent),
            median as f64 / 1000.0,
            max as f64 / 1000.0
        );
    }
    h.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(index: u64, tenant: &str, model: &str, outcome: Outcome, cost: u64) -> Row {
        Row {
            index,
            time_unix_ms: 1_700_000_000_000 + index * 1000,
            tenant: tenant.into(),
            model: model.into(),
            outcome,
            cost_nano_rho: cost,
            latency_us: 100 + index,
        }
    }

    fn input(rows: Vec<Row>) -> ReportInput {
        ReportInput {
            dir: "/tmp/audit".into(),
            rows,
            verification: Err("test: not verified".into()),
            keys_pinned: false,
            generated_unix_ms: 0,
        }
    }

    #[test]
    fn escape_covers_the_html_metacharacters() {
        assert_eq!(
            escape("<a href=\"x\" onclick='y'>&</a>"),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(escape("ρ plain"), "ρ plain");
        assert_eq!(escape("a\u{0}b"), "a\u{fffd}b");
    }

    #[test]
    fn adversarial_strings_from_the_log_cannot_inject_markup() {
        let evil_tenant = "<script>alert('tenant')</script>";
        let evil_model = "\"><img src=x onerror=alert(1)><svg onload=alert(2)>";
        let evil_code = "</code></td><script>alert(3)</script>";
        let html = render(&input(vec![
            row(0, evil_tenant, evil_model, Outcome::Ok, 10_000_000),
            row(
                1,
                evil_tenant,
                evil_model,
                Outcome::Refused {
                    code: evil_code.into(),
                },
                0,
            ),
        ]));
        // Markup would need a raw `<`; the text `onerror=…` inside escaped text is inert.
        for bad in ["<script", "<img", "<svg onload", "'tenant')</script>"] {
            assert!(!html.contains(bad), "report contains {bad:?}");
        }
        // They are shown, escaped, in every place they appear.
        assert!(html.contains("&lt;script&gt;alert(&#39;tenant&#39;)&lt;/script&gt;"));
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(html.contains("&lt;/code&gt;&lt;/td&gt;&lt;script&gt;alert(3)"));
        // And the failure message too.
        let mut i = input(vec![]);
        i.verification = Err("<b>bad</b>".into());
        assert!(render(&i).contains("&lt;b&gt;bad&lt;/b&gt;"));
    }

    #[test]
    fn the_page_needs_no_network_and_runs_no_script() {
        let html = render(&input(vec![row(0, "t", "m", Outcome::Ok, 0)]));
        assert!(html.contains("default-src 'none'"));
        assert!(!html.contains("<script"));
        for attr in ["src=", "href="] {
            assert!(!html.contains(attr), "{attr}");
        }
        // The SVG namespace is an identifier, not a fetch; `http-equiv` is the CSP meta tag.
        let rest = html
            .replace("http://www.w3.org/2000/svg", "")
            .replace("http-equiv", "");
        assert!(!rest.contains("http"), "{rest}");
    }

    #[test]
    fn charts_hold_one_mark_per_data_point() {
        let rows = vec![
            row(0, "alice", "m", Outcome::Ok, 10_000_000),
            row(1, "bob", "m", Outcome::Ok, 20_000_000),
            row(
                2,
                "alice",
                "m",
                Outcome::Refused {
                    code: "budget_exhausted".into(),
                },
                0,
            ),
            row(3, "alice", "m", Outcome::Ok, 10_000_000),
            row(
                4,
                "-",
                "-",
                Outcome::Error {
                    code: "internal".into(),
                },
                0,
            ),
        ];
        let html = render(&input(rows));
        assert_eq!(html.matches("class=\"point budget-point\"").count(), 3);
        assert!(html.contains(
            "data-tenant=\"alice\" data-index=\"3\" data-time=\"1700000003000\" data-rho=\"0.02\""
        ));
        assert!(html.contains(
            "data-tenant=\"bob\" data-index=\"1\" data-time=\"1700000001000\" data-rho=\"0.02\""
        ));
        // The bars add up to the records, by kind.
        let count = |kind: &str| -> u64 {
            html.split(&format!("data-kind=\"{kind}\""))
                .skip(1)
                .map(|s| {
                    let v = s.split("data-count=\"").nth(1).unwrap();
                    v[..v.find('"').unwrap()].parse::<u64>().unwrap()
                })
                .sum()
        };
        assert_eq!((count("ok"), count("refused"), count("error")), (3, 1, 1));
        assert!(html.contains("<td><code>budget_exhausted</code></td><td class=\"n\">1"));
        assert!(html.contains("3 served, 1 refused, 1 failed"));
        assert!(html.contains("0.04 ρ (zCDP) in total"));
    }

    #[test]
    fn an_empty_log_still_renders() {
        let html = render(&input(vec![]));
        assert!(html.contains("id=\"budget-chart\""));
        assert!(html.contains("id=\"requests-chart\""));
        assert!(html.contains("no records"));
    }
}
