//! Training with `smartcore` and scoring.
//!
//! * **Naive Bayes** (`BernoulliNB`): the served model. Its fitted parameters (class counts
//!   and per-class log feature probabilities) are read out of smartcore and kept, so the
//!   posterior of every disease can be computed: smartcore's NB has no `predict_proba`.
//! * **Linear SVM**, one-vs-rest: one smartcore binary `SVC` (linear kernel) per disease,
//!   against a seeded subsample of the other diseases' patients. A linear kernel's decision
//!   function is `w·x + b`, so each is read out exactly as `b = f(0)`, `w_j = f(e_j) - b`
//!   (smartcore's multi-class SVM is one-vs-one with non-deterministic tie breaking and
//!   cannot be saved).
//! * **Random forest** (`RandomForestClassifier`): top-1 only; smartcore's forest exposes no
//!   per-class scores, so no top-3.
//! * **k-means** on the diseases' symptom profiles, to explore how symptoms cluster.

use crate::data::{Knowledge, Sample};
use rand::{SeedableRng as _, seq::SliceRandom as _};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use smartcore::{
    cluster::kmeans::{KMeans, KMeansParameters},
    ensemble::random_forest_classifier::{
        RandomForestClassifier, RandomForestClassifierParameters,
    },
    linalg::basic::matrix::DenseMatrix,
    naive_bayes::bernoulli::{BernoulliNB, BernoulliNBParameters},
    svm::{
        Kernels,
        svc::{SVC, SVCParameters},
    },
};

/// Why training failed (smartcore's error, with what was being fitted).
#[derive(Debug, thiserror::Error)]
#[error("training {model} failed: {message}")]
pub struct TrainError {
    pub model: &'static str,
    pub message: String,
}

fn failed(model: &'static str) -> impl Fn(smartcore::error::Failed) -> TrainError {
    move |e| TrainError {
        model,
        message: e.to_string(),
    }
}

/// Dense 0/1 rows for smartcore.
pub fn matrix(samples: &[Sample], n_features: usize) -> DenseMatrix<f64> {
    let mut flat = vec![0.0; samples.len() * n_features];
    for (i, s) in samples.iter().enumerate() {
        for &j in &s.symptoms {
            flat[i * n_features + j as usize] = 1.0;
        }
    }
    DenseMatrix::new(samples.len(), n_features, flat, false).expect("dimensions match")
}

fn labels(samples: &[Sample]) -> Vec<u32> {
    samples.iter().map(|s| s.disease).collect()
}

/// The fitted parameters of a Bernoulli naive Bayes model.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NaiveBayes {
    /// Disease index of each class, in smartcore's class order.
    pub classes: Vec<u32>,
    /// ln P(class).
    pub log_prior: Vec<f64>,
    /// ln P(symptom j present | class).
    pub log_present: Vec<Vec<f64>>,
    /// Per class: ln P(class) + Σ_j ln P(symptom j absent | class), computed once.
    #[serde(skip)]
    base: Cache<Vec<f64>>,
}

/// A value computed once from the rest of a struct: not part of its file, its equality or
/// its debug output.
#[derive(Clone, Default)]
pub struct Cache<T>(std::sync::OnceLock<T>);

impl<T> Cache<T> {
    pub fn get_or_init(&self, f: impl FnOnce() -> T) -> &T {
        self.0.get_or_init(f)
    }
}

impl<T> PartialEq for Cache<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> std::fmt::Debug for Cache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("…")
    }
}

impl NaiveBayes {
    /// Fits smartcore's `BernoulliNB` (Laplace smoothing) and reads out its parameters.
    /// Also returns smartcore's own predictions on `check`, so callers can confirm the
    /// read-out scores rank the same way.
    pub fn fit(
        train: &[Sample],
        n_features: usize,
        check: &[Sample],
    ) -> Result<(NaiveBayes, Vec<u32>), TrainError> {
        let x = matrix(train, n_features);
        let y = labels(train);
        let nb = BernoulliNB::fit(
            &x,
            &y,
            BernoulliNBParameters::default()
                .with_alpha(1.0)
                .with_binarize(0.5),
        )
        .map_err(failed("naive Bayes"))?;
        let total: usize = nb.class_count().iter().sum();
        let model = NaiveBayes {
            classes: nb.classes().clone(),
            log_prior: nb
                .class_count()
                .iter()
                .map(|&c| (c as f64 / total as f64).ln())
                .collect(),
            log_present: nb.feature_log_prob().clone(),
            base: Cache::default(),
        };
        let own = if check.is_empty() {
            Vec::new()
        } else {
            nb.predict(&matrix(check, n_features))
                .map_err(failed("naive Bayes"))?
        };
        Ok((model, own))
    }

    /// Log-posterior (up to a constant) of each class for the symptom set `x`.
    pub fn scores(&self, x: &[u16]) -> Vec<f64> {
        let base = self.base.get_or_init(|| {
            self.log_present
                .iter()
                .zip(&self.log_prior)
                .map(|(lp, prior)| prior + lp.iter().map(|&l| (-l.exp()).ln_1p()).sum::<f64>())
                .collect()
        });
        // Each present symptom swaps its "absent" term for its "present" one.
        self.log_present
            .iter()
            .zip(base)
            .map(|(lp, b)| {
                b + x
                    .iter()
                    .map(|&j| {
                        let l = lp[j as usize];
                        l - (-l.exp()).ln_1p()
                    })
                    .sum::<f64>()
            })
            .collect()
    }

    /// Posterior probabilities: softmax of [`Self::scores`].
    pub fn probabilities(&self, x: &[u16]) -> Vec<f64> {
        let s = self.scores(x);
        let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|v| (v - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        e.into_iter().map(|v| v / sum).collect()
    }
}

/// One-vs-rest linear SVM, read out as weights.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LinearSvm {
    pub classes: Vec<u32>,
    pub weights: Vec<Vec<f64>>,
    pub bias: Vec<f64>,
}

/// Negatives per positive in each one-vs-rest problem.
pub const NEGATIVES_PER_POSITIVE: usize = 6;

impl LinearSvm {
    pub fn fit(
        train: &[Sample],
        n_features: usize,
        n_classes: usize,
        seed: u64,
    ) -> Result<LinearSvm, TrainError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let params = SVCParameters::default()
            .with_c(1.0)
            .with_kernel(Kernels::linear())
            .with_seed(Some(seed));
        // Probes: the zero vector, then each unit vector.
        let mut probe = vec![0.0; (n_features + 1) * n_features];
        for j in 0..n_features {
            probe[(j + 1) * n_features + j] = 1.0;
        }
        let probe =
            DenseMatrix::new(n_features + 1, n_features, probe, false).expect("dimensions match");
        let mut out = LinearSvm {
            classes: Vec::new(),
            weights: Vec::new(),
            bias: Vec::new(),
        };
        for c in 0..n_classes as u32 {
            let pos: Vec<&Sample> = train.iter().filter(|s| s.disease == c).collect();
            if pos.is_empty() {
                continue;
            }
            let mut neg: Vec<&Sample> = train.iter().filter(|s| s.disease != c).collect();
            neg.shuffle(&mut rng);
            // smartcore 0.7's SMO reads each row through `take(n_samples)`, which truncates
            // rows when there are fewer samples than features: keep the problem at least
            // as tall as it is wide.
            neg.truncate((pos.len() * NEGATIVES_PER_POSITIVE).max(n_features));
            let set: Vec<Sample> = pos
                .iter()
                .map(|s| Sample {
                    symptoms: s.symptoms.clone(),
                    disease: 1,
                })
                .chain(neg.iter().map(|s| Sample {
                    symptoms: s.symptoms.clone(),
                    disease: 0,
                }))
                .collect();
            let x = matrix(&set, n_features);
            let y = labels(&set);
            let svc = SVC::fit(&x, &y, &params).map_err(failed("linear SVM"))?;
            let f = svc
                .decision_function(&probe)
                .map_err(failed("linear SVM"))?;
            let b = f[0];
            let mut w: Vec<f64> = f[1..].iter().map(|v| v - b).collect();
            let mut b = b;
            // smartcore orders the two labels itself: orient so the disease scores high.
            let mean = |label: u32| {
                let rows: Vec<&Sample> = set.iter().filter(|s| s.disease == label).collect();
                rows.iter()
                    .map(|s| b + s.symptoms.iter().map(|&j| w[j as usize]).sum::<f64>())
                    .sum::<f64>()
                    / rows.len().max(1) as f64
            };
            if mean(1) < mean(0) {
                w.iter_mut().for_each(|v| *v = -*v);
                b = -b;
            }
            out.classes.push(c);
            out.weights.push(w);
            out.bias.push(b);
        }
        Ok(out)
    }

    pub fn scores(&self, x: &[u16]) -> Vec<f64> {
        self.weights
            .iter()
            .zip(&self.bias)
            .map(|(w, b)| b + x.iter().map(|&j| w[j as usize]).sum::<f64>())
            .collect()
    }
}

/// Fits smartcore's random forest and predicts `test` (top-1 only).
pub fn forest(
    train: &[Sample],
    test: &[Sample],
    n_features: usize,
    seed: u64,
) -> Result<Vec<u32>, TrainError> {
    let x = matrix(train, n_features);
    let y = labels(train);
    let params = RandomForestClassifierParameters {
        n_trees: 100,
        seed,
        ..RandomForestClassifierParameters::default()
    };
    let rf: RandomForestClassifier<f64, u32, DenseMatrix<f64>, Vec<u32>> =
        RandomForestClassifier::fit(&x, &y, params).map_err(failed("random forest"))?;
    rf.predict(&matrix(test, n_features))
        .map_err(failed("random forest"))
}

/// The k-means exploration of the diseases' symptom profiles.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Clusters {
    pub k: usize,
    /// Share of diseases whose cluster's most common specialty is their own.
    pub specialty_purity: f64,
    /// Each cluster: its diseases, most common specialty and most common symptoms.
    pub clusters: Vec<Cluster>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cluster {
    pub diseases: Vec<String>,
    pub specialty: String,
    pub top_symptoms: Vec<String>,
}

pub fn clusters(k: &Knowledge, n_clusters: usize, seed: u64) -> Result<Clusters, TrainError> {
    let n_features = k.symptoms.len();
    let profiles: Vec<Sample> = k
        .profiles()
        .into_iter()
        .enumerate()
        .map(|(d, symptoms)| Sample {
            symptoms,
            disease: d as u32,
        })
        .collect();
    let x = matrix(&profiles, n_features);
    let params = KMeansParameters {
        k: n_clusters,
        max_iter: 300,
        seed: Some(seed),
    };
    let km: KMeans<f64, u32, DenseMatrix<f64>, Vec<u32>> =
        KMeans::fit(&x, params).map_err(failed("k-means"))?;
    let assigned = km.predict(&x).map_err(failed("k-means"))?;
    let mut out = Vec::new();
    let mut pure = 0usize;
    for c in 0..n_clusters as u32 {
        let members: Vec<usize> = (0..profiles.len()).filter(|&d| assigned[d] == c).collect();
        if members.is_empty() {
            continue;
        }
        let mut spec: std::collections::BTreeMap<&str, usize> = Default::default();
        let mut sym: std::collections::BTreeMap<&str, usize> = Default::default();
        for &d in &members {
            *spec.entry(k.diseases[d].specialty.as_str()).or_default() += 1;
            for s in &k.diseases[d].symptoms {
                *sym.entry(s.as_str()).or_default() += 1;
            }
        }
        let (top_spec, n) = spec
            .iter()
            .max_by_key(|(name, n)| (**n, std::cmp::Reverse(*name)))
            .map(|(s, n)| (s.to_string(), *n))
            .expect("a cluster has members");
        pure += n;
        let mut sym: Vec<(&str, usize)> = sym.into_iter().collect();
        sym.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        out.push(Cluster {
            diseases: members
                .iter()
                .map(|&d| k.diseases[d].name.clone())
                .collect(),
            specialty: top_spec,
            top_symptoms: sym.iter().take(4).map(|(s, _)| s.to_string()).collect(),
        });
    }
    out.sort_by_key(|c| std::cmp::Reverse(c.diseases.len()));
    Ok(Clusters {
        k: n_clusters,
        specialty_purity: pure as f64 / profiles.len() as f64,
        clusters: out,
    })
}

/// Held-out figures of one model.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    pub top1: f64,
    /// `None` when the model gives no per-class scores.
    pub top3: Option<f64>,
    pub macro_f1: f64,
    pub test_samples: usize,
}

/// The classes ordered by score, best first (ties by class index, so it is deterministic).
pub fn ranking(classes: &[u32], scores: &[f64]) -> Vec<u32> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| {
        scores[b]
            .total_cmp(&scores[a])
            .then(classes[a].cmp(&classes[b]))
    });
    idx.into_iter().map(|i| classes[i]).collect()
}

/// Top-1, top-3 (from rankings, if any) and macro F1 over the diseases in the test set.
pub fn metrics(test: &[Sample], predicted: &[u32], rankings: Option<&[Vec<u32>]>) -> Metrics {
    let n = test.len().max(1) as f64;
    let top1 = test
        .iter()
        .zip(predicted)
        .filter(|(s, p)| s.disease == **p)
        .count() as f64
        / n;
    let top3 = rankings.map(|r| {
        test.iter()
            .zip(r)
            .filter(|(s, r)| r.iter().take(3).any(|c| *c == s.disease))
            .count() as f64
            / n
    });
    let mut tp: std::collections::BTreeMap<u32, (f64, f64, f64)> = Default::default();
    for s in test {
        tp.entry(s.disease).or_default();
    }
    for (s, p) in test.iter().zip(predicted) {
        if s.disease == *p {
            tp.entry(*p).or_default().0 += 1.0;
        } else {
            tp.entry(*p).or_default().1 += 1.0; // false positive for p
            tp.entry(s.disease).or_default().2 += 1.0; // false negative for the truth
        }
    }
    let truth: std::collections::BTreeSet<u32> = test.iter().map(|s| s.disease).collect();
    let f1s: Vec<f64> = truth
        .iter()
        .map(|c| {
            let (t, fp, fneg) = tp[c];
            if t == 0.0 {
                0.0
            } else {
                2.0 * t / (2.0 * t + fp + fneg)
            }
        })
        .collect();
    Metrics {
        top1,
        top3,
        macro_f1: f1s.iter().sum::<f64>() / f1s.len().max(1) as f64,
        test_samples: test.len(),
    }
}
