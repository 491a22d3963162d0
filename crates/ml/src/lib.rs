//! Decision support: ranked diseases for a set of reported symptoms, with ICD-10 codes,
//! suggested medicines and the specialty to refer to. A suggestion for a doctor to confirm,
//! never an order.
//!
//! Trained on **synthetic** patients drawn from a public knowledge table ([`data`]), with
//! `smartcore` ([`models`]). Everything is deterministic from a seed: the same seed gives the
//! same model bytes and so the same model version (the SHA-256 of the model file).
#![forbid(unsafe_code)]

pub mod data;
pub mod models;

use data::{Knowledge, SplitStats, SynthConfig};
use models::{LinearSvm, Metrics, NaiveBayes, TrainError};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// The embedded knowledge table, parsed once.
fn knowledge() -> &'static Knowledge {
    static K: OnceLock<Knowledge> = OnceLock::new();
    K.get_or_init(Knowledge::embedded)
}

/// The seed of the built-in model and of `ehrchain ml train|evaluate` by default.
pub const DEFAULT_SEED: u64 = 20_261_121;
/// The model file format.
pub const FORMAT: u32 = 1;
/// Most diseases one prediction returns.
pub const MAX_TOP: usize = 20;

/// The served model: fitted naive Bayes parameters plus provenance and measured accuracy.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Model {
    pub format: u32,
    pub kind: String,
    pub trained_with: String,
    pub seed: u64,
    pub data_sha256: String,
    pub synth: SynthConfig,
    pub split: SplitStats,
    /// Held-out figures of this model.
    pub metrics: Metrics,
    /// Feature order: symptom ids.
    pub symptoms: Vec<String>,
    /// Class order: disease names (index = disease in the knowledge table).
    pub diseases: Vec<String>,
    pub naive_bayes: NaiveBayes,
    #[serde(skip)]
    version: models::Cache<String>,
}

/// Why a prediction was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PredictError {
    #[error("no symptoms given (e.g. --symptoms fever,cough)")]
    Empty,
    #[error("unknown symptom {given:?}{}", suggest(.close))]
    Unknown { given: String, close: Vec<String> },
    #[error("top must be between 1 and {MAX_TOP}, not {0}")]
    BadTop(usize),
    #[error("the model file is not valid: {0}")]
    BadModel(String),
}

fn suggest(close: &[String]) -> String {
    if close.is_empty() {
        " (see `ehrchain predict --list-symptoms`)".into()
    } else {
        format!("; did you mean: {}?", close.join(", "))
    }
}

/// One ranked disease.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Ranked {
    pub disease: String,
    pub icd10: String,
    pub probability: f64,
    pub medications: Vec<String>,
    pub specialty: String,
}

/// What `predict` answers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Prediction {
    pub symptoms: Vec<String>,
    pub ranked: Vec<Ranked>,
    pub model: ModelInfo,
    pub notice: String,
}

/// Which model answered, and how well it did on held-out synthetic patients.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    pub version: String,
    pub kind: String,
    pub top1_accuracy: f64,
    pub top3_accuracy: Option<f64>,
    pub macro_f1: f64,
}

/// Shown with every prediction.
pub const NOTICE: &str = "Decision support for a clinician to confirm, not a diagnosis or an order. Trained on synthetic patients generated from a public knowledge table.";

/// Normalises a symptom as typed: lowercase, spaces and hyphens to underscores.
pub fn normalise(s: &str) -> String {
    s.trim()
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect::<String>()
        .split('_')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

impl Model {
    /// Trains the served model: synthetic patients from `seed`, de-duplicated split, naive
    /// Bayes fitted with smartcore, figures measured on the held-out side.
    pub fn train(seed: u64) -> Result<Model, TrainError> {
        let p = Prepared::new(seed);
        let (nb, _) = NaiveBayes::fit(&p.train, p.k.symptoms.len(), &[])?;
        Ok(Model::assemble(p, nb).0)
    }

    /// The model of fitted `nb` on `p`, and its top disease for each test patient.
    fn assemble(p: Prepared, nb: NaiveBayes) -> (Model, Vec<u32>) {
        let (metrics, top) = held_out(&p.test, &nb.classes, |x| nb.scores(x));
        let model = Model {
            format: FORMAT,
            kind: "bernoulli_naive_bayes".into(),
            trained_with: "smartcore 0.7 BernoulliNB (alpha 1)".into(),
            seed: p.seed,
            data_sha256: Knowledge::data_sha256(),
            synth: p.synth,
            split: p.split,
            metrics,
            symptoms: p.k.symptoms.iter().map(|s| s.id.clone()).collect(),
            diseases: p.k.diseases.iter().map(|d| d.name.clone()).collect(),
            naive_bayes: nb,
            version: models::Cache::default(),
        };
        (model, top)
    }

    /// The model file: canonical JSON (the same model gives the same bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a model serialises")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Model, PredictError> {
        let m: Model =
            serde_json::from_slice(bytes).map_err(|e| PredictError::BadModel(e.to_string()))?;
        if m.format != FORMAT {
            return Err(PredictError::BadModel(format!(
                "format {} (this build reads {FORMAT})",
                m.format
            )));
        }
        let nb = &m.naive_bayes;
        let ok = nb.classes.len() == nb.log_prior.len()
            && nb.classes.len() == nb.log_present.len()
            && nb.log_present.iter().all(|r| r.len() == m.symptoms.len())
            && nb.classes.iter().all(|&c| (c as usize) < m.diseases.len());
        if !ok {
            return Err(PredictError::BadModel("inconsistent dimensions".into()));
        }
        Ok(m)
    }

    /// The model's version: SHA-256 of its file.
    pub fn version(&self) -> String {
        use sha2::{Digest, Sha256};
        self.version
            .get_or_init(|| hex::encode(Sha256::digest(self.to_bytes())))
            .clone()
    }

    /// The built-in model (trained once per process from the embedded table and
    /// [`DEFAULT_SEED`]; no file, no network).
    pub fn builtin() -> &'static Model {
        static MODEL: OnceLock<Model> = OnceLock::new();
        MODEL.get_or_init(|| Model::train(DEFAULT_SEED).expect("the built-in model trains"))
    }

    /// Ranks diseases for `symptoms` (ids or labels, any case).
    pub fn predict(&self, symptoms: &[String], top: usize) -> Result<Prediction, PredictError> {
        if top == 0 || top > MAX_TOP {
            return Err(PredictError::BadTop(top));
        }
        let mut x = Vec::new();
        let mut names = Vec::new();
        for given in symptoms {
            let id = normalise(given);
            if id.is_empty() {
                continue;
            }
            let Some(j) = self.symptoms.iter().position(|s| *s == id) else {
                return Err(PredictError::Unknown {
                    given: given.trim().to_string(),
                    close: self.close_matches(&id),
                });
            };
            if !x.contains(&(j as u16)) {
                x.push(j as u16);
                names.push(id);
            }
        }
        if x.is_empty() {
            return Err(PredictError::Empty);
        }
        x.sort_unstable();
        let nb = &self.naive_bayes;
        let p = nb.probabilities(&x);
        let k = knowledge();
        let order = models::ranking(&(0..p.len() as u32).collect::<Vec<_>>(), &p);
        let ranked = order
            .into_iter()
            .take(top)
            .map(|i| {
                let d = nb.classes[i as usize] as usize;
                let name = &self.diseases[d];
                let info = k.diseases.iter().find(|x| x.name == *name);
                Ranked {
                    disease: name.clone(),
                    icd10: info.map(|i| i.icd10.clone()).unwrap_or_default(),
                    probability: p[i as usize],
                    medications: info.map(|i| i.medications.clone()).unwrap_or_default(),
                    specialty: info.map(|i| i.specialty.clone()).unwrap_or_default(),
                }
            })
            .collect();
        Ok(Prediction {
            symptoms: names,
            ranked,
            model: self.info(),
            notice: NOTICE.into(),
        })
    }

    pub fn info(&self) -> ModelInfo {
        ModelInfo {
            version: self.version(),
            kind: self.kind.clone(),
            top1_accuracy: self.metrics.top1,
            top3_accuracy: self.metrics.top3,
            macro_f1: self.metrics.macro_f1,
        }
    }

    /// Up to five known symptoms close to an unknown one.
    fn close_matches(&self, id: &str) -> Vec<String> {
        let mut scored: Vec<(f64, &String)> = self
            .symptoms
            .iter()
            .map(|s| {
                let mut score = strsim::jaro_winkler(id, s);
                if s.contains(id) || id.contains(s.as_str()) {
                    score = score.max(0.9);
                }
                (score, s)
            })
            .filter(|(score, _)| *score >= 0.8)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
        scored.into_iter().take(5).map(|(_, s)| s.clone()).collect()
    }
}

/// Every model's held-out figures on one seed's split, and the k-means exploration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Evaluation {
    pub seed: u64,
    pub data_sha256: String,
    pub diseases: usize,
    pub symptoms: usize,
    pub synth: SynthConfig,
    pub split: SplitStats,
    pub naive_bayes: Metrics,
    pub svm: Metrics,
    pub random_forest: Metrics,
    /// Share of test patients whose symptom vector fits only one disease's profile: no model
    /// can separate diseases with identical symptom lists.
    pub identical_profiles: Vec<Vec<String>>,
    pub clusters: models::Clusters,
    pub model_version: String,
    /// Whether smartcore's own NB predictions equal the read-out scores' top class.
    pub nb_readout_agrees: bool,
}

/// One seed's synthetic patients, de-duplicated and split: what training the served model
/// and evaluating all of them share.
struct Prepared {
    seed: u64,
    k: Knowledge,
    synth: SynthConfig,
    train: Vec<data::Sample>,
    test: Vec<data::Sample>,
    split: SplitStats,
}

impl Prepared {
    fn new(seed: u64) -> Prepared {
        let k = Knowledge::embedded();
        let synth = SynthConfig::default();
        let samples = data::synthesise(&k, &synth, seed);
        let (train, test, split) = data::split(&samples, synth.test_share, seed);
        Prepared {
            seed,
            k,
            synth,
            train,
            test,
            split,
        }
    }
}

/// Held-out figures of a scoring model (`classes[i]` is the class of score `i`), and its top
/// class for each test patient.
fn held_out(
    test: &[data::Sample],
    classes: &[u32],
    scores: impl Fn(&[u16]) -> Vec<f64>,
) -> (Metrics, Vec<u32>) {
    let rankings: Vec<Vec<u32>> = test
        .iter()
        .map(|s| models::ranking(classes, &scores(&s.symptoms)))
        .collect();
    let top: Vec<u32> = rankings.iter().map(|r| r[0]).collect();
    (models::metrics(test, &top, Some(&rankings)), top)
}

/// Trains and scores all three models on the same de-duplicated split.
pub fn evaluate(seed: u64) -> Result<Evaluation, TrainError> {
    let p = Prepared::new(seed);
    let n_features = p.k.symptoms.len();
    let n_classes = p.k.diseases.len();

    let svm = LinearSvm::fit(&p.train, n_features, n_classes, seed)?;
    let (svm_metrics, _) = held_out(&p.test, &svm.classes, |x| svm.scores(x));
    let rf_top = models::forest(&p.train, &p.test, n_features, seed)?;
    let random_forest = models::metrics(&p.test, &rf_top, None);
    let clusters = models::clusters(&p.k, specialties(&p.k), seed)?;
    let identical_profiles = identical_profiles(&p.k);
    let (diseases, symptoms) = (n_classes, n_features);

    // The served model, fitted once: its figures are the naive Bayes row.
    let (nb, own) = NaiveBayes::fit(&p.train, n_features, &p.test)?;
    let (model, nb_top) = Model::assemble(p, nb);
    Ok(Evaluation {
        seed,
        data_sha256: model.data_sha256.clone(),
        diseases,
        symptoms,
        synth: model.synth.clone(),
        split: model.split.clone(),
        naive_bayes: model.metrics.clone(),
        svm: svm_metrics,
        random_forest,
        identical_profiles,
        clusters,
        model_version: model.version(),
        nb_readout_agrees: nb_top == own,
    })
}

/// The number of distinct specialties (k of the k-means exploration).
fn specialties(k: &Knowledge) -> usize {
    let s: std::collections::BTreeSet<&str> =
        k.diseases.iter().map(|d| d.specialty.as_str()).collect();
    s.len()
}

/// Groups of diseases with identical symptom lists.
fn identical_profiles(k: &Knowledge) -> Vec<Vec<String>> {
    let mut groups: std::collections::BTreeMap<Vec<u16>, Vec<String>> = Default::default();
    for (d, p) in k.profiles().into_iter().enumerate() {
        groups
            .entry(p)
            .or_default()
            .push(k.diseases[d].name.clone());
    }
    groups.into_values().filter(|g| g.len() > 1).collect()
}

impl Evaluation {
    /// `docs/ml.md`.
    pub fn markdown(&self, command: &str) -> String {
        let pct = |v: f64| format!("{:.1} %", v * 100.0);
        let row = |name: &str, m: &Metrics| {
            format!(
                "| {name} | {} | {} | {:.3} |\n",
                pct(m.top1),
                m.top3.map_or("— (no per-class scores)".into(), pct),
                m.macro_f1
            )
        };
        let s = &self.split;
        let mut out = String::new();
        out += "# Decision support: disease prediction from symptoms\n\n";
        out += &format!("_Generated by `{command}`; do not edit by hand._\n\n");
        out += "**The patients are synthetic.** They are drawn from a public knowledge table, not from any\nreal person. The figures say how well each model recovers a disease from a random subset of\nits listed symptoms plus noise; they say nothing about clinical accuracy. `ehrchain predict`\nis decision support for a clinician to confirm, never a diagnosis or an order.\n\n";
        out += "## Data\n\n";
        out += &format!(
            "- Knowledge table: `faker-healthcare-provider` 2.5.0 (PyPI, MIT), module\n  `disease_correlations`, converted by `scripts/ml-data` into `crates/ml/data/diseases.json`\n  (SHA-256 `{}`; licence and attribution in\n  `crates/ml/data/LICENSE-faker-healthcare-provider.txt`).\n",
            self.data_sha256
        );
        out += &format!(
            "- {} diseases, {} distinct symptoms, each disease with its ICD-10 code, medicines and\n  specialty.\n",
            self.diseases, self.symptoms
        );
        out += &format!(
            "- Synthetic patients: {} per disease, seed {}. Each shows a random {}–100 % of its\n  disease's symptoms (at least two), plus one unrelated symptom with probability {} and a\n  second with probability {} after that.\n",
            self.synth.per_disease,
            self.seed,
            (self.synth.min_share * 100.0) as u32,
            self.synth.noise_one,
            self.synth.noise_two
        );
        out += &format!(
            "- De-duplication and split: {} patients generated; {} exact duplicates dropped; {}\n  distinct symptom vectors, {} of them shown by more than one disease. The split is by\n  **symptom vector** ({} % of vectors held out), so no test vector occurs in training:\n  {} training and {} test patients, **{} vectors shared** between the two.\n",
            s.generated,
            s.exact_duplicates,
            s.distinct_vectors,
            s.ambiguous_vectors,
            (self.synth.test_share * 100.0) as u32,
            s.train,
            s.test,
            s.shared_vectors
        );
        out += "- Diseases with identical symptom lists, which no model can tell apart from symptoms alone:\n";
        for g in &self.identical_profiles {
            out += &format!("  - {}\n", g.join(" / "));
        }
        out += "\n## Held-out results\n\n| model (smartcore 0.7) | top-1 | top-3 | macro F1 |\n|---|---|---|---|\n";
        out += &row("Naive Bayes (Bernoulli, α = 1) — served", &self.naive_bayes);
        out += &row("Linear SVM, one-vs-rest", &self.svm);
        out += &row("Random forest (100 trees)", &self.random_forest);
        out += &format!(
            "\n{} test patients. Macro F1 averages the per-disease F1 over the diseases in the test set.\n\n",
            self.naive_bayes.test_samples
        );
        out += "How each model was used:\n\n";
        out += "- **Naive Bayes** is the model `ehrchain predict` and the client SDK run: it gives a\n  probability for every disease. smartcore's `BernoulliNB` has no `predict_proba`, so its\n  fitted class counts and log feature probabilities are read out and the posterior computed\n  from them; ";
        out += if self.nb_readout_agrees {
            "on every test patient the read-out's top disease equals smartcore's own `predict`.\n"
        } else {
            "**the read-out's top disease differs from smartcore's own `predict` on some test\n  patients** (ties).\n"
        };
        out += &format!(
            "- **Linear SVM**: one smartcore binary `SVC` (linear kernel, C = 1) per disease against a\n  seeded sample of the other diseases' patients ({} per patient of the disease, and at\n  least as many as there are symptoms: smartcore 0.7's solver truncates rows when a\n  problem has fewer samples than features); the decision functions are read out as\n  weights. smartcore's multi-class SVM is one-vs-one with unseeded tie breaking and cannot\n  be saved, so it was not used.\n",
            models::NEGATIVES_PER_POSITIVE
        );
        out += "- **Random forest**: smartcore's `RandomForestClassifier` (100 trees, Gini, seeded). It\n  exposes no per-class scores, so it has no top-3 and is not served.\n\n";
        out += "Why the served model is not the best-ranking one: the SVM's decision values are margins,\nnot probabilities, and `predict` promises probabilities. Calibrating them (Platt scaling on\na validation split) and serving the SVM is the obvious next step.\n\n";
        out += &format!(
            "Served model version (SHA-256 of its file): `{}`.\n\n",
            self.model_version
        );
        out += &format!(
            "## Symptom clusters (k-means, k = {} = number of specialties)\n\n",
            self.clusters.k
        );
        out += &format!(
            "k-means over the {} diseases' symptom profiles (0/1 vectors). {} of diseases share\ntheir cluster's most common specialty. The largest clusters:\n\n| diseases | most common specialty | most common symptoms | examples |\n|---|---|---|---|\n",
            self.diseases,
            pct(self.clusters.specialty_purity)
        );
        for c in self.clusters.clusters.iter().take(8) {
            out += &format!(
                "| {} | {} | {} | {} |\n",
                c.diseases.len(),
                c.specialty,
                c.top_symptoms.join(", "),
                c.diseases
                    .iter()
                    .take(4)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        out += &format!(
            "\n## Reproduce\n\n```sh\n{command}          # this file\nehrchain ml train --seed {}        # the served model; prints its version\nehrchain ml bench                         # prediction latency and model load time\n```\n",
            self.seed
        );
        out
    }
}
