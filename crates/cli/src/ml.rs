//! `ehrchain predict` and `ehrchain ml train|evaluate|bench`: decision support from reported
//! symptoms (see the `ehrchain-ml` crate and `docs/ml.md`).

use crate::Ctx;
use anyhow::{Context as _, anyhow, bail};
use clap::{Args, Subcommand};
use ehrchain_client::predict::{self, Model, Prediction};
use ehrchain_ml::{DEFAULT_SEED, data::Knowledge};
use serde_json::json;
use std::{path::PathBuf, time::Instant};

#[derive(Args)]
pub struct PredictArgs {
    /// Symptoms, comma-separated (e.g. fever,cough,fatigue).
    #[arg(long, required_unless_present = "list_symptoms")]
    symptoms: Option<String>,
    /// How many diseases to show.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// A model file from `ehrchain ml train` (default: the built-in model). Prediction runs
    /// on this machine: the symptoms are never sent anywhere.
    #[arg(long)]
    model: Option<PathBuf>,
    /// List the symptoms the model knows.
    #[arg(long)]
    list_symptoms: bool,
}

#[derive(Subcommand)]
pub enum MlCmd {
    /// Train the served model (naive Bayes) deterministically; print its version.
    Train {
        #[arg(long, default_value_t = DEFAULT_SEED)]
        seed: u64,
        /// Write the model file here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Train and score naive Bayes, a linear SVM and a random forest on the de-duplicated
    /// held-out split; k-means over the symptom profiles; write the report (docs/ml.md).
    Evaluate {
        #[arg(long, default_value_t = DEFAULT_SEED)]
        seed: u64,
        /// Write the Markdown report here (default: print it).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Prediction latency (p50/p99) and model load time.
    Bench {
        /// Predictions to time.
        #[arg(long, default_value_t = 2000)]
        n: usize,
    },
}

fn load(p: &PathBuf) -> anyhow::Result<Model> {
    let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
    predict::load_model(&bytes).map_err(|e| anyhow!("{}: {e}", p.display()))
}

/// The human rendering of a prediction.
pub fn render(p: &Prediction) -> String {
    let mut out = format!(
        "Suggestion only, for a clinician to confirm (not a diagnosis or an order).\nsymptoms: {}\n",
        p.symptoms.join(", ")
    );
    for (i, r) in p.ranked.iter().enumerate() {
        out += &format!(
            "{:>2}. {:<40} {:>6.1} %  ICD-10 {:<8} {}\n    medicines to consider: {}\n",
            i + 1,
            r.disease,
            r.probability * 100.0,
            r.icd10,
            r.specialty,
            r.medications.join(", ")
        );
    }
    out += &format!(
        "model {} ({}), held-out synthetic accuracy: top-1 {:.1} %{}",
        &p.model.version[..16],
        p.model.kind,
        p.model.top1_accuracy * 100.0,
        p.model
            .top3_accuracy
            .map_or(String::new(), |t| format!(", top-3 {:.1} %", t * 100.0))
    );
    out
}

pub fn run_predict(ctx: &Ctx, args: PredictArgs) -> anyhow::Result<()> {
    if args.list_symptoms {
        let ids = predict::known_symptoms();
        ctx.print(&json!(ids), || ids.join("\n"));
        return Ok(());
    }
    let symptoms: Vec<String> = args
        .symptoms
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::to_string)
        .collect();
    let model = args.model.as_ref().map(load).transpose()?;
    let p: Prediction = predict::predict(model.as_ref(), &symptoms, args.top)?;
    ctx.print(&serde_json::to_value(&p)?, || render(&p));
    Ok(())
}

pub fn run_ml(ctx: &Ctx, cmd: MlCmd) -> anyhow::Result<()> {
    match cmd {
        MlCmd::Train { seed, out } => {
            let t = Instant::now();
            let m = Model::train(seed)?;
            let secs = t.elapsed().as_secs_f64();
            let bytes = m.to_bytes();
            if let Some(out) = &out {
                std::fs::write(out, &bytes)
                    .with_context(|| format!("cannot write {}", out.display()))?;
            }
            ctx.print(
                &json!({"version": m.version(), "seed": seed, "bytes": bytes.len(), "train_secs": secs,
                        "metrics": m.metrics, "split": m.split, "out": out}),
                || {
                    format!(
                        "trained {} in {secs:.2} s (seed {seed})\nversion: {}\nheld-out: top-1 {:.1} %, top-3 {:.1} %, macro F1 {:.3} on {} synthetic patients{}",
                        m.kind,
                        m.version(),
                        m.metrics.top1 * 100.0,
                        m.metrics.top3.unwrap_or(0.0) * 100.0,
                        m.metrics.macro_f1,
                        m.metrics.test_samples,
                        out.as_ref().map_or(String::new(), |o| format!("\nwritten to {}", o.display()))
                    )
                },
            );
            Ok(())
        }
        MlCmd::Evaluate { seed, out } => {
            let e = ehrchain_ml::evaluate(seed)?;
            let mut command = "ehrchain ml evaluate".to_string();
            if seed != DEFAULT_SEED {
                command += &format!(" --seed {seed}");
            }
            if let Some(o) = &out {
                command += &format!(" --out {}", o.display());
            }
            let md = e.markdown(&command);
            match &out {
                Some(o) => {
                    std::fs::write(o, &md)
                        .with_context(|| format!("cannot write {}", o.display()))?;
                    ctx.print(&serde_json::to_value(&e)?, || {
                        format!("wrote {} (model {})", o.display(), e.model_version)
                    });
                }
                None if ctx.json => println!("{}", serde_json::to_string_pretty(&e)?),
                None => print!("{md}"),
            }
            Ok(())
        }
        MlCmd::Bench { n } => {
            if n == 0 {
                bail!("--n must be positive");
            }
            let t = Instant::now();
            let m = Model::train(DEFAULT_SEED)?;
            let train_ms = t.elapsed().as_secs_f64() * 1e3;
            let bytes = m.to_bytes();
            let mut loads = Vec::new();
            for _ in 0..20 {
                let t = Instant::now();
                let back = Model::from_bytes(&bytes).map_err(|e| anyhow!("{e}"))?;
                loads.push(t.elapsed().as_secs_f64() * 1e3);
                std::hint::black_box(back);
            }
            let k = Knowledge::embedded();
            let mut lat = Vec::with_capacity(n);
            for i in 0..n {
                let d = &k.diseases[i % k.diseases.len()];
                let take = 2 + i % d.symptoms.len().max(1);
                let s: Vec<String> = d.symptoms.iter().take(take).cloned().collect();
                let t = Instant::now();
                let p = m.predict(&s, 5).map_err(|e| anyhow!("{e}"))?;
                lat.push(t.elapsed().as_secs_f64() * 1e6);
                std::hint::black_box(p);
            }
            let pct = |v: &mut Vec<f64>, q: f64| {
                v.sort_by(f64::total_cmp);
                v[((v.len() - 1) as f64 * q).round() as usize]
            };
            let r = json!({
                "profile": if cfg!(debug_assertions) { "dev" } else { "release" },
                "model_bytes": bytes.len(),
                "train_ms": train_ms,
                "load_ms_p50": pct(&mut loads, 0.5),
                "predict_us_p50": pct(&mut lat, 0.5),
                "predict_us_p99": pct(&mut lat, 0.99),
                "predictions": n,
            });
            ctx.print(&r, || {
                format!(
                    "model: {} bytes; train {:.0} ms; load (parse + check) p50 {:.1} ms\npredict (top 5 of {} diseases): p50 {:.0} µs, p99 {:.0} µs over {n} predictions ({} build)",
                    bytes.len(),
                    train_ms,
                    r["load_ms_p50"].as_f64().unwrap_or_default(),
                    k.diseases.len(),
                    r["predict_us_p50"].as_f64().unwrap_or_default(),
                    r["predict_us_p99"].as_f64().unwrap_or_default(),
                    r["profile"].as_str().unwrap_or_default()
                )
            });
            Ok(())
        }
    }
}
