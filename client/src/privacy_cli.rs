//! `cloister privacy curve`: what a privacy budget buys, measured, before anyone spends it.
//!
//! Why locally: a model owner choosing `rho_per_query` needs the accuracy the ensemble keeps at
//! each cost, and that needs the true labels of held-out data, which never go to the service.
//! So this runs the ensemble with the local engine, counts the teachers' votes, and releases
//! noisy labels with the enclave's own mechanism (OpenDP's `make_noisy_max`, the scale found
//! from `rho` by the same bisection on its privacy map), `--trials` times per ρ, and reports the
//! mean accuracy with its spread. A table by default, `--json` for machines, and `--out FILE`
//! writes an SVG plot of accuracy against ρ (log scale).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use cloister_engine::{Model, Tensor, TensorData};
use cloister_privacy::mechanism::{vote_histogram, NoisyMax};
use cloister_privacy::{zcdp_to_approx_dp_epsilon, Rho};
use serde::Serialize;

/// The ρ values of the curve when none are given.
pub const DEFAULT_RHOS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0,
];

/// Arguments of `cloister privacy curve`.
#[derive(Debug, clap::Args)]
pub struct CurveArgs {
    /// The ensemble: an ONNX file whose output `--votes-output` is [N, K] int64, or the id of
    /// the bundled ensemble (`digits-ensemble`).
    #[arg(long)]
    pub model: String,
    /// Held-out data: JSON with `input` (rows) and `labels` (true classes), like
    /// models/digits/heldout.json.
    #[arg(long)]
    pub data: PathBuf,
    /// ρ per query to evaluate (comma-separated); default 0.0005 … 1.
    #[arg(long, value_delimiter = ',')]
    pub rho: Vec<f64>,
    /// Noisy releases of every held-out row per ρ.
    #[arg(long, default_value_t = 20)]
    pub trials: usize,
    /// Name of the votes output.
    #[arg(long, default_value = "votes")]
    pub votes_output: String,
    /// Number of classes.
    #[arg(long, default_value_t = 10)]
    pub classes: usize,
    /// δ at which ε is shown.
    #[arg(long, default_value_t = 1e-6)]
    pub delta: f64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write an SVG plot of accuracy against ρ here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// One point of the curve.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// ρ per released label.
    pub rho: f64,
    /// The same cost as ε at `delta` (one label).
    pub epsilon: f64,
    /// Noise scale OpenDP uses for this ρ.
    pub noise_scale: f64,
    /// Mean accuracy over the trials.
    pub accuracy: f64,
    /// Standard deviation of the accuracy across trials.
    pub accuracy_sd: f64,
}

/// The whole curve.
#[derive(Debug, Clone, Serialize)]
pub struct Curve {
    /// Model (path or bundled id).
    pub model: String,
    /// Held-out rows.
    pub rows: usize,
    /// Teachers in the ensemble.
    pub teachers: usize,
    /// Trials per ρ.
    pub trials: usize,
    /// δ for ε.
    pub delta: f64,
    /// Accuracy of the noiseless plurality vote (what ρ → ∞ approaches; never released).
    pub noiseless_accuracy: f64,
    /// Accuracy of guessing (1 / classes).
    pub chance: f64,
    /// The points, by increasing ρ.
    pub points: Vec<Point>,
}

fn load_model(spec: &str) -> Result<Model> {
    if spec == crate::datadir::BUNDLED_ENSEMBLE_ID {
        return Model::from_bytes(crate::datadir::BUNDLED_ENSEMBLE).map_err(|e| anyhow!("{e}"));
    }
    let path = Path::new(spec);
    if !path.is_file() {
        bail!(
            "--model {spec}: neither an ONNX file nor the bundled ensemble ({})",
            crate::datadir::BUNDLED_ENSEMBLE_ID
        );
    }
    Model::load(path).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// Vote histograms of every held-out row, and the labels.
fn histograms(args: &CurveArgs) -> Result<(Vec<Vec<i64>>, Vec<i64>, usize)> {
    let model = load_model(&args.model)?;
    let text = std::fs::read_to_string(&args.data)
        .with_context(|| format!("reading {}", args.data.display()))?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", args.data.display()))?;
    let rows = doc["input"]
        .as_array()
        .ok_or_else(|| anyhow!("{}: no `input` array", args.data.display()))?;
    let labels: Vec<i64> = doc["labels"]
        .as_array()
        .ok_or_else(|| anyhow!("{}: no `labels` array", args.data.display()))?
        .iter()
        .map(|v| {
            v.as_i64()
                .ok_or_else(|| anyhow!("a label is not an integer"))
        })
        .collect::<Result<_>>()?;
    if rows.len() != labels.len() || rows.is_empty() {
        bail!(
            "{}: {} input rows but {} labels",
            args.data.display(),
            rows.len(),
            labels.len()
        );
    }
    let width = rows[0].as_array().map_or(0, Vec::len);
    let mut flat = Vec::with_capacity(rows.len() * width);
    for (i, r) in rows.iter().enumerate() {
        let r = r
            .as_array()
            .filter(|r| r.len() == width)
            .ok_or_else(|| anyhow!("input row {i} does not have {width} numbers"))?;
        for v in r {
            flat.push(
                v.as_f64()
                    .ok_or_else(|| anyhow!("input row {i}: not a number"))? as f32,
            );
        }
    }
    let input_name = model
        .inputs()
        .first()
        .map(|i| i.name.clone())
        .ok_or_else(|| anyhow!("the model has no input"))?;
    let input = Tensor::from_f32(vec![rows.len(), width], flat).map_err(|e| anyhow!("{e}"))?;
    let outputs = model
        .run(vec![(input_name, input)])
        .map_err(|e| anyhow!("running the ensemble: {e}"))?;
    let votes = outputs
        .iter()
        .find(|(n, _)| *n == args.votes_output)
        .map(|(_, t)| t)
        .ok_or_else(|| anyhow!("the model has no output {:?}", args.votes_output))?;
    let [n, k] = *votes.shape() else {
        bail!("votes have shape {:?}, not [N, K]", votes.shape());
    };
    let TensorData::I64(v) = votes.data() else {
        bail!("votes are not int64");
    };
    let hists = (0..n)
        .map(|r| vote_histogram(&v[r * k..(r + 1) * k], args.classes))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((hists, labels, k))
}

/// Computes the curve (the real mechanism, locally).
pub fn curve(args: &CurveArgs) -> Result<Curve> {
    if args.trials == 0 {
        bail!("--trials must be at least 1");
    }
    let (hists, labels, teachers) = histograms(args)?;
    let n = hists.len() as f64;
    let noiseless = hists
        .iter()
        .zip(&labels)
        .filter(|(h, &l)| {
            // The first index of the largest count (ties resolved low, as argmax does).
            let best = h
                .iter()
                .enumerate()
                .fold(0, |b, (i, &c)| if c > h[b] { i } else { b });
            best as i64 == l
        })
        .count() as f64
        / n;
    let mut rhos = if args.rho.is_empty() {
        DEFAULT_RHOS.to_vec()
    } else {
        args.rho.clone()
    };
    rhos.sort_by(f64::total_cmp);
    let mut points = Vec::new();
    for rho in rhos {
        let cost = Rho::from_f64(rho).with_context(|| format!("--rho {rho}"))?;
        let mech = NoisyMax::for_cost(cost).with_context(|| format!("--rho {rho}"))?;
        let mut accs = Vec::with_capacity(args.trials);
        for _ in 0..args.trials {
            let mut right = 0usize;
            for (h, &l) in hists.iter().zip(&labels) {
                if mech.release(h)? as i64 == l {
                    right += 1;
                }
            }
            accs.push(right as f64 / n);
        }
        let mean = accs.iter().sum::<f64>() / accs.len() as f64;
        let sd = if accs.len() > 1 {
            (accs.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (accs.len() - 1) as f64).sqrt()
        } else {
            0.0
        };
        points.push(Point {
            rho: mech.cost().to_f64(),
            epsilon: zcdp_to_approx_dp_epsilon(mech.cost().to_f64(), args.delta),
            noise_scale: mech.scale(),
            accuracy: mean,
            accuracy_sd: sd,
        });
    }
    Ok(Curve {
        model: args.model.clone(),
        rows: hists.len(),
        teachers,
        trials: args.trials,
        delta: args.delta,
        noiseless_accuracy: noiseless,
        chance: 1.0 / args.classes as f64,
        points,
    })
}

/// The curve as a Markdown table.
pub fn table(c: &Curve) -> String {
    let mut s = format!(
        "Accuracy of {} ({} teachers) on {} held-out rows, {} noisy releases each; \
         noiseless plurality {:.1}%, chance {:.1}%\n\n\
         | ρ per label | ε at δ = {:e} | noise scale | accuracy | ± sd |\n\
         | ---: | ---: | ---: | ---: | ---: |\n",
        c.model,
        c.teachers,
        c.rows,
        c.trials,
        100.0 * c.noiseless_accuracy,
        100.0 * c.chance,
        c.delta
    );
    for p in &c.points {
        let _ = writeln!(
            s,
            "| {} | {:.3} | {:.2} | {:.1}% | {:.1} |",
            p.rho,
            p.epsilon,
            p.noise_scale,
            100.0 * p.accuracy,
            100.0 * p.accuracy_sd
        );
    }
    s
}

/// The curve as an SVG line plot (x: ρ, log scale; y: accuracy 0–100%).
pub fn svg(c: &Curve) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 400.0, 60.0, 20.0, 30.0, 50.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let lo = c.points.first().map_or(1e-3, |p| p.rho).log10().floor();
    let hi = c
        .points
        .last()
        .map_or(1.0, |p| p.rho)
        .log10()
        .ceil()
        .max(lo + 1.0);
    let x = |rho: f64| left + pw * (rho.log10() - lo) / (hi - lo);
    let y = |acc: f64| top + ph * (1.0 - acc);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"18\" text-anchor=\"middle\">{}: accuracy vs ρ per label \
         (GNMax, {} teachers, {} rows)</text>\n",
        w / 2.0,
        c.model,
        c.teachers,
        c.rows
    );
    for i in 0..=10 {
        let (x2, py, tx, ty) = (
            left + pw,
            y(i as f64 / 10.0),
            left - 6.0,
            y(i as f64 / 10.0) + 4.0,
        );
        let pct = i * 10;
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" x2=\"{x2}\" y1=\"{py}\" y2=\"{py}\" stroke=\"#ddd\"/>\
             <text x=\"{tx}\" y=\"{ty}\" text-anchor=\"end\">{pct}%</text>"
        );
    }
    let mut e = lo;
    while e <= hi + 1e-9 {
        let px = left + pw * (e - lo) / (hi - lo);
        let _ = writeln!(
            s,
            "<line x1=\"{px}\" x2=\"{px}\" y1=\"{top}\" y2=\"{}\" stroke=\"#ddd\"/>\
             <text x=\"{px}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            top + ph,
            top + ph + 16.0,
            10f64.powf(e)
        );
        e += 1.0;
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">ρ per released label (zCDP, log scale)</text>",
        left + pw / 2.0,
        h - 10.0
    );
    for (acc, colour, name) in [
        (
            c.noiseless_accuracy,
            "#888",
            "noiseless plurality (never released)",
        ),
        (c.chance, "#c33", "chance"),
    ] {
        let (x2, py, tx, ty) = (left + pw, y(acc), left + 6.0, y(acc) - 4.0);
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" x2=\"{x2}\" y1=\"{py}\" y2=\"{py}\" stroke=\"{colour}\" \
             stroke-dasharray=\"4 3\"/><text x=\"{tx}\" y=\"{ty}\" fill=\"{colour}\">{name}</text>"
        );
    }
    let path: Vec<String> = c
        .points
        .iter()
        .map(|p| format!("{:.1},{:.1}", x(p.rho), y(p.accuracy)))
        .collect();
    let _ = writeln!(
        s,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#1f5fbf\" stroke-width=\"2\"/>",
        path.join(" ")
    );
    for p in &c.points {
        let _ = writeln!(
            s,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#1f5fbf\"/>",
            x(p.rho),
            y(p.accuracy)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Runs `cloister privacy curve`.
pub fn run_curve(args: &CurveArgs) -> Result<ExitCode> {
    let c = curve(args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        print!("{}", table(&c));
    }
    if let Some(out) = &args.out {
        std::fs::write(out, svg(&c)).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("wrote {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curve_rises_from_chance_to_the_noiseless_accuracy() {
        let args = CurveArgs {
            model: crate::datadir::BUNDLED_ENSEMBLE_ID.into(),
            data: Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/digits/heldout.json"),
            rho: vec![10.0, 0.0001, 0.01],
            trials: 3,
            votes_output: "votes".into(),
            classes: 10,
            delta: 1e-6,
            json: false,
            out: None,
        };
        let c = curve(&args).unwrap();
        assert_eq!((c.rows, c.teachers), (360, 25));
        // train.py measured the noiseless plurality at 92.5% with onnxruntime.
        assert!((c.noiseless_accuracy - 0.925).abs() < 1e-9, "{c:?}");
        let acc: Vec<f64> = c.points.iter().map(|p| p.accuracy).collect();
        assert_eq!(
            c.points.iter().map(|p| p.rho).collect::<Vec<_>>(),
            vec![0.0001, 0.01, 10.0]
        );
        // ρ = 1e-4: noise scale ≈ 70 on counts of at most 25, close to chance.
        assert!(acc[0] < 0.25, "{acc:?}");
        assert!(acc[0] < acc[1] && acc[1] < acc[2], "{acc:?}");
        assert!((acc[2] - c.noiseless_accuracy).abs() < 0.02, "{acc:?}");
        let svg = svg(&c);
        assert!(svg.starts_with("<svg") && svg.contains("<polyline"));
        assert!(table(&c).contains("| 0.01 |"));
    }
}
